//! Requests and their lifecycle changes, with their effects, in one
//! transaction each.

use std::cell::RefCell;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::tx::{abort, decode, encode, finish, Abort, Prepared};
use super::{keys, SledStore, DUE, QUOTAS, REQUESTS};
use crate::domain::ids::{Actor, RequestId};
use crate::domain::job::Job;
use crate::domain::quota::{FilingLimits, Quota};
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::{Applied, Effects, Filed, RequestStore, StoreError, Write};

#[async_trait]
impl RequestStore for SledStore {
    async fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    async fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        self.requests
            .get(keys::request(id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn requests_of(&self, user: &Actor) -> Result<Vec<AccessRequest>, StoreError> {
        let prefix = keys::user_prefix(user);
        let mut requests = Vec::new();
        for item in self.by_user.scan_prefix(&prefix) {
            let (key, _) = item?;
            let id_text = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
            let id = RequestId::parse(&id_text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(request) = self.get_request(&id).await? {
                requests.push(request);
            }
        }
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(requests)
    }

    async fn apply(
        &self,
        id: &RequestId,
        consume_job: Option<&Job>,
        change: &mut (dyn for<'r> FnMut(Option<&'r AccessRequest>) -> Option<Write> + Send),
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
            Self::write_effects(
                trees,
                &Prepared::new(&write.effects, self.clock.now(), self.audit_key.as_ref())
                    .map_err(abort)?,
            )?;
            Ok(Applied::Written)
        }))
    }

    async fn file(
        &self,
        requests: &[AccessRequest],
        effects: &Effects,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<Filed, StoreError> {
        let Some(first) = requests.first() else {
            return Ok(Filed::Written);
        };
        let quota_key = keys::quota(&first.requester);
        let encoded = requests
            .iter()
            .map(|request| Ok((keys::request(&request.id), encode(request)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let effects = Prepared::new(effects, self.clock.now(), self.audit_key.as_ref())?;
        let result = self.tx_trees.as_slice().transaction(|trees| {
            for (key, _) in &encoded {
                if trees[REQUESTS].get(key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(Abort::Skipped));
                }
            }
            let mut quota: Quota = match trees[QUOTAS].get(&quota_key)? {
                Some(bytes) => decode(&bytes).map_err(abort)?,
                None => Quota::default(),
            };
            for request in requests {
                quota
                    .admit_request(request, limits, now)
                    .map_err(|refusal| {
                        ConflictableTransactionError::Abort(Abort::Refused(refusal))
                    })?;
            }
            trees[QUOTAS].insert(quota_key.as_slice(), encode(&quota).map_err(abort)?)?;
            // The quota counts them as waiting already; counting again is a no-op.
            for (request, (_, bytes)) in requests.iter().zip(&encoded) {
                Self::put_request(trees, None, request, bytes)?;
            }
            Self::write_effects(trees, &effects)?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(Filed::Written),
            Err(TransactionError::Abort(Abort::Skipped)) => Ok(Filed::IdTaken),
            Err(TransactionError::Abort(Abort::Refused(refusal))) => Ok(Filed::Refused(refusal)),
            Err(TransactionError::Abort(Abort::Failed(e))) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    async fn live_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut requests = Vec::new();
        for item in self.live.iter() {
            let (key, _) = item?;
            if let Some(bytes) = self.requests.get(&key)? {
                requests.push(decode(&bytes)?);
            }
        }
        Ok(requests)
    }

    async fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut requests = Vec::new();
        for item in self.quotas.iter() {
            let (_, bytes) = item?;
            let quota: Quota = decode(&bytes)?;
            for id in quota.pending_ids() {
                if let Some(bytes) = self.requests.get(keys::request(id))? {
                    let request: AccessRequest = decode(&bytes)?;
                    if request.state == RequestState::Pending {
                        requests.push(request);
                    }
                }
            }
        }
        requests.sort_by_key(|r| r.created_at);
        Ok(requests)
    }

    async fn principal_owner(
        &self,
        group: &str,
        principal: &str,
    ) -> Result<Option<Actor>, StoreError> {
        self.principals
            .get(keys::principal_owner(group, principal))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn record(&self, effects: &Effects) -> Result<(), StoreError> {
        let effects = Prepared::new(effects, self.clock.now(), self.audit_key.as_ref())?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
        .map(drop)
    }
}
