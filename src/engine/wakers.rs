//! Waking the background workers when a change gave them work — and only
//! then: on a shared store every needless look costs the database a
//! transaction.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::domain::job::Job;

/// Wakes the background workers when there is new work for them.
#[derive(Debug, Default, Clone)]
pub struct Wakers {
    pub scheduler: Arc<JobWaker>,
    pub outbox: Arc<Notify>,
    pub sweeps: Arc<Notify>,
    pub activity: Arc<Notify>,
}

impl Wakers {
    /// Make every worker look again now (the clock moved, say).
    pub fn wake_all(&self) {
        self.scheduler.wake();
        self.outbox.notify_one();
        self.sweeps.notify_one();
        self.activity.notify_one();
    }
}

/// Wakes the scheduler when a new job falls due before the scheduler
/// would look again by itself.
#[derive(Debug)]
pub struct JobWaker {
    notify: Notify,
    /// When the scheduler looks again by itself, in milliseconds on the
    /// engine's clock; `i64::MAX` while it is looking (a job committed
    /// during a look may have been missed by it).
    looks_at_ms: AtomicI64,
}

impl Default for JobWaker {
    fn default() -> Self {
        JobWaker {
            notify: Notify::new(),
            looks_at_ms: AtomicI64::new(i64::MAX),
        }
    }
}

impl JobWaker {
    /// Look again now.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// `jobs` were just committed: wake the scheduler if one of them is
    /// due before it looks again.
    pub fn wake_for(&self, jobs: &[Job]) {
        let looks_at = self.looks_at_ms.load(Ordering::SeqCst);
        if jobs
            .iter()
            .any(|job| job.due_at.timestamp_millis() < looks_at)
        {
            self.wake();
        }
    }

    /// The scheduler starts a look at the store.
    pub fn looking(&self) {
        self.looks_at_ms.store(i64::MAX, Ordering::SeqCst);
    }

    /// The scheduler, done looking, will look again by itself at `at`
    /// (said before it waits, so a wake after this is never lost).
    pub fn will_look_at(&self, at: DateTime<Utc>) {
        self.looks_at_ms
            .store(at.timestamp_millis(), Ordering::SeqCst);
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::RequestId;
    use crate::domain::job::JobKind;

    fn job_due(at: DateTime<Utc>) -> Job {
        Job {
            id: 1,
            due_at: at,
            attempt: 0,
            lane: "lane".into(),
            kind: JobKind::Activate {
                request: RequestId::generate(),
                by_sibling: false,
            },
        }
    }

    async fn woken(waker: &JobWaker) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), waker.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_job_due_before_the_next_look_wakes_the_scheduler_and_a_later_one_does_not() {
        let now = Utc::now();
        let waker = JobWaker::default();
        waker.will_look_at(now + chrono::Duration::minutes(1));
        waker.wake_for(&[job_due(now + chrono::Duration::hours(2))]);
        assert!(
            !woken(&waker).await,
            "a job due after the next look woke it"
        );
        waker.wake_for(&[job_due(now + chrono::Duration::seconds(5))]);
        assert!(
            woken(&waker).await,
            "a job due before the next look did not wake it"
        );
    }

    #[tokio::test]
    async fn any_job_committed_while_the_scheduler_looks_wakes_it_again() {
        let now = Utc::now();
        let waker = JobWaker::default();
        waker.will_look_at(now + chrono::Duration::minutes(1));
        waker.looking();
        waker.wake_for(&[job_due(now + chrono::Duration::hours(2))]);
        assert!(woken(&waker).await);
    }
}
