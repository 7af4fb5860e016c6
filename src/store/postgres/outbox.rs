//! The outbox, shared: each replica claims the ready queues it delivers.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{decode, with_conn, Kind, PgError, PgStore, SHORT_CALL};
use crate::store::{Claimed, OutboxBatch, OutboxEntry, OutboxStore, StoreError};

/// Claim up to $3 queues for $1 whose head may be tried at $2, not being
/// delivered here ($4), taking over claims whose lease lapsed. Leases last
/// $5 milliseconds.
const CLAIM_READY: &str = "
WITH ready AS (
    SELECT queue FROM outbox_queues
    WHERE ready_ms <= $2
      AND NOT (queue = ANY($4))
      AND (claimed_by IS NULL OR lease_until <= clock_timestamp())
    ORDER BY ready_ms
    LIMIT $3::bigint
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE outbox_queues q SET claimed_by = $1, lease_until = clock_timestamp() + $5::bigint * interval '1 millisecond'
FROM ready WHERE q.queue = ready.queue
RETURNING q.queue, q.ready_ms";

/// The first $2 entries of each queue in $1.
const HEADS: &str = "
SELECT o.seq, o.queue, o.message, o.attempts, o.next_attempt_ms, o.created_ms, o.last_error
FROM unnest($1::text[]) AS q(queue)
CROSS JOIN LATERAL (
    SELECT * FROM outbox WHERE outbox.queue = q.queue ORDER BY seq LIMIT $2::bigint
) o";

fn millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {ms}")))
}

fn entry(row: &Row) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        seq: row.get::<_, i64>(0) as u64,
        queue: row.get(1),
        message: decode(row.get(2))?,
        attempts: row.get::<_, i32>(3) as u32,
        next_attempt_at: millis(row.get(4))?,
        created_at: millis(row.get(5))?,
        last_error: row.get(6),
    })
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_ready(
        &self,
        now: DateTime<Utc>,
        max_queues: usize,
        per_queue: usize,
        skip: &(dyn for<'q> Fn(&'q str) -> bool + Sync),
    ) -> Result<OutboxBatch, StoreError> {
        let now_ms = now.timestamp_millis();
        let busy: Vec<String> = self
            .keeper
            .held_queues()
            .into_iter()
            .filter(|queue| skip(queue))
            .chain(self.keeper.releasing_queues())
            .collect();
        let max_queues = max_queues.min(i32::MAX as usize) as i64;
        let per_queue = per_queue.min(i32::MAX as usize) as i64;
        let lease_ms = self.keeper.lease_ms();
        let (claimed, rows, next_ready) =
            with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
                let claim = conn.prepared(CLAIM_READY).await?;
                let next = conn
                    .prepared(
                        "SELECT ready_ms FROM outbox_queues WHERE ready_ms > $1
                         ORDER BY ready_ms LIMIT 1",
                    )
                    .await?;
                // Sent together: what is not ready yet is not claimed.
                let claim_params: [&(dyn ToSql + Sync); 5] =
                    [&self.me, &now_ms, &max_queues, &busy, &lease_ms];
                let next_params: [&(dyn ToSql + Sync); 1] = [&now_ms];
                let (claimed, next_ready) = tokio::join!(
                    conn.client().query(&claim, &claim_params),
                    conn.client().query_opt(&next, &next_params)
                );
                let (claimed, next_ready) = (claimed?, next_ready?);
                let mut queues: Vec<(String, i64)> =
                    claimed.iter().map(|row| (row.get(0), row.get(1))).collect();
                queues.sort_by_key(|(queue, ready)| (*ready, queue.clone()));
                let names: Vec<&str> = queues.iter().map(|(queue, _)| queue.as_str()).collect();
                let rows = if names.is_empty() {
                    Vec::new()
                } else {
                    let heads = conn.prepared(HEADS).await?;
                    conn.client().query(&heads, &[&names, &per_queue]).await?
                };
                Ok::<_, PgError>((queues, rows, next_ready.map(|row| row.get::<_, i64>(0))))
            })?;
        let mut entries: HashMap<String, Vec<OutboxEntry>> = HashMap::new();
        for row in &rows {
            let entry = entry(row)?;
            entries.entry(entry.queue.clone()).or_default().push(entry);
        }
        let mut batch = OutboxBatch {
            queues: Vec::new(),
            next_ready: next_ready.and_then(DateTime::from_timestamp_millis),
        };
        for (queue, _) in claimed {
            let lease = self.keeper.hold_queue(&queue);
            match entries.remove(&queue) {
                Some(mut items) => {
                    items.sort_by_key(|e| e.seq);
                    batch.queues.push(Claimed { item: items, lease });
                }
                // A queue row left without entries: tidy it away.
                None => {
                    with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
                        let settle = conn.prepared("SELECT jitbot_settle_queue($1)").await?;
                        conn.client().execute(&settle, &[&queue]).await?;
                        Ok::<_, PgError>(())
                    })?;
                }
            }
        }
        Ok(batch)
    }

    async fn outbox_done(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let seq = entry.seq as i64;
        with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
            let done = conn.prepared("SELECT jitbot_outbox_done($1, $2)").await?;
            conn.client().execute(&done, &[&seq, &entry.queue]).await?;
            Ok::<_, PgError>(())
        })
    }

    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let (seq, attempts) = (entry.seq as i64, entry.attempts as i32);
        let next_ms = entry.next_attempt_at.timestamp_millis();
        with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
            let retry = conn
                .prepared("SELECT jitbot_outbox_retry($1, $2, $3, $4, $5)")
                .await?;
            conn.client()
                .execute(
                    &retry,
                    &[&seq, &attempts, &next_ms, &entry.last_error, &entry.queue],
                )
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn outbox_stats(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        let (count, oldest) = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT count(*), min(created_ms) FROM outbox")
                .await?;
            let row = conn.client().query_one(&statement, &[]).await?;
            Ok::<_, PgError>((row.get::<_, i64>(0), row.get::<_, Option<i64>>(1)))
        })?;
        Ok((
            count.max(0) as usize,
            oldest.and_then(DateTime::from_timestamp_millis),
        ))
    }
}
