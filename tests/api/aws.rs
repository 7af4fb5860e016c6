//! The `aws_identity_center` provider against a fake of the SSO Admin and
//! Identity Store JSON APIs on loopback: every call SigV4-signed with the
//! environment's credentials, account assignments created and deleted
//! asynchronously (polled until SUCCEEDED), FAILED reported, throttling
//! waited out, holders named by email, and the whole loop through the
//! server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitbot::providers::aws::sigv4::Credentials;
use jitbot::providers::aws::{AwsSettings, IdentityCenterProvider};
use jitbot::providers::{Access, Provider};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{eventually, TestApp};

const INSTANCE: &str = "arn:aws:sso:::instance/ssoins-1111111111111111";
const STORE: &str = "d-1234567890";
const PERMISSION_SET: &str =
    "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-2222222222222222";
const ACCOUNT: &str = "123456789012";
const KEY_ID: &str = "AKIDJITBOTTEST";

#[derive(Default)]
struct State {
    /// Principal ids assigned the permission set on the account.
    assigned: BTreeSet<String>,
    /// Asynchronous requests: id → (is creation, polls left before done).
    pending: BTreeMap<String, (bool, u32)>,
    /// Targets called, in order.
    calls: Vec<String>,
    /// Answer the next call with a ThrottlingException.
    throttle: u32,
    /// Fail creations with this reason.
    fail_creations: Option<String>,
    next_request: u32,
}

struct FakeAws {
    state: Arc<Mutex<State>>,
}

fn users() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("u0alice@example.com", "9067-alice"),
        ("bob@example.com", "9067-bob"),
    ])
}

impl Respond for FakeAws {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let target = header("x-amz-target");
        let mut state = self.state.lock().unwrap();
        state.calls.push(target.clone());
        let error = |kind: &str, message: &str| {
            ResponseTemplate::new(400).set_body_json(json!({ "__type": kind, "message": message }))
        };
        // Every call is SigV4-signed for the right service, with the
        // date and target among the signed headers.
        let service = if target.starts_with("AWSIdentityStore.") {
            "identitystore"
        } else {
            "sso"
        };
        let authorization = header("authorization");
        let signed = authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/"))
            && authorization.contains(&format!("/eu-west-1/{service}/aws4_request"))
            && authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target")
            && authorization.contains("Signature=")
            && header("content-type") == "application/x-amz-json-1.1"
            && header("x-amz-date").len() == 16;
        if !signed {
            return ResponseTemplate::new(403).set_body_json(json!({
                "__type": "InvalidSignatureException", "message": "not signed"
            }));
        }
        if state.throttle > 0 {
            state.throttle -= 1;
            return error("ThrottlingException", "Rate exceeded");
        }
        let input: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or("");
        match operation {
            "GetUserId" => {
                let unique = &input["AlternateIdentifier"]["UniqueAttribute"];
                let value = unique["AttributeValue"].as_str().unwrap_or("");
                match (unique["AttributePath"].as_str(), users().get(value)) {
                    (Some("emails.value"), Some(id)) => ResponseTemplate::new(200)
                        .set_body_json(json!({ "IdentityStoreId": STORE, "UserId": id })),
                    _ => error("ResourceNotFoundException", "USER not found"),
                }
            }
            "DescribeUser" => {
                let id = input["UserId"].as_str().unwrap_or("");
                match users().into_iter().find(|(_, uid)| *uid == id) {
                    Some((email, _)) => ResponseTemplate::new(200).set_body_json(json!({
                        "UserId": id, "UserName": email.split('@').next(),
                        "Emails": [{ "Value": "old@example.com", "Primary": false }, { "Value": email, "Primary": true }]
                    })),
                    None => error("ResourceNotFoundException", "USER not found"),
                }
            }
            "CreateAccountAssignment" | "DeleteAccountAssignment" => {
                assert_eq!(input["InstanceArn"], INSTANCE);
                assert_eq!(input["TargetId"], ACCOUNT);
                assert_eq!(input["TargetType"], "AWS_ACCOUNT");
                assert_eq!(input["PermissionSetArn"], PERMISSION_SET);
                assert_eq!(input["PrincipalType"], "USER");
                let creation = operation == "CreateAccountAssignment";
                let principal = input["PrincipalId"].as_str().unwrap().to_string();
                state.next_request += 1;
                let id = format!("req-{}", state.next_request);
                state.pending.insert(id.clone(), (creation, 1));
                if creation && state.fail_creations.is_none() {
                    state.assigned.insert(principal);
                } else if !creation {
                    state.assigned.remove(&principal);
                }
                let field = if creation {
                    "AccountAssignmentCreationStatus"
                } else {
                    "AccountAssignmentDeletionStatus"
                };
                ResponseTemplate::new(200).set_body_json(json!({
                    field: { "Status": "IN_PROGRESS", "RequestId": id }
                }))
            }
            "DescribeAccountAssignmentCreationStatus"
            | "DescribeAccountAssignmentDeletionStatus" => {
                let creation = operation.contains("Creation");
                let id_field = if creation {
                    "AccountAssignmentCreationRequestId"
                } else {
                    "AccountAssignmentDeletionRequestId"
                };
                let id = input[id_field].as_str().unwrap_or("").to_string();
                let failure = state.fail_creations.clone();
                let Some((_, polls)) = state.pending.get_mut(&id) else {
                    return error("ResourceNotFoundException", "no such request");
                };
                let status = if *polls > 0 {
                    *polls -= 1;
                    json!({ "Status": "IN_PROGRESS", "RequestId": id })
                } else if let (true, Some(reason)) = (creation, failure) {
                    json!({ "Status": "FAILED", "RequestId": id, "FailureReason": reason })
                } else {
                    json!({ "Status": "SUCCEEDED", "RequestId": id })
                };
                let field = if creation {
                    "AccountAssignmentCreationStatus"
                } else {
                    "AccountAssignmentDeletionStatus"
                };
                ResponseTemplate::new(200).set_body_json(json!({ field: status }))
            }
            "ListAccountAssignments" => {
                // One per page, with NextToken.
                let all: Vec<String> = state.assigned.iter().cloned().collect();
                let start: usize = input["NextToken"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let page: Vec<Value> = all.iter().skip(start).take(1).map(|id| json!({
                    "AccountId": ACCOUNT, "PermissionSetArn": PERMISSION_SET, "PrincipalType": "USER", "PrincipalId": id
                })).collect();
                let mut answer = json!({ "AccountAssignments": page });
                if start + 1 < all.len() {
                    answer["NextToken"] = json!((start + 1).to_string());
                }
                ResponseTemplate::new(200).set_body_json(answer)
            }
            _ => error("UnknownOperationException", operation),
        }
    }
}

async fn fake_aws() -> (MockServer, Arc<Mutex<State>>) {
    let server = MockServer::start().await;
    let state = Arc::new(Mutex::new(State::default()));
    Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/"))
        .respond_with(FakeAws {
            state: state.clone(),
        })
        .mount(&server)
        .await;
    (server, state)
}

fn provider(server: &MockServer) -> IdentityCenterProvider {
    IdentityCenterProvider::new(
        "aws",
        AwsSettings {
            instance_arn: INSTANCE,
            identity_store_id: STORE,
            endpoint_url: Some(&server.uri()),
            region: "eu-west-1".into(),
            credentials: Credentials {
                access_key_id: KEY_ID.into(),
                secret_access_key: jitbot::config::Secret::new("test-secret-key"),
                session_token: None,
            },
        },
        Duration::from_secs(20),
    )
    .unwrap()
}

fn access(principal: &str) -> Access {
    Access {
        principal: principal.into(),
        group: "aws-prod".into(),
        target: format!("{ACCOUNT}/{PERMISSION_SET}"),
        ..Access::default()
    }
}

#[tokio::test]
async fn an_account_assignment_is_created_and_deleted_asynchronously_and_read_back() {
    let (server, state) = fake_aws().await;
    let provider = provider(&server);
    provider
        .grant(&access("u0alice@example.com"))
        .await
        .unwrap();
    assert!(state.lock().unwrap().assigned.contains("9067-alice"));
    let calls = state.lock().unwrap().calls.clone();
    assert_eq!(
        calls,
        [
            "AWSIdentityStore.GetUserId",
            "SWBExternalService.CreateAccountAssignment",
            "SWBExternalService.DescribeAccountAssignmentCreationStatus",
            "SWBExternalService.DescribeAccountAssignmentCreationStatus",
            "SWBExternalService.ListAccountAssignments",
        ]
    );
    provider.grant(&access("bob@example.com")).await.unwrap();
    // Holders page through the assignments and are named by primary email.
    let mut holders = provider
        .holders(&format!("{ACCOUNT}/{PERMISSION_SET}"))
        .await
        .unwrap();
    holders.sort();
    assert_eq!(holders, ["bob@example.com", "u0alice@example.com"]);

    provider
        .revoke(&access("u0alice@example.com"))
        .await
        .unwrap();
    assert!(!state.lock().unwrap().assigned.contains("9067-alice"));
    // Someone the Identity Store does not know holds nothing.
    provider.revoke(&access("ghost@example.com")).await.unwrap();
}

#[tokio::test]
async fn a_failed_assignment_is_reported_and_throttling_is_waited_out() {
    let (server, state) = fake_aws().await;
    let provider = provider(&server);
    state.lock().unwrap().throttle = 2;
    provider.grant(&access("bob@example.com")).await.unwrap();
    assert!(state.lock().unwrap().assigned.contains("9067-bob"));

    state.lock().unwrap().fail_creations =
        Some("Received a 404 status error: Not supported policy".into());
    let error = provider
        .grant(&access("u0alice@example.com"))
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
    assert!(
        error
            .message
            .contains("FAILED: Received a 404 status error"),
        "{error}"
    );
    let error = provider
        .grant(&access("ghost@example.com"))
        .await
        .unwrap_err();
    assert!(
        error.permanent && error.message.contains("no user `ghost@example.com`"),
        "{error}"
    );
    let error = provider
        .grant(&Access {
            target: "123/not-an-arn".into(),
            ..access("bob@example.com")
        })
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
}

#[tokio::test]
async fn an_identity_center_grant_goes_from_request_to_revocation_through_the_server() {
    let (server, state) = fake_aws().await;
    let policy = format!(
        r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"

[providers.aws]
kind = "aws_identity_center"
instance_arn = "{INSTANCE}"
identity_store_id = "{STORE}"
endpoint_url = "{}"
timeout = "20s"

[[groups]]
name = "aws-prod"
provider = "aws"
target = "{ACCOUNT}/{PERMISSION_SET}"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#,
        server.uri()
    );
    let app = TestApp::spawn_with_env(
        &policy,
        &[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key"),
        ],
    )
    .await;
    let id = app.request("U0ALICE", "request aws-prod 1h INC-5").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    assert!(state.lock().unwrap().assigned.contains("9067-alice"));
    app.advance_past_end(&id).await;
    eventually("the assignment to be deleted at expiry", || async {
        (!state.lock().unwrap().assigned.contains("9067-alice")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_sweep_reports_an_identity_center_assignment_without_a_grant() {
    let (server, state) = fake_aws().await;
    state.lock().unwrap().assigned.insert("9067-bob".into());
    let policy = format!(
        r#"
admins = ["U0ADMIN"]

[providers.aws]
kind = "aws_identity_center"
instance_arn = "{INSTANCE}"
identity_store_id = "{STORE}"
endpoint_url = "{}"

[[groups]]
name = "aws-prod"
provider = "aws"
target = "{ACCOUNT}/{PERMISSION_SET}"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "report"
sweep_interval = "1h"
"#,
        server.uri()
    );
    let app = TestApp::spawn_with_env(
        &policy,
        &[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key"),
        ],
    )
    .await;
    let notice = app
        .wait_for_notice(
            "C0APPROVALS",
            "the sweep report",
            "Standing access to `aws-prod`",
        )
        .await;
    assert!(notice.contains("`bob@example.com`"), "{notice}");
    assert!(
        state.lock().unwrap().assigned.contains("9067-bob"),
        "report only"
    );
}
