//! How jitbot reaches a Teams user who is not in the conversation at hand.

use serde::{Deserialize, Serialize};

/// How to reach a Teams user proactively: what Teams sent when they last
/// talked to the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamsContact {
    /// The AAD object id (jitbot's id for Teams users).
    pub aad_object_id: String,
    /// Teams' own id for the user (`29:…`), needed to open a 1:1 chat.
    pub teams_id: String,
    pub name: String,
    pub tenant_id: String,
    pub service_url: String,
    /// The 1:1 conversation with the bot, once known.
    pub personal_conversation: Option<String>,
    /// A conversation the user was last seen in (for member look-ups).
    pub seen_in: String,
}
