//! What admins do, whether from chat (`/jit admin …`) or the HTTP API:
//! map channels to groups, list mappings and active grants, read the audit
//! log. Rights are checked by the caller (chat: the policy's `admins`;
//! API: the token); these functions check everything else and change
//! nothing unless all of it holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Engine, EngineError, PROMPT_LOOKUP_TIMEOUT};
use crate::chat::ChatError;
use crate::domain::audit::{AuditAction, AuditEvent, AuditRecord};
use crate::domain::command::AuditFilter;
use crate::domain::ids::{Actor, ChannelId, Destination, GroupName, Platform, RequestId};
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::Mapping;

/// Why an admin change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("There is no group `{0}` in the policy.")]
    UnknownGroup(String),
    #[error("jitbot is not connected to {0}, so it cannot post there.")]
    PlatformNotConnected(Platform),
    #[error("I cannot post in {channel}: {why}. Invite me to the channel (`/invite @jitbot`), then map it again.")]
    CannotPost { channel: String, why: String },
    #[error("I could not check that I can post in {channel} ({why}); nothing was changed. Please try again.")]
    CheckFailed { channel: String, why: String },
    #[error("{channel} is not mapped to `{group}`.")]
    NotMapped { channel: String, group: String },
    #[error("{0}.")]
    BadChannel(#[from] crate::domain::ids::ChannelIdError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for AdminError {
    fn from(error: crate::store::StoreError) -> Self {
        AdminError::Engine(error.into())
    }
}

/// A channel where a group's cards go: from the policy or mapped at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingView {
    pub group: GroupName,
    pub destination: Destination,
    /// `None` for the policy's own `channel`.
    pub mapped: Option<(Actor, DateTime<Utc>)>,
}

/// One page of a longer list, newest or soonest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// 1-based.
    pub number: usize,
    /// Whether a next page has anything.
    pub more: bool,
}

/// How many audit events `audit_page` reads from the store per batch.
const AUDIT_SCAN_BATCH: usize = 500;

impl Engine {
    /// Route `group`'s approval cards to `destination` as well. The channel
    /// is checked first by posting a short notice to it: a channel jitbot
    /// cannot post in is reported, and nothing is stored.
    pub async fn map_channel(
        &self,
        by: &Actor,
        destination: Destination,
        group: &GroupName,
    ) -> Result<bool, AdminError> {
        self.policy
            .group(group)
            .ok_or_else(|| AdminError::UnknownGroup(group.to_string()))?;
        ChannelId::parse_for(destination.platform, destination.channel.as_str())?;
        let existing = self.store.mappings().await?;
        if existing
            .iter()
            .any(|m| &m.group == group && m.destination == destination)
        {
            return Ok(false);
        }
        let chat = self
            .chat
            .get(&destination.platform)
            .ok_or(AdminError::PlatformNotConnected(destination.platform))?;
        let channel = show_channel(&destination);
        let notice = format!(
            "Approval cards for `{group}` will be posted here from now on (mapped by {}).",
            crate::domain::text::literal(by.name_or_id())
        );
        match tokio::time::timeout(
            PROMPT_LOOKUP_TIMEOUT,
            chat.post_text(&destination.channel, &notice),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(ChatError::Unreachable(why))) => {
                return Err(AdminError::CannotPost {
                    channel,
                    why: why.rsplit(": ").next().unwrap_or(&why).to_string(),
                })
            }
            Ok(Err(other)) => {
                return Err(AdminError::CheckFailed {
                    channel,
                    why: other.to_string(),
                })
            }
            Err(_) => {
                return Err(AdminError::CheckFailed {
                    channel,
                    why: "the chat API did not answer in time".into(),
                })
            }
        }
        let now = self.now();
        let mapping = Mapping {
            group: group.clone(),
            destination: destination.clone(),
            by: by.clone(),
            at: now,
        };
        self.store
            .put_mapping(
                &mapping,
                AuditRecord {
                    at: now,
                    action: AuditAction::MappingAdded,
                    actor: Some(by.clone()),
                    request: None,
                    group: Some(group.clone()),
                    detail: format!("approval cards also go to {channel}"),
                },
            )
            .await?;
        self.flush().await?;
        Ok(true)
    }

    /// Stop routing `group`'s cards to `destination`.
    pub async fn unmap_channel(
        &self,
        by: &Actor,
        destination: &Destination,
        group: &GroupName,
    ) -> Result<(), AdminError> {
        self.policy
            .group(group)
            .ok_or_else(|| AdminError::UnknownGroup(group.to_string()))?;
        let channel = show_channel(destination);
        let removed = self
            .store
            .remove_mapping(
                group,
                destination,
                AuditRecord {
                    at: self.now(),
                    action: AuditAction::MappingRemoved,
                    actor: Some(by.clone()),
                    request: None,
                    group: Some(group.clone()),
                    detail: format!("approval cards no longer go to {channel}"),
                },
            )
            .await?;
        if !removed {
            return Err(AdminError::NotMapped {
                channel,
                group: group.to_string(),
            });
        }
        self.flush().await?;
        Ok(())
    }

    /// Every channel cards go to: the policy's, then the run-time mappings.
    pub async fn mapping_views(&self) -> Result<Vec<MappingView>, EngineError> {
        let mut views = Vec::new();
        for group in &self.policy.groups {
            let from_policy = [
                group.channel.clone().map(|c| (Platform::Slack, c)),
                group.teams_channel.clone().map(|c| (Platform::Teams, c)),
            ];
            for (platform, channel) in from_policy.into_iter().flatten() {
                views.push(MappingView {
                    group: group.name.clone(),
                    destination: Destination { platform, channel },
                    mapped: None,
                });
            }
        }
        let mut mapped = self.store.mappings().await?;
        mapped.sort_by(|a, b| (&a.group, &a.destination).cmp(&(&b.group, &b.destination)));
        views.extend(mapped.into_iter().map(|m| MappingView {
            group: m.group,
            destination: m.destination,
            mapped: Some((m.by, m.at)),
        }));
        Ok(views)
    }

    /// Active grants, soonest expiry first.
    pub async fn active_grants(&self) -> Result<Vec<AccessRequest>, EngineError> {
        let mut grants: Vec<AccessRequest> = self
            .store
            .live_requests()
            .await?
            .into_iter()
            .filter(|r| matches!(r.state, RequestState::Active { .. }))
            .collect();
        grants.sort_by_key(|g| (g.expires_at(), g.id.clone()));
        Ok(grants)
    }

    /// Page `number` (1-based, `per_page` long) of the most recent audit
    /// events matching `filter` and newer than `since`, newest first.
    pub async fn audit_page(
        &self,
        filter: Option<&AuditFilter>,
        since: Option<DateTime<Utc>>,
        number: usize,
        per_page: usize,
    ) -> Result<Page<AuditEvent>, EngineError> {
        let number = number.max(1);
        let skip = (number - 1) * per_page;
        let mut matched = 0;
        let mut items = Vec::new();
        let mut requesters: HashMap<RequestId, Option<Actor>> = HashMap::new();
        let mut before = u64::MAX;
        loop {
            let batch = self
                .store
                .audit_events_before(before, AUDIT_SCAN_BATCH)
                .await?;
            let Some(last) = batch.last() else {
                break;
            };
            before = last.seq;
            for event in batch {
                if since.is_some_and(|since| event.at < since) {
                    return Ok(Page {
                        items,
                        number,
                        more: false,
                    });
                }
                if !self.audit_matches(&event, filter, &mut requesters).await? {
                    continue;
                }
                matched += 1;
                if matched > skip + per_page {
                    return Ok(Page {
                        items,
                        number,
                        more: true,
                    });
                }
                if matched > skip {
                    items.push(event);
                }
            }
        }
        Ok(Page {
            items,
            number,
            more: false,
        })
    }

    async fn audit_matches(
        &self,
        event: &AuditEvent,
        filter: Option<&AuditFilter>,
        requesters: &mut HashMap<RequestId, Option<Actor>>,
    ) -> Result<bool, EngineError> {
        Ok(match filter {
            None => true,
            Some(AuditFilter::Group(group)) => event.group.as_ref() == Some(group),
            Some(AuditFilter::BreakGlass) => event.action.is_break_glass(),
            Some(AuditFilter::User(user)) => {
                if event.actor.as_ref().is_some_and(|a| &a.user == user) {
                    return Ok(true);
                }
                let Some(id) = &event.request else {
                    return Ok(false);
                };
                if !requesters.contains_key(id) {
                    let requester = self.store.get_request(id).await?.map(|r| r.requester);
                    requesters.insert(id.clone(), requester);
                }
                requesters[id].as_ref().is_some_and(|r| &r.user == user)
            }
        })
    }
}

/// A channel as chat shows it: a link on Slack, the id elsewhere.
pub fn show_channel(destination: &Destination) -> String {
    match destination.platform {
        Platform::Slack => format!("<#{}>", destination.channel),
        Platform::Teams | Platform::Email | Platform::Console => destination.channel.to_string(),
    }
}
