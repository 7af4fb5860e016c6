//! The audit log: sealed events in sequence, and the chain's head.

use async_trait::async_trait;

use super::tx::decode;
use super::{keys, SledStore};
use crate::domain::audit::{AuditEvent, ChainBreak, ChainHead, ChainWalk};
use crate::store::{AuditStore, StoreError};

#[async_trait]
impl AuditStore for SledStore {
    async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        match self.meta.get(keys::AUDIT_HEAD)? {
            Some(bytes) => decode(&bytes),
            None => Ok(ChainHead::genesis()),
        }
    }

    async fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        Self::decode_all(
            self.audit.range(keys::sequence(after.saturating_add(1))..),
            limit,
        )
    }

    async fn audit_events_before(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        Self::decode_all(self.audit.range(..keys::sequence(before)).rev(), limit)
    }

    async fn verify_audit_to(
        &self,
        shipped: Option<&ChainHead>,
    ) -> Result<Result<u64, ChainBreak>, StoreError> {
        let head = self.audit_head().await?;
        let mut walk = ChainWalk::new(self.audit_key.as_ref(), shipped);
        for item in self.audit.iter() {
            let (_, value) = item?;
            if let Err(broken) = walk.step(&decode::<AuditEvent>(&value)?) {
                return Ok(Err(broken));
            }
        }
        Ok(walk.finish(&head))
    }
}
