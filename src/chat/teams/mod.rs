//! Microsoft Teams: the Bot Framework's activities and their authentication
//! (JWT), outgoing webhooks (HMAC), Adaptive Cards, and the Bot Connector
//! client. The engine sees Teams users by AAD object id and Teams
//! conversations as channels.

pub mod activity;
pub mod auth;
pub mod cards;
pub mod client;
pub mod text;
pub mod webhook;

pub use client::TeamsClient;

use async_trait::async_trait;

use super::ChatError;
use crate::domain::contact::TeamsContact;

/// What the Teams client must remember to message people who are not in
/// the conversation at hand: a narrow trait, so the adapter keeps no state
/// of its own (the server wires one kept in the store).
#[async_trait]
pub trait ContactBook: Send + Sync {
    /// The user with this AAD object id, as last seen.
    async fn contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, ChatError>;
    /// The service URL serving `conversation`, else the one seen last.
    async fn service_url(&self, conversation: &str) -> Result<Option<String>, ChatError>;
    /// The bot opened a 1:1 chat with `contact`: use it from now on.
    async fn opened_personal_chat(
        &self,
        contact: &TeamsContact,
        conversation: &str,
    ) -> Result<(), ChatError>;
}
