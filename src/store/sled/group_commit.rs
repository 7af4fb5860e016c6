//! Group commit: many callers wanting their writes durable share one fsync.
//!
//! Each caller takes a ticket after writing. Whoever finds no flush running
//! becomes the leader: it notes the newest ticket, flushes (which persists
//! every write made before that ticket was taken), and publishes that ticket
//! as completed. Callers whose ticket is covered return without an fsync of
//! their own; the rest wait for the next flush. Under load this turns a
//! thousand fsyncs a second into a few dozen.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{watch, Mutex};

use crate::store::StoreError;

pub(super) struct GroupCommit {
    db: sled::Db,
    /// The newest ticket handed out.
    requested: AtomicU64,
    /// The newest ticket known to be durable.
    completed: watch::Sender<u64>,
    /// Held by the leader while it flushes.
    flushing: Mutex<()>,
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db) -> GroupCommit {
        GroupCommit {
            db,
            requested: AtomicU64::new(0),
            completed: watch::Sender::new(0),
            flushing: Mutex::new(()),
        }
    }

    /// Return once every write made before this call is durable.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut completed = self.completed.subscribe();
        loop {
            if *completed.borrow_and_update() >= ticket {
                return Ok(());
            }
            if let Ok(leader) = self.flushing.try_lock() {
                if *self.completed.borrow() >= ticket {
                    return Ok(());
                }
                let covered = self.requested.load(Ordering::SeqCst);
                let db = self.db.clone();
                let result = tokio::task::spawn_blocking(move || db.flush())
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("flush task failed: {e}")))
                    .and_then(|r| r.map(drop).map_err(StoreError::from));
                // Step down before waking the waiters: one of them may have
                // to lead the next flush, and must find the lock free.
                drop(leader);
                // Wake them either way; on failure they retry as leaders.
                self.completed.send_modify(|done| {
                    if result.is_ok() {
                        *done = (*done).max(covered);
                    }
                });
                return result;
            }
            // A flush is running; it may not cover us, so wait and look again.
            if completed.changed().await.is_err() {
                return Err(StoreError::Corrupt("group commit closed".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::prelude::*;
    use crate::store::SledStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_return_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let commit = Arc::new(GroupCommit::new(store.db.clone()));
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let commit = commit.clone();
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                assert!(store.remember_delivery(i as i64, b"x").await.unwrap());
                commit.flush().await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*commit.completed.borrow(), 64, "the last ticket is durable");
    }

    /// A caller that waited behind a leader must be able to lead the next
    /// flush itself once the leader is done, with nobody else flushing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_left_behind_by_a_flush_leads_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let commit = Arc::new(GroupCommit::new(store.db.clone()));
        for round in 0..300u64 {
            // Many callers at once: one leads, others arrive mid-flush and
            // must not be left waiting for a flush that never comes.
            let callers: Vec<_> = (0..16)
                .map(|_| {
                    let commit = commit.clone();
                    tokio::spawn(async move { commit.flush().await })
                })
                .collect();
            let all = futures_join(callers);
            let results = tokio::time::timeout(std::time::Duration::from_secs(5), all)
                .await
                .unwrap_or_else(|_| panic!("round {round}: a flush waiter was stranded"));
            assert!(results.into_iter().all(|r| r.is_ok()));
        }
    }

    async fn futures_join(
        tasks: Vec<tokio::task::JoinHandle<Result<(), StoreError>>>,
    ) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }
}
