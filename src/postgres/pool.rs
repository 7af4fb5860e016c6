//! A small connection pool: at most `size` connections, idle ones reused,
//! broken ones dropped, each with its own cache of prepared statements (a
//! prepared statement saves a round trip on every later use).
//!
//! A connection goes back to the pool only when its user said its work
//! finished cleanly ([`Conn::reusable`]). One given back otherwise — its
//! work timed out or was cancelled mid-query, or failed between `BEGIN`
//! and `COMMIT` — is closed: the server then rolls back whatever was open,
//! and nobody inherits a half-read answer or a dead socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};

use super::Target;

struct Idle {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

struct Shared {
    target: Target,
    idle: Mutex<Vec<Idle>>,
    slots: Arc<Semaphore>,
    /// How long `get` waits for a free slot and a connection.
    wait: Duration,
}

#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// A connection taken from the pool; it goes back when dropped, unless it
/// is broken or inside a transaction.
pub struct Conn {
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    in_transaction: bool,
    reusable: bool,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(target: Target, size: usize, wait: Duration) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                target,
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(size.max(1))),
                wait,
            }),
        }
    }

    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// A connection, waiting at most the pool's `wait` for one.
    pub async fn get(&self) -> Result<Conn, String> {
        let shared = &self.shared;
        let getting = async {
            let slot = shared
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| "the connection pool is closed".to_string())?;
            let reused = loop {
                let next = shared.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
                match next {
                    Some(idle) if idle.client.is_closed() => continue,
                    other => break other,
                }
            };
            let idle = match reused {
                Some(idle) => idle,
                None => Idle {
                    client: shared.target.connect().await?,
                    statements: HashMap::new(),
                },
            };
            Ok(Conn {
                client: Some(idle.client),
                statements: idle.statements,
                in_transaction: false,
                reusable: false,
                shared: shared.clone(),
                _slot: slot,
            })
        };
        match tokio::time::timeout(shared.wait, getting).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "PostgreSQL at {} did not answer within {}s",
                shared.target.shown_server(),
                shared.wait.as_secs_f32()
            )),
        }
    }

    /// Close every idle connection (the busy ones close when given back).
    pub fn close_idle(&self) {
        self.shared
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Conn {
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a pooled connection has its client until dropped")
    }

    /// `sql` prepared on this connection, once.
    pub async fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client().prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The work finished cleanly (or with an error the server reported):
    /// the connection may serve someone else.
    pub fn reusable(&mut self) {
        self.reusable = true;
    }

    pub async fn begin(&mut self) -> Result<(), tokio_postgres::Error> {
        self.begin_with("BEGIN").await
    }

    /// A `BEGIN` is about to be sent together with the first statements
    /// (pipelined): from now on the connection counts as in a transaction.
    pub fn begin_pending(&mut self) {
        self.in_transaction = true;
    }

    /// Open a transaction with `statement` (`BEGIN ISOLATION LEVEL …`).
    pub async fn begin_with(&mut self, statement: &str) -> Result<(), tokio_postgres::Error> {
        self.in_transaction = true;
        self.client().batch_execute(statement).await
    }

    pub async fn commit(&mut self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// The transaction was committed by a `COMMIT` sent some other way
    /// (pipelined with the statement before it).
    pub fn committed(&mut self) {
        self.in_transaction = false;
    }

    pub async fn rollback(&mut self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("ROLLBACK").await?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.reusable || self.in_transaction || client.is_closed() {
            // Dropping the client closes the connection; an open
            // transaction is rolled back by the server.
            return;
        }
        self.shared
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Idle {
                client,
                statements: std::mem::take(&mut self.statements),
            });
    }
}
