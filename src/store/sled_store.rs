//! The sled implementation of [`Store`].

use std::cell::RefCell;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::keys;
use super::{
    Applied, DueJobs, Effects, Filed, Mapping, OutboxBatch, OutboxEntry, Store, StoreError,
    SweepRun, TeamsContact, Write,
};
use crate::domain::audit::{verify_chain, AuditEvent, AuditRecord, ChainBreak, ChainHead};
use crate::domain::ids::{Actor, Destination, GroupName, RequestId};
use crate::domain::job::Job;
use crate::domain::quota::{FilingLimits, Quota, QuotaRefusal};
use crate::domain::request::AccessRequest;
use crate::domain::request::RequestState;

/// sled's default page cache is 1 GiB; jitbot's working set is small, and a
/// bounded cache keeps the process's memory predictable.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

// Positions of the trees in a transaction over `tx_trees`.
const REQUESTS: usize = 0;
const BY_USER: usize = 1;
const DUE: usize = 2;
const OUTBOX: usize = 3;
const AUDIT: usize = 4;
const META: usize = 5;
const MAPPINGS: usize = 6;
const LIVE: usize = 7;
const PRINCIPALS: usize = 8;
const QUEUE_INDEX: usize = 9;
const QUEUES: usize = 10;
const READY: usize = 11;
const QUOTAS: usize = 12;

pub struct SledStore {
    db: sled::Db,
    /// Where it lives.
    dir: std::path::PathBuf,
    requests: Tree,
    by_user: Tree,
    due: Tree,
    outbox: Tree,
    audit: Tree,
    meta: Tree,
    replay: Tree,
    mappings: Tree,
    /// Requests whose access may be held now (approved or active), by key.
    live: Tree,
    /// Who jitbot granted each principal of a group to.
    principals: Tree,
    /// Teams users and conversations (service URLs).
    teams: Tree,
    /// Each outbox queue's entries, in order.
    queue_index: Tree,
    /// Each outbox queue's state ([`QueueState`]).
    queues: Tree,
    /// The outbox queues by the time their head may be tried.
    ready: Tree,
    /// What each person filed lately and has waiting.
    quotas: Tree,
    /// The trees a state change may touch, in the order of the constants above.
    tx_trees: Vec<Tree>,
}

/// How long reopening a store this process closed may wait for sled to
/// let go of its lock.
const RELOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Stores this process has had open and closed.
fn closed_here() -> std::sync::MutexGuard<'static, std::collections::HashSet<std::path::PathBuf>> {
    static CLOSED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
    > = std::sync::OnceLock::new();
    CLOSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn canonical(dir: &Path) -> std::path::PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Durable before it goes (a caller that forgot to flush loses
        // nothing), and remembered, so reopening it here waits for sled.
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "could not flush the store while closing it");
        }
        closed_here().insert(canonical(&self.dir));
    }
}

/// Why a transaction closure stopped: the caller chose to write nothing,
/// a person's quota refused a new request, or something failed.
enum Abort {
    Skipped,
    Refused(QuotaRefusal),
    Failed(StoreError),
}

/// Effects encoded before their transaction. sled runs every transaction
/// under one process-wide lock, so what can be done outside — serialising
/// jobs and messages — is done outside: the shorter each transaction, the
/// more of them a second.
struct Prepared<'a> {
    audit: &'a [AuditRecord],
    /// Due-index key and job.
    jobs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Queue, the queue as JSON, and the message as JSON.
    outbox: Vec<(String, String, String)>,
    now_json: String,
    now_ms: i64,
}

impl<'a> Prepared<'a> {
    fn new(effects: &'a Effects) -> Result<Prepared<'a>, StoreError> {
        let now = Utc::now();
        let json = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let jobs = effects
            .jobs
            .iter()
            .map(|job| Ok((SledStore::due_key(job), encode(job)?)))
            .collect::<Result<_, StoreError>>()?;
        let outbox = effects
            .outbox
            .iter()
            .map(|message| {
                let queue = message.queue_key();
                let queue_json = serde_json::to_string(&queue).map_err(json)?;
                Ok((
                    queue,
                    queue_json,
                    serde_json::to_string(message).map_err(json)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Prepared {
            audit: &effects.audit,
            jobs,
            outbox,
            now_json: serde_json::to_string(&now).map_err(json)?,
            now_ms: now.timestamp_millis(),
        })
    }
}

/// An outbox queue: when its first entry may be tried, and how many
/// entries it holds (so the one that empties it can drop it, in the same
/// transaction in which another may be adding to it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct QueueState {
    ready_ms: i64,
    len: u64,
}

type TxError = ConflictableTransactionError<Abort>;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn abort(error: StoreError) -> TxError {
    ConflictableTransactionError::Abort(Abort::Failed(error))
}

fn finish(result: Result<Applied, TransactionError<Abort>>) -> Result<Applied, StoreError> {
    match result {
        Ok(applied) => Ok(applied),
        Err(TransactionError::Abort(Abort::Skipped)) => Ok(Applied::Skipped),
        Err(TransactionError::Abort(Abort::Failed(e))) => Err(e),
        Err(TransactionError::Abort(Abort::Refused(refusal))) => Err(StoreError::Corrupt(format!(
            "a quota refusal escaped its transaction: {refusal}"
        ))),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

impl SledStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let started = std::time::Instant::now();
        let closed_here = closed_here().contains(&canonical(dir));
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_CAPACITY_BYTES)
                .mode(sled::Mode::HighThroughput)
                // No background flush: every state change is flushed
                // explicitly (group commit) before anyone is told, and the
                // outbox worker flushes its bookkeeping after each pass. A
                // timer-driven flush on top only competed with those and
                // lengthened the ack tail (docs/BENCHMARKS.md).
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if is_lock_error(&io) => {
                    // Our own store, closed a moment ago: sled lets go of
                    // its lock when its I/O threads finish. Wait for that,
                    // a bounded while; another process's lock is refused
                    // at once.
                    if closed_here && started.elapsed() < RELOCK_PATIENCE {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                    return Err(StoreError::Corrupt(format!(
                        "{} is in use by another jitbot process (the store is single-process: stop the server, or use the HTTP API)",
                        dir.display()
                    )));
                }
                Err(other) => return Err(StoreError::Sled(other)),
            }
        };
        let open = |name: &str| db.open_tree(name);
        let requests = open("requests")?;
        let by_user = open("requests_by_user")?;
        let due = open("due")?;
        let outbox = open("outbox")?;
        let audit = open("audit")?;
        let meta = open("meta")?;
        let replay = open("replay")?;
        let mappings = open("mappings")?;
        let live = open("live_requests")?;
        let principals = open("principal_owners")?;
        let teams = open("teams")?;
        let queue_index = open("outbox_queue_index")?;
        let queues = open("outbox_queues")?;
        let ready = open("outbox_ready")?;
        let quotas = open("quotas")?;
        let tx_trees = vec![
            requests.clone(),
            by_user.clone(),
            due.clone(),
            outbox.clone(),
            audit.clone(),
            meta.clone(),
            mappings.clone(),
            live.clone(),
            principals.clone(),
            queue_index.clone(),
            queues.clone(),
            ready.clone(),
            quotas.clone(),
        ];
        let store = SledStore {
            db,
            dir: dir.to_path_buf(),
            requests,
            by_user,
            due,
            outbox,
            audit,
            meta,
            replay,
            mappings,
            live,
            principals,
            teams,
            queue_index,
            queues,
            ready,
            quotas,
            tx_trees,
        };
        store.build_indexes()?;
        store.build_outbox_queues()?;
        store.build_quotas()?;
        Ok(store)
    }

    /// Stores written before the live and principal indexes existed get
    /// them built once, from the requests themselves.
    fn build_indexes(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(keys::LIVE_INDEX_BUILT)? {
            return Ok(());
        }
        for item in self.requests.iter() {
            let (key, value) = item?;
            let request: AccessRequest = decode(&value)?;
            if request.may_hold_access() {
                self.live.insert(key, &[])?;
            }
            if let Some(principal) = &request.principal {
                self.principals.insert(
                    keys::principal_owner(request.group.as_str(), principal),
                    encode(&request.requester)?,
                )?;
            }
        }
        self.meta.insert(keys::LIVE_INDEX_BUILT, &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores written before the outbox had queues get every waiting entry
    /// put in its queue once.
    fn build_outbox_queues(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(keys::OUTBOX_QUEUES_BUILT)? {
            return Ok(());
        }
        let mut states: std::collections::HashMap<String, QueueState> = Default::default();
        for item in self.outbox.iter() {
            let (key, value) = item?;
            let mut entry: OutboxEntry = decode(&value)?;
            entry.queue = entry.message.queue_key();
            self.outbox.insert(key, encode(&entry)?)?;
            self.queue_index
                .insert(keys::queue_entry(&entry.queue, entry.seq), &[])?;
            let state = states.entry(entry.queue.clone()).or_insert(QueueState {
                ready_ms: entry.next_attempt_at.timestamp_millis(),
                len: 0,
            });
            state.len += 1;
        }
        for (queue, state) in states {
            self.queues.insert(keys::queue(&queue), encode(&state)?)?;
            self.ready
                .insert(keys::ready(state.ready_ms, &queue), &[])?;
        }
        self.meta.insert(keys::OUTBOX_QUEUES_BUILT, &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores written before quotas existed count each pending request in
    /// its requester's quota once.
    fn build_quotas(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(keys::QUOTAS_BUILT)? {
            return Ok(());
        }
        let mut quotas: std::collections::HashMap<Vec<u8>, Quota> = Default::default();
        for item in self.requests.iter() {
            let (_, value) = item?;
            let request: AccessRequest = decode(&value)?;
            if request.state == RequestState::Pending {
                quotas
                    .entry(keys::quota(&request.requester))
                    .or_default()
                    .note_pending(&request.id);
            }
        }
        for (key, quota) in quotas {
            self.quotas.insert(key, encode(&quota)?)?;
        }
        self.meta.insert(keys::QUOTAS_BUILT, &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// Keep the requester's count of waiting requests in step with a
    /// request moving into or out of `pending`.
    fn track_pending(
        trees: &[TransactionalTree],
        before: Option<&AccessRequest>,
        after: &AccessRequest,
    ) -> Result<(), TxError> {
        let was = before.is_some_and(|b| b.state == RequestState::Pending);
        let is = after.state == RequestState::Pending;
        if was == is {
            return Ok(());
        }
        let key = keys::quota(&after.requester);
        let mut quota: Quota = match trees[QUOTAS].get(&key)? {
            Some(bytes) => decode(&bytes).map_err(abort)?,
            None => Quota::default(),
        };
        if is {
            quota.note_pending(&after.id);
        } else {
            quota.decided(&after.id);
        }
        trees[QUOTAS].insert(key, encode(&quota).map_err(abort)?)?;
        Ok(())
    }

    /// Write `request` and the indexes that follow it, knowing what it
    /// was before (`current`).
    fn put_request(
        trees: &[TransactionalTree],
        current: Option<&AccessRequest>,
        request: &AccessRequest,
        encoded: &[u8],
    ) -> Result<(), TxError> {
        let request_key = keys::request(&request.id);
        trees[REQUESTS].insert(request_key.as_slice(), encoded)?;
        if current.is_none() {
            trees[BY_USER].insert(keys::user_request(&request.requester, &request.id), &[])?;
        }
        // Index writes only where something changed: each costs a page
        // update inside sled's one process-wide transaction lock.
        let was_live = current.is_some_and(AccessRequest::may_hold_access);
        match (was_live, request.may_hold_access()) {
            (false, true) => drop(trees[LIVE].insert(request_key.as_slice(), &[])?),
            (true, false) => drop(trees[LIVE].remove(request_key.as_slice())?),
            _ => {}
        }
        let known_principal = current.and_then(|c| c.principal.as_ref());
        if let Some(principal) = request
            .principal
            .as_ref()
            .filter(|p| Some(*p) != known_principal)
        {
            trees[PRINCIPALS].insert(
                keys::principal_owner(request.group.as_str(), principal),
                encode(&request.requester).map_err(abort)?,
            )?;
        }
        Self::track_pending(trees, current, request)
    }

    fn queue_state(
        trees: &[TransactionalTree],
        queue: &str,
    ) -> Result<Option<QueueState>, TxError> {
        match trees[QUEUES].get(keys::queue(queue))? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(abort)?)),
            None => Ok(None),
        }
    }

    /// The job's key, its due time rounded *up* to the millisecond: a job
    /// must never come up before its due time (an expiry run early would
    /// find its grant not yet over).
    fn due_key(job: &Job) -> Vec<u8> {
        let sub_millisecond = job.due_at.timestamp_subsec_nanos() % 1_000_000 != 0;
        keys::due(
            job.due_at.timestamp_millis() + i64::from(sub_millisecond),
            job.id,
        )
    }

    fn write_effects(trees: &[TransactionalTree], effects: &Prepared<'_>) -> Result<(), TxError> {
        if !effects.audit.is_empty() {
            let mut head = match trees[META].get(keys::AUDIT_HEAD)? {
                Some(bytes) => decode::<ChainHead>(&bytes).map_err(abort)?,
                None => ChainHead::genesis(),
            };
            for record in effects.audit {
                let (event, next) = record.clone().seal(&head);
                trees[AUDIT].insert(keys::sequence(event.seq), encode(&event).map_err(abort)?)?;
                head = next;
            }
            trees[META].insert(keys::AUDIT_HEAD, encode(&head).map_err(abort)?)?;
        }
        for (key, job) in &effects.jobs {
            trees[DUE].insert(key.as_slice(), job.as_slice())?;
        }
        for (queue, queue_json, message_json) in &effects.outbox {
            let seq = trees[OUTBOX].generate_id()?;
            let entry = format!(
                r#"{{"seq":{seq},"queue":{queue_json},"message":{message_json},"attempts":0,"next_attempt_at":{now},"created_at":{now},"last_error":null}}"#,
                now = effects.now_json,
            );
            trees[OUTBOX].insert(keys::sequence(seq), entry.as_bytes())?;
            trees[QUEUE_INDEX].insert(keys::queue_entry(queue, seq), &[])?;
            let state = match Self::queue_state(trees, queue)? {
                Some(state) => QueueState {
                    len: state.len + 1,
                    ..state
                },
                None => {
                    trees[READY].insert(keys::ready(effects.now_ms, queue), &[])?;
                    QueueState {
                        ready_ms: effects.now_ms,
                        len: 1,
                    }
                }
            };
            trees[QUEUES].insert(keys::queue(queue), encode(&state).map_err(abort)?)?;
        }
        Ok(())
    }

    fn decode_all<T: DeserializeOwned>(
        iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (_, value) = item?;
            out.push(decode(&value)?);
        }
        Ok(out)
    }
}

impl Store for SledStore {
    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.requests
            .get(keys::request(id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    fn requests_of(&self, user: &Actor) -> Result<Vec<AccessRequest>, StoreError> {
        let prefix = keys::user_prefix(user);
        let mut requests = Vec::new();
        for item in self.by_user.scan_prefix(&prefix) {
            let (key, _) = item?;
            let id_text = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
            let id = RequestId::parse(&id_text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(request) = self.get_request(&id)? {
                requests.push(request);
            }
        }
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(requests)
    }

    fn apply(
        &self,
        id: &RequestId,
        consume_job: Option<&Job>,
        change: &mut dyn FnMut(Option<&AccessRequest>) -> Option<Write>,
    ) -> Result<Applied, StoreError> {
        // sled may run the closure again on conflict; it only needs `Fn`,
        // so the caller's `FnMut` is borrowed through a RefCell.
        let change = RefCell::new(change);
        let request_key = keys::request(id);
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if let Some(job) = consume_job {
                if trees[DUE].remove(Self::due_key(job))?.is_none() {
                    return Ok(Applied::JobGone);
                }
            }
            let current: Option<AccessRequest> = match trees[REQUESTS].get(&request_key)? {
                Some(bytes) => Some(decode(&bytes).map_err(abort)?),
                None => None,
            };
            let Some(write) = (change.borrow_mut())(current.as_ref()) else {
                // Abort, so that not even the job removal is kept.
                return Err(ConflictableTransactionError::Abort(Abort::Skipped));
            };
            if let Some(request) = &write.request {
                let bytes = encode(request).map_err(abort)?;
                Self::put_request(trees, current.as_ref(), request, &bytes)?;
            }
            Self::write_effects(trees, &Prepared::new(&write.effects).map_err(abort)?)?;
            Ok(Applied::Written)
        }))
    }

    fn file(
        &self,
        request: &AccessRequest,
        effects: &Effects,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<Filed, StoreError> {
        let request_key = keys::request(&request.id);
        let quota_key = keys::quota(&request.requester);
        let request_bytes = encode(request)?;
        let effects = Prepared::new(effects)?;
        let result = self.tx_trees.as_slice().transaction(|trees| {
            if trees[REQUESTS].get(&request_key)?.is_some() {
                return Err(ConflictableTransactionError::Abort(Abort::Skipped));
            }
            let mut quota: Quota = match trees[QUOTAS].get(&quota_key)? {
                Some(bytes) => decode(&bytes).map_err(abort)?,
                None => Quota::default(),
            };
            let pending = request.state == RequestState::Pending;
            quota
                .admit(&request.id, pending, limits, now)
                .map_err(|refusal| ConflictableTransactionError::Abort(Abort::Refused(refusal)))?;
            trees[QUOTAS].insert(quota_key.as_slice(), encode(&quota).map_err(abort)?)?;
            // The quota counts it as waiting already; counting again is a no-op.
            Self::put_request(trees, None, request, &request_bytes)?;
            Self::write_effects(trees, &effects)?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(Filed::Written),
            Err(TransactionError::Abort(Abort::Skipped)) => Ok(Filed::IdTaken),
            Err(TransactionError::Abort(Abort::Refused(refusal))) => Ok(Filed::Refused(refusal)),
            Err(TransactionError::Abort(Abort::Failed(e))) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }

    fn live_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut requests = Vec::new();
        for item in self.live.iter() {
            let (key, _) = item?;
            if let Some(bytes) = self.requests.get(&key)? {
                requests.push(decode(&bytes)?);
            }
        }
        Ok(requests)
    }

    fn principal_owner(&self, group: &str, principal: &str) -> Result<Option<Actor>, StoreError> {
        self.principals
            .get(keys::principal_owner(group, principal))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    fn put_teams_contact(&self, contact: &TeamsContact) -> Result<(), StoreError> {
        self.teams
            .insert(keys::teams_user(&contact.aad_object_id), encode(contact)?)?;
        Ok(())
    }

    fn teams_contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, StoreError> {
        self.teams
            .get(keys::teams_user(aad_object_id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    fn put_teams_conversation(
        &self,
        conversation: &str,
        service_url: &str,
    ) -> Result<(), StoreError> {
        let known = self.teams.get(keys::teams_conversation(conversation))?;
        if known.as_deref() != Some(service_url.as_bytes()) {
            self.teams.insert(
                keys::teams_conversation(conversation),
                service_url.as_bytes(),
            )?;
        }
        let latest = self.teams.get(keys::TEAMS_LATEST_SERVICE_URL)?;
        if latest.as_deref() != Some(service_url.as_bytes()) {
            self.teams
                .insert(keys::TEAMS_LATEST_SERVICE_URL, service_url.as_bytes())?;
        }
        Ok(())
    }

    fn teams_service_url(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        let found = match self.teams.get(keys::teams_conversation(conversation))? {
            Some(url) => Some(url),
            None => self.teams.get(keys::TEAMS_LATEST_SERVICE_URL)?,
        };
        Ok(found.map(|url| String::from_utf8_lossy(&url).into_owned()))
    }

    fn last_sweep(&self, group: &str) -> Result<Option<SweepRun>, StoreError> {
        self.meta
            .get(keys::last_sweep(group))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    fn put_last_sweep(&self, group: &str, run: &SweepRun) -> Result<(), StoreError> {
        self.meta.insert(keys::last_sweep(group), encode(run)?)?;
        Ok(())
    }

    fn record(&self, effects: &Effects) -> Result<(), StoreError> {
        let effects = Prepared::new(effects)?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
        .map(drop)
    }

    fn due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<DueJobs, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut due = DueJobs::default();
        for item in self.due.iter() {
            if due.jobs.len() >= limit {
                break;
            }
            let (key, value) = item?;
            // The key alone says when the job is due and which it is, so
            // running jobs are passed over without decoding them.
            let (due_ms, id) = keys::parse_due(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed due-index key".into()))?;
            if due_ms > now_ms {
                due.next_due = DateTime::from_timestamp_millis(due_ms);
                break;
            }
            if !skip(id) {
                due.jobs.push(decode(&value)?);
            }
        }
        Ok(due)
    }

    fn reschedule(&self, job: &Job, next: &Job, effects: &Effects) -> Result<Applied, StoreError> {
        let effects = Prepared::new(effects)?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[DUE].remove(Self::due_key(job))?.is_none() {
                return Ok(Applied::JobGone);
            }
            trees[DUE].insert(Self::due_key(next), encode(next).map_err(abort)?)?;
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
    }

    fn outbox_ready(
        &self,
        now: DateTime<Utc>,
        max_queues: usize,
        per_queue: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<OutboxBatch, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut batch = OutboxBatch::default();
        for item in self.ready.iter() {
            if batch.queues.len() >= max_queues {
                break;
            }
            let (key, _) = item?;
            let (ready_ms, queue) = keys::parse_ready(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed outbox readiness key".into()))?;
            if ready_ms > now_ms {
                batch.next_ready = DateTime::from_timestamp_millis(ready_ms);
                break;
            }
            if skip(&queue) {
                continue;
            }
            let prefix = keys::queue_prefix(&queue);
            let mut entries = Vec::new();
            for item in self.queue_index.scan_prefix(&prefix).take(per_queue) {
                let (key, _) = item?;
                let seq_bytes: [u8; 8] = key[prefix.len()..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed outbox queue key".into()))?;
                let seq = u64::from_be_bytes(seq_bytes);
                if let Some(bytes) = self.outbox.get(keys::sequence(seq))? {
                    entries.push(decode::<OutboxEntry>(&bytes)?);
                }
            }
            if !entries.is_empty() {
                batch.queues.push(entries);
            }
        }
        Ok(batch)
    }

    fn outbox_done(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[OUTBOX].remove(keys::sequence(entry.seq))?.is_none() {
                return Ok(Applied::JobGone);
            }
            trees[QUEUE_INDEX].remove(keys::queue_entry(&entry.queue, entry.seq))?;
            let Some(mut state) = Self::queue_state(trees, &entry.queue)? else {
                return Ok(Applied::Written);
            };
            state.len = state.len.saturating_sub(1);
            if state.len == 0 {
                trees[QUEUES].remove(keys::queue(&entry.queue))?;
                trees[READY].remove(keys::ready(state.ready_ms, &entry.queue))?;
            } else {
                trees[QUEUES].insert(keys::queue(&entry.queue), encode(&state).map_err(abort)?)?;
            }
            Ok(Applied::Written)
        }))
        .map(drop)
    }

    fn outbox_retry(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[OUTBOX].get(keys::sequence(entry.seq))?.is_none() {
                return Ok(Applied::JobGone);
            }
            trees[OUTBOX].insert(keys::sequence(entry.seq), encode(entry).map_err(abort)?)?;
            let len = match Self::queue_state(trees, &entry.queue)? {
                Some(state) => {
                    // Leave the old place in the readiness index.
                    trees[READY].remove(keys::ready(state.ready_ms, &entry.queue))?;
                    state.len
                }
                None => 1,
            };
            let state = QueueState {
                ready_ms: entry.next_attempt_at.timestamp_millis(),
                len,
            };
            trees[READY].insert(keys::ready(state.ready_ms, &entry.queue), &[])?;
            trees[QUEUES].insert(keys::queue(&entry.queue), encode(&state).map_err(abort)?)?;
            Ok(Applied::Written)
        }))
        .map(drop)
    }

    fn outbox_stats(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let oldest = match self.outbox.first()? {
            Some((_, value)) => Some(decode::<OutboxEntry>(&value)?.created_at),
            None => None,
        };
        Ok((self.outbox.len(), oldest))
    }

    fn remember_delivery(&self, timestamp_secs: i64, signature: &[u8]) -> Result<bool, StoreError> {
        let key = keys::replay(timestamp_secs, signature);
        let fresh = self
            .replay
            .compare_and_swap(key, None as Option<&[u8]>, Some(&[] as &[u8]))?
            .is_ok();
        Ok(fresh)
    }

    fn forget_deliveries_before(&self, timestamp_secs: i64) -> Result<usize, StoreError> {
        let end = keys::replay(timestamp_secs, &[]);
        let mut removed = 0;
        for item in self.replay.range(..end) {
            let (key, _) = item?;
            self.replay.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn mappings(&self) -> Result<Vec<Mapping>, StoreError> {
        Self::decode_all(self.mappings.iter(), usize::MAX)
    }

    fn put_mapping(&self, mapping: &Mapping, audit: AuditRecord) -> Result<(), StoreError> {
        let key = keys::mapping(
            mapping.group.as_str(),
            &mapping.destination.platform.to_string(),
            mapping.destination.channel.as_str(),
        );
        let value = encode(mapping)?;
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let effects = Prepared::new(&effects)?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            trees[MAPPINGS].insert(key.as_slice(), value.as_slice())?;
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
        .map(drop)
    }

    fn remove_mapping(
        &self,
        group: &GroupName,
        destination: &Destination,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let key = keys::mapping(
            group.as_str(),
            &destination.platform.to_string(),
            destination.channel.as_str(),
        );
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let effects = Prepared::new(&effects)?;
        let applied = finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[MAPPINGS].remove(key.as_slice())?.is_none() {
                return Err(ConflictableTransactionError::Abort(Abort::Skipped));
            }
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))?;
        Ok(applied == Applied::Written)
    }

    fn audit_head(&self) -> Result<ChainHead, StoreError> {
        match self.meta.get(keys::AUDIT_HEAD)? {
            Some(bytes) => decode(&bytes),
            None => Ok(ChainHead::genesis()),
        }
    }

    fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        Self::decode_all(
            self.audit.range(keys::sequence(after.saturating_add(1))..),
            limit,
        )
    }

    fn audit_events_before(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        Self::decode_all(self.audit.range(..keys::sequence(before)).rev(), limit)
    }

    fn verify_audit(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        let head = self.audit_head()?;
        let mut events = Vec::new();
        for item in self.audit.iter() {
            let (_, value) = item?;
            events.push(decode::<AuditEvent>(&value)?);
        }
        Ok(verify_chain(events, &head))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use chrono::SubsecRound;

    use super::*;
    use crate::domain::audit::AuditAction;
    use crate::domain::duration::HumanDuration;
    use crate::domain::ids::{GroupName, Platform, UserId};
    use crate::domain::job::JobKind;
    use crate::domain::message::Outgoing;

    fn alice() -> Actor {
        Actor::new(Platform::Slack, UserId::new("U0ALICE"), "alice")
    }

    fn new_request() -> AccessRequest {
        AccessRequest::file(
            RequestId::generate(),
            alice(),
            GroupName::parse("prod-db").unwrap(),
            HumanDuration::parse("1h").unwrap(),
            "testing".into(),
            None,
            false,
            Utc::now(),
        )
        .0
    }

    fn audit(detail: &str) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            action: AuditAction::Requested,
            actor: None,
            request: None,
            group: None,
            detail: detail.into(),
        }
    }

    fn write(store: &SledStore, request: &AccessRequest) {
        store
            .apply(&request.id, None, &mut |_| {
                Some(Write {
                    request: Some(request.clone()),
                    effects: Effects::default(),
                })
            })
            .unwrap();
    }

    #[test]
    fn live_requests_and_principal_owners_follow_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let pending = new_request();
        write(&store, &pending);
        assert!(
            store.live_requests().unwrap().is_empty(),
            "pending holds nothing"
        );

        let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
        let (approved, _) = pending.approve(&lead, true, 1, Utc::now()).unwrap();
        write(&store, &approved);
        assert_eq!(store.live_requests().unwrap(), vec![approved.clone()]);
        let (active, _) = approved.activate(Utc::now(), "alice_login").unwrap();
        write(&store, &active);
        assert_eq!(store.live_requests().unwrap(), vec![active.clone()]);
        assert_eq!(
            store.principal_owner("prod-db", "alice_login").unwrap(),
            Some(alice())
        );
        assert_eq!(store.principal_owner("other", "alice_login").unwrap(), None);

        let (expired, _) = active.expire(active.expires_at().unwrap()).unwrap();
        write(&store, &expired);
        assert!(store.live_requests().unwrap().is_empty());
        assert!(store
            .principal_owner("prod-db", "alice_login")
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_store_from_before_the_indexes_gets_them_built_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let active = {
            let store = SledStore::open(dir.path()).unwrap();
            let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
            let (approved, _) = new_request().approve(&lead, true, 1, Utc::now()).unwrap();
            let (active, _) = approved.activate(Utc::now(), "alice_login").unwrap();
            write(&store, &active);
            // As an older version left it: no index, no marker.
            store.live.clear().unwrap();
            store.principals.clear().unwrap();
            store.meta.remove(keys::LIVE_INDEX_BUILT).unwrap();
            store.flush().unwrap();
            active
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.live_requests().unwrap(), vec![active]);
        assert_eq!(
            store.principal_owner("prod-db", "alice_login").unwrap(),
            Some(alice())
        );
    }

    #[test]
    fn apply_writes_request_effects_and_index_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let request = new_request();
        let job = Job {
            id: store.next_id().unwrap(),
            due_at: Utc::now(),
            attempt: 0,
            lane: String::new(),
            kind: JobKind::Activate {
                request: request.id.clone(),
            },
        };
        let applied = store
            .apply(&request.id, None, &mut |current| {
                assert!(current.is_none());
                Some(Write {
                    request: Some(request.clone()),
                    effects: Effects {
                        audit: vec![audit("one"), audit("two")],
                        jobs: vec![job.clone()],
                        outbox: vec![Outgoing::RefreshCards {
                            request: request.id.clone(),
                        }],
                    },
                })
            })
            .unwrap();
        assert_eq!(applied, Applied::Written);
        assert_eq!(store.get_request(&request.id).unwrap().unwrap(), request);
        assert_eq!(store.requests_of(&alice()).unwrap().len(), 1);
        assert_eq!(
            // A moment later: keys round due times up to the millisecond.
            store
                .due_jobs(Utc::now() + chrono::Duration::seconds(1), 10, &|_| false)
                .unwrap()
                .jobs,
            vec![job.clone()]
        );
        let ready = store
            .outbox_ready(Utc::now() + chrono::Duration::seconds(1), 10, 10, &|_| {
                false
            })
            .unwrap();
        assert_eq!(ready.queues.len(), 1);
        assert_eq!(store.audit_head().unwrap().seq, 2);
        assert_eq!(store.verify_audit().unwrap(), Ok(2));

        // Consuming the job twice: the second run finds it gone and writes nothing.
        let mut calls = 0;
        let first = store
            .apply(&request.id, Some(&job), &mut |_| {
                calls += 1;
                Some(Write::default())
            })
            .unwrap();
        let second = store
            .apply(&request.id, Some(&job), &mut |_| {
                calls += 1;
                Some(Write::default())
            })
            .unwrap();
        assert_eq!(
            (first, second, calls),
            (Applied::Written, Applied::JobGone, 1)
        );
    }

    #[test]
    fn a_job_never_comes_up_before_its_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let job = Job {
            id: store.next_id().unwrap(),
            due_at: at("2026-11-23T10:00:00.000500Z"),
            attempt: 0,
            lane: String::new(),
            kind: JobKind::Expire {
                request: RequestId::generate(),
            },
        };
        store
            .record(&Effects {
                jobs: vec![job.clone()],
                ..Effects::default()
            })
            .unwrap();
        let early = store
            .due_jobs(at("2026-11-23T10:00:00.000Z"), 10, &|_| false)
            .unwrap();
        assert!(early.jobs.is_empty(), "half a millisecond early");
        assert_eq!(early.next_due, Some(at("2026-11-23T10:00:00.001Z")));
        let due = store
            .due_jobs(at("2026-11-23T10:00:00.001Z"), 10, &|_| false)
            .unwrap();
        assert_eq!(due.jobs, vec![job]);
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let request = new_request();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .apply(&request.id, None, &mut |_| {
                    Some(Write {
                        request: Some(request.clone()),
                        effects: Effects {
                            audit: vec![audit("x")],
                            ..Effects::default()
                        },
                    })
                })
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get_request(&request.id).unwrap(), Some(request));
        assert_eq!(store.verify_audit().unwrap(), Ok(1));
    }

    #[test]
    fn mappings_persist_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let mapping = crate::store::Mapping {
            group: GroupName::parse("prod-db").unwrap(),
            destination: crate::domain::ids::Destination {
                platform: Platform::Slack,
                channel: crate::domain::ids::ChannelId::new("C0DBA"),
            },
            by: alice(),
            at: Utc::now(),
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put_mapping(&mapping, audit("mapped C0DBA")).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.mappings().unwrap(), vec![mapping]);
        assert_eq!(store.audit_events(0, 10).unwrap()[0].detail, "mapped C0DBA");
    }

    fn notice(channel: &str, text: &str) -> Outgoing {
        Outgoing::ChannelNotice {
            to: crate::domain::ids::Destination {
                platform: Platform::Slack,
                channel: crate::domain::ids::ChannelId::new(channel),
            },
            text: text.into(),
        }
    }

    fn owe(store: &SledStore, messages: Vec<Outgoing>) {
        store
            .record(&Effects {
                outbox: messages,
                ..Effects::default()
            })
            .unwrap();
    }

    fn texts(queue: &[OutboxEntry]) -> Vec<String> {
        queue
            .iter()
            .map(|e| match &e.message {
                Outgoing::ChannelNotice { text, .. } => text.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_queue_that_waits_holds_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        owe(&store, vec![notice("C0BUSY", "a1"), notice("C0BUSY", "a2")]);
        owe(&store, vec![notice("C0QUIET", "b1")]);
        let later = Utc::now() + chrono::Duration::seconds(1);
        let batch = store.outbox_ready(later, 10, 10, &|_| false).unwrap();
        assert_eq!(
            batch.queues.iter().map(|q| texts(q)).collect::<Vec<_>>(),
            vec![vec!["a1", "a2"], vec!["b1"]],
            "each queue in order, the older queue first"
        );
        // The busy channel is throttled for a minute: its head waits, and
        // with it the rest of its queue, but nothing else.
        let mut head = batch.queues[0][0].clone();
        head.attempts = 1;
        head.next_attempt_at = later + chrono::Duration::minutes(1);
        store.outbox_retry(&head).unwrap();
        let batch = store.outbox_ready(later, 10, 10, &|_| false).unwrap();
        assert_eq!(batch.queues.len(), 1);
        assert_eq!(texts(&batch.queues[0]), vec!["b1"]);
        assert_eq!(
            batch.next_ready,
            Some(head.next_attempt_at.trunc_subsecs(3))
        );
        // A queue being delivered is passed over.
        let skipping = store
            .outbox_ready(later, 10, 10, &|q| q.contains("C0QUIET"))
            .unwrap();
        assert!(skipping.queues.is_empty());
        // Delivered: the quiet queue is gone; the busy one comes back in time.
        store.outbox_done(&batch.queues[0][0]).unwrap();
        store.outbox_done(&batch.queues[0][0]).unwrap();
        let then = head.next_attempt_at + chrono::Duration::milliseconds(1);
        let batch = store.outbox_ready(then, 10, 10, &|_| false).unwrap();
        assert_eq!(batch.queues.len(), 1);
        assert_eq!(texts(&batch.queues[0]), vec!["a1", "a2"]);
        assert_eq!(batch.queues[0][0].attempts, 1);
        assert_eq!(store.outbox_stats().unwrap().0, 2);
    }

    #[test]
    fn a_message_owed_while_its_queue_empties_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        owe(&store, vec![notice("C0A", "first")]);
        let later = || Utc::now() + chrono::Duration::seconds(1);
        let first = store
            .outbox_ready(later(), 10, 10, &|_| false)
            .unwrap()
            .queues[0][0]
            .clone();
        owe(&store, vec![notice("C0A", "second")]);
        store.outbox_done(&first).unwrap();
        let batch = store.outbox_ready(later(), 10, 10, &|_| false).unwrap();
        assert_eq!(texts(&batch.queues[0]), vec!["second"]);
        store.outbox_done(&batch.queues[0][0]).unwrap();
        assert!(store
            .outbox_ready(later(), 10, 10, &|_| false)
            .unwrap()
            .queues
            .is_empty());
        assert_eq!(store.outbox_stats().unwrap(), (0, None));
    }

    #[test]
    fn filing_counts_against_the_persons_quota_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
        let limits = FilingLimits {
            per_minute: 100,
            pending: 5,
        };
        let now = Utc::now();
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .file(&new_request(), &Effects::default(), limits, now)
                        .unwrap()
                })
            })
            .collect();
        let outcomes: Vec<Filed> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let written = outcomes.iter().filter(|o| **o == Filed::Written).count();
        assert_eq!(written, 5, "{outcomes:?}");
        assert_eq!(store.requests_of(&alice()).unwrap().len(), 5);
        // One is decided: there is room for one more.
        let pending = store.requests_of(&alice()).unwrap().remove(0);
        let (cancelled, _) = pending.cancel(&alice(), now).unwrap();
        write(&store, &cancelled);
        assert_eq!(
            store
                .file(&new_request(), &Effects::default(), limits, now)
                .unwrap(),
            Filed::Written
        );
        assert!(matches!(
            store
                .file(&new_request(), &Effects::default(), limits, now)
                .unwrap(),
            Filed::Refused(QuotaRefusal::TooManyPending { count: 5 })
        ));
    }

    #[test]
    fn an_old_outbox_and_old_pending_requests_are_indexed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let pending = new_request();
        {
            let store = SledStore::open(dir.path()).unwrap();
            owe(&store, vec![notice("C0A", "from before")]);
            write(&store, &pending);
            // As an older version left it: no queue indexes, no quotas.
            for tree in [
                &store.queue_index,
                &store.queues,
                &store.ready,
                &store.quotas,
            ] {
                tree.clear().unwrap();
            }
            store.meta.remove(keys::OUTBOX_QUEUES_BUILT).unwrap();
            store.meta.remove(keys::QUOTAS_BUILT).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let later = Utc::now() + chrono::Duration::seconds(1);
        let batch = store.outbox_ready(later, 10, 10, &|_| false).unwrap();
        assert_eq!(texts(&batch.queues[0]), vec!["from before"]);
        let one_pending = FilingLimits {
            per_minute: 10,
            pending: 1,
        };
        assert!(matches!(
            store
                .file(&new_request(), &Effects::default(), one_pending, Utc::now())
                .unwrap(),
            Filed::Refused(QuotaRefusal::TooManyPending { count: 1 })
        ));
    }

    #[test]
    fn replays_are_detected_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.remember_delivery(1000, b"sig").unwrap());
        assert!(!store.remember_delivery(1000, b"sig").unwrap());
        assert!(store.remember_delivery(1001, b"sig").unwrap());
        assert_eq!(store.forget_deliveries_before(1001).unwrap(), 1);
        assert!(store.remember_delivery(1000, b"sig").unwrap());
    }
}
