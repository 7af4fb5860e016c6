//! Use cases: file a request, take a click, activate and expire grants,
//! end them early, answer commands, sweep. The engine speaks of users,
//! channels, cards and messages — never of a chat platform's payloads —
//! and does all slow work (providers, chat APIs) in jobs run by the
//! scheduler or in the outbox worker, never while a chat request waits for
//! its answer.
//!
//! It is the only door to the store for everything in front of it: HTTP
//! handlers and chat adapters ask the engine (`ingress` for what they must
//! remember of a delivery, `views` for what they show), never the store.
//!
//! - `steps`: writing a lifecycle step — transition, effects, durable.
//! - `rights`: who may request, approve, administer; user groups resolved.
//! - `announce`: what each step owes (audit, messages, jobs).
//! - `submit`, `click` + `decide`, `grant`, `end`, `extend`, `pending`,
//!   `sweep`, `activity`, `admin`, `commands`: the use cases.

mod activity;
mod admin;
mod announce;
mod break_glass;
mod bundle;
mod by_email;
mod click;
mod commands;
mod contacts;
mod decide;
mod end;
mod extend;
mod grant;
mod home;
mod identity;
mod ingress;
mod on_call;
mod pending;
mod recorded;
mod rights;
mod steps;
mod submit;
mod sweep;
mod views;
mod wakers;

pub use wakers::{JobWaker, Wakers};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::chat::directory::CachedDirectory;
use crate::chat::ChatPlatform;
use crate::clock::Clock;
use crate::domain::ids::{Actor, Platform};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::policy::Policy;
use crate::domain::quota::FilingLimits;
use crate::providers::Providers;
use crate::store::{Store, StoreError};
use crate::telemetry::{Health, Metrics};

pub use activity::{KeepOutcome, UnusedEntry};
pub use admin::{show_channel, AdminError, MappingView, Page};
pub use by_email::{EmailApproval, EmailDecision};
pub use click::{Click, ClickOutcome};
pub use commands::Reply;
pub use contacts::StoreContactBook;
pub use end::EndError;
pub use identity::OwnAddressRefusal;
pub use ingress::TeamsSighting;
pub use recorded::LiveGrantsError;
pub use submit::{FormChoice, Receipt, SubmitError};
pub use views::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a person is told when their action failed on our side (`what` did
/// not happen: "filed", "changed"): never that it happened, and never that
/// it did not when that is unknown.
pub(crate) fn failure_text(error: &EngineError, what: &str) -> String {
    match error {
        EngineError::Store(StoreError::OutcomeUnknown(_)) => format!(
            "jitbot lost its database in the middle of this, so it may or may not have been {what}; `/jit list` shows where things stand once it is back."
        ),
        EngineError::Store(StoreError::Unavailable(_)) => format!(
            "jitbot cannot reach its database right now; nothing was {what}. Please try again in a minute."
        ),
        _ => format!("Something went wrong on our side; nothing was {what}. Please try again."),
    }
}

impl EngineError {
    /// Whether the store could not be reached (a database outage).
    pub fn is_unavailable(&self) -> bool {
        match self {
            EngineError::Store(error) => error.is_unavailable(),
        }
    }
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

pub struct Engine {
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
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
    /// Whether email is set up (`JITBOT_SMTP_URL`): then email approvers
    /// are sent their links, and requesters who gave an address hear back
    /// by email.
    email_enabled: bool,
    /// Groups and principals whose activity the provider cannot tell now
    /// (logged once when it starts failing).
    activity_failing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Who is on call, for `auto_approve.on_call` and on-call approvers.
    on_call: crate::on_call::OnCall,
    /// Slack users who opened their home (App Home) lately, as last read
    /// from the store every replica shares: their homes are published again
    /// when something in them changes.
    open_homes: std::sync::Mutex<home::OpenHomes>,
}

/// Slack wants an answer to a slash command within 3 s; a look-up on that
/// path gets half of it.
pub(super) const PROMPT_LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);

/// [`crate::domain::backoff::backoff`] with its jitter drawn here.
pub(super) fn backoff(attempt: u32) -> Duration {
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
        let metrics = Arc::new(Metrics::new());
        Engine {
            health: Arc::new(Health::new(clock.clone())),
            on_call: crate::on_call::OnCall::new(Default::default(), metrics.clone()),
            clock,
            store,
            policy,
            providers,
            directories,
            chat: HashMap::new(),
            wakers,
            metrics,
            limits: FilingLimits::default(),
            email_enabled: false,
            activity_failing: Default::default(),
            open_homes: Default::default(),
        }
    }

    /// Reach people by email too (the outbox has a mailer).
    pub fn with_email(mut self) -> Engine {
        self.email_enabled = true;
        self
    }

    /// Ask these paging services who is on call.
    pub fn with_paging(mut self, settings: crate::config::paging::PagingSettings) -> Engine {
        self.on_call = crate::on_call::OnCall::new(settings, self.metrics.clone());
        self
    }

    /// The chat directories (profiles, user groups), for the workers.
    pub fn directories(&self) -> &HashMap<Platform, Arc<CachedDirectory>> {
        &self.directories
    }

    pub fn email_enabled(&self) -> bool {
        self.email_enabled
    }

    /// Set how much one person may file.
    pub fn with_limits(mut self, limits: FilingLimits) -> Engine {
        self.limits = limits;
        self
    }

    /// Give the engine the chat connections it may call directly.
    pub fn with_chat(mut self, chat: HashMap<Platform, Arc<dyn ChatPlatform>>) -> Engine {
        self.chat = chat;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
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

    /// The store, for the two workers beside the engine (the scheduler and
    /// the outbox) that are wired to it when the server is assembled.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Platforms with a configured chat connection.
    fn platforms(&self) -> impl Iterator<Item = Platform> + '_ {
        self.directories.keys().copied()
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
            JobKind::ReleaseIdle { .. } => self.run_release_idle(job).await,
            JobKind::FollowBundle { .. } => self.run_follow_bundle(job).await,
        }
    }
}

/// A time as DMs show it.
pub(crate) fn show_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
