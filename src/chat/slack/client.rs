//! The Slack Web API client: the [`ChatPlatform`] and [`Directory`] for Slack.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::blocks;
use crate::chat::directory::Directory;
use crate::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use crate::config::Secret;
use crate::domain::ids::{ChannelId, Platform, UserId};

/// Every outbound call has a deadline; Slack normally answers in well under
/// a second, and the outbox retries whatever times out.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// When Slack throttles without saying for how long, wait this much.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Slack error codes that retrying will not fix.
const PERMANENT_ERRORS: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "user_not_found",
    "users_not_found",
    "cannot_dm_bot",
    "user_is_bot",
    "message_not_found",
    "cant_update_message",
    "no_permission",
    "restricted_action",
    "msg_too_long",
    "invalid_blocks",
    "no_such_subteam",
    "subteam_not_found",
];

pub struct SlackClient {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
    /// DM channel per user, from `conversations.open` (stable per user).
    dm_channels: Mutex<HashMap<UserId, ChannelId>>,
}

impl SlackClient {
    pub fn new(api_url: &str, token: Secret) -> Result<SlackClient, ChatError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| ChatError::Failed(e.to_string()))?;
        Ok(SlackClient {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            dm_channels: Mutex::new(HashMap::new()),
        })
    }

    async fn call_json(&self, method: &str, body: &Value) -> Result<Value, ChatError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.api_url))
            .bearer_auth(self.token.expose())
            .json(body);
        self.send(method, request).await
    }

    /// Read methods (`users.info`, `usergroups.users.list`) take form fields.
    async fn call_form(&self, method: &str, form: &[(&str, &str)]) -> Result<Value, ChatError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.api_url))
            .bearer_auth(self.token.expose())
            .form(form);
        self.send(method, request).await
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ChatError> {
        let response = request.send().await.map_err(|e| {
            ChatError::Failed(format!("{method}: {}", crate::outbound::failure(&e)))
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = crate::outbound::retry_after(response.headers(), DEFAULT_RETRY_AFTER);
            return Err(ChatError::RateLimited(wait));
        }
        if !status.is_success() {
            return Err(ChatError::Failed(format!("{method}: HTTP {status}")));
        }
        let body: Value = response.json().await.map_err(|e| {
            ChatError::Failed(format!(
                "{method}: unreadable answer: {}",
                crate::outbound::failure(&e)
            ))
        })?;
        if body.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(body);
        }
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .to_string();
        if code == "ratelimited" {
            return Err(ChatError::RateLimited(DEFAULT_RETRY_AFTER));
        }
        if PERMANENT_ERRORS.contains(&code.as_str()) {
            Err(ChatError::Unreachable(format!("{method}: {code}")))
        } else {
            Err(ChatError::Failed(format!("{method}: {code}")))
        }
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

    /// `usergroups.users.update`: make `members` the group's whole member
    /// list (Slack replaces it; an empty list is spelled `[]`). Answers the
    /// members Slack reports afterwards.
    pub async fn set_user_group_members(
        &self,
        group: &str,
        members: &[UserId],
    ) -> Result<Vec<UserId>, ChatError> {
        let users = if members.is_empty() {
            "[]".to_string()
        } else {
            members
                .iter()
                .map(UserId::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let answer = self
            .call_form(
                "usergroups.users.update",
                &[("usergroup", group), ("users", &users)],
            )
            .await?;
        Ok(user_ids(answer.pointer("/usergroup/users")).unwrap_or_else(|| members.to_vec()))
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
        let answer = self
            .call_json("conversations.open", &json!({ "users": user.as_str() }))
            .await?;
        let channel = answer
            .pointer("/channel/id")
            .and_then(Value::as_str)
            .map(ChannelId::new)
            .ok_or_else(|| {
                ChatError::Failed("conversations.open: no channel id in answer".into())
            })?;
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

/// A JSON list of user ids, if `value` is one.
fn user_ids(value: Option<&Value>) -> Option<Vec<UserId>> {
    Some(
        value?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(UserId::new)
            .collect(),
    )
}

#[async_trait]
impl Directory for SlackClient {
    async fn user_group_members(&self, group: &str) -> Result<Vec<UserId>, ChatError> {
        let answer = self
            .call_form("usergroups.users.list", &[("usergroup", group)])
            .await?;
        user_ids(answer.get("users"))
            .ok_or_else(|| ChatError::Failed("usergroups.users.list: no users in answer".into()))
    }

    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        let answer = self
            .call_form("users.info", &[("user", user.as_str())])
            .await?;
        Ok(answer
            .pointer("/user/profile/email")
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}
