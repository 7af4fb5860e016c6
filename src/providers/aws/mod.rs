//! The `aws_identity_center` provider: an IAM Identity Center account
//! assignment per grant — a permission set on an AWS account for a user.
//! The target is `<account id>/<permission set ARN>`; the principal is the
//! user's email (or user name), resolved to their Identity Store user id.
//! Grant is `CreateAccountAssignment`, revoke `DeleteAccountAssignment`
//! (an assignment already gone is done); both are asynchronous in AWS, so
//! their status is polled until it succeeds or fails, and the result is
//! read back from `ListAccountAssignments`. Holders are the users assigned
//! the permission set on the account, as their primary email.
//!
//! Calls are signed with SigV4 by jitbot itself (two JSON APIs do not need
//! the AWS SDK); credentials and region come from the standard AWS
//! environment variables.

pub mod sigv4;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::rest::Rest;
use super::{Access, Provider, ProviderError};
use sigv4::{Call, Credentials};

const JSON_1_1: &str = "application/x-amz-json-1.1";
/// How often an asynchronous assignment's status is asked.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// What jitbot's credentials need, for messages.
const PERMISSION: &str = "sso:CreateAccountAssignment, sso:DeleteAccountAssignment, sso:DescribeAccountAssignment*Status, sso:ListAccountAssignments, identitystore:GetUserId and identitystore:DescribeUser (plus the IAM actions Identity Center performs in the account)";

/// The two services and how to reach them.
struct Service {
    /// SigV4 signing name.
    signing_name: &'static str,
    url: reqwest::Url,
    target_prefix: &'static str,
}

pub struct IdentityCenterProvider {
    rest: Rest,
    credentials: Credentials,
    region: String,
    instance_arn: String,
    identity_store_id: String,
    sso: Service,
    identity_store: Service,
}

/// Where to reach AWS and as whom.
pub struct AwsSettings<'a> {
    pub instance_arn: &'a str,
    pub identity_store_id: &'a str,
    /// Overrides both services' endpoints (tests, VPC endpoints).
    pub endpoint_url: Option<&'a str>,
    pub region: String,
    pub credentials: Credentials,
}

/// An AWS error answer: its type (`ThrottlingException`) and message.
struct AwsError {
    kind: String,
    message: String,
}

impl AwsError {
    fn read(body: &Value, headers: &reqwest::header::HeaderMap) -> AwsError {
        let kind = body["__type"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                headers
                    .get("x-amzn-ErrorType")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        // `prefix#Name:details` → `Name`.
        let kind = kind
            .rsplit('#')
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        let message = body["message"]
            .as_str()
            .or(body["Message"].as_str())
            .unwrap_or("")
            .to_string();
        AwsError { kind, message }
    }

    fn passes(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "ThrottlingException" | "InternalServerException" | "ServiceUnavailableException"
        )
    }
}

/// A target, checked: the account and the permission set.
fn target(text: &str) -> Result<(&str, &str), String> {
    let (account, permission_set) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not `<account id>/<permission set ARN>`"))?;
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{account}` is not a 12-digit AWS account id"));
    }
    if !permission_set.starts_with("arn:") || !permission_set.contains(":permissionSet/") {
        return Err(format!("`{permission_set}` is not a permission set ARN"));
    }
    Ok((account, permission_set))
}

impl IdentityCenterProvider {
    pub fn new(name: &str, settings: AwsSettings<'_>, timeout: Duration) -> Result<Self, String> {
        let fail = |why: String| format!("provider {name}: {why}");
        let endpoint = |service: &str| -> Result<reqwest::Url, String> {
            let text = match settings.endpoint_url {
                Some(url) => url.trim_end_matches('/').to_string(),
                None => format!("https://{service}.{}.amazonaws.com", settings.region),
            };
            reqwest::Url::parse(&text)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
                .ok_or_else(|| fail(format!("`{text}` is not an http(s) endpoint")))
        };
        if !settings.instance_arn.starts_with("arn:") {
            return Err(fail(format!(
                "instance_arn `{}` is not an ARN",
                settings.instance_arn
            )));
        }
        Ok(Self {
            rest: Rest::new(name, timeout)?,
            credentials: settings.credentials,
            instance_arn: settings.instance_arn.to_string(),
            identity_store_id: settings.identity_store_id.to_string(),
            sso: Service {
                signing_name: "sso",
                url: endpoint("sso")?,
                target_prefix: "SWBExternalService",
            },
            identity_store: Service {
                signing_name: "identitystore",
                url: endpoint("identitystore")?,
                target_prefix: "AWSIdentityStore",
            },
            region: settings.region,
        })
    }

    /// Call `operation` of `service` with `input`; the output, or the
    /// error AWS answered (4xx), or a failure to reach it.
    async fn call(
        &self,
        service: &Service,
        operation: &str,
        input: &Value,
        deadline: Instant,
    ) -> Result<Result<Value, AwsError>, ProviderError> {
        let body = serde_json::to_vec(input).expect("JSON serialises");
        let host = match service.url.port() {
            Some(port) => format!("{}:{port}", service.url.host_str().unwrap_or("")),
            None => service.url.host_str().unwrap_or("").to_string(),
        };
        let target = format!("{}.{operation}", service.target_prefix);
        loop {
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let headers = sigv4::sign(
                &self.credentials,
                &Call {
                    region: &self.region,
                    service: service.signing_name,
                    host: &host,
                    amz_date: &amz_date,
                    target: &target,
                    content_type: JSON_1_1,
                    body: &body,
                },
            );
            let response = self
                .rest
                .send(operation, deadline, super::rest::retry_after, || {
                    let mut request = self.rest.http.post(service.url.clone()).body(body.clone());
                    for (name, value) in &headers {
                        request = request.header(name.as_str(), value.as_str());
                    }
                    request
                })
                .await?;
            let status = response.status();
            let response_headers = response.headers().clone();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(Ok(answer));
            }
            let error = AwsError::read(&answer, &response_headers);
            // AWS throttles with a 400: wait a moment and go again.
            if error.passes() && Instant::now() + Duration::from_secs(1) < deadline {
                tracing::info!(provider = %self.rest.provider, kind = %error.kind, "AWS asked to slow down");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            return Ok(Err(error));
        }
    }

    fn explain(&self, what: &str, error: AwsError) -> ProviderError {
        let text = format!("{}: {}", error.kind, error.message);
        if error.passes() {
            self.rest.passing(what, text)
        } else if error.kind == "AccessDeniedException" {
            self.rest
                .refused(what, format!("{text} (the credentials need {PERMISSION})"))
        } else {
            self.rest.refused(what, text)
        }
    }

    /// The Identity Store user id of `principal` (an email, or a user name).
    async fn user_id(
        &self,
        principal: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ProviderError> {
        for path in ["emails.value", "userName"] {
            let input = json!({
                "IdentityStoreId": self.identity_store_id,
                "AlternateIdentifier": { "UniqueAttribute": { "AttributePath": path, "AttributeValue": principal } },
            });
            match self
                .call(&self.identity_store, "GetUserId", &input, deadline)
                .await?
            {
                Ok(output) => return Ok(output["UserId"].as_str().map(str::to_string)),
                Err(error) if error.kind == "ResourceNotFoundException" => continue,
                Err(error) => return Err(self.explain("looking up the user", error)),
            }
        }
        Ok(None)
    }

    /// The principals assigned the permission set on the account.
    async fn assigned(
        &self,
        account: &str,
        permission_set: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, ProviderError> {
        let what = "listing the account's assignments";
        let mut users = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut input = json!({
                "InstanceArn": self.instance_arn,
                "AccountId": account,
                "PermissionSetArn": permission_set,
                "MaxResults": 100,
            });
            if let Some(token) = &next {
                input["NextToken"] = json!(token);
            }
            let output = self
                .call(&self.sso, "ListAccountAssignments", &input, deadline)
                .await?
                .map_err(|e| self.explain(what, e))?;
            users.extend(
                output["AccountAssignments"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter(|a| a["PrincipalType"] == "USER")
                    .filter_map(|a| a["PrincipalId"].as_str().map(str::to_string)),
            );
            next = output["NextToken"].as_str().map(str::to_string);
            if next.is_none() {
                return Ok(users);
            }
        }
    }

    /// Wait for an asynchronous assignment change to finish.
    async fn until_done(
        &self,
        what: &str,
        operation: &str,
        id_field: &str,
        status_field: &str,
        request_id: &str,
        deadline: Instant,
    ) -> Result<(), ProviderError> {
        loop {
            let input = json!({ "InstanceArn": self.instance_arn, id_field: request_id });
            let output = self
                .call(&self.sso, operation, &input, deadline)
                .await?
                .map_err(|e| self.explain(what, e))?;
            let status = &output[status_field];
            match status["Status"].as_str() {
                Some("SUCCEEDED") => return Ok(()),
                Some("FAILED") => {
                    return Err(self.rest.refused(
                        what,
                        format!(
                            "AWS reports it FAILED: {}",
                            status["FailureReason"]
                                .as_str()
                                .unwrap_or("no reason given")
                        ),
                    ))
                }
                _ => {}
            }
            if Instant::now() + POLL_EVERY >= deadline {
                return Err(self.rest.passing(what, "still in progress at the timeout"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn change(&self, access: &Access, assign: bool) -> Result<(), ProviderError> {
        let deadline = self.rest.deadline();
        let what = if assign {
            "assigning the permission set"
        } else {
            "removing the assignment"
        };
        let (account, permission_set) =
            target(&access.target).map_err(|why| self.rest.refused("checking the target", why))?;
        let Some(user) = self.user_id(&access.principal, deadline).await? else {
            return if assign {
                Err(self.rest.refused(
                    what,
                    format!("the Identity Store has no user `{}`", access.principal),
                ))
            } else {
                Ok(())
            };
        };
        let input = json!({
            "InstanceArn": self.instance_arn,
            "TargetId": account,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": permission_set,
            "PrincipalType": "USER",
            "PrincipalId": user,
        });
        let (operation, status_field, describe, id_field) = if assign {
            (
                "CreateAccountAssignment",
                "AccountAssignmentCreationStatus",
                "DescribeAccountAssignmentCreationStatus",
                "AccountAssignmentCreationRequestId",
            )
        } else {
            (
                "DeleteAccountAssignment",
                "AccountAssignmentDeletionStatus",
                "DescribeAccountAssignmentDeletionStatus",
                "AccountAssignmentDeletionRequestId",
            )
        };
        match self.call(&self.sso, operation, &input, deadline).await? {
            Ok(output) => {
                let status = &output[status_field];
                match (status["Status"].as_str(), status["RequestId"].as_str()) {
                    (Some("SUCCEEDED"), _) => {}
                    (Some("FAILED"), _) => {
                        return Err(self.rest.refused(
                            what,
                            format!(
                                "AWS reports it FAILED: {}",
                                status["FailureReason"]
                                    .as_str()
                                    .unwrap_or("no reason given")
                            ),
                        ))
                    }
                    (_, Some(request)) => {
                        self.until_done(what, describe, id_field, status_field, request, deadline)
                            .await?
                    }
                    _ => return Err(self.rest.passing(what, "an answer without a status")),
                }
            }
            // Nothing to delete: already gone.
            Err(error) if !assign && error.kind == "ResourceNotFoundException" => {}
            Err(error) => return Err(self.explain(what, error)),
        }
        let assigned = self.assigned(account, permission_set, deadline).await?;
        if assigned.contains(&user) != assign {
            return Err(self.rest.passing(
                what,
                "AWS reported success but the assignments do not show it yet",
            ));
        }
        Ok(())
    }

    /// How the Identity Store names user `id`: their primary email, else
    /// their user name.
    async fn name_of(&self, id: &str, deadline: Instant) -> Result<String, ProviderError> {
        let input = json!({ "IdentityStoreId": self.identity_store_id, "UserId": id });
        let user = match self
            .call(&self.identity_store, "DescribeUser", &input, deadline)
            .await?
        {
            Ok(user) => user,
            Err(error) if error.kind == "ResourceNotFoundException" => return Ok(id.to_string()),
            Err(error) => return Err(self.explain("describing a user", error)),
        };
        let emails = user["Emails"].as_array().cloned().unwrap_or_default();
        let email = emails
            .iter()
            .find(|e| e["Primary"] == true)
            .or(emails.first())
            .and_then(|e| e["Value"].as_str());
        Ok(email
            .or(user["UserName"].as_str())
            .unwrap_or(id)
            .to_ascii_lowercase())
    }
}

/// The recorded detail naming the instance an assignment was made in.
const INSTANCE_DETAIL: &str = "instance_arn";

#[async_trait]
impl Provider for IdentityCenterProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, true).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        // An assignment lives in one Identity Center instance: one made in
        // another than the configured one cannot be removed from here.
        if let Some(recorded) = access.details.get(INSTANCE_DETAIL) {
            if recorded != &self.instance_arn {
                return Err(self.rest.refused(
                    "removing the assignment",
                    format!(
                        "it was made in Identity Center instance {recorded}, and the provider is now configured for {}; remove it there by hand",
                        self.instance_arn
                    ),
                ));
            }
        }
        self.change(access, false).await
    }

    /// The assignment a grant makes: the instance, account and permission
    /// set (the principal is recorded with every grant).
    fn grant_details(&self, access: &Access) -> BTreeMap<String, String> {
        let mut details =
            BTreeMap::from([(INSTANCE_DETAIL.to_string(), self.instance_arn.clone())]);
        if let Ok((account, permission_set)) = target(&access.target) {
            details.insert("account".to_string(), account.to_string());
            details.insert("permission_set".to_string(), permission_set.to_string());
        }
        details
    }

    async fn holders(&self, target_text: &str) -> Result<Vec<String>, ProviderError> {
        let deadline = self.rest.deadline();
        let (account, permission_set) =
            target(target_text).map_err(|why| self.rest.refused("checking the target", why))?;
        let mut holders = Vec::new();
        for id in self.assigned(account, permission_set, deadline).await? {
            holders.push(self.name_of(&id, deadline).await?);
        }
        Ok(holders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_an_account_and_a_permission_set() {
        let arn = "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-2222222222222222";
        assert_eq!(
            target(&format!("123456789012/{arn}")).unwrap(),
            ("123456789012", arn)
        );
        for bad in [
            "123456789012",
            "12345/arn:aws:sso:::permissionSet/x",
            "123456789012/ps-1",
            "abcdefghijkl/arn:aws:sso:::permissionSet/x",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
