//! The Bot Connector client: jitbot's [`ChatPlatform`] and [`Directory`]
//! for Teams. The bot authenticates with OAuth client credentials (its app
//! id and password; the token is kept until shortly before it expires) and
//! posts to `{serviceUrl}v3/conversations/…`, with the service URL Teams
//! gave in the conversation's (or the user's) latest activity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::cards::{adaptive_card, ADAPTIVE_CARD};
use super::ContactBook;
use crate::chat::directory::Directory;
use crate::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use crate::config::settings::TeamsSettings;
use crate::config::Secret;
use crate::domain::contact::TeamsContact;
use crate::domain::ids::{ChannelId, Platform, UserId};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Renew the bot's token this long before it expires.
const TOKEN_EARLY: Duration = Duration::from_secs(300);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

pub struct TeamsClient {
    http: reqwest::Client,
    app_id: String,
    app_password: Secret,
    token_url: String,
    token: Mutex<Option<(Secret, Instant)>>,
    contacts: Arc<dyn ContactBook>,
}

fn with_slash(service_url: &str) -> String {
    if service_url.ends_with('/') {
        service_url.to_string()
    } else {
        format!("{service_url}/")
    }
}

impl TeamsClient {
    pub fn new(
        settings: &TeamsSettings,
        contacts: Arc<dyn ContactBook>,
    ) -> Result<TeamsClient, ChatError> {
        let http = crate::outbound::client(CALL_TIMEOUT).map_err(ChatError::Failed)?;
        Ok(TeamsClient {
            http,
            app_id: settings.app_id.clone(),
            app_password: settings.app_password.clone(),
            token_url: settings.token_url.clone(),
            token: Mutex::new(None),
            contacts,
        })
    }

    /// The bot's own bearer token, from the cache or fresh.
    async fn token(&self) -> Result<Secret, ChatError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let answer = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.app_id.as_str()),
                ("client_secret", self.app_password.expose()),
                ("scope", BOT_FRAMEWORK_SCOPE),
            ])
            .send()
            .await
            .map_err(|e| {
                ChatError::Failed(format!("bot token: {}", crate::outbound::failure(&e)))
            })?;
        if !answer.status().is_success() {
            return Err(ChatError::Failed(format!(
                "bot token: HTTP {}",
                answer.status()
            )));
        }
        let answer: TokenAnswer = answer.json().await.map_err(|e| {
            ChatError::Failed(format!("bot token: {}", crate::outbound::failure(&e)))
        })?;
        let token = Secret::new(answer.access_token);
        let lifetime = Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_EARLY);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> Result<Value, ChatError> {
        let token = self.token().await?;
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let what = format!("{method} {}", path_of(&url));
        let response = request
            .send()
            .await
            .map_err(|e| ChatError::Failed(format!("{what}: {}", crate::outbound::failure(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = crate::outbound::retry_after(response.headers(), DEFAULT_RETRY_AFTER);
            return Err(ChatError::RateLimited(wait));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The token may have been revoked early: get a new one next time.
            *self.token.lock().await = None;
        }
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::NOT_FOUND {
            return Err(ChatError::Unreachable(format!("{what}: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(ChatError::Failed(format!("{what}: HTTP {status}")));
        }
        Ok(response.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn service_url(&self, conversation: &str) -> Result<String, ChatError> {
        self.contacts
            .service_url(conversation)
            .await?
            .map(|url| with_slash(&url))
            .ok_or_else(|| {
                ChatError::Unreachable(format!(
                    "no Teams service URL is known for {conversation}: add the bot to the team first"
                ))
            })
    }

    /// Send a ready-made Adaptive Card (the request form) to a conversation.
    pub async fn send_card_json(&self, conversation: &str, card: Value) -> Result<(), ChatError> {
        let activity = json!({
            "type": "message",
            "attachments": [{ "contentType": ADAPTIVE_CARD, "content": card }],
        });
        self.send(conversation, activity).await.map(drop)
    }

    /// Send a ready-made Adaptive Card to a user's 1:1 chat with the bot.
    pub async fn direct_card_json(&self, user: &UserId, card: Value) -> Result<(), ChatError> {
        let contact = self.contact(user).await?;
        let conversation = self.personal_conversation(contact).await?;
        self.send_card_json(&conversation, card).await
    }

    fn message(text: &str, card: Option<&Card>) -> Value {
        let (text, format) = super::text::message_text(text);
        let mut activity = json!({ "type": "message", "text": text, "textFormat": format });
        if let Some(card) = card {
            activity["attachments"] =
                json!([{ "contentType": ADAPTIVE_CARD, "content": adaptive_card(card) }]);
        }
        activity
    }

    async fn send(&self, conversation: &str, activity: Value) -> Result<PostedMessage, ChatError> {
        let service = self.service_url(conversation).await?;
        let answer = self
            .call(
                reqwest::Method::POST,
                format!("{service}v3/conversations/{conversation}/activities"),
                Some(activity),
            )
            .await?;
        Ok(PostedMessage {
            channel: ChannelId::new(conversation),
            message_id: answer["id"].as_str().unwrap_or_default().to_string(),
        })
    }

    async fn contact(&self, user: &UserId) -> Result<TeamsContact, ChatError> {
        self.contacts
            .contact(user.as_str())
            .await?
            .ok_or_else(|| {
                ChatError::Unreachable(format!(
                    "{user} has not talked to jitbot in Teams yet, so jitbot cannot message them (the app may not be installed for them)"
                ))
            })
    }

    /// The 1:1 conversation with `contact`, created on first use.
    async fn personal_conversation(&self, contact: TeamsContact) -> Result<String, ChatError> {
        if let Some(conversation) = &contact.personal_conversation {
            return Ok(conversation.clone());
        }
        let service = with_slash(&contact.service_url);
        let answer = self
            .call(
                reqwest::Method::POST,
                format!("{service}v3/conversations"),
                Some(json!({
                    "bot": { "id": format!("28:{}", self.app_id) },
                    "members": [{ "id": contact.teams_id }],
                    "channelData": { "tenant": { "id": contact.tenant_id } },
                    "tenantId": contact.tenant_id,
                    "isGroup": false,
                })),
            )
            .await?;
        let conversation = answer["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ChatError::Failed("create conversation: no id in the answer".into()))?
            .to_string();
        self.contacts
            .opened_personal_chat(&contact, &conversation)
            .await?;
        Ok(conversation)
    }
}

/// The path of a URL, for messages.
fn path_of(url: &str) -> &str {
    url.find("/v3/").map_or(url, |at| &url[at..])
}

#[async_trait]
impl ChatPlatform for TeamsClient {
    fn platform(&self) -> Platform {
        Platform::Teams
    }

    async fn post_card(
        &self,
        channel: &ChannelId,
        card: &Card,
    ) -> Result<PostedMessage, ChatError> {
        self.send(channel.as_str(), Self::message(&card.fallback, Some(card)))
            .await
    }

    async fn update_card(&self, message: &PostedMessage, card: &Card) -> Result<(), ChatError> {
        let conversation = message.channel.as_str();
        let service = self.service_url(conversation).await?;
        let mut activity = Self::message(&card.fallback, Some(card));
        activity["id"] = json!(message.message_id);
        self.call(
            reqwest::Method::PUT,
            format!(
                "{service}v3/conversations/{conversation}/activities/{}",
                message.message_id
            ),
            Some(activity),
        )
        .await
        .map(drop)
    }

    async fn direct_message(
        &self,
        user: &UserId,
        text: &str,
        card: Option<&Card>,
    ) -> Result<PostedMessage, ChatError> {
        let contact = self.contact(user).await?;
        let conversation = self.personal_conversation(contact).await?;
        self.send(&conversation, Self::message(text, card)).await
    }

    /// Teams has no message only one person sees in a channel: say it in
    /// the person's 1:1 chat with the bot instead.
    async fn ephemeral(
        &self,
        _channel: &ChannelId,
        user: &UserId,
        text: &str,
    ) -> Result<(), ChatError> {
        self.direct_message(user, text, None).await.map(drop)
    }

    async fn post_text(&self, channel: &ChannelId, text: &str) -> Result<(), ChatError> {
        self.send(channel.as_str(), Self::message(text, None))
            .await
            .map(drop)
    }
}

#[async_trait]
impl Directory for TeamsClient {
    /// Approvers on Teams are named by AAD object id; there are no Slack
    /// user groups to expand.
    async fn user_group_members(&self, _group: &str) -> Result<Vec<UserId>, ChatError> {
        Ok(Vec::new())
    }

    /// The member's email (or UPN), from the conversation they were seen in.
    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        let contact = match self.contact(user).await {
            Ok(contact) => contact,
            Err(ChatError::Unreachable(_)) => return Ok(None),
            Err(other) => return Err(other),
        };
        let service = with_slash(&contact.service_url);
        let member = self
            .call(
                reqwest::Method::GET,
                format!(
                    "{service}v3/conversations/{}/members/{}",
                    contact.seen_in, contact.teams_id
                ),
                None,
            )
            .await?;
        Ok(member["email"]
            .as_str()
            .or(member["userPrincipalName"].as_str())
            .filter(|e| !e.is_empty())
            .map(str::to_string))
    }
}
