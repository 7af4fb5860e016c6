//! The activity sampler: each group with `idle_release` or `sweep_unused`
//! is sampled every `activity_interval` — sooner when an idle warning or
//! release falls due before that — counted from its last round as recorded
//! in the store (beside the sweep times, as `activity:<group>`), so a
//! restart neither skips a round nor repeats one early. Replicas sharing a
//! store claim each round, so a group is sampled once per interval, not
//! once per replica.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::policy::GroupPolicy;
use crate::engine::Engine;
use crate::store::SweepRun;

/// Look again at least this often, so a wall-clock jump delays a round by
/// no more than this.
const MAX_SLEEP: Duration = Duration::from_secs(30);

fn run_name(group: &GroupPolicy) -> String {
    format!("activity:{}", group.name)
}

/// When `group`'s next round is due, as recorded.
async fn due(engine: &Engine, group: &GroupPolicy) -> DateTime<Utc> {
    let interval = group.limits.activity_interval.as_chrono();
    match engine.store().last_sweep(&run_name(group)).await {
        Ok(Some(run)) => run.next_at.unwrap_or(run.at + interval),
        Ok(None) => engine.now(),
        Err(error) => {
            tracing::error!(group = %group.name, %error, "cannot read when activity was last sampled");
            engine.now() + interval
        }
    }
}

/// Sample `group` — unless another replica is sampling it now, or did
/// since this one looked.
async fn sample_unless_another_does(engine: &Engine, group: &GroupPolicy) {
    let Some(lease) =
        super::claim_periodic(engine, &run_name(group), group, "activity sampling").await
    else {
        return;
    };
    if due(engine, group).await > engine.now() {
        return;
    }
    let started = engine.now();
    tokio::select! {
        sampled = engine.sample_activity(group) => {
            let next_at = match sampled {
                Ok(next_at) => next_at,
                Err(error) => {
                    tracing::error!(group = %group.name, %error, "activity sampling failed");
                    engine.now() + group.limits.activity_interval.as_chrono()
                }
            };
            let run = SweepRun { at: started, listed: true, next_at: Some(next_at) };
            if let Err(error) = engine.store().put_last_sweep(&run_name(group), &run).await {
                tracing::error!(group = %group.name, %error, "cannot record the activity sampling");
            }
        }
        _ = lease.lost() => {
            tracing::warn!(group = %group.name, "stopped an activity sampling whose claim was lost");
        }
    }
}

/// Sample activity until `cancel` fires (looking again whenever `wake` is
/// notified). Returns at once if no group watches activity.
pub async fn run(engine: Arc<Engine>, wake: Arc<Notify>, cancel: CancellationToken) {
    let groups: Vec<GroupPolicy> = engine
        .policy()
        .groups
        .iter()
        .filter(|g| g.watches_activity())
        .cloned()
        .collect();
    if groups.is_empty() {
        return;
    }
    loop {
        let mut next: Option<DateTime<Utc>> = None;
        for group in &groups {
            let mut due_at = due(&engine, group).await;
            if due_at <= engine.now() {
                sample_unless_another_does(&engine, group).await;
                // Still due: another replica holds the claim (or the store
                // failed); look again in a moment.
                let retry = group
                    .limits
                    .activity_interval
                    .as_chrono()
                    .min(chrono::Duration::seconds(5));
                due_at = due(&engine, group).await.max(engine.now() + retry);
            }
            next = Some(next.map_or(due_at, |next| next.min(due_at)));
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
