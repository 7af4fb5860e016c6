//! The real PostgreSQL server for provider tests: each test gets roles with
//! its own unique prefix, dropped again when its fixture goes out of scope
//! (also when the test fails). If the server cannot be reached the test
//! fails — it never skips quietly.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

/// The server tests use: `JITBOT_TEST_PG_URL`, or the local one.
pub(crate) fn url() -> String {
    std::env::var("JITBOT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Like [`url`], but logging in as `user` (trust authentication).
pub(crate) fn url_as(user: &str) -> String {
    let mut config: tokio_postgres::Config = url().parse().expect("JITBOT_TEST_PG_URL parses");
    config.user(user);
    config.password("");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("tests need a TCP PostgreSQL host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres").to_string();
    format!(
        "host={host} port={port} dbname={db} user='{}'",
        user.replace('\'', "\\'")
    )
}

pub(crate) async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub(crate) struct PgFixture {
    pub(crate) admin: Client,
    prefix: String,
}

impl PgFixture {
    pub(crate) async fn new() -> PgFixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin = connect(&url()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {} ({e}); start it, point JITBOT_TEST_PG_URL at one, or run `cargo test -- --skip postgres`",
                url()
            )
        });
        let prefix = format!(
            "jt{}_{}_",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        PgFixture { admin, prefix }
    }

    /// This test's name for a role: unique across tests and runs.
    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Create role `name` (already prefixed, or any exact name the test
    /// wants), as a login or not.
    pub(crate) async fn create_role(&self, name: &str, login: bool) {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let login = if login { "LOGIN" } else { "NOLOGIN" };
        self.admin
            .batch_execute(&format!("CREATE ROLE {quoted} {login}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {quoted}: {e}"));
    }

    pub(crate) async fn grant_by_hand(&self, role: &str, member: &str) {
        self.admin
            .batch_execute(&format!("GRANT \"{role}\" TO \"{member}\""))
            .await
            .unwrap();
    }

    pub(crate) async fn role_exists(&self, name: &str) -> bool {
        self.admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .unwrap()
            .is_some()
    }

    /// The direct members of `role`, sorted.
    pub(crate) async fn members(&self, role: &str) -> Vec<String> {
        self.admin
            .query(
                "SELECT m.rolname::text FROM pg_auth_members am
                   JOIN pg_roles r ON r.oid = am.roleid
                   JOIN pg_roles m ON m.oid = am.member
                  WHERE r.rolname = $1 ORDER BY 1",
                &[&role],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        // Drop runs outside async code paths; clean up on a thread of its own.
        let prefix = self.prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(admin) = connect(&url()).await else {
                    return;
                };
                let pattern = format!("{}%", prefix.replace('_', "\\_"));
                let _ = admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename LIKE $1",
                        &[&pattern],
                    )
                    .await;
                let roles: Vec<String> = admin
                    .query("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1", &[&pattern])
                    .await
                    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_default();
                for role in roles {
                    let _ = admin
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", role.replace('"', "\"\"")))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
