//! The due-index, shared: each replica claims the due jobs it will run.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::write::Pipeline;
use super::{decode, with_conn, Kind, PgError, PgStore, SHORT_CALL};
use crate::domain::job::Job;
use crate::store::{Applied, Claimed, DueJobs, Effects, JobStore, StoreError};

/// Claims are taken one replica at a time under this advisory lock, so two
/// replicas cannot each claim a job of the same lane ("jitc").
const CLAIM_LOCK: i64 = 0x6a69_7463;

/// Claim up to $3 due jobs for $1: unclaimed (or their lease lapsed), not
/// running here ($4), at most one per lane and none of a lane with a job
/// claimed (here or elsewhere). Leases last $5 milliseconds. A claim this
/// replica gave up is claimable once released.
const CLAIM_DUE: &str = "
WITH busy AS (
    SELECT DISTINCT lane FROM jobs
    WHERE claimed_by IS NOT NULL AND lane <> '' AND lease_until > clock_timestamp()
),
candidates AS (
    SELECT id, lane, due_ms FROM jobs
    WHERE due_ms <= $2
      AND NOT (id = ANY($4))
      AND (claimed_by IS NULL OR lease_until <= clock_timestamp())
      AND (lane = '' OR lane NOT IN (SELECT lane FROM busy))
    ORDER BY due_ms, id
    LIMIT $3::bigint * 4
    FOR UPDATE SKIP LOCKED
),
firsts AS (
    SELECT DISTINCT ON (CASE WHEN lane = '' THEN id::text ELSE lane END) id, due_ms
    FROM candidates
    ORDER BY CASE WHEN lane = '' THEN id::text ELSE lane END, due_ms, id
),
chosen AS (
    SELECT id FROM firsts ORDER BY due_ms, id LIMIT $3::bigint
)
UPDATE jobs SET claimed_by = $1, lease_until = clock_timestamp() + $5::bigint * interval '1 millisecond'
FROM chosen WHERE jobs.id = chosen.id
RETURNING jobs.body";

#[async_trait]
impl JobStore for PgStore {
    async fn due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<DueJobs, StoreError> {
        let now_ms = now.timestamp_millis();
        // Not to be claimed: what runs here, and what was just given up
        // (its release is under way).
        let running: Vec<i64> = self
            .keeper
            .held_jobs()
            .into_iter()
            .filter(|id| skip(*id))
            .chain(self.keeper.releasing_jobs())
            .map(|id| id as i64)
            .collect();
        let limit = limit.min(i32::MAX as usize) as i64;
        let lease_ms = self.keeper.lease_ms();
        // A claim lost in a database crash only delays a job by one lease:
        // no need to wait for it to reach the disk.
        let (bodies, next_due) = with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
            let claim = conn.prepared(CLAIM_DUE).await?;
            let next = conn
                .prepared("SELECT due_ms FROM jobs WHERE due_ms > $1 ORDER BY due_ms LIMIT 1")
                .await?;
            let lock = format!("BEGIN; SELECT pg_advisory_xact_lock({CLAIM_LOCK})");
            let claim_params: [&(dyn ToSql + Sync); 5] =
                [&self.me, &now_ms, &limit, &running, &lease_ms];
            let next_params: [&(dyn ToSql + Sync); 1] = [&now_ms];
            // One round trip: should the claim fail, the server turns the
            // COMMIT into a rollback and the claim's error is returned.
            conn.begin_pending();
            let (locked, rows, committed, next_due) = {
                let client = conn.client();
                tokio::join!(
                    client.batch_execute(&lock),
                    client.query(&claim, &claim_params),
                    client.batch_execute("COMMIT"),
                    client.query_opt(&next, &next_params)
                )
            };
            locked?;
            let rows = rows?;
            committed?;
            conn.committed();
            let next_due = next_due?;
            let bodies: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            Ok::<_, PgError>((bodies, next_due.map(|row| row.get::<_, i64>(0))))
        })?;
        let mut jobs = bodies
            .iter()
            .map(|body| decode::<Job>(body))
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by_key(|job| (job.due_at, job.id));
        Ok(DueJobs {
            jobs: jobs
                .into_iter()
                .map(|job| {
                    let lease = self.keeper.hold_job(job.id);
                    Claimed { item: job, lease }
                })
                .collect(),
            next_due: next_due.and_then(DateTime::from_timestamp_millis),
        })
    }

    async fn reschedule(
        &self,
        job: &Job,
        next: &Job,
        effects: &Effects,
    ) -> Result<Applied, StoreError> {
        let now = self.clock.now();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let consume = PgStore::consume_statement(&mut conn).await?;
            conn.begin().await?;
            let consumed = conn
                .client()
                .execute(&consume, &[&(job.id as i64), &self.me])
                .await?;
            if consumed == 0 {
                conn.rollback().await?;
                return Ok(Applied::JobGone);
            }
            let mut pipeline = Pipeline::default();
            self.insert_jobs(&mut conn, &mut pipeline, std::slice::from_ref(next))
                .await?;
            self.commit_with_effects(&mut conn, pipeline, effects, now)
                .await?;
            Ok::<_, PgError>(Applied::Written)
        })
    }
}
