//! The `slack_usergroup` provider: membership of a Slack user group (the
//! target is its id, `S…`; the principal a Slack user id). Slack's API only
//! replaces a group's whole member list, so a grant reads the list, adds
//! the user and writes it back; changes to one group are serialised here so
//! two grants racing on it cannot drop each other's user.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::exclusive::Exclusive;
use super::{Access, Provider, ProviderError};
use crate::config::Secret;
use crate::domain::ids::UserId;
use crate::slack_api::{SlackApi, SlackApiError};

pub struct SlackUsergroupProvider {
    name: String,
    slack: SlackApi,
    timeout: Duration,
    /// One lock per user group, held across its read-modify-write.
    exclusive: Arc<dyn Exclusive>,
}

impl SlackUsergroupProvider {
    pub fn new(
        name: &str,
        api_url: &str,
        token: String,
        timeout: Duration,
        exclusive: Arc<dyn Exclusive>,
    ) -> Result<Self, String> {
        let slack = SlackApi::new(api_url, Secret::new(token))
            .map_err(|e| format!("provider {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            slack,
            timeout,
            exclusive,
        })
    }

    fn error(&self, action: &str, error: SlackApiError) -> ProviderError {
        let why = match error {
            SlackApiError::RateLimited(wait) => {
                format!("Slack is rate limiting (asked to wait {}s)", wait.as_secs())
            }
            SlackApiError::Refused(why) | SlackApiError::Failed(why) => why,
        };
        ProviderError::new(&self.name, format!("{action}: {why}"))
    }

    /// Change one user's membership of `group`: read, edit, write back, all
    /// under the group's lock and within the timeout.
    async fn change(
        &self,
        action: &str,
        access: &Access,
        member: bool,
    ) -> Result<(), ProviderError> {
        let group = access.target.as_str();
        let user = UserId::new(&access.principal);
        let work = async {
            let _serialised = self
                .exclusive
                .lock(&format!("slack_usergroup:{group}"))
                .await
                .map_err(SlackApiError::Failed)?;
            let mut members = self.slack.user_group_members(group).await?;
            if members.contains(&user) == member {
                return Ok(());
            }
            if member {
                members.push(user.clone());
            } else {
                members.retain(|m| m != &user);
            }
            let now = self.slack.set_user_group_members(group, &members).await?;
            if now.contains(&user) == member {
                Ok(())
            } else {
                Err(SlackApiError::Failed(format!(
                    "usergroups.users.update: {user} is {} the group afterwards",
                    if member { "still not in" } else { "still in" }
                )))
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(|e| self.error(action, e)),
            Err(_) => Err(ProviderError::new(
                &self.name,
                format!("{action}: Slack did not answer within {:?}", self.timeout),
            )),
        }
    }
}

#[async_trait]
impl Provider for SlackUsergroupProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.change("grant", access, true).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.change("revoke", access, false).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        match tokio::time::timeout(self.timeout, self.slack.user_group_members(target)).await {
            Ok(Ok(members)) => Ok(members.into_iter().map(|m| m.to_string()).collect()),
            Ok(Err(e)) => Err(self.error("holders", e)),
            Err(_) => Err(ProviderError::new(
                &self.name,
                format!("holders: Slack did not answer within {:?}", self.timeout),
            )),
        }
    }
}
