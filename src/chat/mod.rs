//! What the engine needs from a chat platform — post a card, update it,
//! message someone directly or privately — as one small trait
//! ([`ChatPlatform`]), plus user-group and profile look-ups
//! ([`directory::Directory`]). Slack implements both in [`slack`], Teams in [`teams`];
//! the durable outbox worker ([`crate::outbox`]) delivers what the engine
//! owes through them.

pub mod card;
pub mod directory;
pub mod home;
pub mod slack;
pub mod sweep_notice;
pub mod teams;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ids::{ChannelId, Platform, UserId};

pub use card::{Card, CardAction, CardActionKind, CardText};

/// Why a chat API call failed, sorted by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Throttled: try again after this long.
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// Will not succeed by retrying (channel gone, bot not in channel, user
    /// unknown): report it instead.
    #[error("cannot deliver: {0}")]
    Unreachable(String),
    /// May succeed later (network, 5xx, timeouts).
    #[error("chat API call failed: {0}")]
    Failed(String),
    /// The destination refused this message (a mail server's 5xx): tried
    /// a few times in case it was passing, then reported like
    /// `Unreachable`.
    #[error("refused: {0}")]
    Refused(String),
}

/// Where a posted card lives, so it can be updated later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    pub channel: ChannelId,
    pub message_id: String,
}

#[async_trait]
pub trait ChatPlatform: Send + Sync {
    fn platform(&self) -> Platform;

    async fn post_card(&self, channel: &ChannelId, card: &Card)
        -> Result<PostedMessage, ChatError>;

    async fn update_card(&self, message: &PostedMessage, card: &Card) -> Result<(), ChatError>;

    /// A direct message, optionally carrying a card.
    async fn direct_message(
        &self,
        user: &UserId,
        text: &str,
        card: Option<&Card>,
    ) -> Result<PostedMessage, ChatError>;

    /// A message in `channel` that only `user` sees.
    async fn ephemeral(
        &self,
        channel: &ChannelId,
        user: &UserId,
        text: &str,
    ) -> Result<(), ChatError>;

    /// A plain message in a channel.
    async fn post_text(&self, channel: &ChannelId, text: &str) -> Result<(), ChatError>;

    /// Show `user` their home (Slack's App Home tab); platforms without
    /// one answer that it cannot be delivered.
    async fn publish_home(&self, user: &UserId, view: &home::HomeView) -> Result<(), ChatError> {
        let _ = (user, view);
        Err(ChatError::Unreachable(format!(
            "{} has no home tab",
            self.platform()
        )))
    }
}
