//! Bearer tokens: each configured token names the chat user it acts as and
//! whether it is an admin's. Tokens are kept only as SHA-256 digests and
//! compared in constant time, every configured token each time, so neither
//! the comparison nor the search leaks which bytes matched.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::settings::ApiTokenSpec;
use crate::domain::ids::Actor;
use crate::http::admission::Family;
use crate::http::{AppState, Turn};
use crate::telemetry::Metrics;

struct KnownToken {
    digest: [u8; 32],
    actor: Actor,
    admin: bool,
}

/// The configured tokens.
#[derive(Default)]
pub struct ApiAuth {
    tokens: Vec<KnownToken>,
}

/// Who a configured token acts as.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub actor: Actor,
    pub admin: bool,
}

/// Who is calling, once the token checked out, with the admission turn
/// the call's work holds: taken only after the token is known good, so a
/// caller without one never holds a turn.
#[derive(Debug)]
pub struct Caller {
    pub actor: Actor,
    pub admin: bool,
    _turn: Turn,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ApiAuth {
    pub fn new(specs: &[ApiTokenSpec]) -> ApiAuth {
        ApiAuth {
            tokens: specs
                .iter()
                .map(|spec| KnownToken {
                    digest: digest(spec.token.expose()),
                    actor: spec.identity.clone(),
                    admin: spec.admin,
                })
                .collect(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Who a presented token belongs to, if anyone.
    pub fn check(&self, presented: &str) -> Option<TokenHolder> {
        let presented = digest(presented);
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&presented)) {
                found = Some(TokenHolder {
                    actor: token.actor.clone(),
                    admin: token.admin,
                });
            }
        }
        found
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match presented.and_then(|token| state.api.check(token)) {
            Some(holder) => {
                let turn = state.admit(Family::Api).await.ok_or(ApiError::Busy)?;
                Ok(Caller {
                    actor: holder.actor,
                    admin: holder.admin,
                    _turn: turn,
                })
            }
            None => {
                tracing::warn!(path = %parts.uri.path(), "API request with a missing or unknown token");
                Metrics::count_auth_failure(state.engine.metrics(), "api");
                Err(ApiError::Unauthorized)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::domain::ids::{Platform, UserId};

    #[test]
    fn only_a_configured_token_is_accepted() {
        let auth = ApiAuth::new(&[ApiTokenSpec {
            identity: Actor::new(Platform::Slack, UserId::new("U0CIBOT"), "U0CIBOT"),
            admin: false,
            token: Secret::new("a-token-of-at-least-24-chars"),
        }]);
        let caller = auth.check("a-token-of-at-least-24-chars").unwrap();
        assert_eq!(caller.actor.user.as_str(), "U0CIBOT");
        assert!(!caller.admin);
        assert!(auth.check("a-token-of-at-least-24-charz").is_none());
        assert!(auth.check("").is_none());
        assert!(ApiAuth::default().check("anything").is_none());
    }
}
