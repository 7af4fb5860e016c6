//! The writes every transaction shares: a request and the rows that follow
//! it, and a change's effects — jobs, outbox messages, audit events.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::{decode, encode, PgError, PgStore};
use crate::domain::ids::Actor;
use crate::domain::job::Job;
use crate::domain::quota::Quota;
use crate::domain::request::{AccessRequest, RequestState};
use crate::postgres::pool::Conn;
use crate::store::Effects;

/// How a requester is keyed: their platform and id.
pub(super) fn requester_key(actor: &Actor) -> String {
    format!("{}:{}", actor.platform, actor.user.as_str())
}

/// A job's due time rounded *up* to the millisecond: a job must never come
/// up before its due time (an expiry run early would find its grant not
/// yet over).
pub(super) fn due_ms(job: &Job) -> i64 {
    let sub_millisecond = job.due_at.timestamp_subsec_nanos() % 1_000_000 != 0;
    job.due_at.timestamp_millis() + i64::from(sub_millisecond)
}

impl PgStore {
    /// Remove `job` if this replica may: it holds the claim, or nobody
    /// does any longer. `false` if it is gone or another replica owns it.
    pub(super) async fn consume_job(&self, conn: &mut Conn, job: &Job) -> Result<bool, PgError> {
        let statement = conn
            .prepared(
                "DELETE FROM jobs WHERE id = $1
                   AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until <= clock_timestamp())",
            )
            .await?;
        let removed = conn
            .client()
            .execute(&statement, &[&(job.id as i64), &self.me])
            .await?;
        Ok(removed == 1)
    }

    /// Write `request`, knowing what it was before (`current`), and the
    /// rows that follow it: liveness, principal owner, the requester's
    /// count of waiting requests.
    pub(super) async fn put_request(
        &self,
        conn: &mut Conn,
        current: Option<&AccessRequest>,
        request: &AccessRequest,
    ) -> Result<(), PgError> {
        let body = encode(request)?;
        let live = request.may_hold_access();
        if current.is_none() {
            let statement = conn
                .prepared(
                    "INSERT INTO requests (id, requester, created_ms, live, body)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .await?;
            conn.client()
                .execute(
                    &statement,
                    &[
                        &request.id.as_str(),
                        &requester_key(&request.requester),
                        &request.created_at.timestamp_millis(),
                        &live,
                        &body,
                    ],
                )
                .await?;
        } else {
            let statement = conn
                .prepared("UPDATE requests SET live = $2, body = $3 WHERE id = $1")
                .await?;
            conn.client()
                .execute(&statement, &[&request.id.as_str(), &live, &body])
                .await?;
        }
        let known_principal = current.and_then(|c| c.principal.as_ref());
        if let Some(principal) = request
            .principal
            .as_ref()
            .filter(|p| Some(*p) != known_principal)
        {
            let statement = conn
                .prepared(
                    "INSERT INTO principal_owners (grp, principal, owner) VALUES ($1, $2, $3)
                     ON CONFLICT (grp, principal) DO UPDATE SET owner = EXCLUDED.owner",
                )
                .await?;
            conn.client()
                .execute(
                    &statement,
                    &[
                        &request.group.as_str(),
                        principal,
                        &encode(&request.requester)?,
                    ],
                )
                .await?;
        }
        let was = current.is_some_and(|c| c.state == RequestState::Pending);
        let is = request.state == RequestState::Pending;
        if was != is {
            let mut quota = self.lock_quota(conn, &request.requester).await?;
            if is {
                quota.note_pending(&request.id);
            } else {
                quota.decided(&request.id);
            }
            self.put_quota(conn, &request.requester, &quota).await?;
        }
        Ok(())
    }

    /// The requester's quota, locked until the transaction ends. The row
    /// is created first if need be, so that two first filings of one
    /// person cannot both read "nothing filed yet".
    pub(super) async fn lock_quota(
        &self,
        conn: &mut Conn,
        requester: &Actor,
    ) -> Result<Quota, PgError> {
        let statement = conn
            .prepared(
                "INSERT INTO quotas (requester, body) VALUES ($1, $2)
                 ON CONFLICT (requester) DO UPDATE SET requester = EXCLUDED.requester
                 RETURNING body",
            )
            .await?;
        let empty = encode(&Quota::default())?;
        let row = conn
            .client()
            .query_one(&statement, &[&requester_key(requester), &empty])
            .await?;
        Ok(decode(row.get(0))?)
    }

    pub(super) async fn put_quota(
        &self,
        conn: &mut Conn,
        requester: &Actor,
        quota: &Quota,
    ) -> Result<(), PgError> {
        let statement = conn
            .prepared(
                "INSERT INTO quotas (requester, body) VALUES ($1, $2)
                 ON CONFLICT (requester) DO UPDATE SET body = EXCLUDED.body",
            )
            .await?;
        conn.client()
            .execute(&statement, &[&requester_key(requester), &encode(quota)?])
            .await?;
        Ok(())
    }

    /// Insert `jobs`, unclaimed.
    pub(super) async fn insert_jobs(&self, conn: &mut Conn, jobs: &[Job]) -> Result<(), PgError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id as i64).collect();
        let due: Vec<i64> = jobs.iter().map(due_ms).collect();
        let lanes: Vec<&str> = jobs.iter().map(|j| j.lane.as_str()).collect();
        let bodies = jobs.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let statement = conn
            .prepared(
                "INSERT INTO jobs (id, due_ms, lane, body)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])",
            )
            .await?;
        conn.client()
            .execute(&statement, &[&ids, &due, &lanes, &bodies])
            .await?;
        Ok(())
    }

    /// Write a change's effects and commit the open transaction.
    ///
    /// The audit events are chained by the server (`jitbot_append_audit`),
    /// in the same round trip as the `COMMIT`: the chain's head is the one
    /// row every audited change takes, so it is held for the statement and
    /// the commit only, never across a round trip to this process.
    pub(super) async fn commit_with_effects(
        &self,
        conn: &mut Conn,
        effects: &Effects,
        now: DateTime<Utc>,
    ) -> Result<(), PgError> {
        self.insert_jobs(conn, &effects.jobs).await?;
        if !effects.outbox.is_empty() {
            let queues: Vec<String> = effects.outbox.iter().map(|m| m.queue_key()).collect();
            let messages = effects
                .outbox
                .iter()
                .map(encode)
                .collect::<Result<Vec<_>, _>>()?;
            let now_ms = now.timestamp_millis();
            // Take each queue's row (in one order, so two writers cannot
            // deadlock): a delivery that is emptying the queue then sees
            // the new entry, or has dropped the row first.
            let lock_queues = conn
                .prepared(
                    "INSERT INTO outbox_queues (queue, ready_ms)
                     SELECT DISTINCT queue, $2::bigint FROM unnest($1::text[]) AS q(queue) ORDER BY queue
                     ON CONFLICT (queue) DO UPDATE SET queue = EXCLUDED.queue",
                )
                .await?;
            conn.client()
                .execute(&lock_queues, &[&queues, &now_ms])
                .await?;
            let insert = conn
                .prepared(
                    "INSERT INTO outbox (queue, message, next_attempt_ms, created_ms)
                     SELECT queue, message, $3, $3
                     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(queue, message, n)
                     ORDER BY n",
                )
                .await?;
            conn.client()
                .execute(&insert, &[&queues, &messages, &now_ms])
                .await?;
        }
        if effects.audit.is_empty() {
            conn.commit().await?;
            return Ok(());
        }
        let sealed = effects
            .audit
            .iter()
            .map(|record| record.unsealed_json())
            .collect::<Vec<_>>();
        let append = conn
            .prepared("SELECT jitbot_append_audit($1::text[])")
            .await?;
        let params: [&(dyn ToSql + Sync); 1] = [&sealed];
        // Sent together; should the append fail, the server turns the
        // COMMIT into a rollback, and the append's error is what counts.
        let (appended, committed) = {
            let client = conn.client();
            tokio::join!(
                client.query_one(&append, &params),
                client.batch_execute("COMMIT")
            )
        };
        appended?;
        committed?;
        conn.committed();
        Ok(())
    }
}
