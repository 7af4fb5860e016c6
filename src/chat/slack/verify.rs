//! Slack request signing: `v0=` + hex HMAC-SHA256 over `v0:<timestamp>:<raw body>`
//! with the app's signing secret, sent in `X-Slack-Signature` beside
//! `X-Slack-Request-Timestamp`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Slack's documentation tells apps to reject requests more than five
/// minutes old; the replay cache keeps signatures for the same window.
pub const MAX_AGE_SECS: i64 = 5 * 60;

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub timestamp: i64,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("request timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than 5 minutes from now")]
    Stale,
    #[error("signature is not of the form v0=<hex>")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// Check a request's signature and freshness against `now_secs` (Unix time).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, VerifyError> {
    let timestamp_text = timestamp.ok_or(VerifyError::Missing("X-Slack-Request-Timestamp"))?;
    let signature_text = signature.ok_or(VerifyError::Missing("X-Slack-Signature"))?;
    let timestamp: i64 = timestamp_text
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - timestamp).abs() > MAX_AGE_SECS {
        return Err(VerifyError::Stale);
    }
    let signature = signature_text
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::Malformed)?;
    let mac = mac_for(secret, timestamp_text.trim(), body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| VerifyError::Mismatch)?;
    Ok(Verified {
        timestamp,
        signature,
    })
}

fn mac_for(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `X-Slack-Signature` value for a body; used by tests and load tools
/// that must sign exactly as Slack does.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mac = mac_for(secret, &timestamp.to_string(), body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example from Slack's "Verifying requests from Slack" page.
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const EXPECTED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_published_test_vector() {
        assert_eq!(sign(SECRET, 1531420618, BODY), EXPECTED);
        let verified = verify(
            SECRET,
            Some(TIMESTAMP),
            Some(EXPECTED),
            BODY,
            1531420618 + 10,
        )
        .unwrap();
        assert_eq!(verified.timestamp, 1531420618);
    }

    #[test]
    fn tampered_body_wrong_secret_and_bad_format_are_rejected() {
        let now = 1531420618;
        let mut body = BODY.to_vec();
        body[0] = b'T';
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some(EXPECTED), &body, now),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                b"another secret",
                Some(TIMESTAMP),
                Some(EXPECTED),
                BODY,
                now
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some("v1=abcd"), BODY, now),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some("v0=zz"), BODY, now),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(SECRET, None, Some(EXPECTED), BODY, now),
            Err(VerifyError::Missing("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), None, BODY, now),
            Err(VerifyError::Missing("X-Slack-Signature"))
        );
        assert_eq!(
            verify(SECRET, Some("soon"), Some(EXPECTED), BODY, now),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn the_five_minute_window_applies_both_ways() {
        let ts = 1531420618;
        assert!(verify(
            SECRET,
            Some(TIMESTAMP),
            Some(EXPECTED),
            BODY,
            ts + MAX_AGE_SECS
        )
        .is_ok());
        assert_eq!(
            verify(
                SECRET,
                Some(TIMESTAMP),
                Some(EXPECTED),
                BODY,
                ts + MAX_AGE_SECS + 1
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(
                SECRET,
                Some(TIMESTAMP),
                Some(EXPECTED),
                BODY,
                ts - MAX_AGE_SECS - 1
            ),
            Err(VerifyError::Stale)
        );
    }
}
