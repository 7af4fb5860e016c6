//! The real MariaDB (or MySQL) server for the `mysql` provider's tests:
//! each test gets accounts and roles with its own unique prefix, dropped
//! again when its fixture goes out of scope (also when the test fails). If
//! the server cannot be reached the test fails — it never skips quietly.

use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// The server tests use: `JITBOT_TEST_MYSQL_URL`, or the local one as root.
pub(crate) fn url() -> String {
    std::env::var("JITBOT_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_string())
}

/// A connection to exactly the host and port `url` names. mysql_async
/// would otherwise switch to the server's Unix socket when it can reach it
/// (`prefer_socket`), where MySQL sees another account (`root@localhost`
/// instead of `root@127.0.0.1`): the fixture must be the account it says.
pub(crate) async fn connect(url: &str) -> Result<Conn, mysql_async::Error> {
    let opts = Opts::from_url(url).expect("the test URL parses");
    Conn::new(OptsBuilder::from_opts(opts).prefer_socket(false)).await
}

pub(crate) struct MariaFixture {
    pub(crate) admin: Conn,
    prefix: String,
}

impl MariaFixture {
    pub(crate) async fn new() -> MariaFixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin = connect(&url()).await.unwrap_or_else(|e| {
            panic!(
                "MariaDB is not reachable at {} ({e}); start it (bash .ci/ensure-mariadb) or point JITBOT_TEST_MYSQL_URL at one",
                url()
            )
        });
        let prefix = format!(
            "jt{}_{}_",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        MariaFixture { admin, prefix }
    }

    /// This test's name for an account or role.
    pub(crate) fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub(crate) async fn run(&mut self, sql: &str) {
        self.admin
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub(crate) async fn create_role(&mut self, role: &str) {
        self.run(&format!("CREATE ROLE `{role}`")).await;
    }

    pub(crate) async fn create_user(&mut self, user: &str, host: &str) {
        self.run(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY 'pw-{user}'"
        ))
        .await;
    }

    /// Who holds `role`, as `user@host`, sorted (the admin excluded).
    pub(crate) async fn members(&mut self, role: &str) -> Vec<String> {
        let rows: Vec<(String, String)> = self
            .admin
            .exec(
                "SELECT User, Host FROM mysql.roles_mapping WHERE Role = ? AND User LIKE ?",
                (role, format!("{}%", self.prefix.replace('_', "\\_"))),
            )
            .await
            .unwrap();
        let mut members: Vec<String> = rows.into_iter().map(|(u, h)| format!("{u}@{h}")).collect();
        members.sort();
        members
    }

    pub(crate) async fn default_role(&mut self, user: &str, host: &str) -> String {
        let role: Option<String> = self
            .admin
            .exec_first(
                "SELECT default_role FROM mysql.user WHERE User = ? AND Host = ?",
                (user, host),
            )
            .await
            .unwrap();
        role.unwrap_or_default()
    }

    pub(crate) async fn user_exists(&mut self, user: &str) -> bool {
        let found: Option<u8> = self
            .admin
            .exec_first("SELECT 1 FROM mysql.user WHERE User = ?", (user,))
            .await
            .unwrap();
        found.is_some()
    }
}

impl Drop for MariaFixture {
    fn drop(&mut self) {
        // Drop runs outside async code paths; clean up on a thread of its own.
        let prefix = self.prefix.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(mut admin) = connect(&url()).await else {
                    return;
                };
                let pattern = format!("{}%", prefix.replace('_', "\\_"));
                let accounts: Vec<(String, String, String)> = admin
                    .exec(
                        "SELECT User, Host, is_role FROM mysql.user WHERE User LIKE ?",
                        (pattern,),
                    )
                    .await
                    .unwrap_or_default();
                for (user, host, is_role) in accounts {
                    let statement = if is_role == "Y" {
                        format!("DROP ROLE IF EXISTS `{user}`")
                    } else {
                        format!("DROP USER IF EXISTS '{user}'@'{host}'")
                    };
                    let _ = admin.query_drop(statement).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
