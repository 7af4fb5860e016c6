//! The outbox: entries in queues, and the queues by readiness.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::Transactional;

use super::tx::{abort, decode, encode, finish, QueueState};
use super::{keys, SledStore, OUTBOX, QUEUES, QUEUE_INDEX, READY};
use crate::store::{Applied, Claimed, OutboxBatch, OutboxEntry, OutboxStore, StoreError};

#[async_trait]
impl OutboxStore for SledStore {
    async fn outbox_ready(
        &self,
        now: DateTime<Utc>,
        max_queues: usize,
        per_queue: usize,
        skip: &(dyn for<'q> Fn(&'q str) -> bool + Sync),
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
                batch.queues.push(Claimed::sole(entries));
            }
        }
        Ok(batch)
    }

    async fn outbox_done(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
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

    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
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

    async fn outbox_stats(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let oldest = match self.outbox.first()? {
            Some((_, value)) => Some(decode::<OutboxEntry>(&value)?.created_at),
            None => None,
        };
        Ok((self.outbox.len(), oldest))
    }
}
