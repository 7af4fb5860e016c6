//! The `mysql` provider: role membership on MySQL 8 or MariaDB 10.5+.
//! Grant is `GRANT <role> TO <account>` (optionally made the account's
//! default role), revoke is `REVOKE` — each confirmed against the server's
//! role mappings — and, with `kill_sessions`, the account's open
//! connections are ended, because a session that already uses a role keeps
//! it. Holders are the role's members, read from `mysql.roles_mapping`
//! (MariaDB) or `mysql.role_edges` (MySQL), never including jitbot's own
//! login (MariaDB makes the role's creator a member WITH ADMIN OPTION, and
//! a sweep must not take away jitbot's right to grant).
//!
//! A principal is an account: `name` means `'name'@'%'`, `name@host`
//! means `'name'@'host'`. Account and role names cannot be bound as query
//! parameters, so they are checked (no quotes, backslashes, backticks or
//! control characters; MySQL's length limits) before they are quoted.

use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio::sync::Mutex;

use super::{Access, Activity, Provider, ProviderError};

/// MariaDB's limit on user names (MySQL's is 32: it refuses longer ones).
const MAX_USER_CHARS: usize = 80;
const MAX_HOST_CHARS: usize = 255;
const MAX_ROLE_CHARS: usize = 128;

/// Server errors that pass: lock wait timeout, deadlock, connection lost.
const PASSING_SERVER_ERRORS: &[u16] = &[1205, 1213, 2006, 2013];

/// Which server this is: their role tables and statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    MySql,
}

/// An account, `'user'@'host'`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    user: String,
    host: String,
}

impl Account {
    fn parse(principal: &str) -> Result<Account, String> {
        let (user, host) = match principal.rsplit_once('@') {
            Some((user, host)) => (user, host),
            None => (principal, "%"),
        };
        check_name(user, "account", MAX_USER_CHARS)?;
        check_name(host, "host", MAX_HOST_CHARS)?;
        Ok(Account {
            user: user.to_string(),
            host: host.to_string(),
        })
    }

    fn quoted(&self) -> String {
        format!("'{}'@'{}'", self.user, self.host)
    }

    /// As holders are written: `user`, or `user@host` unless the host is `%`.
    fn shown(&self) -> String {
        if self.host == "%" {
            self.user.clone()
        } else {
            format!("{}@{}", self.user, self.host)
        }
    }
}

/// A name safe to put between quotes: nothing that could end the quoting.
fn check_name(name: &str, what: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty"));
    }
    if name.chars().count() > max {
        return Err(format!(
            "the {what} name `{name}` is longer than MySQL's {max}-character limit"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\'' | '"' | '`' | '\\'))
    {
        return Err(format!(
            "the {what} name `{}` has quotes, backslashes or control characters; it is not used",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn quoted_role(role: &str) -> Result<String, String> {
    check_name(role, "role", MAX_ROLE_CHARS)?;
    Ok(format!("`{role}`"))
}

/// The connection options, used exactly as the URL writes them: its host
/// and port over TCP, or the Unix socket its `socket=` parameter names.
///
/// mysql_async by default (`prefer_socket`) asks the server it reached over
/// TCP for its `@@socket` and reconnects through that path on this machine
/// when it can. That reaches another account: MySQL tells accounts apart by
/// the host they connect from, and over the socket that is `localhost`, so
/// `mysql://root@127.0.0.1/…` would become `'root'@'localhost'` (on Debian
/// authenticated by `unix_socket`, as whoever runs jitbot), or a remote
/// URL a local server with the same socket path. Grants, the holders that
/// leave out jitbot's own login, and every audit line would then be about
/// an account nobody configured.
fn connect_as_written(opts: Opts, url: &url::Url) -> Result<Opts, String> {
    let asks_socket_switch = url
        .query_pairs()
        .any(|(key, value)| key == "prefer_socket" && value != "false");
    if asks_socket_switch {
        return Err("the URL in its url_env sets prefer_socket, which switches to a local socket (and to the account MySQL sees there); to use a socket, name it: ?socket=/run/mysqld/mysqld.sock".to_string());
    }
    Ok(mysql_async::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .into())
}

pub struct MysqlProvider {
    name: String,
    opts: Opts,
    /// Where the server is, for messages (never the URL: it has a password).
    shown_server: String,
    password: Option<String>,
    default_role: bool,
    kill_sessions: bool,
    timeout: Duration,
    /// One connection, opened on first use and reopened after any failure.
    connection: Mutex<Option<(Conn, Flavor)>>,
}

/// What went wrong, and whether it may pass.
struct Failure {
    message: String,
    passing: bool,
}

impl From<mysql_async::Error> for Failure {
    fn from(error: mysql_async::Error) -> Self {
        match &error {
            mysql_async::Error::Server(server) => Failure {
                message: format!("{} (error {})", server.message, server.code),
                passing: PASSING_SERVER_ERRORS.contains(&server.code),
            },
            _ => Failure {
                message: error.to_string(),
                passing: true,
            },
        }
    }
}

impl From<String> for Failure {
    /// A refusal of ours (a name that cannot be used): it will not pass.
    fn from(message: String) -> Self {
        Failure {
            message,
            passing: false,
        }
    }
}

impl MysqlProvider {
    pub fn new(
        name: &str,
        url: &str,
        default_role: bool,
        kill_sessions: bool,
        timeout: Duration,
    ) -> Result<Self, String> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "mysql")
            .ok_or_else(|| {
                format!("provider {name}: the URL in its url_env must look like mysql://user:password@host:3306/db")
            })?;
        let password = parsed.password().map(str::to_string);
        let opts = Opts::from_url(url).map_err(|e| {
            let text = e.to_string();
            format!(
                "provider {name}: the URL in its url_env is not usable: {}",
                password
                    .as_deref()
                    .map_or(text.clone(), |p| super::redact(&text, &[p]))
            )
        })?;
        let opts =
            connect_as_written(opts, &parsed).map_err(|why| format!("provider {name}: {why}"))?;
        let shown_server = match opts.socket() {
            Some(socket) => format!("socket {socket}"),
            None => format!(
                "{}:{}",
                parsed.host_str().unwrap_or("?"),
                parsed.port().unwrap_or(3306)
            ),
        };
        Ok(Self {
            name: name.to_string(),
            opts,
            shown_server,
            password,
            default_role,
            kill_sessions,
            timeout,
            connection: Mutex::new(None),
        })
    }

    fn error(&self, action: &str, failure: Failure) -> ProviderError {
        let text = format!("{action} on {}: {}", self.shown_server, failure.message);
        let text = match &self.password {
            Some(password) => super::redact(&text, &[password]),
            None => text,
        };
        if failure.passing {
            ProviderError::new(&self.name, text)
        } else {
            ProviderError::permanent(&self.name, text)
        }
    }

    /// Run `work` on the connection within the timeout; a failed
    /// connection is dropped so the next call starts clean.
    async fn with_connection<T>(
        &self,
        action: &str,
        work: impl for<'c> FnOnce(
            &'c mut Conn,
            Flavor,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, Failure>> + Send + 'c>,
        >,
    ) -> Result<T, ProviderError> {
        let attempt = async {
            let mut slot = self.connection.lock().await;
            if slot.is_none() {
                let mut conn = Conn::new(self.opts.clone()).await?;
                let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
                let flavor = if version.unwrap_or_default().contains("MariaDB") {
                    Flavor::MariaDb
                } else {
                    Flavor::MySql
                };
                *slot = Some((conn, flavor));
            }
            let (conn, flavor) = slot.as_mut().expect("opened above");
            let flavor = *flavor;
            let result = work(conn, flavor).await;
            if result.as_ref().is_err_and(|f| f.passing) {
                *slot = None;
            }
            result
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(|failure| self.error(action, failure)),
            Err(_) => {
                // The connection may be mid-statement: start clean.
                if let Ok(mut slot) = self.connection.try_lock() {
                    *slot = None;
                }
                Err(self.error(
                    action,
                    Failure {
                        message: format!("no answer within {:?}", self.timeout),
                        passing: true,
                    },
                ))
            }
        }
    }

    async fn change(&self, access: &Access, member: bool) -> Result<(), ProviderError> {
        let action = if member { "granting" } else { "revoking" };
        let account = Account::parse(&access.principal)
            .map_err(|why| self.error(action, Failure::from(why)))?;
        let role = access.target.clone();
        let default_role = self.default_role;
        let kill_sessions = self.kill_sessions;
        self.with_connection(action, move |conn, flavor| {
            Box::pin(async move {
                let quoted_role = quoted_role(&role)?;
                let held = holds(conn, flavor, &role, &account).await?;
                if member {
                    if !account_exists(conn, &account).await? {
                        return Err(Failure::from(format!(
                            "there is no account {} to grant `{role}` to",
                            account.quoted()
                        )));
                    }
                    if !held {
                        conn.query_drop(format!("GRANT {quoted_role} TO {}", account.quoted()))
                            .await?;
                    }
                    if default_role {
                        let statement = match flavor {
                            Flavor::MariaDb => {
                                format!("SET DEFAULT ROLE {quoted_role} FOR {}", account.quoted())
                            }
                            Flavor::MySql => {
                                format!("SET DEFAULT ROLE {quoted_role} TO {}", account.quoted())
                            }
                        };
                        conn.query_drop(statement).await?;
                    }
                } else {
                    if held {
                        if flavor == Flavor::MariaDb && default_role {
                            // MariaDB keeps a revoked default role named as
                            // the default; clear it if it is this one.
                            let current: Option<String> = conn
                                .exec_first(
                                    "SELECT default_role FROM mysql.user WHERE User = ? AND Host = ?",
                                    (&account.user, &account.host),
                                )
                                .await?;
                            if current.as_deref() == Some(role.as_str()) {
                                conn.query_drop(format!(
                                    "SET DEFAULT ROLE NONE FOR {}",
                                    account.quoted()
                                ))
                                .await?;
                            }
                        }
                        conn.query_drop(format!(
                            "REVOKE {quoted_role} FROM {}",
                            account.quoted()
                        ))
                        .await?;
                    }
                    if kill_sessions {
                        end_sessions(conn, &account).await?;
                    }
                }
                if holds(conn, flavor, &role, &account).await? != member {
                    return Err(Failure {
                        message: format!(
                            "the server accepted it, but {} {} `{role}`",
                            account.quoted(),
                            if member { "does not hold" } else { "still holds" }
                        ),
                        passing: true,
                    });
                }
                Ok(())
            })
        })
        .await
    }
}

async fn account_exists(conn: &mut Conn, account: &Account) -> Result<bool, Failure> {
    let found: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM mysql.user WHERE User = ? AND Host = ?",
            (&account.user, &account.host),
        )
        .await?;
    Ok(found.is_some())
}

/// Whether `account` holds `role` now (directly).
async fn holds(
    conn: &mut Conn,
    flavor: Flavor,
    role: &str,
    account: &Account,
) -> Result<bool, Failure> {
    let query = match flavor {
        Flavor::MariaDb => {
            "SELECT 1 FROM mysql.roles_mapping WHERE Role = ? AND User = ? AND Host = ?"
        }
        Flavor::MySql => {
            "SELECT 1 FROM mysql.role_edges WHERE FROM_USER = ? AND FROM_HOST = '%' AND TO_USER = ? AND TO_HOST = ?"
        }
    };
    let found: Option<u8> = conn
        .exec_first(query, (role, &account.user, &account.host))
        .await?;
    Ok(found.is_some())
}

/// End every connection of `account`'s user: a session that already uses
/// the role keeps it until it ends.
async fn end_sessions(conn: &mut Conn, account: &Account) -> Result<(), Failure> {
    let own: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await?;
    let sessions: Vec<u64> = conn
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (&account.user,),
        )
        .await?;
    for id in sessions.into_iter().filter(|id| Some(*id) != own) {
        match conn.query_drop(format!("KILL CONNECTION {id}")).await {
            Ok(()) => {}
            // Gone meanwhile (unknown thread id): what we wanted.
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

#[async_trait]
impl Provider for MysqlProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, true).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, false).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let role = target.to_string();
        self.with_connection("listing the role's members", move |conn, flavor| {
            Box::pin(async move {
                check_name(&role, "role", MAX_ROLE_CHARS)?;
                let own: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
                let own = own.and_then(|o| {
                    o.rsplit_once('@').map(|(u, h)| Account {
                        user: u.to_string(),
                        host: h.to_string(),
                    })
                });
                let query = match flavor {
                    Flavor::MariaDb => "SELECT User, Host FROM mysql.roles_mapping WHERE Role = ?",
                    Flavor::MySql => {
                        "SELECT TO_USER, TO_HOST FROM mysql.role_edges WHERE FROM_USER = ? AND FROM_HOST = '%'"
                    }
                };
                let rows: Vec<(String, String)> = conn.exec(query, (&role,)).await?;
                Ok(rows
                    .into_iter()
                    .map(|(user, host)| Account { user, host })
                    .filter(|account| Some(account) != own.as_ref())
                    .map(|account| account.shown())
                    .collect())
            })
        })
        .await
    }

    async fn activity(&self, principal: &str, _target: &str) -> Result<Activity, ProviderError> {
        let principal = principal.to_string();
        self.with_connection("reading the account's connections", move |conn, _| {
            Box::pin(async move {
                let account = Account::parse(&principal)?;
                let own: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await?;
                let sessions: Vec<u64> = conn
                    .exec(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                        (&account.user,),
                    )
                    .await?;
                Ok(Activity {
                    in_use: sessions.into_iter().any(|id| Some(id) != own),
                    last_used: None,
                })
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_accounts_and_hostile_names_are_refused() {
        assert_eq!(Account::parse("alice").unwrap().quoted(), "'alice'@'%'");
        assert_eq!(
            Account::parse("alice@10.0.%").unwrap().quoted(),
            "'alice'@'10.0.%'"
        );
        assert_eq!(
            Account::parse("alice@db.internal").unwrap().shown(),
            "alice@db.internal"
        );
        for hostile in [
            "x'@'%'; DROP USER 'root'@'%'; --",
            "a\\",
            "a`b",
            "a\"b",
            "a\nb",
            "a\0b",
            "",
            "@host",
        ] {
            assert!(Account::parse(hostile).is_err(), "{hostile:?} was taken");
        }
        assert!(Account::parse(&"x".repeat(81)).is_err());
        assert!(quoted_role("jit_rw").is_ok());
        assert!(quoted_role("rw`; DROP DATABASE mysql; --").is_err());
    }

    fn provider(url: &str) -> Result<MysqlProvider, String> {
        MysqlProvider::new("db", url, false, false, Duration::from_secs(5))
    }

    #[test]
    fn a_tcp_url_is_used_as_written_and_a_socket_only_when_named() {
        let tcp = provider("mysql://root@127.0.0.1:3306/mysql").unwrap();
        assert!(!tcp.opts.prefer_socket(), "no switch to the local socket");
        assert_eq!(tcp.opts.socket(), None);
        assert_eq!(tcp.opts.ip_or_hostname(), "127.0.0.1");
        assert_eq!(tcp.shown_server, "127.0.0.1:3306");

        let socket =
            provider("mysql://root@localhost/mysql?socket=/run/mysqld/mysqld.sock").unwrap();
        assert_eq!(socket.opts.socket(), Some("/run/mysqld/mysqld.sock"));
        assert_eq!(socket.shown_server, "socket /run/mysqld/mysqld.sock");

        let error = provider("mysql://root@127.0.0.1:3306/mysql?prefer_socket=true")
            .err()
            .unwrap();
        assert!(error.contains("?socket="), "{error}");
        assert!(provider("mysql://root@127.0.0.1/mysql?prefer_socket=false").is_ok());
    }
}
