//! What every transaction shares: encoding, the reasons a transaction
//! stops, effects prepared outside it, and the writes of a request and its
//! effects inside it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{
    keys, SledStore, AUDIT, BY_USER, DUE, LIVE, META, OUTBOX, PRINCIPALS, QUEUES, QUEUE_INDEX,
    QUOTAS, READY, REQUESTS,
};
use crate::domain::audit::{AuditEvent, AuditKey, AuditRecord, ChainHead, Link};
use crate::domain::job::Job;
use crate::domain::quota::{Quota, QuotaRefusal};
use crate::domain::request::AccessRequest;
use crate::store::{Applied, Effects, StoreError};

/// Why a write to a keyed audit chain without the key is refused.
pub(crate) const KEY_NEEDED: &str =
    "the audit chain is keyed (HMAC-SHA256): set JITBOT_AUDIT_KEY to write to it";

/// Why a transaction closure stopped: the caller chose to write nothing,
/// a person's quota refused a new request, or something failed.
pub(super) enum Abort {
    Skipped,
    Refused(QuotaRefusal),
    Failed(StoreError),
}

/// Effects encoded before their transaction. sled runs every transaction
/// under one process-wide lock, so what can be done outside — serialising
/// jobs and messages — is done outside: the shorter each transaction, the
/// more of them a second.
pub(super) struct Prepared<'a> {
    audit: &'a [AuditRecord],
    /// The key the audit records are chained under, if there is one.
    audit_key: Option<&'a AuditKey>,
    /// Due-index key and job.
    jobs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Queue, the queue as JSON, and the message as JSON.
    outbox: Vec<(String, String, String)>,
    now_json: String,
    now_ms: i64,
}

impl<'a> Prepared<'a> {
    pub(super) fn new(
        effects: &'a Effects,
        now: chrono::DateTime<chrono::Utc>,
        audit_key: Option<&'a AuditKey>,
    ) -> Result<Prepared<'a>, StoreError> {
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
            audit_key,
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
pub(super) struct QueueState {
    pub(super) ready_ms: i64,
    pub(super) len: u64,
}

pub(super) type TxError = ConflictableTransactionError<Abort>;

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn abort(error: StoreError) -> TxError {
    ConflictableTransactionError::Abort(Abort::Failed(error))
}

pub(super) fn finish(
    result: Result<Applied, TransactionError<Abort>>,
) -> Result<Applied, StoreError> {
    match result {
        Ok(applied) => Ok(applied),
        Err(TransactionError::Abort(Abort::Skipped)) => Ok(Applied::Skipped),
        Err(TransactionError::Abort(Abort::Failed(e))) => Err(e),
        Err(TransactionError::Abort(Abort::Refused(refusal))) => Err(StoreError::Corrupt(format!(
            "a quota refusal escaped its transaction: {refusal}"
        ))),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

impl SledStore {
    /// Keep the requester's count of waiting requests in step with a
    /// request moving into or out of `pending`.
    pub(super) fn track_pending(
        trees: &[TransactionalTree],
        before: Option<&AccessRequest>,
        after: &AccessRequest,
    ) -> Result<(), TxError> {
        if !Quota::is_moved_by(before, after) {
            return Ok(());
        }
        let key = keys::quota(&after.requester);
        let mut quota: Quota = match trees[QUOTAS].get(&key)? {
            Some(bytes) => decode(&bytes).map_err(abort)?,
            None => Quota::default(),
        };
        quota.follow(before, after);
        trees[QUOTAS].insert(key, encode(&quota).map_err(abort)?)?;
        Ok(())
    }

    /// Write `request` and the indexes that follow it, knowing what it
    /// was before (`current`).
    pub(super) fn put_request(
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

    pub(super) fn queue_state(
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
    pub(super) fn due_key(job: &Job) -> Vec<u8> {
        let sub_millisecond = job.due_at.timestamp_subsec_nanos() % 1_000_000 != 0;
        keys::due(
            job.due_at.timestamp_millis() + i64::from(sub_millisecond),
            job.id,
        )
    }

    /// A plain link after a keyed one would break the chain for good:
    /// without the key, a keyed log takes no more events.
    fn refuse_plain_after_keyed(audit: &TransactionalTree, last: u64) -> Result<(), TxError> {
        let Some(bytes) = audit.get(keys::sequence(last))? else {
            return Ok(());
        };
        let event = decode::<AuditEvent>(&bytes).map_err(abort)?;
        if event.chain == Link::Keyed {
            return Err(abort(StoreError::Corrupt(KEY_NEEDED.to_string())));
        }
        Ok(())
    }

    pub(super) fn write_effects(
        trees: &[TransactionalTree],
        effects: &Prepared<'_>,
    ) -> Result<(), TxError> {
        if !effects.audit.is_empty() {
            let mut head = match trees[META].get(keys::AUDIT_HEAD)? {
                Some(bytes) => decode::<ChainHead>(&bytes).map_err(abort)?,
                None => ChainHead::genesis(),
            };
            if effects.audit_key.is_none() && head.seq > 0 {
                Self::refuse_plain_after_keyed(&trees[AUDIT], head.seq)?;
            }
            for record in effects.audit {
                let (event, next) = record.clone().seal_with(&head, effects.audit_key);
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

    pub(super) fn decode_all<T: DeserializeOwned>(
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
