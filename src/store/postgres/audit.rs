//! The audit log: one hash chain for the whole deployment.
//!
//! A change writes its audit records unsealed (`audit_pending`, in the
//! change's own transaction); `jitbot_seal_audit` chains them. Every replica
//! seals what is pending a few times a second, and every read of the log
//! seals first, so a reader sees every change committed before it asked.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{decode, with_conn, Kind, PgError, PgStore, LONG_CALL, SHORT_CALL};
use crate::domain::audit::{verify_chain, AuditEvent, ChainBreak, ChainHead};
use crate::postgres::describe;
use crate::postgres::pool::{Conn, Pool};
use crate::store::{AuditStore, StoreError};

/// How often each replica seals what is pending.
const SEAL_EVERY: Duration = Duration::from_millis(200);

/// Seal pending audit records every [`SEAL_EVERY`] until `stop`.
pub(super) async fn keep_sealing(pool: Pool, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SEAL_EVERY) => {}
        }
        let sealing = async {
            let mut conn = pool.get().await?;
            seal(&mut conn).await.map_err(|e| describe(&e))?;
            conn.reusable();
            Ok::<_, String>(())
        };
        match tokio::time::timeout(SHORT_CALL, sealing).await {
            Ok(Ok(())) => {}
            // Whoever seals next seals these too; a reader seals first.
            Ok(Err(error)) => tracing::debug!(%error, "could not seal the audit log"),
            Err(_) => tracing::debug!("sealing the audit log timed out"),
        }
    }
}

/// Chain every pending audit record visible now, in its own transaction.
async fn seal(conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
    let statement = conn.prepared("SELECT jitbot_seal_audit()").await?;
    conn.client().execute(&statement, &[]).await?;
    Ok(())
}

impl PgStore {
    async fn events(
        &self,
        sql: &'static str,
        bound: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let texts: Vec<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            seal(&mut conn).await?;
            let statement = conn.prepared(sql).await?;
            let rows = conn.client().query(&statement, &[&bound, &limit]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        texts.iter().map(|text| decode(text)).collect()
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        let head: String = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            seal(&mut conn).await?;
            let statement = conn
                .prepared("SELECT head FROM audit_head WHERE singleton")
                .await?;
            let row = conn.client().query_one(&statement, &[]).await?;
            Ok::<_, PgError>(row.get(0))
        })?;
        decode(&head)
    }

    async fn audit_events(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let after = after.min(i64::MAX as u64) as i64;
        self.events(
            "SELECT event FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            after,
            limit,
        )
        .await
    }

    async fn audit_events_before(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let before = before.min(i64::MAX as u64) as i64;
        self.events(
            "SELECT event FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            before,
            limit,
        )
        .await
    }

    async fn verify_audit(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        // The head and the events from one snapshot, so writers that run
        // meanwhile cannot make a sound chain look broken.
        let (head, texts): (String, Vec<String>) =
            with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
                seal(&mut conn).await?;
                conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                let head = conn
                    .client()
                    .query_one("SELECT head FROM audit_head WHERE singleton", &[])
                    .await?;
                let rows = conn
                    .client()
                    .query("SELECT event FROM audit ORDER BY seq", &[])
                    .await?;
                conn.commit().await?;
                Ok::<_, PgError>((head.get(0), rows.iter().map(|row| row.get(0)).collect()))
            })?;
        let head: ChainHead = decode(&head)?;
        let events = texts
            .iter()
            .map(|text| decode::<AuditEvent>(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(verify_chain(events, &head))
    }
}
