//! The sled implementation of [`Store`].

use std::cell::RefCell;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::keys;
use super::{
    Applied, DueJobs, Effects, Mapping, OutboxEntry, Store, StoreError, SweepRun, TeamsContact,
    Write,
};
use crate::domain::audit::{verify_chain, AuditEvent, AuditRecord, ChainBreak, ChainHead};
use crate::domain::ids::{Actor, Destination, GroupName, RequestId};
use crate::domain::job::Job;
use crate::domain::request::AccessRequest;

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

pub struct SledStore {
    db: sled::Db,
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
    /// The trees a state change may touch, in the order of the constants above.
    tx_trees: Vec<Tree>,
}

/// Why a transaction closure stopped: the caller chose to write nothing,
/// or something failed.
enum Abort {
    Skipped,
    Failed(StoreError),
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
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

impl SledStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .mode(sled::Mode::HighThroughput)
            // No background flush: every state change is flushed explicitly
            // (group commit) before anyone is told, and the outbox worker
            // flushes its bookkeeping after each pass. A timer-driven flush
            // on top only competed with those and lengthened the ack tail
            // (docs/BENCHMARKS.md).
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                    StoreError::Corrupt(format!(
                        "{} is in use by another jitbot process (the store is single-process: stop the server, or use the HTTP API)",
                        dir.display()
                    ))
                }
                other => StoreError::Sled(other),
            })?;
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
        ];
        let store = SledStore {
            db,
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
            tx_trees,
        };
        store.build_indexes()?;
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

    fn write_effects(trees: &[TransactionalTree], effects: &Effects) -> Result<(), TxError> {
        if !effects.audit.is_empty() {
            let mut head = match trees[META].get(keys::AUDIT_HEAD)? {
                Some(bytes) => decode::<ChainHead>(&bytes).map_err(abort)?,
                None => ChainHead::genesis(),
            };
            for record in &effects.audit {
                let (event, next) = record.clone().seal(&head);
                trees[AUDIT].insert(keys::sequence(event.seq), encode(&event).map_err(abort)?)?;
                head = next;
            }
            trees[META].insert(keys::AUDIT_HEAD, encode(&head).map_err(abort)?)?;
        }
        for job in &effects.jobs {
            trees[DUE].insert(Self::due_key(job), encode(job).map_err(abort)?)?;
        }
        let now = chrono::Utc::now();
        for message in &effects.outbox {
            let seq = trees[OUTBOX].generate_id()?;
            let entry = OutboxEntry {
                seq,
                message: message.clone(),
                attempts: 0,
                next_attempt_at: now,
                created_at: now,
                last_error: None,
            };
            trees[OUTBOX].insert(keys::sequence(seq), encode(&entry).map_err(abort)?)?;
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
                trees[REQUESTS].insert(request_key.as_slice(), encode(request).map_err(abort)?)?;
                if current.is_none() {
                    trees[BY_USER]
                        .insert(keys::user_request(&request.requester, &request.id), &[])?;
                }
                if request.may_hold_access() {
                    trees[LIVE].insert(request_key.as_slice(), &[])?;
                } else {
                    trees[LIVE].remove(request_key.as_slice())?;
                }
                if let Some(principal) = &request.principal {
                    trees[PRINCIPALS].insert(
                        keys::principal_owner(request.group.as_str(), principal),
                        encode(&request.requester).map_err(abort)?,
                    )?;
                }
            }
            Self::write_effects(trees, &write.effects)?;
            Ok(Applied::Written)
        }))
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
        finish(self.tx_trees.as_slice().transaction(|trees| {
            Self::write_effects(trees, effects)?;
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
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[DUE].remove(Self::due_key(job))?.is_none() {
                return Ok(Applied::JobGone);
            }
            trees[DUE].insert(Self::due_key(next), encode(next).map_err(abort)?)?;
            Self::write_effects(trees, effects)?;
            Ok(Applied::Written)
        }))
    }

    fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Self::decode_all(self.outbox.iter(), limit)
    }

    fn outbox_stats(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let oldest = match self.outbox.first()? {
            Some((_, value)) => Some(decode::<OutboxEntry>(&value)?.created_at),
            None => None,
        };
        Ok((self.outbox.len(), oldest))
    }

    fn outbox_remove(&self, seq: u64) -> Result<(), StoreError> {
        self.outbox.remove(keys::sequence(seq))?;
        Ok(())
    }

    fn outbox_update(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox
            .insert(keys::sequence(entry.seq), encode(entry)?)?;
        Ok(())
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
        assert_eq!(store.outbox_entries(10).unwrap().len(), 1);
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
