//! Identifiers that people type and read: request and grant ids, group names,
//! chat users and channels. Each is parsed once at the edge and carried as a
//! newtype so the core never handles a raw string of unknown shape.

use std::fmt;

use rand::Rng;

use super::email::EmailAddress;
use serde::{Deserialize, Serialize};

/// Crockford's base32 alphabet: no I, L, O or U, so ids read aloud or typed
/// from a screenshot are not confused (`0`/`O`, `1`/`I`/`L`).
const ID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Six symbols give 2^30 ids: short enough to type, and collisions (checked
/// at insert time, where a clash draws a new id) stay rare at 100k requests.
const ID_SUFFIX_LEN: usize = 6;

/// A request id such as `R-7K3Q9X`. The grant created from a request carries
/// the same suffix (`G-7K3Q9X`), so the two are easy to relate in the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

/// A grant id such as `G-7K3Q9X`: the live access created from request `R-7K3Q9X`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a {1} id (expected something like {2})")]
pub struct IdError(String, &'static str, &'static str);

fn parse_suffixed(
    raw: &str,
    prefix: char,
    kind: &'static str,
    example: &'static str,
) -> Result<String, IdError> {
    let upper = raw.trim().to_ascii_uppercase();
    let bad = || IdError(raw.trim().to_string(), kind, example);
    let rest = upper
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or_else(bad)?;
    if rest.len() != ID_SUFFIX_LEN || !rest.bytes().all(|b| ID_ALPHABET.contains(&b)) {
        return Err(bad());
    }
    Ok(upper)
}

impl RequestId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_suffixed(raw, 'R', "request", "R-7K3Q9X").map(Self)
    }

    /// A fresh random id. Uniqueness is enforced by the store, which asks for
    /// another one on the rare clash.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let suffix: String = (0..ID_SUFFIX_LEN)
            .map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char)
            .collect();
        Self(format!("R-{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn grant_id(&self) -> GrantId {
        GrantId(format!("G-{}", &self.0[2..]))
    }
}

impl GrantId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_suffixed(raw, 'G', "grant", "G-7K3Q9X").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn request_id(&self) -> RequestId {
        RequestId(format!("R-{}", &self.0[2..]))
    }
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
    };
}

string_newtype_impls!(RequestId);
string_newtype_impls!(GrantId);
string_newtype_impls!(GroupName);
string_newtype_impls!(UserId);
string_newtype_impls!(ChannelId);

impl TryFrom<String> for RequestId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl TryFrom<String> for GrantId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// The name of a group as declared in the policy (`prod-db`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid group name: use 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or digit")]
pub struct GroupNameError(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, GroupNameError> {
        let name = raw.trim();
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(valid_char)
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if valid {
            Ok(Self(name.to_string()))
        } else {
            Err(GroupNameError(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = GroupNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

/// Which chat platform a user or channel belongs to. Ids are only unique
/// within one platform, so every reference carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Slack,
    Teams,
    /// Not a chat: people jitbot reaches by email (email approvers, API
    /// requesters who gave an address); their user id is the address.
    Email,
    /// `jitbot console`: the terminal stands in for chat. Its users act
    /// under the policy's Slack ids (`/as U0LEAD`), and are audited as
    /// console users, never as the Slack users of those ids.
    Console,
}

impl Platform {
    /// Whether the policy's Slack ids (`U…`, `S…`) name this platform's
    /// users: Slack's, and the console's, which stands in for Slack.
    pub fn uses_slack_ids(self) -> bool {
        matches!(self, Platform::Slack | Platform::Console)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::Slack => "slack",
            Platform::Teams => "teams",
            Platform::Email => "email",
            Platform::Console => "console",
        })
    }
}

/// A platform-native user id (`U024BE7LH` in Slack, an AAD object id in Teams).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Teams channel's conversation id, as "Get link to channel" shows it:
/// `19:` then letters, digits and `-_.` , then `@thread.` and its kind.
pub fn is_teams_channel(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("19:") else {
        return false;
    };
    let Some((id, kind)) = rest.split_once("@thread.") else {
        return false;
    };
    let word = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    text.len() <= 200 && word(id) && word(kind) && !id.contains("..")
}

/// A platform-native channel or conversation id (`C0APPROVALS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(String);

/// Why text is not a channel id of a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelIdError {
    #[error("`{0}` is not a Slack channel id (like C0APPROVALS)")]
    NotSlack(String),
    #[error("`{0}` is not a Teams channel's conversation id (like 19:abc…@thread.tacv2)")]
    NotTeams(String),
}

impl ChannelId {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// A channel id as `platform` writes it, checked: a Slack channel
    /// (`C…`/`G…`, upper-case letters and digits) or a Teams channel's
    /// conversation id (`19:…@thread.…`). Anything else — paths, blanks,
    /// markup — is refused before it reaches a store or a chat API.
    pub fn parse_for(platform: Platform, raw: &str) -> Result<ChannelId, ChannelIdError> {
        let valid = match platform {
            Platform::Slack => {
                (2..=32).contains(&raw.len())
                    && raw.starts_with(['C', 'G'])
                    && raw
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            }
            Platform::Teams => is_teams_channel(raw),
            // Email has no channels.
            Platform::Email => false,
            // The console's channels are the policy's Slack channels.
            Platform::Console => {
                return ChannelId::parse_for(Platform::Slack, raw);
            }
        };
        if valid {
            Ok(ChannelId::new(raw))
        } else if platform == Platform::Slack {
            Err(ChannelIdError::NotSlack(raw.to_string()))
        } else {
            Err(ChannelIdError::NotTeams(raw.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Someone acting through chat: who, on which platform, and the name to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub platform: Platform,
    pub user: UserId,
    /// Display name as the platform reported it; informational only, never
    /// used for a decision.
    #[serde(default)]
    pub name: String,
    /// Their email address, where known: always for someone acting by
    /// email; for a chat user, their profile's address, looked up where it
    /// decides something (that a chat approver and an email approver are
    /// one person); for an API requester, the address they gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

impl Actor {
    pub fn new(platform: Platform, user: UserId, name: impl Into<String>) -> Self {
        Self {
            platform,
            user,
            name: name.into(),
            email: None,
        }
    }

    /// Someone acting by email, from the link in an email sent to them.
    pub fn by_email(address: &EmailAddress) -> Self {
        Self {
            platform: Platform::Email,
            user: UserId::new(address.as_str()),
            name: address.to_string(),
            email: Some(address.clone()),
        }
    }

    /// This person, with their email address known.
    pub fn with_email(mut self, email: Option<EmailAddress>) -> Self {
        if self.email.is_none() {
            self.email = email;
        }
        self
    }

    /// The display name, or the user id when there is none.
    pub fn name_or_id(&self) -> &str {
        if self.name.is_empty() {
            self.user.as_str()
        } else {
            &self.name
        }
    }

    /// Same person, regardless of the display name: the same user of one
    /// platform, or — across platforms — the same known email address (a
    /// Slack user whose profile says lead@example.com is the email approver
    /// lead@example.com).
    pub fn is(&self, other: &Actor) -> bool {
        (self.platform == other.platform && self.user == other.user)
            || matches!((&self.email, &other.email), (Some(a), Some(b)) if a == b)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.user)
    }
}

/// A place to post a card: a channel on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Destination {
    pub platform: Platform,
    pub channel: ChannelId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_and_relate_to_grant_ids() {
        let id = RequestId::generate();
        assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        assert_eq!(RequestId::parse(&id.as_str().to_lowercase()).unwrap(), id);
        let grant = id.grant_id();
        assert!(grant.as_str().starts_with("G-"));
        assert_eq!(grant.request_id(), id);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "R-",
            "R-12345",
            "R-1234567",
            "X-123456",
            "R-12345I",
            "G-123456",
        ] {
            assert!(RequestId::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(GrantId::parse("R-123456").is_err());
        assert!(GrantId::parse("g-7k3q9x").is_ok());
    }

    #[test]
    fn group_names_are_restricted() {
        assert!(GroupName::parse("prod-db").is_ok());
        assert!(GroupName::parse("a_1").is_ok());
        for bad in ["", "Prod", "-x", "a b", "a;b", &"x".repeat(65)] {
            assert!(GroupName::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
