//! Messages jitbot owes people, as written to the durable outbox. They name
//! users, channels and requests — never a platform's payload format — and
//! are rendered for Slack or Teams only when delivered.

use serde::{Deserialize, Serialize};

use super::ids::{Actor, ChannelId, Destination, Platform, RequestId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Outgoing {
    /// Post the request's approval card to a channel (rendered from the
    /// request's state at delivery time).
    PostCard { request: RequestId, to: Destination },
    /// Send an approval card to one approver directly, for groups without
    /// an approval channel.
    DirectCard { request: RequestId, to: Actor },
    /// Re-render every posted card of the request with its current state.
    RefreshCards { request: RequestId },
    /// A direct message to one person, about a request if `about` is set
    /// (if they cannot be reached, its approval channel is told).
    Direct {
        to: Actor,
        text: String,
        #[serde(default)]
        about: Option<RequestId>,
    },
    /// A message only `user` sees, in `channel`.
    Ephemeral {
        platform: Platform,
        channel: ChannelId,
        user: UserId,
        text: String,
    },
    /// A plain message in a channel (notices, alerts).
    ChannelNotice { to: Destination, text: String },
    /// What a sweep found, told to an approval channel (each platform
    /// words it).
    SweepNotice {
        to: Destination,
        notice: super::sweep::SweepNotice,
    },
    /// The DM warning a requester that their grant ends at `expires_at`,
    /// with an Extend button.
    ExpiryWarning {
        request: RequestId,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// The DM warning a requester that their unused grant is released at
    /// `release_at`, with a Keep it button.
    IdleWarning {
        request: RequestId,
        release_at: chrono::DateTime<chrono::Utc>,
    },
    /// Publish `user`'s home (Slack's App Home tab) as it stands at
    /// delivery; several waiting in a row are published once.
    PublishHome { user: Actor },
}

impl Outgoing {
    /// The queue the message waits in. Messages of one queue are delivered
    /// one after another, in the order they were written — a card update
    /// never overtakes the card it updates, nor a DM the one before it —
    /// and a queue that must wait (a rate limit, an outage) holds back only
    /// itself: every other queue goes on.
    pub fn queue_key(&self) -> String {
        match self {
            Outgoing::PostCard { request, .. }
            | Outgoing::DirectCard { request, .. }
            | Outgoing::RefreshCards { request } => format!("card:{request}"),
            Outgoing::Direct { to, .. } => format!("dm:{}:{}", to.platform, to.user),
            Outgoing::PublishHome { user } => format!("home:{}:{}", user.platform, user.user),
            Outgoing::ExpiryWarning { request, .. } | Outgoing::IdleWarning { request, .. } => {
                format!("warning:{request}")
            }
            Outgoing::Ephemeral {
                platform,
                channel,
                user,
                ..
            } => format!("ephemeral:{platform}:{channel}:{user}"),
            Outgoing::ChannelNotice { to, .. } | Outgoing::SweepNotice { to, .. } => {
                format!("channel:{}:{}", to.platform, to.channel)
            }
        }
    }

    /// The conversation the message is posted in, when known without
    /// reading anything: a chat API's rate limit for one conversation holds
    /// back every message to it, and only those.
    pub fn conversation(&self) -> Option<String> {
        match self {
            Outgoing::PostCard { to, .. }
            | Outgoing::ChannelNotice { to, .. }
            | Outgoing::SweepNotice { to, .. } => Some(format!("{}:{}", to.platform, to.channel)),
            Outgoing::Ephemeral {
                platform, channel, ..
            } => Some(format!("{platform}:{channel}")),
            Outgoing::DirectCard { to, .. } | Outgoing::Direct { to, .. } => {
                Some(format!("{}:dm:{}", to.platform, to.user))
            }
            Outgoing::RefreshCards { .. }
            | Outgoing::ExpiryWarning { .. }
            | Outgoing::IdleWarning { .. }
            | Outgoing::PublishHome { .. } => None,
        }
    }
}
