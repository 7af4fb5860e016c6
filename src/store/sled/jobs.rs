//! The due-index: jobs by due time, read from its head.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::Transactional;

use super::tx::{abort, decode, encode, finish, Prepared};
use super::{keys, SledStore, DUE};
use crate::domain::job::Job;
use crate::store::{Applied, Claimed, DueJobs, Effects, JobStore, StoreError};

#[async_trait]
impl JobStore for SledStore {
    async fn due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &(dyn Fn(u64) -> bool + Sync),
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
                due.jobs.push(Claimed::sole(decode(&value)?));
            }
        }
        Ok(due)
    }

    async fn reschedule(
        &self,
        job: &Job,
        next: &Job,
        effects: &Effects,
    ) -> Result<Applied, StoreError> {
        let effects = Prepared::new(effects, self.clock.now(), self.audit_key.as_ref())?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[DUE].remove(Self::due_key(job))?.is_none() {
                return Ok(Applied::JobGone);
            }
            trees[DUE].insert(Self::due_key(next), encode(next).map_err(abort)?)?;
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
    }
}
