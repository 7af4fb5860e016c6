//! Where the store lives, and opening it: a sled directory (the embedded
//! default, one process) or a PostgreSQL database (shared by replicas).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{PgStore, SledStore, Store, StoreError};
use crate::clock::Clock;
use crate::config::Secret;
use crate::domain::audit::AuditKey;

#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// `JITBOT_DATA_DIR`.
    Sled(PathBuf),
    /// `JITBOT_DATABASE_URL`, and how long a claim on work lasts unless
    /// renewed (`JITBOT_LEASE`).
    Postgres { url: Secret, lease: Duration },
}

/// Open the store at `location`, stamping the times it writes from `clock`.
pub async fn open(
    location: &StoreLocation,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Store>, StoreError> {
    open_keyed(location, clock, None).await
}

/// [`open`], chaining the audit log under `audit_key` (`JITBOT_AUDIT_KEY`)
/// and checking its keyed links with it.
pub async fn open_keyed(
    location: &StoreLocation,
    clock: Arc<dyn Clock>,
    audit_key: Option<AuditKey>,
) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        StoreLocation::Sled(dir) => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || {
                SledStore::open_with_clock(&dir, clock).map(|s| s.with_audit_key(audit_key))
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("opening the store failed: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres { url, lease } => Ok(Arc::new(
            PgStore::open_keyed(url.expose(), *lease, clock, audit_key).await?,
        )),
    }
}
