//! The sled backend of [`crate::store::Store`]: one embedded database in a
//! directory, single-process. Each capability trait is implemented in its
//! own file; what every transaction shares is in `tx`, the upgrades of
//! stores written by older versions in `migrate`.

mod audit;
mod export;
mod group_commit;
mod jobs;
mod keys;
mod migrate;
mod outbox;
mod records;
mod requests;
mod tx;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sled::Tree;

pub use self::export::SledExport;
use self::group_commit::GroupCommit;
use crate::clock::{Clock, SystemClock};
use crate::domain::audit::AuditKey;
use crate::store::{Coordination, Durability, Lease, StoreError};

/// sled's default page cache is 1 GiB; jitbot's working set is small, and a
/// bounded cache keeps the process's memory predictable.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

// Positions of the trees in a transaction over `tx_trees`.
const REQUESTS: usize = 0;
const BY_USER: usize = 1;
const DUE: usize = 2;
const OUTBOX: usize = 3;
const AUDIT: usize = 4;
const META: usize = 5;
const MAPPINGS: usize = 6;
const LIVE: usize = 7;
const PRINCIPALS: usize = 8;
const QUEUE_INDEX: usize = 9;
const QUEUES: usize = 10;
const READY: usize = 11;
const QUOTAS: usize = 12;

/// sled's failures, in the backend-neutral error every store speaks: the
/// engine never learns which backend failed, only how.
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Storage(error.to_string())
    }
}

pub struct SledStore {
    db: sled::Db,
    /// Shares one fsync among everyone waiting for their writes.
    durable: GroupCommit,
    /// Where the times the store stamps come from.
    clock: Arc<dyn Clock>,
    /// Where it lives.
    dir: std::path::PathBuf,
    requests: Tree,
    by_user: Tree,
    due: Tree,
    outbox: Tree,
    audit: Tree,
    meta: Tree,
    replay: Tree,
    mappings: Tree,
    /// Requests whose access may be held now (approved or active), by key.
    live: Tree,
    /// Who jitbot granted each principal of a group to.
    principals: Tree,
    /// Teams users and conversations (service URLs).
    teams: Tree,
    /// Each outbox queue's entries, in order.
    queue_index: Tree,
    /// Each outbox queue's state ([`QueueState`]).
    queues: Tree,
    /// The outbox queues by the time their head may be tried.
    ready: Tree,
    /// What each person filed lately and has waiting.
    quotas: Tree,
    /// The trees a state change may touch, in the order of the constants above.
    tx_trees: Vec<Tree>,
    /// The audit chain's HMAC key (`JITBOT_AUDIT_KEY`); plain links without.
    audit_key: Option<AuditKey>,
}

/// How long reopening a store this process closed may wait for sled to
/// let go of its lock.
const RELOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Stores this process has had open and closed.
fn closed_here() -> std::sync::MutexGuard<'static, std::collections::HashSet<std::path::PathBuf>> {
    static CLOSED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
    > = std::sync::OnceLock::new();
    CLOSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn canonical(dir: &Path) -> std::path::PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Durable before it goes (a caller that forgot to flush loses
        // nothing), and remembered, so reopening it here waits for sled.
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "could not flush the store while closing it");
        }
        closed_here().insert(canonical(&self.dir));
    }
}

impl SledStore {
    /// Chain the audit records written from now on under `key` (and check
    /// keyed links with it); plain SHA-256 links without one.
    pub fn with_audit_key(mut self, key: Option<AuditKey>) -> SledStore {
        self.audit_key = key;
        self
    }

    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Self::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// Open (or create) the store in `dir`, stamping the times it writes
    /// (an outbox entry's) from `clock`.
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<SledStore, StoreError> {
        let started = std::time::Instant::now();
        let closed_here = closed_here().contains(&canonical(dir));
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_CAPACITY_BYTES)
                .mode(sled::Mode::HighThroughput)
                // No background flush: every state change is flushed
                // explicitly (group commit) before anyone is told, and the
                // outbox worker flushes its bookkeeping after each pass. A
                // timer-driven flush on top only competed with those and
                // lengthened the ack tail (docs/BENCHMARKS.md).
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if is_lock_error(&io) => {
                    // Our own store, closed a moment ago: sled lets go of
                    // its lock when its I/O threads finish. Wait for that,
                    // a bounded while; another process's lock is refused
                    // at once.
                    if closed_here && started.elapsed() < RELOCK_PATIENCE {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                    return Err(StoreError::Corrupt(format!(
                        "{} is in use by another jitbot process (the store is single-process: stop the server, or use the HTTP API)",
                        dir.display()
                    )));
                }
                Err(other) => return Err(other.into()),
            }
        };
        let open = |name: &str| db.open_tree(name);
        let requests = open("requests")?;
        let by_user = open("requests_by_user")?;
        let due = open("due")?;
        let outbox = open("outbox")?;
        let audit = open("audit")?;
        let meta = open("meta")?;
        let replay = open("replay")?;
        let mappings = open("mappings")?;
        let live = open("live_requests")?;
        let principals = open("principal_owners")?;
        let teams = open("teams")?;
        let queue_index = open("outbox_queue_index")?;
        let queues = open("outbox_queues")?;
        let ready = open("outbox_ready")?;
        let quotas = open("quotas")?;
        let tx_trees = vec![
            requests.clone(),
            by_user.clone(),
            due.clone(),
            outbox.clone(),
            audit.clone(),
            meta.clone(),
            mappings.clone(),
            live.clone(),
            principals.clone(),
            queue_index.clone(),
            queues.clone(),
            ready.clone(),
            quotas.clone(),
        ];
        let store = SledStore {
            audit_key: None,
            durable: GroupCommit::new(db.clone()),
            clock,
            db,
            dir: dir.to_path_buf(),
            requests,
            by_user,
            due,
            outbox,
            audit,
            meta,
            replay,
            mappings,
            live,
            principals,
            teams,
            queue_index,
            queues,
            ready,
            quotas,
            tx_trees,
        };
        store.build_indexes()?;
        store.build_outbox_queues()?;
        store.build_quotas()?;
        Ok(store)
    }
}

#[async_trait]
impl Durability for SledStore {
    async fn sync(&self) -> Result<(), StoreError> {
        self.durable.flush().await
    }
}

/// sled is single-process: whatever this process claims, it holds.
#[async_trait]
impl Coordination for SledStore {
    fn watch_interval(&self) -> Option<std::time::Duration> {
        None
    }

    async fn try_lease(&self, _name: &str) -> Result<Option<Lease>, StoreError> {
        Ok(Some(Lease::sole()))
    }
}
