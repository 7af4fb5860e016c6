//! What operators and the API read: readiness, the metrics' (cached)
//! reading of the store, the audit log in order.

use super::{Engine, EngineError};
use crate::domain::audit::AuditEvent;
use crate::domain::request::AccessRequest;
use crate::store::StoreError;
use crate::telemetry::{
    readiness, Observed, Snapshot, StoreGauges, StoreReading, STORE_GAUGES_FRESH_FOR,
};

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
    /// outbox is not stuck. The store's part is the cached reading
    /// ([`Engine::store_gauges`]): probing never reads the store itself.
    pub async fn readiness(&self) -> Readiness {
        let reading = self.store_gauges().await;
        let (store_ok, waiting, oldest) = match &reading {
            Ok(gauges) => (true, gauges.outbox_waiting, gauges.outbox_oldest),
            Err(_) => (false, 0, None),
        };
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

    /// The Prometheus text exposition, with the store's gauges as last
    /// read (at most [`STORE_GAUGES_FRESH_FOR`] ago).
    pub async fn metrics_text(&self) -> Result<String, EngineError> {
        let gauges = self
            .store_gauges()
            .await
            .map_err(|error| EngineError::Store(StoreError::Unavailable(error)))?;
        let now = self.now();
        Ok(self.metrics.render(Snapshot {
            active_grants: gauges.active_grants as i64,
            expiring_soon: gauges.expiring_soon as i64,
            outbox_depth: gauges.outbox_waiting as i64,
            outbox_oldest_seconds: gauges
                .outbox_oldest
                .map_or(0, |oldest| (now - oldest).num_seconds().max(0)),
        }))
    }

    /// What the gauges and readiness need from the store: read again only
    /// when the last reading is older than [`STORE_GAUGES_FRESH_FOR`], by
    /// one caller while the others wait for it. A failure is kept as long,
    /// so a store that does not answer is not asked by every probe either.
    async fn store_gauges(&self) -> Result<StoreGauges, String> {
        let mut last = self.metrics.store_reading.lock().await;
        if let Some(reading) = last
            .as_ref()
            .filter(|reading| reading.read_at.elapsed() < STORE_GAUGES_FRESH_FOR)
        {
            return reading.outcome.clone();
        }
        self.metrics.store_gauge_reads.inc();
        let outcome = self.read_store_gauges().await.map_err(|error| {
            tracing::error!(%error, "the store does not answer");
            error.to_string()
        });
        *last = Some(StoreReading {
            read_at: tokio::time::Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    }

    async fn read_store_gauges(&self) -> Result<StoreGauges, EngineError> {
        let now = self.now();
        let grants = self.active_grants().await?;
        let expiring_soon = grants
            .iter()
            .filter(|g| g.expires_at().is_some_and(|at| at - now <= EXPIRING_SOON))
            .count();
        let (outbox_waiting, outbox_oldest) = self.store.outbox_stats().await?;
        Ok(StoreGauges {
            active_grants: grants.len(),
            expiring_soon,
            outbox_waiting,
            outbox_oldest,
        })
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
