//! The PostgreSQL backend of [`crate::store::Store`]: one database that any
//! number of jitbot replicas share.
//!
//! - Every change commits in one transaction with its audit events, jobs
//!   and messages, as with sled. Rows are locked in one order (job, request,
//!   quota, outbox queues, audit head), and a transaction that still meets
//!   a deadlock or a lost insert race is run again.
//! - Due jobs and outbox queues are claimed by one replica at a time under
//!   a lease that `leases` renews while the work runs; a dead replica's
//!   claims lapse and another finishes its work. At most one job of a lane
//!   is claimed at a time across all replicas.
//! - The audit chain is one for the deployment: writers take its head row.
//! - Every call has a deadline, so a database that stops answering makes
//!   requests fail fast ([`StoreError::Unavailable`]) instead of hanging.
//!
//! Records are stored as their JSON (the same as sled's), with the columns
//! the queries need beside them.

mod audit;
mod import;
mod jobs;
mod leases;
mod outbox;
mod records;
mod requests;
mod schema;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

pub use self::import::{ImportError, Imported};
use self::leases::Keeper;
use crate::clock::Clock;
use crate::domain::audit::AuditKey;
use crate::postgres::pool::{Conn, Pool};
use crate::postgres::{describe, Target};
use crate::store::{Coordination, Durability, Lease, StoreError};

/// Connections one replica keeps at most: enough for the scheduler, the
/// outbox and a burst of chat traffic, few enough that several replicas
/// stay far below PostgreSQL's default of 100.
const POOL_SIZE: usize = 16;
/// How long a call waits for a connection (and for connecting).
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// A call that touches a few rows must answer within this: chat platforms
/// give an acknowledgement three seconds.
const SHORT_CALL: Duration = Duration::from_secs(2);
/// Calls that read a whole table (the audit chain, every live grant).
const LONG_CALL: Duration = Duration::from_secs(120);
/// Copying a whole sled store in.
const MIGRATION_CALL: Duration = Duration::from_secs(3600);
/// Connecting at start may take longer than a call (a database starting).
const OPEN_WAIT: Duration = Duration::from_secs(10);
/// A transaction that meets a deadlock or a racing insert runs again, up
/// to this many times.
const ATTEMPTS: u32 = 5;

pub struct PgStore {
    /// Connections whose commits wait for the disk: every change people
    /// are told about.
    pool: Pool,
    /// Connections whose commits do not wait for the disk
    /// (`synchronous_commit = off`): claims, lease renewals and the
    /// outbox's bookkeeping. A database crash can undo their last fraction
    /// of a second — a claim lapses, a message is sent again — but never
    /// loses anything owed, and a jitbot crash loses nothing at all.
    bookkeeping: Pool,
    /// This replica's name in the claims it takes.
    me: String,
    /// Ids taken from the sequence and not yet handed out, highest first.
    spare_ids: std::sync::Mutex<Vec<u64>>,
    clock: Arc<dyn Clock>,
    keeper: Arc<Keeper>,
    stop_keeper: CancellationToken,
    /// The audit chain's HMAC key (`JITBOT_AUDIT_KEY`); plain links without.
    audit_key: Option<AuditKey>,
}

/// What went wrong inside one attempt.
#[derive(Debug)]
pub(super) enum PgError {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgError::Db(error)
    }
}

impl From<StoreError> for PgError {
    fn from(error: StoreError) -> Self {
        PgError::Store(error)
    }
}

impl PgError {
    /// A conflict that running the transaction again resolves.
    fn is_conflict(&self) -> bool {
        let PgError::Db(error) = self else {
            return false;
        };
        [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::UNIQUE_VIOLATION,
        ]
        .iter()
        .any(|state| error.code() == Some(state))
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Whether a call writes: if it stops answering mid-way, the outcome of a
/// write is unknown, a read simply failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
}

/// A unique name for this process in the claims it takes.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "jitbot".to_string());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl PgStore {
    /// Connect to `url`, create or migrate the schema, and start keeping
    /// this replica's leases (each lasts `lease` unless renewed).
    pub async fn open(
        url: &str,
        lease: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<PgStore, StoreError> {
        Self::open_keyed(url, lease, clock, None).await
    }

    /// [`PgStore::open`], chaining audit records under `audit_key` (and
    /// checking keyed links with it); plain SHA-256 links without one.
    pub async fn open_keyed(
        url: &str,
        lease: Duration,
        clock: Arc<dyn Clock>,
        audit_key: Option<AuditKey>,
    ) -> Result<PgStore, StoreError> {
        let target = Target::parse(url, "in JITBOT_DATABASE_URL", CONNECT_WAIT)
            .map_err(StoreError::Unavailable)?;
        let opening = Pool::new(target.clone(), 1, OPEN_WAIT);
        let first = opening.get().await.map_err(StoreError::Unavailable)?;
        schema::migrate(first, &target).await?;
        let bookkeeping = Pool::new(
            target.with_options("-c synchronous_commit=off"),
            POOL_SIZE / 2,
            CONNECT_WAIT,
        );
        let pool = Pool::new(target, POOL_SIZE, CONNECT_WAIT);
        let me = replica_name();
        let keeper = Arc::new(Keeper::new(me.clone(), lease));
        let stop_keeper = CancellationToken::new();
        tokio::spawn(leases::keep(
            keeper.clone(),
            bookkeeping.clone(),
            stop_keeper.clone(),
        ));
        tokio::spawn(audit::keep_sealing(
            pool.clone(),
            audit_key.clone(),
            stop_keeper.clone(),
        ));
        tracing::info!(replica = %me, ?lease, "store: PostgreSQL");
        Ok(PgStore {
            pool,
            bookkeeping,
            me,
            spare_ids: std::sync::Mutex::new(Vec::new()),
            clock,
            keeper,
            stop_keeper,
            audit_key,
        })
    }

    fn spare_ids(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.spare_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection from `pool`, or why there is none.
    async fn conn(pool: &Pool) -> Result<Conn, StoreError> {
        pool.get().await.map_err(StoreError::Unavailable)
    }

    /// The store's error for a failed attempt; `conn` is given back only
    /// if the server answered (its transaction rolled back).
    async fn failed(&self, mut conn: Conn, error: PgError, kind: Kind) -> StoreError {
        match error {
            PgError::Store(error) => {
                if conn.rollback().await.is_ok() {
                    conn.reusable();
                }
                error
            }
            PgError::Db(error) if error.as_db_error().is_some() => {
                if conn.rollback().await.is_ok() {
                    conn.reusable();
                }
                StoreError::Database(self.pool.target().redact(&describe(&error)))
            }
            PgError::Db(error) => {
                let why = self.pool.target().redact(&format!(
                    "PostgreSQL at {}: {}",
                    self.pool.target().shown_server(),
                    describe(&error)
                ));
                match kind {
                    Kind::Write => StoreError::OutcomeUnknown(why),
                    Kind::Read => StoreError::Unavailable(why),
                }
            }
        }
    }

    fn timed_out(&self, kind: Kind, limit: Duration) -> StoreError {
        let why = format!(
            "PostgreSQL at {} did not answer within {}s",
            self.pool.target().shown_server(),
            limit.as_secs()
        );
        match kind {
            Kind::Write => StoreError::OutcomeUnknown(why),
            Kind::Read => StoreError::Unavailable(why),
        }
    }
}

/// Run `$body` (an expression using the connection `$conn`) with a
/// deadline, on a pooled connection, again on a conflict; the connection
/// goes back to the pool only if the work ended cleanly.
macro_rules! with_conn {
    ($store:expr, $pool:ident, $kind:expr, $limit:expr, |$conn:ident| $body:expr) => {{
        let store = $store;
        let mut attempt = 1;
        loop {
            let mut $conn = PgStore::conn(&store.$pool).await?;
            let outcome = tokio::time::timeout($limit, async { $body }).await;
            match outcome {
                Err(_) => break Err(store.timed_out($kind, $limit)),
                Ok(Ok(value)) => {
                    $conn.reusable();
                    break Ok(value);
                }
                Ok(Err(error)) => {
                    let conflict = error.is_conflict();
                    let error = store.failed($conn, error, $kind).await;
                    if conflict && attempt < $crate::store::postgres::ATTEMPTS {
                        attempt += 1;
                        continue;
                    }
                    break Err(error);
                }
            }
        }
    }};
}
pub(super) use with_conn;

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop_keeper.cancel();
    }
}

#[async_trait]
impl Durability for PgStore {
    /// Every write is durable when its transaction commits.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Coordination for PgStore {
    fn watch_interval(&self) -> Option<Duration> {
        // Often enough that work a dead replica leaves is taken over well
        // within a second of its lease lapsing; a look is one indexed
        // query, so twice a second costs little.
        Some(Duration::from_millis(500))
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let lease_ms = self.keeper.lease_ms();
        let taken = with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared(
                    "INSERT INTO leases (name, holder, lease_until)
                     VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (name) DO UPDATE
                        SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
                        WHERE leases.lease_until <= clock_timestamp() OR leases.holder = EXCLUDED.holder
                     RETURNING name",
                )
                .await?;
            let rows = conn
                .client()
                .query(&statement, &[&name, &self.me, &lease_ms])
                .await?;
            Ok::<_, PgError>(!rows.is_empty())
        })?;
        Ok(taken.then(|| self.keeper.hold_named(name)))
    }
}
