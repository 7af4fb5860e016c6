//! Stores written by older versions get what they lack built once, on
//! open, each behind a marker in `meta`.

use std::collections::HashMap;

use super::tx::{decode, encode, QueueState};
use super::{keys, SledStore};
use crate::domain::quota::Quota;
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::{OutboxEntry, StoreError};

impl SledStore {
    /// Stores written before the live and principal indexes existed get
    /// them built once, from the requests themselves.
    pub(super) fn build_indexes(&self) -> Result<(), StoreError> {
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
    pub(super) fn build_outbox_queues(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(keys::OUTBOX_QUEUES_BUILT)? {
            return Ok(());
        }
        let mut states: HashMap<String, QueueState> = Default::default();
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
    pub(super) fn build_quotas(&self) -> Result<(), StoreError> {
        if self.meta.contains_key(keys::QUOTAS_BUILT)? {
            return Ok(());
        }
        let mut quotas: HashMap<Vec<u8>, Quota> = Default::default();
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
}
