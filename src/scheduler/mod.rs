//! The scheduler: one task over the sled due-index. It reads the first keys
//! of the index (the earliest jobs: O(log n) to find, never a scan of all
//! grants), runs those that are due — several at once, but never two of the
//! same lane — and sleeps until the next one is due, a job finishes, or the
//! engine wakes it for a new job.

pub mod activity;
pub mod sweeps;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::job::Job;
use crate::engine::{Engine, JobWaker};
use crate::store::{Claimed, Store};

/// Jobs that may run at once. Provider calls can be slow (an exec provider
/// may take its whole timeout); a bound keeps a slow provider from holding
/// up every other grant while keeping the number of child processes and
/// connections sane.
const MAX_CONCURRENT_JOBS: usize = 32;

/// Even with nothing due, look again this often, so a wall-clock jump (NTP,
/// suspend) delays nothing by more than this.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// After a job fails with a storage error, wait this long before it runs
/// again, so a broken store is not hammered.
const ERROR_COOLDOWN: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Running {
    ids: HashSet<u64>,
    lanes: HashSet<String>,
}

/// With a store shared by replicas, jobs are claimed a batch at a time and
/// started from here as room frees up: a claim is a transaction, too dear
/// to pay once per job when thousands fall due together.
const CLAIM_AHEAD: usize = MAX_CONCURRENT_JOBS;

pub struct Scheduler {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    wake: Arc<JobWaker>,
    running: Arc<Mutex<Running>>,
    /// Jobs claimed and waiting for room (shared stores only).
    claimed: Mutex<VecDeque<Claimed<Job>>>,
    finished: Arc<Notify>,
    tracker: TaskTracker,
}

/// Claim the periodic task `name` of `group` (a sweep, an activity
/// round) for this process; `None` when another replica holds it or the
/// store cannot say (logged as the failure to claim `what`).
async fn claim_periodic(
    engine: &Engine,
    name: &str,
    group: &crate::domain::policy::GroupPolicy,
    what: &str,
) -> Option<crate::store::Lease> {
    match engine.store().try_lease(name).await {
        Ok(lease) => lease,
        Err(error) => {
            tracing::error!(group = %group.name, %error, "cannot claim the {what}");
            None
        }
    }
}

/// What one pass over the due-index found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatched {
    pub started: usize,
    /// When the earliest job not yet due is due.
    pub next_due: Option<DateTime<Utc>>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, store: Arc<dyn Store>, wake: Arc<JobWaker>) -> Scheduler {
        Scheduler {
            engine,
            store,
            wake,
            running: Arc::new(Mutex::new(Running::default())),
            claimed: Mutex::new(VecDeque::new()),
            finished: Arc::new(Notify::new()),
            tracker: TaskTracker::new(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, VecDeque<Claimed<Job>>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start `claimed` if there is room and its lane is free; otherwise it
    /// comes back.
    fn try_start(&self, claimed: Claimed<Job>, cancel: &CancellationToken) -> Option<Claimed<Job>> {
        {
            let job = &claimed.item;
            let mut running = self.running();
            if running.ids.len() >= MAX_CONCURRENT_JOBS
                || (!job.lane.is_empty() && running.lanes.contains(&job.lane))
            {
                return Some(claimed);
            }
            running.ids.insert(job.id);
            running.lanes.insert(job.lane.clone());
        }
        self.spawn(claimed, cancel.clone());
        None
    }

    /// Start every due job there is room for.
    pub async fn dispatch(&self, cancel: &CancellationToken) -> Dispatched {
        let mut started = 0;
        // First what this process claimed already.
        let waiting: Vec<Claimed<Job>> = self.claimed().drain(..).collect();
        for claimed in waiting {
            if claimed.lease.is_lost() {
                continue;
            }
            match self.try_start(claimed, cancel) {
                None => started += 1,
                Some(claimed) => self.claimed().push_back(claimed),
            }
        }
        let room = MAX_CONCURRENT_JOBS.saturating_sub(self.running().ids.len());
        let shared = self.store.watch_interval().is_some();
        let ahead = self.claimed().len();
        // Alone on the store, look past jobs blocked by a busy lane (but
        // not unboundedly). A shared store claims what it returns and
        // passes over busy lanes itself: claim for the room, and a batch
        // ahead when the batch runs low.
        let wanted = if shared {
            if ahead >= CLAIM_AHEAD / 2 {
                0
            } else {
                room + CLAIM_AHEAD - ahead
            }
        } else if room == 0 {
            0
        } else {
            room + MAX_CONCURRENT_JOBS
        };
        if wanted == 0 {
            return Dispatched {
                started,
                next_due: None,
            };
        }
        let now = self.engine.now();
        // A snapshot of what runs or waits: no lock is held across the
        // store's await.
        let mut passed_over = self.running().ids.clone();
        passed_over.extend(self.claimed().iter().map(|c| c.item.id));
        let due = self
            .store
            .due_jobs(now, wanted, &|id| passed_over.contains(&id))
            .await;
        let due = match due {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the due-index");
                return Dispatched {
                    started,
                    next_due: Some(now + ERROR_COOLDOWN),
                };
            }
        };
        for claimed in due.jobs {
            match self.try_start(claimed, cancel) {
                None => started += 1,
                // Kept for when room frees up, where claims are dear;
                // dropped (nothing to give back) otherwise.
                Some(claimed) if shared => self.claimed().push_back(claimed),
                Some(_) => {}
            }
        }
        Dispatched {
            started,
            next_due: due.next_due,
        }
    }

    fn spawn(&self, claimed: Claimed<Job>, cancel: CancellationToken) {
        let engine = self.engine.clone();
        let running = self.running.clone();
        let finished = self.finished.clone();
        self.tracker.spawn(async move {
            let Claimed { item: job, lease } = claimed;
            let lateness = (engine.now() - job.due_at).num_milliseconds();
            tracing::debug!(job = job.kind.label(), request = %job.kind.request(), lateness_ms = lateness, "running job");
            let outcome = tokio::select! {
                outcome = engine.run_job(&job) => Some(outcome),
                // Another replica may take the job over now: stop, so it
                // never runs twice at once. What was done so far is
                // either committed or will be done again (providers are
                // idempotent).
                _ = lease.lost() => None,
            };
            match outcome {
                None => {
                    tracing::warn!(job = job.kind.label(), request = %job.kind.request(), "stopped a job whose claim was lost");
                }
                Some(Err(error)) => {
                    tracing::error!(job = job.kind.label(), request = %job.kind.request(), %error, "job failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_COOLDOWN) => {}
                        _ = cancel.cancelled() => {}
                    }
                }
                Some(Ok(())) => {}
            }
            drop(lease);
            let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
            running.ids.remove(&job.id);
            running.lanes.remove(&job.lane);
            drop(running);
            finished.notify_one();
        });
    }

    /// Run until `cancel`; then let the jobs already running finish.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            self.engine.health().scheduler_alive();
            self.wake.looking();
            let dispatched = self.dispatch(&cancel).await;
            // Other replicas add jobs and leave claims that lapse: with
            // them, look again at the watch interval.
            let longest = self.store.watch_interval().unwrap_or(MAX_SLEEP);
            let sleep = dispatched
                .next_due
                .map(|due| (due - self.engine.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(longest)
                .min(longest);
            tracing::trace!(
                started = dispatched.started,
                ?sleep,
                running = self.running().ids.len(),
                "scheduler sleeps"
            );
            let sleep_span = chrono::Duration::from_std(sleep).unwrap_or(chrono::Duration::MAX);
            self.wake.will_look_at(
                self.engine
                    .now()
                    .checked_add_signed(sleep_span)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            );
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = self.finished.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!("scheduler stopped");
    }
}

#[cfg(test)]
mod tests;
