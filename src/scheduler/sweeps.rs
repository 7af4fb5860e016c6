//! The periodic standing-access sweep: each group with `sweep` on is swept
//! every `sweep_interval`, counted from its last sweep as recorded in the
//! store, so restarts neither skip a sweep nor repeat one early.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::policy::SweepMode;
use crate::engine::Engine;

/// Look again at least this often, so a wall-clock jump delays a sweep by
/// no more than this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

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
                if let Err(error) = engine.sweep(group, false).await {
                    tracing::error!(group = %group.name, %error, "sweep failed");
                }
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
