//! Email addresses as jitbot accepts them: in the policy (email approvers,
//! `escalate_to`), from the API (where a requester without a chat hears
//! back), and from a chat profile (to know that a chat user and an email
//! approver are one person). Only plain `local@domain` addresses are taken —
//! no display names, comments, quoted local parts or IP literals — so an
//! address can never smuggle a header, a second recipient or markup.

use std::fmt;

use serde::{Deserialize, Serialize};

/// RFC 5321's limits: 64 octets of local part, 254 in all.
const MAX_LOCAL: usize = 64;
const MAX_ADDRESS: usize = 254;

/// A lower-cased `local@domain` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an email address (expected something like lead@example.com)")]
pub struct EmailError(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let text = raw.trim();
        let bad = || EmailError(text.to_string());
        if text.len() > MAX_ADDRESS {
            return Err(bad());
        }
        let (local, domain) = text.split_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= MAX_LOCAL
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(bad())
        }
    }

    /// Whether `text` is meant as an email address (then it must parse as
    /// one), rather than a chat id.
    pub fn looks_like(text: &str) -> bool {
        text.contains('@')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> String {
        value.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_are_taken_and_lower_cased() {
        let address = EmailAddress::parse(" Lead.Person+jit@Example.COM ").unwrap();
        assert_eq!(address.as_str(), "lead.person+jit@example.com");
    }

    #[test]
    fn anything_that_could_carry_more_than_one_address_is_refused() {
        for bad in [
            "lead@",
            "@example.com",
            "lead",
            "lead@example",
            "lead@@example.com",
            "a@b@example.com",
            "Lead <lead@example.com>",
            "lead@example.com, evil@example.com",
            "lead@example.com\r\nBcc: evil@example.com",
            "\"quoted\"@example.com",
            "lead@[127.0.0.1]",
            "lead@-example.com",
            "lead..x@example.com",
            ".lead@example.com",
            "lead@exa_mple.com",
            "<script>@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was taken");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }
}
