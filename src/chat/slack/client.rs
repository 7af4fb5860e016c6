//! Slack as a chat platform: the [`ChatPlatform`] (cards as Block Kit, DMs,
//! ephemeral messages) and the [`Directory`] (user groups, emails), over the
//! Web API client in [`crate::slack_api`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::blocks;
use crate::chat::directory::Directory;
use crate::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use crate::config::Secret;
use crate::domain::ids::{ChannelId, Platform, UserId};
use crate::slack_api::{SlackApi, SlackApiError};

impl From<SlackApiError> for ChatError {
    fn from(error: SlackApiError) -> Self {
        match error {
            SlackApiError::RateLimited(wait) => ChatError::RateLimited(wait),
            SlackApiError::Refused(why) => ChatError::Unreachable(why),
            SlackApiError::Failed(why) => ChatError::Failed(why),
        }
    }
}

pub struct SlackClient {
    api: SlackApi,
    /// DM channel per user, from `conversations.open` (stable per user).
    dm_channels: Mutex<HashMap<UserId, ChannelId>>,
}

impl SlackClient {
    pub fn new(api_url: &str, token: Secret) -> Result<SlackClient, ChatError> {
        Ok(SlackClient {
            api: SlackApi::new(api_url, token)?,
            dm_channels: Mutex::new(HashMap::new()),
        })
    }

    async fn call_json(&self, method: &str, body: &Value) -> Result<Value, ChatError> {
        Ok(self.api.call_json(method, body).await?)
    }

    /// `views.open`: show a modal in answer to a click or command.
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), ChatError> {
        self.call_json(
            "views.open",
            &json!({ "trigger_id": trigger_id, "view": view }),
        )
        .await
        .map(drop)
    }

    async fn dm_channel(&self, user: &UserId) -> Result<ChannelId, ChatError> {
        if let Some(channel) = self
            .dm_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return Ok(channel.clone());
        }
        let channel = ChannelId::new(self.api.open_dm(user).await?);
        self.dm_channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.clone(), channel.clone());
        Ok(channel)
    }

    async fn post(
        &self,
        channel: &ChannelId,
        text: &str,
        card: Option<&Card>,
    ) -> Result<PostedMessage, ChatError> {
        let mut body = json!({ "channel": channel.as_str(), "text": blocks::mrkdwn(text) });
        if let Some(card) = card {
            body["blocks"] = blocks::card_blocks(card);
        }
        let answer = self.call_json("chat.postMessage", &body).await?;
        let message_id = answer
            .get("ts")
            .and_then(Value::as_str)
            .ok_or_else(|| ChatError::Failed("chat.postMessage: no ts in answer".into()))?;
        let channel = answer
            .get("channel")
            .and_then(Value::as_str)
            .map_or_else(|| channel.clone(), ChannelId::new);
        Ok(PostedMessage {
            channel,
            message_id: message_id.to_string(),
        })
    }
}

#[async_trait]
impl ChatPlatform for SlackClient {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// `views.publish`: the App Home tab.
    async fn publish_home(
        &self,
        user: &UserId,
        view: &crate::chat::home::HomeView,
    ) -> Result<(), ChatError> {
        self.call_json(
            "views.publish",
            &json!({ "user_id": user.as_str(), "view": blocks::home_view(view) }),
        )
        .await
        .map(drop)
    }

    async fn post_card(
        &self,
        channel: &ChannelId,
        card: &Card,
    ) -> Result<PostedMessage, ChatError> {
        self.post(channel, &card.fallback, Some(card)).await
    }

    async fn update_card(&self, message: &PostedMessage, card: &Card) -> Result<(), ChatError> {
        let body = json!({
            "channel": message.channel.as_str(),
            "ts": message.message_id,
            "text": blocks::mrkdwn(&card.fallback),
            "blocks": blocks::card_blocks(card),
        });
        self.call_json("chat.update", &body).await.map(drop)
    }

    async fn direct_message(
        &self,
        user: &UserId,
        text: &str,
        card: Option<&Card>,
    ) -> Result<PostedMessage, ChatError> {
        let channel = self.dm_channel(user).await?;
        self.post(&channel, text, card).await
    }

    async fn ephemeral(
        &self,
        channel: &ChannelId,
        user: &UserId,
        text: &str,
    ) -> Result<(), ChatError> {
        let body = json!({ "channel": channel.as_str(), "user": user.as_str(), "text": blocks::mrkdwn(text) });
        self.call_json("chat.postEphemeral", &body).await.map(drop)
    }

    async fn post_text(&self, channel: &ChannelId, text: &str) -> Result<(), ChatError> {
        self.post(channel, text, None).await.map(drop)
    }
}

#[async_trait]
impl Directory for SlackClient {
    async fn user_group_members(&self, group: &str) -> Result<Vec<UserId>, ChatError> {
        Ok(self.api.user_group_members(group).await?)
    }

    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        Ok(self.api.user_email(user).await?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserId>, ChatError> {
        Ok(self.api.user_by_email(email).await?)
    }
}
