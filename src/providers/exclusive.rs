//! Provider calls that must not interleave. A Slack user group's members
//! are read, edited and written back whole, so two changes to one group at
//! once would lose one of them. Within one process a lock per key does; when
//! replicas share a database, a PostgreSQL advisory lock per key does it
//! across all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::postgres::pool::Pool;
use crate::postgres::Target;

/// Held until dropped.
pub type ExclusiveGuard = Box<dyn Send>;

#[async_trait]
pub trait Exclusive: Send + Sync {
    /// Wait (as long as the caller lets it) until `key` is free, and hold
    /// it until the guard drops.
    async fn lock(&self, key: &str) -> Result<ExclusiveGuard, String>;
}

/// Exclusion within this process.
#[derive(Default)]
pub struct LocalExclusive {
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

#[async_trait]
impl Exclusive for LocalExclusive {
    async fn lock(&self, key: &str) -> Result<ExclusiveGuard, String> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        Ok(Box::new(lock.lock_owned().await))
    }
}

/// Exclusion across every process using one PostgreSQL database.
pub struct DatabaseExclusive {
    pool: Pool,
}

/// How often a taken lock is tried again. Trying (rather than waiting in
/// the server) means a caller that gives up leaves nothing waiting behind.
const RETRY_EVERY: Duration = Duration::from_millis(50);

impl DatabaseExclusive {
    pub fn new(url: &str) -> Result<DatabaseExclusive, String> {
        let target = Target::parse(url, "in JITBOT_DATABASE_URL", Duration::from_secs(5))?;
        Ok(DatabaseExclusive {
            pool: Pool::new(target, 8, Duration::from_secs(5)),
        })
    }
}

/// The advisory lock's number for `key`: a stable hash, in jitbot's own
/// namespace so it cannot meet another application's locks by accident.
fn lock_number(key: &str) -> i64 {
    let digest = Sha256::digest(format!("jitbot provider lock\0{key}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

#[async_trait]
impl Exclusive for DatabaseExclusive {
    async fn lock(&self, key: &str) -> Result<ExclusiveGuard, String> {
        let number = lock_number(key);
        loop {
            let conn = self.pool.get().await?;
            let taken: bool = conn
                .client()
                .query_one("SELECT pg_try_advisory_lock($1)", &[&number])
                .await
                .map_err(|e| crate::postgres::describe(&e))?
                .get(0);
            if taken {
                // The lock is the session's: the connection, never given
                // back to the pool, is closed when the guard drops, and the
                // server lets go of it then.
                return Ok(Box::new(conn));
            }
            drop(conn);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}
