//! The `webhook` provider: POSTs the grant or revoke as signed JSON to any
//! IAM endpoint. 2xx is success; anything else is a failure to retry.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::{Access, AccessUser, Provider, ProviderError};
use crate::config::Secret;

pub const TIMESTAMP_HEADER: &str = "X-Jitbot-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Jitbot-Signature";

pub struct WebhookProvider {
    name: String,
    url: reqwest::Url,
    secret: Secret,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct Body<'a> {
    action: &'a str,
    request_id: &'a str,
    grant_id: &'a str,
    user: &'a AccessUser,
    principal: &'a str,
    group: &'a str,
    target: &'a str,
    expires_at: Option<String>,
}

/// `v1=` + hex HMAC-SHA256 of `v1:<timestamp>:<body>`, as receivers verify it.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookProvider {
    pub fn new(name: &str, url: &str, secret: String, timeout: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("provider {name}: url is not valid: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("provider {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            url,
            secret: Secret::new(secret),
            http,
        })
    }

    /// The URL as it may appear in messages: no credentials, no query.
    fn shown_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or(""),
            self.url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + self.url.path()
    }

    async fn call(&self, action: &str, access: &Access) -> Result<(), ProviderError> {
        let body = serde_json::to_vec(&Body {
            action,
            request_id: &access.request_id,
            grant_id: &access.grant_id,
            user: &access.user,
            principal: &access.principal,
            group: &access.group,
            target: &access.target,
            expires_at: access.expires_at.map(|t| t.to_rfc3339()),
        })
        .map_err(|e| ProviderError::new(&self.name, e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose().as_bytes(), timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    "request failed".to_string()
                };
                ProviderError::new(
                    &self.name,
                    format!("{action} via {}: {why}", self.shown_url()),
                )
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(ProviderError::new(
                &self.name,
                format!("{action} via {}: HTTP {status}", self.shown_url()),
            ))
        }
    }
}

#[async_trait]
impl Provider for WebhookProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.call("grant", access).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.call("revoke", access).await
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
}
