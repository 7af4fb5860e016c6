//! `[identities]`: per person, the ids that are one person (`slack`,
//! `teams`, `email`, `github`) and the principal each provider grants them.
//!
//! ```toml
//! [identities]
//! U0ALICE = { teams = "6f1c2e4a-…", email = "alice@example.com", pg = "alice_admin" }
//! ```
//!
//! An entry is keyed by a chat user id (a Slack `U…`/`W…` id or a Teams AAD
//! object id). No id may be linked by two entries: jitbot would no longer
//! know which person it is.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::TableLike;

use super::reader::{Reader, Span};
use crate::domain::email::EmailAddress;
use crate::domain::identity::{Identities, IdentityEntry, KnownId, LINK_KEYS};
use crate::domain::ids::Platform;
#[cfg(test)]
use crate::domain::ids::UserId;
use crate::domain::policy::{user_actor, ProviderSpec};

const EXAMPLE: &str =
    "U0ALICE = { teams = \"<aad object id>\", email = \"alice@example.com\", pg = \"alice\" }";

impl Reader<'_> {
    pub(super) fn identities(
        &mut self,
        root: &dyn TableLike,
        providers: &BTreeMap<String, ProviderSpec>,
    ) -> Identities {
        let Some(item) = root.get("identities") else {
            return Identities::default();
        };
        let Some(table) = item.as_table_like() else {
            self.problem(
                item.span(),
                format!("`identities` must be a table like {EXAMPLE}"),
            );
            return Identities::default();
        };
        let mut entries: Vec<IdentityEntry> = Vec::new();
        // Which entry already links each id, to refuse a second one.
        let mut linked_by: BTreeMap<KnownId, String> = BTreeMap::new();
        for (key, item) in table.iter() {
            let at = Reader::key_span(table, key);
            let Some(fields) = item.as_table_like() else {
                self.problem(
                    at,
                    format!("identities.{key} must be a table like {{ pg = \"lead_admin\" }}"),
                );
                continue;
            };
            let Some(keyed_by) = user_actor(key).map(|actor| KnownId::of_actor(&actor)) else {
                self.problem(
                    at,
                    format!(
                        "identities.{key}: an entry is keyed by a chat user id (a Slack U…/W… id or a Teams AAD object id)"
                    ),
                );
                continue;
            };
            let mut ids = BTreeSet::from([keyed_by.clone()]);
            let mut principals = BTreeMap::new();
            for (field, value) in fields.iter() {
                let span = Reader::key_span(fields, field);
                let Some(text) = value.as_str().map(str::trim).filter(|t| !t.is_empty()) else {
                    self.problem(
                        span,
                        format!("identities.{key}.{field} must be a non-empty string"),
                    );
                    continue;
                };
                if LINK_KEYS.contains(&field) {
                    match self.link(key, field, text, &keyed_by, span.clone()) {
                        Some(id) => {
                            ids.insert(id);
                        }
                        None => continue,
                    }
                    continue;
                }
                if !providers.contains_key(field) {
                    self.problem(
                        span,
                        format!(
                            "identities.{key} names unknown provider `{field}` (links are {})",
                            LINK_KEYS.join(", ")
                        ),
                    );
                    continue;
                }
                principals.insert(field.to_string(), text.to_string());
            }
            for id in &ids {
                if let Some(other) = linked_by.get(id) {
                    self.problem(
                        at.clone(),
                        format!(
                            "identities.{key} links {id}, which identities.{other} links already; one id is one person, so give it one entry"
                        ),
                    );
                }
            }
            for id in &ids {
                linked_by
                    .entry(id.clone())
                    .or_insert_with(|| key.to_string());
            }
            entries.push(IdentityEntry {
                key: key.to_string(),
                ids,
                principals,
            });
        }
        Identities::new(entries)
    }

    /// The id one link field names, checked; `None` (with a problem) if
    /// it is not one.
    fn link(
        &mut self,
        key: &str,
        field: &str,
        text: &str,
        keyed_by: &KnownId,
        span: Span,
    ) -> Option<KnownId> {
        let id = match field {
            "email" => match EmailAddress::parse(text) {
                Ok(address) => KnownId::Email(address),
                Err(why) => {
                    self.problem(span, format!("identities.{key}.email: {why}"));
                    return None;
                }
            },
            "slack" => match user_actor(text).filter(|a| a.platform == Platform::Slack) {
                Some(actor) => KnownId::Slack(actor.user),
                None => {
                    self.problem(
                        span,
                        format!(
                            "identities.{key}.slack must be a Slack user id like U0ALICE, not `{text}`"
                        ),
                    );
                    return None;
                }
            },
            "teams" => match user_actor(text).filter(|a| a.platform == Platform::Teams) {
                Some(actor) => KnownId::Teams(actor.user),
                None => {
                    self.problem(
                        span,
                        format!(
                            "identities.{key}.teams must be an AAD object id like 6f1c2e4a-0000-4000-8000-00000000a11d, not `{text}`"
                        ),
                    );
                    return None;
                }
            },
            _ => {
                // GitHub logins: 1-39 letters, digits or inner hyphens.
                let valid = text.len() <= 39
                    && !text.starts_with('-')
                    && !text.ends_with('-')
                    && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !valid {
                    self.problem(
                        span,
                        format!("identities.{key}.github must be a GitHub login, not `{text}`"),
                    );
                    return None;
                }
                KnownId::GitHub(text.to_ascii_lowercase())
            }
        };
        // An entry keyed by a Slack id cannot link a second Slack id (nor
        // a Teams-keyed one a second Teams id): one person, one account.
        let same_kind_as_key = matches!(
            (&id, keyed_by),
            (KnownId::Slack(_), KnownId::Slack(_)) | (KnownId::Teams(_), KnownId::Teams(_))
        );
        if same_kind_as_key && &id != keyed_by {
            self.problem(
                span,
                format!(
                    "identities.{key}.{field} links a second {field} account to {key}; one entry is one person"
                ),
            );
            return None;
        }
        Some(id)
    }
}

/// For tests: the entry keyed by `key`.
#[cfg(test)]
pub(super) fn entry<'a>(identities: &'a Identities, key: &str) -> &'a IdentityEntry {
    let id = match user_actor(key) {
        Some(actor) => KnownId::of_actor(&actor),
        None => KnownId::Slack(UserId::new(key)),
    };
    identities.entry_of(&id).expect("an entry for the key")
}
