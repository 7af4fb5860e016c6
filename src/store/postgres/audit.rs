//! The audit log: one hash chain for the whole deployment.
//!
//! A change writes its audit records unsealed (`audit_pending`, in the
//! change's own transaction); [`seal`] chains them, here and not in the
//! database, so `JITBOT_AUDIT_KEY` never leaves jitbot (migration 7). Every
//! replica seals what is pending a few times a second, and every read of
//! the log seals first, so a reader sees every change committed before it
//! asked. A process without the key seals nothing after a keyed event: the
//! replicas with the key do.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{decode, encode, with_conn, Kind, PgError, PgStore, LONG_CALL, SHORT_CALL};
use crate::domain::audit::{
    AuditEvent, AuditKey, AuditRecord, ChainBreak, ChainHead, ChainWalk, Link,
};
use crate::postgres::describe;
use crate::postgres::pool::{Conn, Pool};
use crate::store::{AuditStore, StoreError};

/// How often each replica seals what is pending.
const SEAL_EVERY: Duration = Duration::from_millis(200);

/// Seal pending audit records every [`SEAL_EVERY`] until `stop`.
pub(super) async fn keep_sealing(pool: Pool, key: Option<AuditKey>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SEAL_EVERY) => {}
        }
        let sealing = async {
            let mut conn = pool.get().await?;
            seal(&mut conn, key.as_ref()).await.map_err(|e| match e {
                PgError::Db(e) => describe(&e),
                PgError::Store(e) => e.to_string(),
            })?;
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

/// Chain every pending audit record visible now, in its own transaction,
/// under `key` if there is one. Sealers serialise on the head's row.
pub(super) async fn seal(conn: &mut Conn, key: Option<&AuditKey>) -> Result<(), PgError> {
    let any = conn
        .prepared("SELECT EXISTS (SELECT 1 FROM audit_pending)")
        .await?;
    let any: bool = conn.client().query_one(&any, &[]).await?.get(0);
    if !any {
        return Ok(());
    }
    conn.begin().await?;
    let head: String = conn
        .client()
        .query_one(
            "SELECT head FROM audit_head WHERE singleton FOR UPDATE",
            &[],
        )
        .await?
        .get(0);
    let mut head: ChainHead = decode(&head)?;
    if key.is_none() && head.seq > 0 {
        let last = conn
            .client()
            .query_opt(
                "SELECT event FROM audit WHERE seq = $1",
                &[&(head.seq.min(i64::MAX as u64) as i64)],
            )
            .await?;
        if let Some(last) = last {
            if decode::<AuditEvent>(&last.get::<_, String>(0))?.chain == Link::Keyed {
                // A plain link after a keyed one would break the chain:
                // these wait for a replica with the key.
                conn.rollback().await?;
                return Ok(());
            }
        }
    }
    // Read after the head's lock: what a sealer before us sealed is gone.
    let client = conn.client();
    let pending = client
        .query("SELECT id, fields FROM audit_pending ORDER BY id", &[])
        .await?;
    let mut ids = Vec::with_capacity(pending.len());
    let mut seqs = Vec::with_capacity(pending.len());
    let mut events = Vec::with_capacity(pending.len());
    for row in &pending {
        let record =
            AuditRecord::from_unsealed_json(row.get::<_, &str>(1)).map_err(StoreError::Corrupt)?;
        let (event, next) = record.seal_with(&head, key);
        ids.push(row.get::<_, i64>(0));
        seqs.push(event.seq.min(i64::MAX as u64) as i64);
        events.push(encode(&event)?);
        head = next;
    }
    client
        .execute(
            "INSERT INTO audit (seq, event) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&seqs, &events],
        )
        .await?;
    // Exactly what was sealed: a row committed meanwhile may have a lower
    // id (ids are taken before the commit); it waits for the next call.
    client
        .execute("DELETE FROM audit_pending WHERE id = ANY($1)", &[&ids])
        .await?;
    client
        .execute(
            "UPDATE audit_head SET head = $1 WHERE singleton",
            &[&encode(&head)?],
        )
        .await?;
    conn.commit().await?;
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
            seal(&mut conn, self.audit_key.as_ref()).await?;
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
            seal(&mut conn, self.audit_key.as_ref()).await?;
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

    async fn verify_audit_to(
        &self,
        shipped: Option<&ChainHead>,
    ) -> Result<Result<u64, ChainBreak>, StoreError> {
        // The head and the events from one snapshot, so writers that run
        // meanwhile cannot make a sound chain look broken.
        let (head, texts): (String, Vec<String>) =
            with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
                seal(&mut conn, self.audit_key.as_ref()).await?;
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
        let mut walk = ChainWalk::new(self.audit_key.as_ref(), shipped);
        for text in &texts {
            if let Err(broken) = walk.step(&decode::<AuditEvent>(text)?) {
                return Ok(Err(broken));
            }
        }
        Ok(walk.finish(&head))
    }
}
