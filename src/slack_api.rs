//! The Slack Web API over HTTP, for whoever talks to Slack: the chat
//! adapter (`crate::chat::slack`) and the `slack_usergroup` provider. It
//! knows Slack's calls and answers — not cards, not chat — and sorts
//! failures by what the caller should do next.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Secret;
use crate::domain::ids::UserId;

/// Every outbound call has a deadline; Slack normally answers in well under
/// a second, and callers retry whatever times out.
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

/// Why a call failed, sorted by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackApiError {
    /// Throttled: try again after this long.
    #[error("Slack is rate limiting; retry after {0:?}")]
    RateLimited(Duration),
    /// Will not succeed by retrying (no such channel or user group, no
    /// permission).
    #[error("{0}")]
    Refused(String),
    /// May succeed later (network, 5xx, timeouts).
    #[error("{0}")]
    Failed(String),
}

pub struct SlackApi {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl SlackApi {
    pub fn new(api_url: &str, token: Secret) -> Result<SlackApi, SlackApiError> {
        let http = crate::outbound::client(CALL_TIMEOUT).map_err(SlackApiError::Failed)?;
        Ok(SlackApi {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Call `method` with a JSON body (the write methods).
    pub async fn call_json(&self, method: &str, body: &Value) -> Result<Value, SlackApiError> {
        let request = self
            .http
            .post(format!("{}/{method}", self.api_url))
            .bearer_auth(self.token.expose())
            .json(body);
        self.send(method, request).await
    }

    /// Call `method` with form fields (the read methods: `users.info`,
    /// `usergroups.users.list`).
    pub async fn call_form(
        &self,
        method: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, SlackApiError> {
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
    ) -> Result<Value, SlackApiError> {
        let response = request.send().await.map_err(|e| {
            SlackApiError::Failed(format!("{method}: {}", crate::outbound::failure(&e)))
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = crate::outbound::retry_after(response.headers(), DEFAULT_RETRY_AFTER);
            return Err(SlackApiError::RateLimited(wait));
        }
        if !status.is_success() {
            return Err(SlackApiError::Failed(format!("{method}: HTTP {status}")));
        }
        let body: Value = response.json().await.map_err(|e| {
            SlackApiError::Failed(format!(
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
            return Err(SlackApiError::RateLimited(DEFAULT_RETRY_AFTER));
        }
        if PERMANENT_ERRORS.contains(&code.as_str()) {
            Err(SlackApiError::Refused(format!("{method}: {code}")))
        } else {
            Err(SlackApiError::Failed(format!("{method}: {code}")))
        }
    }

    /// The members of a user group (`usergroups.users.list`).
    pub async fn user_group_members(&self, group: &str) -> Result<Vec<UserId>, SlackApiError> {
        let answer = self
            .call_form("usergroups.users.list", &[("usergroup", group)])
            .await?;
        user_ids(answer.get("users")).ok_or_else(|| {
            SlackApiError::Failed("usergroups.users.list: no users in answer".into())
        })
    }

    /// `usergroups.users.update`: make `members` the group's whole member
    /// list (Slack replaces it; an empty list is spelled `[]`). Answers the
    /// members Slack reports afterwards.
    pub async fn set_user_group_members(
        &self,
        group: &str,
        members: &[UserId],
    ) -> Result<Vec<UserId>, SlackApiError> {
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

    /// A user's email, from their profile (`users.info`).
    pub async fn user_email(&self, user: &UserId) -> Result<Option<String>, SlackApiError> {
        let answer = self
            .call_form("users.info", &[("user", user.as_str())])
            .await?;
        Ok(answer
            .pointer("/user/profile/email")
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// The user whose profile has this address (`users.lookupByEmail`);
    /// `None` when Slack knows nobody by it.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserId>, SlackApiError> {
        match self
            .call_form("users.lookupByEmail", &[("email", email)])
            .await
        {
            Ok(answer) => Ok(answer
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(UserId::new)),
            Err(SlackApiError::Refused(code)) if code.ends_with("users_not_found") => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// `conversations.open`: the DM channel with `user`.
    pub async fn open_dm(&self, user: &UserId) -> Result<String, SlackApiError> {
        let answer = self
            .call_json("conversations.open", &json!({ "users": user.as_str() }))
            .await?;
        answer
            .pointer("/channel/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                SlackApiError::Failed("conversations.open: no channel id in answer".into())
            })
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
