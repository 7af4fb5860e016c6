//! The periodic standing-access sweep: each group with `sweep` on is swept
//! every `sweep_interval`, counted from its last sweep as recorded in the
//! store, so restarts neither skip a sweep nor repeat one early. Replicas
//! sharing a store claim each sweep, so one group is swept by one of them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::policy::{GroupPolicy, SweepMode};
use crate::engine::Engine;

/// Look again at least this often, so a wall-clock jump delays a sweep by
/// no more than this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Sweep `group` — unless another replica sharing the store is sweeping it
/// now, or did since this one looked.
async fn sweep_unless_another_does(engine: &Engine, group: &GroupPolicy) {
    let name = format!("sweep:{}", group.name);
    let Some(lease) = super::claim_periodic(engine, &name, group, "sweep").await else {
        return;
    };
    let interval = group.sweep_interval.as_chrono();
    if let Ok(Some(run)) = engine.store().last_sweep(group.name.as_str()).await {
        if run.at + interval > engine.now() {
            return;
        }
    }
    tokio::select! {
        swept = engine.sweep(group, false) => {
            if let Err(error) = swept {
                tracing::error!(group = %group.name, %error, "sweep failed");
            }
        }
        _ = lease.lost() => {
            tracing::warn!(group = %group.name, "stopped a sweep whose claim was lost");
        }
    }
}

/// Run sweeps until `cancel` fires (looking again whenever `wake` is
/// notified). Returns at once if no group sweeps.
pub async fn run(engine: Arc<Engine>, wake: Arc<Notify>, cancel: CancellationToken) {
    let groups: Vec<_> = engine
        .policy()
        .groups
        .iter()
        .filter(|g| g.sweep != SweepMode::Off)
        .cloned()
        .collect();
    if groups.is_empty() {
        return;
    }
    loop {
        let mut next: Option<DateTime<Utc>> = None;
        for group in &groups {
            let interval = group.sweep_interval.as_chrono();
            let now = engine.now();
            let due = match engine.store().last_sweep(group.name.as_str()).await {
                Ok(Some(run)) => run.at + interval,
                Ok(None) => now,
                Err(error) => {
                    tracing::error!(group = %group.name, %error, "cannot read when the sweep last ran");
                    now + interval
                }
            };
            let due = if due <= now {
                sweep_unless_another_does(&engine, group).await;
                engine.now() + interval
            } else {
                due
            };
            next = Some(next.map_or(due, |next| next.min(due)));
        }
        let wait = next
            .map(|next| (next - engine.now()).to_std().unwrap_or_default())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
