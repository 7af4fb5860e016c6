//! The link in an approval email: a token naming one request and one
//! approver, signed with `JITBOT_EMAIL_TOKEN_KEY` (HMAC-SHA256), so every
//! replica that shares the key can check it and nobody without the key can
//! make or alter one. It carries no power of its own: the request must
//! still be pending and the approver still an approver when they decide.
//!
//! The page's form carries a CSRF field derived from the token with the
//! same key, so a form posted from elsewhere, without the page, is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;
use crate::domain::email::EmailAddress;
use crate::domain::ids::RequestId;

type HmacSha256 = Hmac<Sha256>;

/// Longer tokens are not ours: refused before any work.
const MAX_TOKEN_CHARS: usize = 600;
/// Separates the purposes the key signs, so a CSRF value is never a token.
const TOKEN_PURPOSE: &[u8] = b"jitbot approve v1\n";
const CSRF_PURPOSE: &[u8] = b"jitbot csrf v1\n";

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalLink {
    pub request: RequestId,
    pub approver: EmailAddress,
}

#[derive(Clone)]
pub struct TokenKey(Secret);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(redacted)")
    }
}

impl TokenKey {
    pub fn new(key: Secret) -> Self {
        Self(key)
    }

    fn mac(&self, purpose: &[u8], payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose);
        mac.update(payload);
        mac
    }

    /// The token for `approver`'s link to `request`.
    pub fn token(&self, link: &ApprovalLink) -> String {
        let payload = format!("{}:{}", link.request, link.approver);
        let signature = self
            .mac(TOKEN_PURPOSE, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// What `token` names, if it is one of ours and unaltered. Every
    /// failure is the same `None`: a caller cannot tell a bad signature
    /// from a bad shape.
    pub fn open(&self, token: &str) -> Option<ApprovalLink> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let (payload, signature) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        // Constant time: the comparison says nothing about how close a
        // forgery came.
        self.mac(TOKEN_PURPOSE, &payload)
            .verify_slice(&signature)
            .ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let (request, approver) = payload.split_once(':')?;
        Some(ApprovalLink {
            request: RequestId::parse(request).ok()?,
            approver: EmailAddress::parse(approver).ok()?,
        })
    }

    /// The CSRF field of the page for `token`.
    pub fn csrf(&self, token: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(CSRF_PURPOSE, token.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `field` is the CSRF field of the page for `token`.
    pub fn csrf_matches(&self, token: &str, field: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(field) {
            Ok(bytes) => self
                .mac(CSRF_PURPOSE, token.as_bytes())
                .verify_slice(&bytes)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> TokenKey {
        TokenKey::new(Secret::new(text))
    }

    fn link() -> ApprovalLink {
        ApprovalLink {
            request: RequestId::parse("R-7K3Q9X").unwrap(),
            approver: EmailAddress::parse("lead@example.com").unwrap(),
        }
    }

    #[test]
    fn a_token_opens_to_what_it_was_made_for() {
        let key = key("0123456789abcdef0123456789abcdef");
        let token = key.token(&link());
        assert_eq!(key.open(&token), Some(link()));
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }

    #[test]
    fn altered_foreign_and_malformed_tokens_open_to_nothing() {
        let ours = key("0123456789abcdef0123456789abcdef");
        let theirs = key("fedcba9876543210fedcba9876543210");
        let token = ours.token(&link());
        assert_eq!(theirs.open(&token), None, "signed with another key");
        // Another approver's name under this signature.
        let (_, signature) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{signature}",
            URL_SAFE_NO_PAD.encode("R-7K3Q9X:evil@example.com")
        );
        assert_eq!(ours.open(&forged), None);
        // Every single-character change.
        for index in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != token {
                assert_eq!(ours.open(&altered), None, "altered at {index}");
            }
        }
        for junk in ["", ".", "abc", "abc.def", &"A".repeat(5000), &token[..10]] {
            assert_eq!(ours.open(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_csrf_field_belongs_to_one_token() {
        let key = key("0123456789abcdef0123456789abcdef");
        let token = key.token(&link());
        let field = key.csrf(&token);
        assert!(key.csrf_matches(&token, &field));
        assert!(!key.csrf_matches(&token, ""));
        assert!(!key.csrf_matches(&token, "AAAA"));
        let other = key.token(&ApprovalLink {
            approver: EmailAddress::parse("other@example.com").unwrap(),
            ..link()
        });
        assert!(!key.csrf_matches(&other, &field));
        // A CSRF value is never a token, nor a token a CSRF value.
        assert_eq!(key.open(&field), None);
        assert!(!key.csrf_matches(&token, &token));
    }
}
