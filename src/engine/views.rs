//! What operators and the API read: readiness, the metrics' snapshot of
//! the store, the audit log in order.

use super::{Engine, EngineError};
use crate::domain::audit::AuditEvent;
use crate::domain::request::AccessRequest;
use crate::telemetry::{readiness, Observed, Snapshot};

/// "Expiring soon" in the metrics.
const EXPIRING_SOON: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Whether the server is ready, with one line per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub lines: Vec<String>,
}

impl Engine {
    /// The approval card of `request` as it stands (a bundle's shows all
    /// its groups).
    pub async fn card(&self, request: &AccessRequest) -> crate::chat::Card {
        crate::outbox::current_card(self.store.as_ref(), &self.policy, request).await
    }

    /// Ready when the store answers, the scheduler is running and the
    /// outbox is not stuck.
    pub async fn readiness(&self) -> Readiness {
        let store_ok = match self.store.audit_head().await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, "readiness: the store does not answer");
                false
            }
        };
        let (waiting, oldest) = self.store.outbox_stats().await.unwrap_or((0, None));
        let (ready, lines) = readiness(&Observed {
            now: self.now(),
            store_ok,
            scheduler_seen: self.health.scheduler_seen(),
            outbox_seen: self.health.outbox_seen(),
            outbox_progressed: self.health.outbox_progressed(),
            outbox_waiting: waiting,
            outbox_oldest: oldest,
        });
        Readiness { ready, lines }
    }

    /// The Prometheus text exposition, with the store's gauges read now.
    pub async fn metrics_text(&self) -> Result<String, EngineError> {
        let now = self.now();
        let grants = self.active_grants().await?;
        let expiring_soon = grants
            .iter()
            .filter(|g| g.expires_at().is_some_and(|at| at - now <= EXPIRING_SOON))
            .count();
        let (waiting, oldest) = self.store.outbox_stats().await?;
        Ok(self.metrics.render(Snapshot {
            active_grants: grants.len() as i64,
            expiring_soon: expiring_soon as i64,
            outbox_depth: waiting as i64,
            outbox_oldest_seconds: oldest.map_or(0, |oldest| (now - oldest).num_seconds().max(0)),
        }))
    }

    /// Audit events after sequence `after`, oldest first, at most `limit`.
    pub async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        Ok(self.store.audit_events(after, limit).await?)
    }

    /// The audit chain's head: its last event's sequence number and hash.
    pub async fn audit_head(&self) -> Result<crate::domain::audit::ChainHead, EngineError> {
        Ok(self.store.audit_head().await?)
    }

    /// Check the whole audit chain; the number of events verified.
    pub async fn verify_audit(
        &self,
    ) -> Result<Result<u64, crate::domain::audit::ChainBreak>, EngineError> {
        Ok(self.store.verify_audit().await?)
    }
}
