//! A person's home (Slack's App Home tab): read from the store when it is
//! shown, published through the outbox when it is opened and again when
//! something in it changes — for the requester, the approvers who may
//! decide, and the admins — among the people who opened it.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::rights::Lookup;
use super::{Engine, EngineError};
use crate::chat::home::{
    AdminHome, Home, HomeSource, HomeView, ADMIN_GRANTS_SHOWN, HISTORY_SHOWN, MINE_SHOWN,
    TO_DECIDE_SHOWN,
};
use crate::domain::ids::{Actor, Platform, UserId};
use crate::domain::message::Outgoing;
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::Effects;

/// How long a step may spend telling whose home it changed.
const HOME_CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_millis(300);

/// How often the list of open homes is read again from the store.
const OPEN_HOMES_REREAD: std::time::Duration = std::time::Duration::from_secs(2);

/// How long after it was last opened a home is kept up to date. Opening the
/// tab publishes it anyway; this only spares homes nobody looks at.
const HOMES_KEPT_UP_FOR: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The Slack users who opened their home lately, as last read.
#[derive(Default)]
pub(super) struct OpenHomes {
    users: std::collections::HashSet<UserId>,
    read_at: Option<tokio::time::Instant>,
}

impl Engine {
    /// `user`'s home as it stands.
    pub async fn home(&self, user: &Actor) -> Result<Home, EngineError> {
        let mine = self.store.requests_of(user).await?;
        let mut grants: Vec<AccessRequest> = mine
            .iter()
            .filter(|r| matches!(r.state, RequestState::Active { .. }))
            .cloned()
            .collect();
        grants.sort_by_key(|r| r.expires_at());
        grants.truncate(MINE_SHOWN);
        let mut pending: Vec<AccessRequest> = mine
            .iter()
            .filter(|r| r.state == RequestState::Pending)
            .cloned()
            .collect();
        pending.sort_by_key(|r| r.created_at);
        pending.truncate(MINE_SHOWN);
        let history: Vec<AccessRequest> = mine
            .iter()
            .filter(|r| !r.state.is_open())
            .take(HISTORY_SHOWN)
            .cloned()
            .collect();
        let waiting = self.store.pending_requests().await?;
        let mut to_decide = Vec::new();
        for request in &waiting {
            if to_decide.len() == TO_DECIDE_SHOWN {
                break;
            }
            let Some(group) = self.policy.group(&request.group) else {
                continue;
            };
            // Whoever cannot be asked now is not shown it; the click
            // checks again, fresh, like a card's.
            if !request.requester.is(user)
                && self
                    .may_approve(request, group, user, Lookup::Cached)
                    .await
                    .unwrap_or(false)
            {
                to_decide.push(request.clone());
            }
        }
        let is_admin = self
            .is_named_promptly(&self.policy.admins, user, Lookup::Cached)
            .await
            .unwrap_or(false);
        let admin = if is_admin {
            let mut live = self.active_grants().await?;
            live.truncate(ADMIN_GRANTS_SHOWN);
            let mut per_group = BTreeMap::new();
            for request in &waiting {
                *per_group.entry(request.group.clone()).or_insert(0) += 1;
            }
            Some(AdminHome {
                grants: live,
                pending_per_group: per_group.into_iter().collect(),
            })
        } else {
            None
        };
        Ok(Home {
            grants,
            pending,
            to_decide,
            history,
            admin,
        })
    }

    /// `user` opened their home: publish it, and keep it up to date from
    /// now on, whichever replica a change happens on.
    pub async fn home_opened(&self, user: &Actor) -> Result<(), EngineError> {
        self.store.put_home_opened(&user.user, self.now()).await?;
        {
            let mut homes = self.open_homes.lock().unwrap_or_else(|p| p.into_inner());
            homes.users.insert(user.user.clone());
            // A read that began before this opening was written may end
            // after it without it: the next step reads again.
            homes.read_at = None;
        }
        self.record_effects(Effects {
            outbox: vec![Outgoing::PublishHome { user: user.clone() }],
            ..Effects::default()
        })
        .await
    }

    /// The homes a step of `request` changes, among those people opened:
    /// the requester's, the approvers' who may decide it, the admins'.
    /// Each is published through the outbox, which coalesces a burst.
    pub(super) async fn home_updates(&self, request: &AccessRequest) -> Vec<Outgoing> {
        let watching = self.open_homes().await;
        if watching.is_empty() {
            return Vec::new();
        }
        let publish = |user| Outgoing::PublishHome {
            user: Actor::new(Platform::Slack, user, ""),
        };
        // Telling whose home changed may ask the chat directory (user
        // groups); a step is never held up by it: when that is slow,
        // every open home is published (a publish too many is harmless).
        match tokio::time::timeout(HOME_CHECK_DEADLINE, self.concerned(request, &watching)).await {
            Ok(concerned) => concerned.into_iter().map(publish).collect(),
            Err(_) => watching.into_iter().map(publish).collect(),
        }
    }

    /// Who opened their home lately, read again from the store when the
    /// last read is older than [`OPEN_HOMES_REREAD`] (another replica may
    /// have seen an opening). One step rereads while the others go on with
    /// what was read before; a failed read keeps it too.
    async fn open_homes(&self) -> Vec<UserId> {
        let stale = {
            let mut homes = self.open_homes.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let stale = match homes.read_at {
                Some(read) => now.duration_since(read) >= OPEN_HOMES_REREAD,
                None => true,
            };
            if stale {
                homes.read_at = Some(now);
            }
            stale
        };
        if stale {
            match self
                .store
                .homes_opened_since(self.now() - HOMES_KEPT_UP_FOR)
                .await
            {
                Ok(users) => {
                    self.open_homes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .users = users.into_iter().collect();
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read who opened their home; using what was read before");
                }
            }
        }
        self.open_homes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .iter()
            .cloned()
            .collect()
    }

    /// Of the people `watching` their home, those `request` concerns: its
    /// requester, the approvers who may decide it, the admins.
    async fn concerned(&self, request: &AccessRequest, watching: &[UserId]) -> Vec<UserId> {
        let group = self.policy.group(&request.group);
        let mut concerned = Vec::new();
        for user in watching {
            let person = Actor::new(Platform::Slack, user.clone(), "");
            let is_concerned = person.is(&request.requester)
                || match group {
                    Some(group) => self
                        .may_approve(request, group, &person, Lookup::Cached)
                        .await
                        .unwrap_or(true),
                    None => false,
                }
                || self
                    .is_named(&self.policy.admins, &person, Lookup::Cached)
                    .await
                    .unwrap_or(true);
            if is_concerned {
                concerned.push(user.clone());
            }
        }
        concerned
    }
}

#[async_trait]
impl HomeSource for Engine {
    async fn home_view(&self, user: &Actor) -> Result<HomeView, String> {
        let home = self.home(user).await.map_err(|e| e.to_string())?;
        Ok(home.view(self.now()))
    }
}
