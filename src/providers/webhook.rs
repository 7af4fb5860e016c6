//! The `webhook` provider: POSTs the grant or revoke as signed JSON to any
//! IAM endpoint. 2xx is success; anything else (a redirect too: never
//! followed) is a failure to retry. With a `holders_url`, a signed
//! `GET <holders_url>?target=<target>` answers the target's holders as a
//! JSON list of principals. With an `activity_url`, a signed
//! `GET <activity_url>?principal=<p>&target=<t>` answers
//! `{"in_use": bool, "last_used": RFC 3339 or null}`. A POST's signature
//! covers its body, a GET's its path and query.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::{Access, AccessUser, Activity, Provider, ProviderError};
use crate::config::Secret;

pub const TIMESTAMP_HEADER: &str = "X-Jitbot-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Jitbot-Signature";

pub struct WebhookProvider {
    name: String,
    url: reqwest::Url,
    holders_url: Option<reqwest::Url>,
    activity_url: Option<reqwest::Url>,
    secret: Secret,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct Body<'a> {
    action: &'a str,
    request_id: Option<&'a str>,
    grant_id: Option<&'a str>,
    user: Option<&'a AccessUser>,
    principal: &'a str,
    group: &'a str,
    target: &'a str,
    expires_at: Option<String>,
}

/// `v1=` + hex HMAC-SHA256 of `v1:<timestamp>:<body>`, as receivers verify
/// a POST.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    signed_text(secret, &[format!("v1:{timestamp}:").as_bytes(), body])
}

/// `v1=` + hex HMAC-SHA256 of `v1:<timestamp>:GET:<path?query>:`, as
/// receivers verify a GET. A GET has no body; what it asks is in its path
/// and query (the principal, the target), so that is what is signed — a
/// signature over an empty body would vouch for any query for as long as
/// the timestamp is accepted. The trailing `:` stands for the empty body.
pub fn get_signature(secret: &[u8], timestamp: i64, path_and_query: &str) -> String {
    signed_text(
        secret,
        &[format!("v1:{timestamp}:GET:{path_and_query}:").as_bytes()],
    )
}

fn signed_text(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The path and query of `url` as they go on the request line.
pub fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Where the provider's calls go.
pub struct Urls<'a> {
    /// Grants and revokes are POSTed here.
    pub call: &'a str,
    pub holders: Option<&'a str>,
    pub activity: Option<&'a str>,
}

/// The activity answer, as documented.
#[derive(serde::Deserialize)]
struct ActivityAnswer {
    in_use: bool,
    last_used: Option<chrono::DateTime<chrono::Utc>>,
}

impl WebhookProvider {
    pub fn new(
        name: &str,
        urls: Urls<'_>,
        secret: String,
        timeout: Duration,
    ) -> Result<Self, String> {
        let parse = |key: &str, url: &str| {
            reqwest::Url::parse(url)
                .map_err(|e| format!("provider {name}: {key} is not valid: {e}"))
        };
        let url = parse("url", urls.call)?;
        let holders_url = urls.holders.map(|u| parse("holders_url", u)).transpose()?;
        let activity_url = urls
            .activity
            .map(|u| parse("activity_url", u))
            .transpose()?;
        let http = crate::outbound::client(timeout).map_err(|e| format!("provider {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            url,
            holders_url,
            activity_url,
            secret: Secret::new(secret),
            http,
        })
    }

    fn failure(&self, action: &str, url: &reqwest::Url, why: &str) -> ProviderError {
        ProviderError::new(
            &self.name,
            format!("{action} via {}: {why}", shown_url(url)),
        )
    }

    /// A POST of `body` to `url`, signed over the body.
    fn signed_post(&self, url: &reqwest::Url, body: Vec<u8>) -> reqwest::RequestBuilder {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature(self.secret.expose().as_bytes(), timestamp, &body);
        self.http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
    }

    /// A GET of `url`, signed over its path and query.
    fn signed_get(&self, url: &reqwest::Url) -> reqwest::RequestBuilder {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = get_signature(
            self.secret.expose().as_bytes(),
            timestamp,
            &path_and_query(url),
        );
        self.http
            .get(url.clone())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
    }

    async fn send(
        &self,
        action: &str,
        url: &reqwest::Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.failure(action, url, &crate::outbound::failure(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else if status.is_redirection() {
            Err(self.failure(action, url, &crate::outbound::redirect_refused(status)))
        } else {
            Err(self.failure(action, url, &format!("HTTP {status}")))
        }
    }

    async fn call(&self, action: &str, access: &Access) -> Result<(), ProviderError> {
        let body = serde_json::to_vec(&Body {
            action,
            request_id: access.request_id.as_deref(),
            grant_id: access.grant_id.as_deref(),
            user: access.user.as_ref(),
            principal: &access.principal,
            group: &access.group,
            target: &access.target,
            expires_at: access.expires_at.map(|t| t.to_rfc3339()),
        })
        .map_err(|e| ProviderError::new(&self.name, e.to_string()))?;
        self.send(action, &self.url, self.signed_post(&self.url, body))
            .await
            .map(drop)
    }
}

/// The URL as it may appear in messages: no credentials, no query.
fn shown_url(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

#[async_trait]
impl Provider for WebhookProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.call("grant", access).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.call("revoke", access).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let Some(url) = &self.holders_url else {
            return Err(ProviderError::new(
                &self.name,
                "no `holders_url` is configured",
            ));
        };
        let mut url = url.clone();
        url.query_pairs_mut().append_pair("target", target);
        let request = self.signed_get(&url);
        let response = self.send("holders", &url, request).await?;
        response.json::<Vec<String>>().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else {
                "the answer is not a JSON list of strings"
            };
            self.failure("holders", &url, why)
        })
    }

    async fn activity(&self, principal: &str, target: &str) -> Result<Activity, ProviderError> {
        let Some(url) = &self.activity_url else {
            return Err(ProviderError::new(
                &self.name,
                "no `activity_url` is configured",
            ));
        };
        let mut url = url.clone();
        url.query_pairs_mut()
            .append_pair("principal", principal)
            .append_pair("target", target);
        let request = self.signed_get(&url);
        let response = self.send("activity", &url, request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.failure("activity", &url, &crate::outbound::failure(&e)))?;
        let answer: ActivityAnswer = serde_json::from_slice(&body).map_err(|_| {
            self.failure(
                "activity",
                &url,
                "the answer is not {\"in_use\": bool, \"last_used\": RFC 3339 or null}",
            )
        })?;
        Ok(Activity {
            in_use: answer.in_use,
            last_used: answer.last_used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_computation() {
        // Computed with: printf 'v1:1700000000:{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "v1=5758379e1e2bd8ca5cbc893acda89dd28be628dc70c337e7943ddd194922a4bf"
        );
    }

    #[test]
    fn a_get_signature_covers_the_path_and_query() {
        // Computed with: printf 'v1:1700000000:GET:/jit/holders?target=prod_rw:' | openssl dgst -sha256 -hmac s3cret
        let url = reqwest::Url::parse("https://iam.example/jit/holders?target=prod_rw").unwrap();
        assert_eq!(path_and_query(&url), "/jit/holders?target=prod_rw");
        assert_eq!(
            get_signature(b"s3cret", 1_700_000_000, &path_and_query(&url)),
            "v1=48c79b95e2658ace80fddfcf986e2b07cf00a47e5900d11dffa64133cb8199e7"
        );
        let other = get_signature(b"s3cret", 1_700_000_000, "/jit/holders?target=prod_admin");
        assert_ne!(
            other,
            get_signature(b"s3cret", 1_700_000_000, &path_and_query(&url))
        );
    }
}
