//! Which store the suite runs on: sled (the default) or PostgreSQL, chosen
//! by `JITBOT_TEST_STORE=postgres`. Every test that starts a server gets a
//! fresh store of that kind — a temporary directory, or a database of its
//! own on the test server (`JITBOT_TEST_PG_URL`), dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jitbot::config::Secret;
use jitbot::store::{Store, StoreLocation};
use tempfile::TempDir;

/// Whether this run of the suite is on PostgreSQL.
pub(crate) fn on_postgres() -> bool {
    match std::env::var("JITBOT_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sled") | Err(_) => false,
        Ok(other) => panic!("JITBOT_TEST_STORE=`{other}`: expected sled or postgres"),
    }
}

/// A database of one test's own, dropped (with any connections left) when
/// this goes out of scope.
pub(crate) struct TestDatabase {
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "jitbot_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            rand_suffix()
        );
        let admin = crate::pg::connect(&crate::pg::url())
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {} ({e})", crate::pg::url())
            });
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut config: tokio_postgres::Config =
            crate::pg::url().parse().expect("JITBOT_TEST_PG_URL parses");
        config.dbname(&name);
        let url = to_url(&config);
        TestDatabase { name, url }
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// A `postgres://` URL for `config` (the store takes only URLs).
fn to_url(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("tests need a TCP PostgreSQL host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}{password}@{host}:{port}/{db}?sslmode=disable")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async code paths; clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = crate::pg::connect(&crate::pg::url()).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// One test's store.
pub(crate) enum TestStore {
    Sled(TempDir),
    Postgres(TestDatabase),
}

/// The lease tests give replicas: the product's default.
pub(crate) const TEST_LEASE: Duration = Duration::from_secs(5);

impl TestStore {
    /// A fresh store of the kind this run uses.
    pub(crate) async fn new() -> TestStore {
        if on_postgres() {
            TestStore::Postgres(TestDatabase::create().await)
        } else {
            TestStore::Sled(tempfile::tempdir().unwrap())
        }
    }

    pub(crate) fn location(&self) -> StoreLocation {
        match self {
            TestStore::Sled(dir) => StoreLocation::Sled(dir.path().to_path_buf()),
            TestStore::Postgres(db) => StoreLocation::Postgres {
                url: Secret::new(db.url.clone()),
                lease: TEST_LEASE,
            },
        }
    }

    /// The setting that points the binary at this store.
    pub(crate) fn env(&self) -> (&'static str, String) {
        match self {
            TestStore::Sled(dir) => ("JITBOT_DATA_DIR", dir.path().display().to_string()),
            TestStore::Postgres(db) => ("JITBOT_DATABASE_URL", db.url.clone()),
        }
    }

    /// Open it here (a sled store only once its server has stopped).
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        jitbot::store::open(&self.location(), Arc::new(jitbot::clock::SystemClock))
            .await
            .expect("the test store opens")
    }

    /// Rewrite the detail of audit event `seq` behind jitbot's back (the
    /// server stopped).
    pub(crate) async fn tamper_audit_detail(&self, seq: u64, detail: &str) {
        match self {
            TestStore::Sled(dir) => {
                let db = sled::open(dir.path()).unwrap();
                let audit = db.open_tree("audit").unwrap();
                // The sled layout's key: a version byte, then the sequence.
                let mut key = vec![1u8];
                key.extend_from_slice(&seq.to_be_bytes());
                let value = audit.get(&key).unwrap().expect("the event exists");
                let mut event: serde_json::Value = serde_json::from_slice(&value).unwrap();
                event["detail"] = detail.into();
                audit
                    .insert(key, serde_json::to_vec(&event).unwrap())
                    .unwrap();
                db.flush().unwrap();
            }
            TestStore::Postgres(db) => {
                let client = crate::pg::connect(&db.url).await.unwrap();
                let row = client
                    .query_one("SELECT event FROM audit WHERE seq = $1", &[&(seq as i64)])
                    .await
                    .unwrap();
                let mut event: serde_json::Value =
                    serde_json::from_str(row.get::<_, &str>(0)).unwrap();
                event["detail"] = detail.into();
                client
                    .execute(
                        "UPDATE audit SET event = $2 WHERE seq = $1",
                        &[&(seq as i64), &event.to_string()],
                    )
                    .await
                    .unwrap();
            }
        }
    }
}
