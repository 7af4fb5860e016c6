//! Use cases: file a request, record and apply decisions, activate and
//! expire grants, answer commands. The engine speaks of users, channels,
//! cards and messages — never of a chat platform's payloads — and does all
//! slow work (providers, chat APIs) in jobs run by the scheduler or in the
//! outbox worker, never while a chat request waits for its answer.

mod admin;
mod announce;
mod commands;
mod decide;
mod end;
mod extend;
mod grant;
mod pending;
mod submit;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::Notify;

use crate::chat::directory::CachedDirectory;
use crate::chat::{ChatError, ChatPlatform};
use crate::clock::Clock;
use crate::domain::ids::{Actor, Destination, Platform, RequestId};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::policy::{GroupPolicy, Policy, Subject};
use crate::domain::quota::FilingLimits;
use crate::domain::request::{AccessRequest, Happened};
use crate::providers::Providers;
use crate::store::{Applied, Effects, GroupCommit, Store, StoreError, Write};
use crate::telemetry::{Health, Metrics};

pub use admin::{show_channel, AdminError, MappingView, Page};
pub use commands::Reply;
pub use decide::Preview;
pub use end::EndError;
pub use submit::{FormChoice, Receipt, SubmitError};
pub use sweep::{Finding, FindingAction, SweepOutcome, SweepReport};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a step is announced beyond what [`Engine::effects_of`] derives.
#[derive(Debug, Default)]
pub(super) struct Announce<'a> {
    /// Who took the step; `None` when jitbot itself did.
    pub by: Option<&'a Actor>,
    /// Audit text instead of the default one.
    pub detail: Option<String>,
    /// Further messages that go with it.
    pub extra: Vec<Outgoing>,
}

/// How fresh a user-group membership must be for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Asked of the platform now: for decisions on someone's rights (an
    /// approval, an auto-approval, an admin action). Someone removed from
    /// the approvers' group a moment ago no longer counts.
    Fresh,
    /// A minute old at most: for what only shows or offers something (the
    /// groups one may request, a preview of a click).
    Cached,
}

/// Wakes the background workers when there is new work for them.
#[derive(Debug, Default, Clone)]
pub struct Wakers {
    pub scheduler: Arc<Notify>,
    pub outbox: Arc<Notify>,
    pub sweeps: Arc<Notify>,
}

impl Wakers {
    /// Make every worker look again now (the clock moved, say).
    pub fn wake_all(&self) {
        self.scheduler.notify_one();
        self.outbox.notify_one();
        self.sweeps.notify_one();
    }
}

pub struct Engine {
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    durability: Arc<GroupCommit>,
    policy: Arc<Policy>,
    providers: Providers,
    directories: HashMap<Platform, Arc<CachedDirectory>>,
    /// Chat connections, for the few checks that must happen while an admin
    /// waits (can jitbot post in a channel being mapped?); all other
    /// messages go through the outbox.
    chat: HashMap<Platform, Arc<dyn ChatPlatform>>,
    wakers: Wakers,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// How much one person may file.
    limits: FilingLimits,
}

/// Slack wants an answer to a slash command within 3 s; a look-up on that
/// path gets half of it.
pub(super) const PROMPT_LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);

pub use crate::domain::routing::approval_destinations;

/// [`crate::domain::backoff::backoff`] with its jitter drawn here.
pub fn backoff(attempt: u32) -> Duration {
    crate::domain::backoff::backoff(attempt, rand::thread_rng().gen_range(0.8..1.2))
}

impl Engine {
    pub fn new(
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        providers: Providers,
        directories: HashMap<Platform, Arc<CachedDirectory>>,
        wakers: Wakers,
    ) -> Engine {
        Engine {
            health: Arc::new(Health::new(clock.clone())),
            clock,
            durability: Arc::new(GroupCommit::new(store.clone())),
            store,
            policy,
            providers,
            directories,
            chat: HashMap::new(),
            wakers,
            metrics: Arc::new(Metrics::new()),
            limits: FilingLimits::default(),
        }
    }

    /// Set how much one person may file.
    pub fn with_limits(mut self, limits: FilingLimits) -> Engine {
        self.limits = limits;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Give the engine the chat connections it may call directly.
    pub fn with_chat(mut self, chat: HashMap<Platform, Arc<dyn ChatPlatform>>) -> Engine {
        self.chat = chat;
        self
    }

    /// The current time, from the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The engine's clock, for the workers beside it.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Platforms with a configured chat connection.
    fn platforms(&self) -> impl Iterator<Item = Platform> + '_ {
        self.directories.keys().copied()
    }

    /// Make all writes so far durable; concurrent callers share one fsync.
    pub async fn flush(&self) -> Result<(), EngineError> {
        Ok(self.durability.flush().await?)
    }

    /// The shared group commit, for other workers that must flush.
    pub fn durability(&self) -> &Arc<GroupCommit> {
        &self.durability
    }

    /// Flush, then let the workers see the new jobs and messages. Nobody is
    /// told of a change before it is durable.
    async fn commit_and_wake(&self) -> Result<(), EngineError> {
        self.flush().await?;
        self.wakers.scheduler.notify_one();
        self.wakers.outbox.notify_one();
        Ok(())
    }

    fn new_job(
        &self,
        kind: JobKind,
        due_at: DateTime<Utc>,
        lane: String,
    ) -> Result<Job, StoreError> {
        Ok(Job {
            id: self.store.next_id()?,
            due_at,
            attempt: 0,
            lane,
            kind,
        })
    }

    /// Jobs that touch one user's access to one group run one at a time.
    fn lane_of(request: &AccessRequest) -> String {
        format!("{}:{}", request.requester, request.group)
    }

    /// Whether `actor` is named by `subjects`, resolving user groups only if
    /// a direct match fails. An error means membership could not be checked.
    async fn is_named(
        &self,
        subjects: &[Subject],
        actor: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        if subjects.iter().any(|s| s.matches(actor, &|_| false)) {
            return Ok(true);
        }
        let user_groups: Vec<&str> = subjects.iter().filter_map(Subject::user_group).collect();
        if user_groups.is_empty() {
            return Ok(false);
        }
        let Some(directory) = self.directories.get(&actor.platform) else {
            return Ok(false);
        };
        let mut member_of = HashSet::new();
        for group in user_groups {
            let members = match lookup {
                Lookup::Cached => directory.members(group).await?,
                Lookup::Fresh => directory.members_now(group).await?,
            };
            if members.contains(&actor.user) {
                member_of.insert(group.to_string());
            }
        }
        Ok(subjects
            .iter()
            .any(|s| s.matches(actor, &|g| member_of.contains(g))))
    }

    /// [`Engine::is_named`] for use while a chat request waits for its
    /// answer: a user-group look-up that does not answer quickly counts as
    /// an error, so the ack still goes out within Slack's three seconds.
    async fn is_named_promptly(
        &self,
        subjects: &[Subject],
        actor: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        match tokio::time::timeout(
            PROMPT_LOOKUP_TIMEOUT,
            self.is_named(subjects, actor, lookup),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ChatError::Failed("user group look-up timed out".into())),
        }
    }

    /// Where approval cards for `group` go: per platform, the channels
    /// admins mapped at run time, or else the policy's channel.
    fn destinations(&self, group: &GroupPolicy) -> Result<Vec<Destination>, StoreError> {
        Ok(approval_destinations(
            group,
            &self.store.mappings()?,
            self.platforms(),
        ))
    }

    /// Approvers who get the card directly when the group has no channel.
    fn direct_approvers(&self, group: &GroupPolicy) -> Vec<Actor> {
        let configured: HashSet<Platform> = self.platforms().collect();
        group
            .approvers
            .iter()
            .filter_map(|s| match s {
                Subject::SlackUser(id) => Some(Actor::new(Platform::Slack, id.clone(), "")),
                Subject::TeamsUser(id) => Some(Actor::new(Platform::Teams, id.clone(), "")),
                _ => None,
            })
            .filter(|a| configured.contains(&a.platform))
            .collect()
    }

    /// Say `text` in a channel or conversation, durably.
    pub async fn say_in(&self, to: Destination, text: String) -> Result<(), EngineError> {
        self.store.record(&Effects {
            outbox: vec![Outgoing::ChannelNotice { to, text }],
            ..Effects::default()
        })?;
        self.commit_and_wake().await
    }

    /// Send `to` a direct message, durably.
    pub async fn tell(&self, to: &Actor, text: String) -> Result<(), EngineError> {
        self.store.record(&Effects {
            outbox: vec![Outgoing::Direct {
                to: to.clone(),
                text,
                about: None,
            }],
            ..Effects::default()
        })?;
        self.commit_and_wake().await
    }

    pub fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.store.get_request(id)
    }

    /// Write `write`, consuming `job`, if the request is still at the point
    /// of its lifecycle `snapshot` was at (cards posted meanwhile are kept).
    /// `Skipped` means it moved on: decide again from a fresh snapshot.
    pub(super) fn write_if_unchanged(
        &self,
        snapshot: &AccessRequest,
        job: Option<&Job>,
        write: &Write,
    ) -> Result<Applied, StoreError> {
        self.store.apply(&snapshot.id, job, &mut |current| {
            let current = current.filter(|c| c.same_point(snapshot))?;
            let mut write = write.clone();
            if let Some(request) = &mut write.request {
                request.cards.clone_from(&current.cards);
            }
            Some(write)
        })
    }

    /// [`Engine::write_if_unchanged`] for a job's outcome, made durable and
    /// announced when written.
    pub(super) async fn settle(
        &self,
        job: &Job,
        snapshot: &AccessRequest,
        write: Write,
    ) -> Result<Applied, EngineError> {
        let applied = self.write_if_unchanged(snapshot, Some(job), &write)?;
        if applied == Applied::Written {
            self.commit_and_wake().await?;
        }
        Ok(applied)
    }

    /// Record a lifecycle step that `job` took on `request` (`step`, from a
    /// transition; `None` when it no longer applies, and the job is simply
    /// consumed), with the effects it owes.
    pub(super) async fn record_step(
        &self,
        job: &Job,
        request: &AccessRequest,
        step: Option<(AccessRequest, Happened)>,
        announce: Announce<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some((next, happened)) = step else {
            return self.consume(job);
        };
        let audience = self.audience(request)?;
        let mut effects = self.effects_of(
            &next,
            &happened,
            announce.by,
            &audience,
            announce.detail,
            now,
        )?;
        effects.outbox.extend(announce.extra);
        self.settle(
            job,
            request,
            Write {
                request: Some(next),
                effects,
            },
        )
        .await?;
        Ok(())
    }

    pub(super) fn consume(&self, job: &Job) -> Result<(), EngineError> {
        self.store.apply(job.kind.request(), Some(job), &mut |_| {
            Some(Write::default())
        })?;
        Ok(())
    }

    /// Run `job` again later (backoff by its attempt count), atomically
    /// with `effects`.
    pub(super) async fn retry_later(&self, job: &Job, effects: Effects) -> Result<(), EngineError> {
        let next = Job {
            id: self.store.next_id()?,
            attempt: job.attempt + 1,
            due_at: self.now() + backoff(job.attempt),
            ..job.clone()
        };
        self.store.reschedule(job, &next, &effects)?;
        self.commit_and_wake().await?;
        Ok(())
    }

    /// Run one due job. Every outcome — done, refused, retried later — is
    /// recorded by the job itself; an `Err` leaves the job in place.
    pub async fn run_job(&self, job: &Job) -> Result<(), EngineError> {
        match &job.kind {
            JobKind::Decide { .. } => self.run_decide(job).await,
            JobKind::Activate { .. } => self.run_activate(job).await,
            JobKind::Expire { .. } => self.run_expire(job).await,
            JobKind::RevokeAfterFailedGrant { .. } => self.run_revoke_after_failed_grant(job).await,
            JobKind::End { .. } => self.run_end(job).await,
            JobKind::TimeOut { .. } => self.run_time_out(job).await,
            JobKind::Warn { .. } => self.run_warn(job).await,
            JobKind::Escalate { .. } => self.run_escalate(job).await,
        }
    }
}

/// A time as DMs show it.
pub(crate) fn show_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
