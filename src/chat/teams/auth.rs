//! Authenticating Bot Framework calls to the bot: `Authorization: Bearer
//! <JWT>`, RS256-signed with a key from the Bot Framework's OpenID metadata
//! (its `jwks_uri`), chosen by `kid`; issuer `https://api.botframework.com`,
//! audience the bot's app id, five minutes of clock skew; the key must be
//! endorsed for the activity's channel (`msteams`), and the token's
//! `serviceurl` claim must be the activity's `serviceUrl`. Keys are cached
//! for a day, and fetched again — at most once an hour — when a token names
//! a key not in the cache. Signatures are checked by `jsonwebtoken`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";

/// The Bot Framework channel id of Microsoft Teams. Keys and activities of
/// other channels (Web Chat, Direct Line, Skype) are refused: jitbot acts
/// only for Teams users.
pub const TEAMS_CHANNEL: &str = "msteams";

/// Keys are refreshed this often even when nothing asks for a new one.
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` triggers a refresh at most this often, so forged tokens
/// cannot make jitbot hammer the key endpoint.
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(3600);
/// After a failed fetch, wait this long before trying again (the keys in
/// hand, if any, keep being used meanwhile).
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(60);
const CLOCK_SKEW_SECS: u64 = 300;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call was refused: 401 (not authenticated) or 403 (authenticated,
/// but not for this activity).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: String,
    n: String,
    e: String,
    #[serde(default)]
    endorsements: Vec<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct OpenIdMetadata {
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    serviceurl: Option<String>,
    #[serde(default, rename = "serviceUrl")]
    service_url: Option<String>,
}

struct KeyCache {
    keys: HashMap<String, Jwk>,
    fetched_at: Option<Instant>,
    /// When an unknown `kid` last forced a refresh.
    forced_at: Option<Instant>,
    /// When a fetch last failed.
    failed_at: Option<Instant>,
}

pub struct BotAuthenticator {
    app_id: String,
    metadata_url: String,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

/// Service URLs compare without a trailing slash.
fn same_service_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl BotAuthenticator {
    pub fn new(app_id: &str, metadata_url: &str) -> BotAuthenticator {
        BotAuthenticator {
            app_id: app_id.to_string(),
            metadata_url: metadata_url.to_string(),
            http: crate::outbound::client_builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            cache: Mutex::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
                forced_at: None,
                failed_at: None,
            }),
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Jwk>, String> {
        let metadata: OpenIdMetadata = self
            .http
            .get(&self.metadata_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("OpenID metadata: {}", crate::outbound::failure(&e)))?
            .json()
            .await
            .map_err(|e| format!("OpenID metadata: {}", crate::outbound::failure(&e)))?;
        let set: JwkSet = self
            .http
            .get(&metadata.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("signing keys: {}", crate::outbound::failure(&e)))?
            .json()
            .await
            .map_err(|e| format!("signing keys: {}", crate::outbound::failure(&e)))?;
        Ok(set
            .keys
            .into_iter()
            .filter(|k| k.kty.is_empty() || k.kty == "RSA")
            .map(|k| (k.kid.clone(), k))
            .collect())
    }

    /// The key named `kid`: from the cache, after a daily refresh, or after
    /// a refresh for an unknown kid (at most hourly).
    async fn key(&self, kid: &str) -> Result<Jwk, AuthError> {
        let mut cache = self.cache.lock().await;
        let stale = cache
            .fetched_at
            .map_or(true, |at| at.elapsed() > KEYS_MAX_AGE);
        let unknown_may_refresh = !cache.keys.contains_key(kid)
            && cache
                .forced_at
                .map_or(true, |at| at.elapsed() > UNKNOWN_KID_REFRESH);
        let recently_failed = cache
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_FAILED_FETCH);
        if (stale || unknown_may_refresh) && !recently_failed {
            if !stale {
                cache.forced_at = Some(Instant::now());
            }
            match self.fetch_keys().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                    cache.failed_at = None;
                }
                // Keep serving the old keys if the endpoint is down.
                Err(error) => {
                    cache.failed_at = Some(Instant::now());
                    tracing::warn!(%error, "could not refresh the Bot Framework keys");
                }
            }
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Unauthenticated(format!("unknown signing key `{kid}`")))
    }

    /// Check the `Authorization` header of a call to the bot: a token the
    /// Bot Framework issued to this bot, signed with a key endorsed for
    /// Microsoft Teams. What the token vouches for — its `serviceurl` — is
    /// returned, to be matched against the activity once it is parsed:
    /// nothing of the body is read before the token checks out.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<VerifiedCall, AuthError> {
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Unauthenticated("no bearer token".into()))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Unauthenticated(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Unauthenticated(format!(
                "token signed with {:?}, not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Unauthenticated("token names no key".into()))?;
        let key = self.key(&kid).await?;
        let decoding = DecodingKey::from_rsa_components(&key.n, &key.e)
            .map_err(|e| AuthError::Unauthenticated(format!("unusable signing key: {e}")))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[BOT_FRAMEWORK_ISSUER]);
        validation.set_audience(&[&self.app_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
            .map_err(|e| AuthError::Unauthenticated(format!("token rejected: {e}")))?
            .claims;
        if !key.endorsements.iter().any(|e| e == TEAMS_CHANNEL) {
            return Err(AuthError::Forbidden(format!(
                "the signing key is not endorsed for `{TEAMS_CHANNEL}`"
            )));
        }
        Ok(VerifiedCall {
            service_url: claims.serviceurl.or(claims.service_url).unwrap_or_default(),
        })
    }
}

/// A call whose token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCall {
    service_url: String,
}

impl VerifiedCall {
    /// Whether the activity may act in this call: it comes through the
    /// Teams channel (a token for Web Chat or another channel is not a
    /// Teams user) from the service the token names.
    pub fn admits(&self, channel_id: &str, service_url: &str) -> Result<(), AuthError> {
        if channel_id != TEAMS_CHANNEL {
            return Err(AuthError::Forbidden(format!(
                "activities from channel `{channel_id}` are not accepted; only `{TEAMS_CHANNEL}`"
            )));
        }
        if !same_service_url(&self.service_url, service_url) {
            return Err(AuthError::Forbidden(
                "the token's serviceurl is not the activity's serviceUrl".into(),
            ));
        }
        Ok(())
    }
}
