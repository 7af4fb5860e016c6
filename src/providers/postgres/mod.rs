//! The `postgres` provider: role membership. Grant is `GRANT <target> TO
//! <principal>`, revoke is `REVOKE` — confirmed afterwards against
//! `pg_auth_members`, including memberships someone else granted — and,
//! with `terminate_sessions`, the principal's open sessions are ended,
//! because revoking a role does not take it away from a session that
//! already uses it. Holders are the role's direct members. Activity is
//! whether the principal's login has a session open (`pg_stat_activity`).
//!
//! Identifiers cannot be bound as query parameters, so they are quoted
//! (`"` doubled) and checked first: no NUL, at most 63 bytes, because
//! PostgreSQL silently truncates longer names, which could turn one
//! principal into another role's name.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::{Access, Activity, Provider, ProviderError};
use crate::postgres::{describe, Target};

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are cut, not refused.
const MAX_IDENTIFIER_BYTES: usize = 63;

pub struct PostgresProvider {
    name: String,
    /// The server, and how to reach it.
    target: Target,
    terminate_sessions: bool,
    timeout: Duration,
    /// One connection, opened on first use and reopened after any failure;
    /// grants are rare enough that a pool would only add idle connections.
    connection: Mutex<Option<Arc<Client>>>,
}

/// What went wrong, before the provider name and redaction are added.
type Failure = String;

impl PostgresProvider {
    pub fn new(
        name: &str,
        url: &str,
        terminate_sessions: bool,
        timeout: Duration,
    ) -> Result<Self, String> {
        let target = Target::parse(url, "in its url_env", timeout)
            .map_err(|why| format!("provider {name}: {why}"))?;
        Ok(Self {
            name: name.to_string(),
            target,
            terminate_sessions,
            timeout,
            connection: Mutex::new(None),
        })
    }

    fn error(&self, action: &str, failure: Failure) -> ProviderError {
        ProviderError::new(
            &self.name,
            self.target.redact(&format!("{action}: {failure}")),
        )
    }

    async fn connect(&self) -> Result<Client, Failure> {
        self.target.connect().await
    }

    /// Run `work` on the connection within the provider's timeout. A
    /// connection that failed is dropped so the next call starts clean.
    async fn with_connection<T, F, Fut>(&self, action: &str, work: F) -> Result<T, ProviderError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempt = async {
            let client = {
                let mut slot = self.connection.lock().await;
                match slot.as_ref() {
                    Some(client) if !client.is_closed() => client.clone(),
                    _ => {
                        let client = Arc::new(self.connect().await?);
                        *slot = Some(client.clone());
                        client
                    }
                }
            };
            let result = work(client.clone()).await;
            if result.is_err() {
                let mut slot = self.connection.lock().await;
                if slot.as_ref().is_some_and(|kept| Arc::ptr_eq(kept, &client)) {
                    *slot = None;
                }
            }
            result
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(|failure| self.error(action, failure)),
            Err(_) => Err(self.error(
                action,
                format!(
                    "PostgreSQL at {} did not answer within {:?}",
                    self.target.shown_server(),
                    self.timeout
                ),
            )),
        }
    }
}

/// `name` as a quoted SQL identifier, or why it cannot be one.
pub fn quote_identifier(name: &str, what: &str) -> Result<String, Failure> {
    if name.is_empty() || name.contains('\0') {
        return Err(format!("{what} `{name}` is not a valid role name"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{what} `{name}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte limit for role names"
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Which of `names` exist as roles.
async fn existing_roles(client: &Client, names: &[&str]) -> Result<Vec<String>, Failure> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rows = client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

fn has(roles: &[String], name: &str) -> bool {
    roles.iter().any(|role| role == name)
}

/// Who granted `member` its membership in `role` (empty: not a member).
async fn grantors(client: &Client, role: &str, member: &str) -> Result<Vec<String>, Failure> {
    let rows = client
        .query(
            "SELECT g.rolname::text
               FROM pg_auth_members am
               JOIN pg_roles r ON r.oid = am.roleid
               JOIN pg_roles m ON m.oid = am.member
               JOIN pg_roles g ON g.oid = am.grantor
              WHERE r.rolname = $1 AND m.rolname = $2",
            &[&role, &member],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

async fn grant_role(client: &Client, target: &str, principal: &str) -> Result<(), Failure> {
    let role = quote_identifier(target, "target")?;
    let login = quote_identifier(principal, "principal")?;
    let existing = existing_roles(client, &[target, principal]).await?;
    if !has(&existing, target) {
        return Err(format!("there is no role `{target}` (the group's target)"));
    }
    if !has(&existing, principal) {
        return Err(format!(
            "there is no login `{principal}` for this user; a DBA must create it (or set the user's principal in [identities])"
        ));
    }
    client
        .batch_execute(&format!("GRANT {role} TO {login}"))
        .await
        .map_err(|e| describe(&e))
}

async fn revoke_role(
    client: &Client,
    target: &str,
    principal: &str,
    terminate_sessions: bool,
) -> Result<(), Failure> {
    let role = quote_identifier(target, "target")?;
    let login = quote_identifier(principal, "principal")?;
    let existing = existing_roles(client, &[target, principal]).await?;
    if has(&existing, target) && has(&existing, principal) {
        client
            .batch_execute(&format!("REVOKE {role} FROM {login}"))
            .await
            .map_err(|e| describe(&e))?;
        // Since PostgreSQL 16 a plain REVOKE only removes the memberships
        // our own role granted; take away the others by naming their grantor.
        for grantor in grantors(client, target, principal).await? {
            let by = quote_identifier(&grantor, "grantor")?;
            client
                .batch_execute(&format!("REVOKE {role} FROM {login} GRANTED BY {by}"))
                .await
                .map_err(|e| describe(&e))?;
        }
        let left = grantors(client, target, principal).await?;
        if !left.is_empty() {
            return Err(format!(
                "`{principal}` is still a member of `{target}` after REVOKE (granted by {}); jitbot's database role may lack the right to revoke it",
                left.join(", ")
            ));
        }
    }
    if terminate_sessions && has(&existing, principal) {
        client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[&principal],
            )
            .await
            .map_err(|e| {
                format!(
                    "ending the open sessions of `{principal}`: {}",
                    describe(&e)
                )
            })?;
    }
    Ok(())
}

async fn role_members(client: &Client, target: &str) -> Result<Vec<String>, Failure> {
    if existing_roles(client, &[target]).await?.is_empty() {
        return Err(format!("there is no role `{target}` (the group's target)"));
    }
    let rows = client
        .query(
            "SELECT m.rolname::text
               FROM pg_auth_members am
               JOIN pg_roles r ON r.oid = am.roleid
               JOIN pg_roles m ON m.oid = am.member
              WHERE r.rolname = $1
              GROUP BY m.rolname
              ORDER BY m.rolname",
            &[&target],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// How many client sessions `login` has open now.
async fn open_sessions(client: &Client, login: &str) -> Result<i64, Failure> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE usename = $1 AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()",
            &[&login],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok(row.get(0))
}

#[async_trait]
impl Provider for PostgresProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        let (target, principal) = (access.target.clone(), access.principal.clone());
        self.with_connection("grant", |client| async move {
            grant_role(&client, &target, &principal).await
        })
        .await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        let (target, principal) = (access.target.clone(), access.principal.clone());
        let terminate = self.terminate_sessions;
        self.with_connection("revoke", |client| async move {
            revoke_role(&client, &target, &principal, terminate).await
        })
        .await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let target = target.to_string();
        self.with_connection("holders", |client| async move {
            role_members(&client, &target).await
        })
        .await
    }

    async fn activity(&self, principal: &str, _target: &str) -> Result<Activity, ProviderError> {
        let login = principal.to_string();
        self.with_connection("activity", |client| async move {
            let sessions = open_sessions(&client, &login).await?;
            Ok(Activity {
                in_use: sessions > 0,
                last_used: None,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_so_they_stay_one_name() {
        assert_eq!(quote_identifier("alice", "p").unwrap(), "\"alice\"");
        assert_eq!(
            quote_identifier("a\"; DROP ROLE x; --", "p").unwrap(),
            "\"a\"\"; DROP ROLE x; --\""
        );
    }

    #[test]
    fn names_postgres_would_truncate_or_reject_are_refused() {
        let long = "a".repeat(64);
        let err = quote_identifier(&long, "principal").unwrap_err();
        assert!(err.contains("63-byte limit"), "{err}");
        assert!(quote_identifier(&"a".repeat(63), "principal").is_ok());
        assert!(quote_identifier("a\0b", "principal").is_err());
        assert!(quote_identifier("", "principal").is_err());
    }

    #[test]
    fn the_password_never_appears_in_messages() {
        let provider = PostgresProvider::new(
            "pg",
            "postgres://jitbot:hunter2-secret@db.internal:6543/app",
            false,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(provider.target.shown_server(), "db.internal:6543");
        let error = provider.error("grant", "auth failed for hunter2-secret".into());
        assert_eq!(error.message, "grant: auth failed for [redacted]");
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = PostgresProvider::new(
            "pg",
            "postgres://u:pw@host:notaport/db",
            false,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.contains("url_env is not valid"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
