//! Durable state behind the [`Store`] trait: the one door through which the
//! engine and the two workers (scheduler, outbox) reach what jitbot
//! remembers. It is made of small capability traits — [`RequestStore`],
//! [`JobStore`], [`OutboxStore`], [`AuditStore`], [`RecordStore`],
//! [`Durability`], [`Coordination`] — which every backend implements:
//! [`SledStore`], the embedded default, and [`PgStore`], which any number
//! of replicas share. Nothing else (HTTP handlers, chat adapters,
//! providers) touches it.
//!
//! The sled trees (small and fixed):
//! - `requests`: request id → request (JSON)
//! - `requests_by_user`: user ++ request id → (), for `/jit list`
//! - `due`: due millis ++ job id → job; the scheduler's due-index
//! - `outbox`: sequence → message owed to someone
//! - `outbox_queue_index`: queue ++ sequence → (), each queue in order
//! - `outbox_queues`: queue → when its head may be tried, and its length
//! - `outbox_ready`: ready millis ++ queue → (), the queues by readiness
//! - `quotas`: user → what they filed lately and have waiting
//! - `audit`: sequence → hash-chained audit event
//! - `meta`: the audit chain head
//! - `replay`: signed timestamp ++ signature → (), the replay cache
//! - `mappings`: group ++ platform ++ channel → mapping
//! - `meta` also holds sweep times and what jitbot saw of access being
//!   used (`usage:` group ++ 0 ++ principal → usage)
//!
//! A state change, its audit events, its follow-up jobs and its outbox
//! messages are written in one transaction ([`RequestStore::apply`]).

mod lease;
mod location;
mod postgres;
mod sled;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::audit::{AuditEvent, AuditRecord, ChainBreak, ChainHead};
use crate::domain::ids::{Actor, Destination, GroupName, RequestId, UserId};
use crate::domain::job::Job;
use crate::domain::message::Outgoing;
use crate::domain::quota::{FilingLimits, QuotaRefusal};
use crate::domain::request::AccessRequest;
use crate::domain::usage::Usage;

pub use self::lease::{Claimed, Lease};
pub use self::location::{open, open_keyed, StoreLocation};
pub use self::postgres::{ImportError, Imported, PgStore};
pub use self::sled::{SledExport, SledStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The local storage (the embedded store's files) failed.
    #[error("storage error: {0}")]
    Storage(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The database refused the statement (a constraint, a bad schema).
    #[error("database error: {0}")]
    Database(String),
    /// The database could not be reached or did not answer in time;
    /// nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database stopped answering while a write was being committed:
    /// it may or may not have been made.
    #[error(
        "the database stopped answering during a write (it may or may not have been made): {0}"
    )]
    OutcomeUnknown(String),
}

impl StoreError {
    /// Whether the store could not be reached (rather than refusing).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)
        )
    }
}

/// What a change writes beside the request itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    pub audit: Vec<AuditRecord>,
    pub jobs: Vec<Job>,
    pub outbox: Vec<Outgoing>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.jobs.is_empty() && self.outbox.is_empty()
    }

    /// Add `other`'s effects after these.
    pub fn append(&mut self, other: Effects) {
        self.audit.extend(other.audit);
        self.jobs.extend(other.jobs);
        self.outbox.extend(other.outbox);
    }
}

/// What [`RequestStore::apply`] should write: the request's new value (if it
/// changed) and the effects.
#[derive(Debug, Default, Clone)]
pub struct Write {
    pub request: Option<AccessRequest>,
    pub effects: Effects,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// The change function chose to write nothing; nothing at all was
    /// written, and `consume_job` is still due.
    Skipped,
    /// The job to consume was already gone: another run finished it.
    JobGone,
}

/// What [`JobStore::due_jobs`] found.
#[derive(Debug, Default)]
pub struct DueJobs {
    /// Each claimed for this process until its lease drops.
    pub jobs: Vec<Claimed<Job>>,
    pub next_due: Option<DateTime<Utc>>,
}

/// What [`RequestStore::file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    Written,
    /// A request with this id exists: draw another id.
    IdTaken,
    /// The requester is over a limit; nothing was written.
    Refused(QuotaRefusal),
}

/// Queues of the outbox whose next message may be tried now.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// Each queue's first entries, in order, claimed for this process
    /// until its lease drops.
    pub queues: Vec<Claimed<Vec<OutboxEntry>>>,
    /// When the next queue not taken becomes ready, if one waits.
    pub next_ready: Option<DateTime<Utc>>,
}

/// A message owed, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    /// The queue it waits in ([`Outgoing::queue_key`]).
    #[serde(default)]
    pub queue: String,
    pub message: Outgoing,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The last delivery error, for operators.
    #[serde(default)]
    pub last_error: Option<String>,
}

pub use crate::domain::mapping::Mapping;

pub use crate::domain::contact::TeamsContact;

/// The latest sweep of one group (or round of its activity sampling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRun {
    pub at: DateTime<Utc>,
    /// False when the provider could not list the target's holders.
    pub listed: bool,
    /// When the next round is due, if not one interval after `at` (an idle
    /// warning or release due sooner).
    #[serde(default)]
    pub next_at: Option<DateTime<Utc>>,
}

/// Requests and the changes of their lifecycle.
#[async_trait]
pub trait RequestStore {
    /// A fresh id, unique for the life of the store.
    async fn next_id(&self) -> Result<u64, StoreError>;

    async fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError>;

    /// Every request filed by `user`, newest first.
    async fn requests_of(&self, user: &Actor) -> Result<Vec<AccessRequest>, StoreError>;

    /// Atomically: read request `id` (absent for a new one), let `change`
    /// decide what to write, write it with its effects, and remove
    /// `consume_job` from the due-index. If `change` returns `None`, nothing
    /// is written (the job stays). `change` may run more than once (on
    /// conflict), so it must not do I/O.
    async fn apply(
        &self,
        id: &RequestId,
        consume_job: Option<&Job>,
        change: &mut (dyn for<'r> FnMut(Option<&'r AccessRequest>) -> Option<Write> + Send),
    ) -> Result<Applied, StoreError>;

    /// File new requests of one requester (one, or the members of a
    /// bundle) with their effects, all or none — unless an id is taken, or
    /// the requester is over `limits` (checked against what they filed in
    /// the last minute and have waiting, in the same transaction, so that
    /// concurrent filings cannot overshoot).
    async fn file(
        &self,
        requests: &[AccessRequest],
        effects: &Effects,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<Filed, StoreError>;

    /// Requests whose access may be held now: approved (being granted) or
    /// active. Read from an index, not a scan of history.
    async fn live_requests(&self) -> Result<Vec<AccessRequest>, StoreError>;

    /// Requests waiting for a decision, oldest first: read from each
    /// requester's quota (which counts them), not a scan of history.
    async fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError>;

    /// The chat user jitbot last granted `principal` to in `group`, if any.
    async fn principal_owner(
        &self,
        group: &str,
        principal: &str,
    ) -> Result<Option<Actor>, StoreError>;

    /// Write effects that belong to no single request change.
    async fn record(&self, effects: &Effects) -> Result<(), StoreError>;
}

/// The due-index: work the scheduler owes, by due time.
#[async_trait]
pub trait JobStore {
    /// Jobs due at `now` or earlier, in due order, at most `limit`,
    /// passing over the ids `skip` names (jobs already running) without
    /// reading them; and when the first job after `now` is due, if the scan
    /// reached it. Reads only the head of the index: O(log n + limit).
    /// Each job comes claimed: no other process runs it while its lease
    /// holds, and at most one job of a lane is claimed at a time.
    async fn due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<DueJobs, StoreError>;

    /// Move `job` to a new due time (a retry), atomically with `effects`.
    async fn reschedule(
        &self,
        job: &Job,
        next: &Job,
        effects: &Effects,
    ) -> Result<Applied, StoreError>;
}

/// Messages owed to people, in queues.
#[async_trait]
pub trait OutboxStore {
    /// The outbox queues whose next message may be tried at `now`, those
    /// ready longest first, at most `max_queues` of them (passing over the
    /// queues `skip` names: being delivered), each with up to `per_queue`
    /// of its entries in order. Reads an index ordered by readiness, so a
    /// queue waiting out a rate limit costs nothing to pass: O(log n +
    /// what is returned).
    async fn outbox_ready(
        &self,
        now: DateTime<Utc>,
        max_queues: usize,
        per_queue: usize,
        skip: &(dyn for<'q> Fn(&'q str) -> bool + Sync),
    ) -> Result<OutboxBatch, StoreError>;
    /// `entry` was delivered (or dropped): the next of its queue is ready.
    async fn outbox_done(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// Keep `entry` (with its new attempt count, time and error) and hold
    /// its queue until `entry.next_attempt_at`.
    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// How many messages wait, and when the oldest was written.
    async fn outbox_stats(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError>;
}

/// The hash-chained audit log.
#[async_trait]
pub trait AuditStore {
    async fn audit_head(&self) -> Result<ChainHead, StoreError>;
    /// Events with sequence numbers after `after`, oldest first.
    async fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
    /// Events with sequence numbers before `before`, newest first.
    async fn audit_events_before(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Check the whole chain (keyed links under the store's
    /// `JITBOT_AUDIT_KEY`); the number of events verified.
    async fn verify_audit(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        self.verify_audit_to(None).await
    }
    /// Check the whole chain and, if given, that it still reaches the
    /// `shipped` head unchanged (a head kept where the store's writers
    /// cannot reach: what shows the end of the log cut off).
    async fn verify_audit_to(
        &self,
        shipped: Option<&ChainHead>,
    ) -> Result<Result<u64, ChainBreak>, StoreError>;
}

/// What jitbot remembers beside requests: mappings, Teams contacts, sweep
/// times (a group's activity sampling is recorded beside them, as
/// `activity:<group>`), what it saw of access being used, who opened their
/// App Home, the replay cache.
#[async_trait]
pub trait RecordStore {
    async fn mappings(&self) -> Result<Vec<Mapping>, StoreError>;
    async fn put_mapping(&self, mapping: &Mapping, audit: AuditRecord) -> Result<(), StoreError>;
    /// Remove the mapping of `group` to `destination`, audited; `false`
    /// (and nothing written) if there was none.
    async fn remove_mapping(
        &self,
        group: &GroupName,
        destination: &Destination,
        audit: AuditRecord,
    ) -> Result<bool, StoreError>;

    /// Teams users and conversations, as last seen in their activities.
    async fn put_teams_contact(&self, contact: &TeamsContact) -> Result<(), StoreError>;
    async fn teams_contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, StoreError>;
    /// Remember which service URL serves `conversation`.
    async fn put_teams_conversation(
        &self,
        conversation: &str,
        service_url: &str,
    ) -> Result<(), StoreError>;
    /// The service URL for `conversation`, else the one seen most recently.
    async fn teams_service_url(&self, conversation: &str) -> Result<Option<String>, StoreError>;

    /// When the sweep of `group` last ran, and whether it could list holders.
    async fn last_sweep(&self, group: &str) -> Result<Option<SweepRun>, StoreError>;
    async fn put_last_sweep(&self, group: &str, run: &SweepRun) -> Result<(), StoreError>;

    /// What jitbot saw of each principal's use of `group`'s target.
    async fn usages(&self, group: &str) -> Result<Vec<Usage>, StoreError>;
    async fn usage(&self, group: &str, principal: &str) -> Result<Option<Usage>, StoreError>;
    /// Record `usage` (replacing what was recorded for its principal).
    async fn put_usage(&self, group: &str, usage: &Usage) -> Result<(), StoreError>;
    /// Stop watching `principal` in `group` (it no longer holds the target).
    async fn forget_usage(&self, group: &str, principal: &str) -> Result<(), StoreError>;

    /// Remember that the Slack user `user` opened their App Home tab at `at`
    /// (every replica then keeps that home up to date).
    async fn put_home_opened(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The Slack users who last opened their App Home tab at `since` or
    /// later.
    async fn homes_opened_since(&self, since: DateTime<Utc>) -> Result<Vec<UserId>, StoreError>;

    /// Remember a signed delivery; `false` if it was seen before (a replay).
    async fn remember_delivery(
        &self,
        timestamp_secs: i64,
        signature: &[u8],
    ) -> Result<bool, StoreError>;
    /// Forget deliveries signed before `timestamp_secs` (outside the window).
    async fn forget_deliveries_before(&self, timestamp_secs: i64) -> Result<usize, StoreError>;
}

/// When what was written becomes durable.
#[async_trait]
pub trait Durability {
    /// Return once everything written so far is durable. Concurrent callers
    /// share the work (sled: one fsync for all of them).
    async fn sync(&self) -> Result<(), StoreError>;
}

/// Working beside other processes that share the store.
#[async_trait]
pub trait Coordination {
    /// How often workers must look for work other processes left behind
    /// (jobs they scheduled, claims that lapsed when one died); `None` when
    /// this process is the store's only user.
    fn watch_interval(&self) -> Option<std::time::Duration>;

    /// Claim the named periodic task (a group's sweep) for as long as the
    /// lease is kept; `None` if another process holds it.
    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
}

/// Everything a backend offers; `Arc<dyn Store>` is the door.
pub trait Store:
    RequestStore
    + JobStore
    + OutboxStore
    + AuditStore
    + RecordStore
    + Durability
    + Coordination
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: RequestStore
        + JobStore
        + OutboxStore
        + AuditStore
        + RecordStore
        + Durability
        + Coordination
        + Send
        + Sync
        + 'static
{
}

/// The capability traits, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::{
        AuditStore, Coordination, Durability, JobStore, OutboxStore, RecordStore, RequestStore,
    };
}

/// The members of `request`'s bundle as stored, in order, with `request`
/// itself as given (it may be newer than the store: a decision about to
/// be written); `request` alone when it is not in a bundle.
pub async fn bundle_members(
    store: &dyn Store,
    request: &AccessRequest,
) -> Result<Vec<AccessRequest>, StoreError> {
    if !request.in_bundle() {
        return Ok(vec![request.clone()]);
    }
    let mut members = Vec::new();
    for member in &request.bundle {
        if member.request == request.id {
            members.push(request.clone());
        } else if let Some(found) = store.get_request(&member.request).await? {
            members.push(found);
        }
    }
    Ok(members)
}
