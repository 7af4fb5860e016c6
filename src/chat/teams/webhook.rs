//! Teams outgoing webhooks: `Authorization: HMAC <base64>`, where the value
//! is the base64 HMAC-SHA256 of the raw body under the base64-decoded
//! security token Teams showed when the webhook was created.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookAuthError {
    #[error("missing `Authorization: HMAC …` header")]
    Missing,
    #[error("the signature is not base64")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("TEAMS_WEBHOOK_SECRET is not base64")]
    BadSecret,
}

/// Check `authorization` against `body`, comparing in constant time. On
/// success, the signature's bytes: the canonical form of what was sent, so a
/// replay cache keyed on them cannot be dodged by respelling the header
/// (extra blanks, another base64 padding).
pub fn verify(
    secret_base64: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, WebhookAuthError> {
    let presented = authorization
        .and_then(|value| value.strip_prefix("HMAC "))
        .map(str::trim)
        .ok_or(WebhookAuthError::Missing)?;
    let presented = STANDARD
        .decode(presented)
        .map_err(|_| WebhookAuthError::Malformed)?;
    let key = STANDARD
        .decode(secret_base64.trim())
        .map_err(|_| WebhookAuthError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&presented)
        .map_err(|_| WebhookAuthError::Mismatch)?;
    Ok(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LWtleS0xMjM0NTY=";
    const BODY: &[u8] = br#"{"type":"message","text":"jit list"}"#;
    /// Computed with openssl, not with this code:
    ///   printf '{"type":"message","text":"jit list"}' | openssl dgst -sha256 -mac HMAC \
    ///     -macopt hexkey:$(printf 'c2VjcmV0LWtleS0xMjM0NTY=' | base64 -d | xxd -p) -binary | base64
    const SIGNATURE: &str = "HMAC Xd3yfGRoZPEuQbWOnEvuG2W2GZJFZFwHsAG2eO14CAI=";

    #[test]
    fn a_signature_computed_independently_verifies() {
        let canonical = verify(SECRET, Some(SIGNATURE), BODY).unwrap();
        assert_eq!(canonical.len(), 32);
        // The same signature spelled with more blanks is the same signature.
        let spaced = SIGNATURE.replace("HMAC ", "HMAC   ") + " ";
        assert_eq!(verify(SECRET, Some(&spaced), BODY), Ok(canonical));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(
            verify(SECRET, Some(SIGNATURE), b"{}"),
            Err(WebhookAuthError::Mismatch)
        );
        assert_eq!(
            verify("b3RoZXIta2V5", Some(SIGNATURE), BODY),
            Err(WebhookAuthError::Mismatch)
        );
        assert_eq!(verify(SECRET, None, BODY), Err(WebhookAuthError::Missing));
        assert_eq!(
            verify(SECRET, Some("Bearer x"), BODY),
            Err(WebhookAuthError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("HMAC !!!"), BODY),
            Err(WebhookAuthError::Malformed)
        );
        assert_eq!(
            verify("%%%", Some(SIGNATURE), BODY),
            Err(WebhookAuthError::BadSecret)
        );
    }
}
