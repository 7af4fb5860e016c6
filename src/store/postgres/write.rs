//! The writes every transaction shares: a request and the rows that follow
//! it, and a change's effects — jobs, outbox messages, audit events.
//!
//! A change's writes do not depend on each other's answers, so they are
//! queued in a [`Pipeline`] and sent together with the `COMMIT`: one round
//! trip for all of them. Reads that decide what to write (the request, a
//! quota) are the only other round trips.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::{decode, encode, PgError, PgStore};
use crate::domain::ids::Actor;
use crate::domain::job::Job;
use crate::domain::quota::Quota;
use crate::domain::request::AccessRequest;
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

type Param = Box<dyn ToSql + Sync + Send>;

/// Writes queued to be sent together, in order, ending with the `COMMIT`.
#[derive(Default)]
pub(super) struct Pipeline {
    steps: Vec<(Statement, Vec<Param>)>,
}

impl Pipeline {
    pub(super) fn push(&mut self, statement: Statement, params: Vec<Param>) {
        self.steps.push((statement, params));
    }

    /// Send every write and the `COMMIT` at once. Should one write fail,
    /// the server turns the `COMMIT` into a rollback; the write's error is
    /// what is returned.
    pub(super) async fn commit(self, conn: &mut Conn) -> Result<(), PgError> {
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .steps
            .iter()
            .map(|(_, params)| {
                params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let (written, committed) = {
            let client = conn.client();
            let writes = self
                .steps
                .iter()
                .zip(&params)
                .map(|((statement, _), params)| client.execute(statement, params));
            tokio::join!(
                futures_util::future::join_all(writes),
                client.batch_execute("COMMIT")
            )
        };
        for outcome in written {
            outcome?;
        }
        committed?;
        conn.committed();
        Ok(())
    }
}

impl PgStore {
    /// The statement removing `job` if this replica may: it holds the
    /// claim, or nobody does any longer. Removes nothing if it is gone or
    /// another replica owns it.
    pub(super) async fn consume_statement(conn: &mut Conn) -> Result<Statement, PgError> {
        Ok(conn
            .prepared(
                "DELETE FROM jobs WHERE id = $1
                   AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until <= clock_timestamp())",
            )
            .await?)
    }

    /// Queue the writes of `request`, knowing what it was before
    /// (`current`), and the rows that follow it: liveness, principal owner,
    /// the requester's count of waiting requests (read and locked now, if
    /// it changes).
    pub(super) async fn put_request(
        &self,
        conn: &mut Conn,
        pipeline: &mut Pipeline,
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
            pipeline.push(
                statement,
                vec![
                    Box::new(request.id.as_str().to_string()),
                    Box::new(requester_key(&request.requester)),
                    Box::new(request.created_at.timestamp_millis()),
                    Box::new(live),
                    Box::new(body),
                ],
            );
        } else {
            let statement = conn
                .prepared("UPDATE requests SET live = $2, body = $3 WHERE id = $1")
                .await?;
            pipeline.push(
                statement,
                vec![
                    Box::new(request.id.as_str().to_string()),
                    Box::new(live),
                    Box::new(body),
                ],
            );
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
            pipeline.push(
                statement,
                vec![
                    Box::new(request.group.as_str().to_string()),
                    Box::new(principal.clone()),
                    Box::new(encode(&request.requester)?),
                ],
            );
        }
        if Quota::is_moved_by(current, request) {
            let mut quota = self.lock_quota(conn, &request.requester).await?;
            quota.follow(current, request);
            self.put_quota(conn, pipeline, &request.requester, &quota)
                .await?;
        }
        Ok(())
    }

    /// The statement reading the requester's quota and locking it until
    /// the transaction ends. The row is created first if need be, so that
    /// two first filings of one person cannot both read "nothing filed
    /// yet". Parameters: the requester's key, an empty quota.
    pub(super) async fn lock_quota_statement(conn: &mut Conn) -> Result<Statement, PgError> {
        Ok(conn
            .prepared(
                "INSERT INTO quotas (requester, body) VALUES ($1, $2)
                 ON CONFLICT (requester) DO UPDATE SET requester = EXCLUDED.requester
                 RETURNING body",
            )
            .await?)
    }

    /// The requester's quota, locked until the transaction ends.
    async fn lock_quota(&self, conn: &mut Conn, requester: &Actor) -> Result<Quota, PgError> {
        let statement = Self::lock_quota_statement(conn).await?;
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
        pipeline: &mut Pipeline,
        requester: &Actor,
        quota: &Quota,
    ) -> Result<(), PgError> {
        let statement = conn
            .prepared("UPDATE quotas SET body = $2 WHERE requester = $1")
            .await?;
        pipeline.push(
            statement,
            vec![Box::new(requester_key(requester)), Box::new(encode(quota)?)],
        );
        Ok(())
    }

    /// Queue `jobs`, unclaimed.
    pub(super) async fn insert_jobs(
        &self,
        conn: &mut Conn,
        pipeline: &mut Pipeline,
        jobs: &[Job],
    ) -> Result<(), PgError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id as i64).collect();
        let due: Vec<i64> = jobs.iter().map(due_ms).collect();
        let lanes: Vec<String> = jobs.iter().map(|j| j.lane.clone()).collect();
        let bodies = jobs.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let statement = conn
            .prepared(
                "INSERT INTO jobs (id, due_ms, lane, body)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])",
            )
            .await?;
        pipeline.push(
            statement,
            vec![
                Box::new(ids),
                Box::new(due),
                Box::new(lanes),
                Box::new(bodies),
            ],
        );
        Ok(())
    }

    /// Queue a change's effects after `pipeline`'s writes, and commit them
    /// all in one round trip.
    ///
    /// The audit events are written unsealed, in order, and chained soon
    /// after by the database (`jitbot_seal_audit`, see `audit.rs`): taking
    /// the chain's head here would make every audited change wait for the
    /// previous one's flush to disk.
    pub(super) async fn commit_with_effects(
        &self,
        conn: &mut Conn,
        mut pipeline: Pipeline,
        effects: &Effects,
        now: DateTime<Utc>,
    ) -> Result<(), PgError> {
        self.insert_jobs(conn, &mut pipeline, &effects.jobs).await?;
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
                .prepared("SELECT jitbot_hold_queues($1::text[], $2::bigint)")
                .await?;
            pipeline.push(
                lock_queues,
                vec![Box::new(queues.clone()), Box::new(now_ms)],
            );
            let insert = conn
                .prepared(
                    "INSERT INTO outbox (queue, message, next_attempt_ms, created_ms)
                     SELECT queue, message, $3, $3
                     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(queue, message, n)
                     ORDER BY n",
                )
                .await?;
            pipeline.push(
                insert,
                vec![Box::new(queues), Box::new(messages), Box::new(now_ms)],
            );
        }
        if !effects.audit.is_empty() {
            let records: Vec<String> = effects
                .audit
                .iter()
                .map(|record| record.unsealed_json())
                .collect();
            let append = conn
                .prepared(
                    "INSERT INTO audit_pending (fields)
                     SELECT fields FROM unnest($1::text[]) WITH ORDINALITY AS r(fields, n)
                     ORDER BY n",
                )
                .await?;
            pipeline.push(append, vec![Box::new(records)]);
        }
        pipeline.commit(conn).await
    }
}
