//! Requests and their lifecycle changes, with their effects, in one
//! transaction each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{decode, encode, with_conn, Kind, PgError, PgStore, LONG_CALL, SHORT_CALL};
use crate::domain::ids::{Actor, RequestId};
use crate::domain::job::Job;
use crate::domain::quota::FilingLimits;
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::postgres::write::requester_key;
use crate::store::{Applied, Effects, Filed, RequestStore, StoreError, Write};

/// What one attempt at filing found.
enum Filing {
    Written,
    IdTaken,
    Refused(crate::domain::quota::QuotaRefusal),
}

#[async_trait]
impl RequestStore for PgStore {
    async fn next_id(&self) -> Result<u64, StoreError> {
        with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn.prepared("SELECT nextval('ids')").await?;
            let row = conn.client().query_one(&statement, &[]).await?;
            Ok::<_, PgError>(row.get::<_, i64>(0) as u64)
        })
    }

    async fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        let body: Option<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM requests WHERE id = $1")
                .await?;
            let row = conn.client().query_opt(&statement, &[&id.as_str()]).await?;
            Ok::<_, PgError>(row.map(|row| row.get(0)))
        })?;
        body.map(|body| decode(&body)).transpose()
    }

    async fn requests_of(&self, user: &Actor) -> Result<Vec<AccessRequest>, StoreError> {
        let bodies: Vec<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM requests WHERE requester = $1 ORDER BY created_ms DESC")
                .await?;
            let rows = conn
                .client()
                .query(&statement, &[&requester_key(user)])
                .await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        let mut requests = bodies
            .iter()
            .map(|body| decode(body))
            .collect::<Result<Vec<AccessRequest>, _>>()?;
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(requests)
    }

    async fn apply(
        &self,
        id: &RequestId,
        consume_job: Option<&Job>,
        change: &mut (dyn for<'r> FnMut(Option<&'r AccessRequest>) -> Option<Write> + Send),
    ) -> Result<Applied, StoreError> {
        let now = self.clock.now();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            conn.begin().await?;
            if let Some(job) = consume_job {
                if !self.consume_job(&mut conn, job).await? {
                    conn.rollback().await?;
                    return Ok(Applied::JobGone);
                }
            }
            let statement = conn
                .prepared("SELECT body FROM requests WHERE id = $1 FOR UPDATE")
                .await?;
            let row = conn.client().query_opt(&statement, &[&id.as_str()]).await?;
            let current: Option<AccessRequest> = match row {
                Some(row) => Some(decode(row.get(0))?),
                None => None,
            };
            let Some(write) = change(current.as_ref()) else {
                // Not even the job's removal is kept.
                conn.rollback().await?;
                return Ok(Applied::Skipped);
            };
            if let Some(request) = &write.request {
                self.put_request(&mut conn, current.as_ref(), request)
                    .await?;
            }
            self.commit_with_effects(&mut conn, &write.effects, now)
                .await?;
            Ok::<_, PgError>(Applied::Written)
        })
    }

    async fn file(
        &self,
        request: &AccessRequest,
        effects: &Effects,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<Filed, StoreError> {
        let body = encode(request)?;
        let stamped = self.clock.now();
        let filing = with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            conn.begin().await?;
            let insert = conn
                .prepared(
                    "INSERT INTO requests (id, requester, created_ms, live, body)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            let inserted = conn
                .client()
                .execute(
                    &insert,
                    &[
                        &request.id.as_str(),
                        &requester_key(&request.requester),
                        &request.created_at.timestamp_millis(),
                        &request.may_hold_access(),
                        &body,
                    ],
                )
                .await?;
            if inserted == 0 {
                conn.rollback().await?;
                return Ok(Filing::IdTaken);
            }
            let mut quota = self.lock_quota(&mut conn, &request.requester).await?;
            let pending = request.state == RequestState::Pending;
            if let Err(refusal) = quota.admit(&request.id, pending, limits, now) {
                conn.rollback().await?;
                return Ok(Filing::Refused(refusal));
            }
            self.put_quota(&mut conn, &request.requester, &quota)
                .await?;
            self.commit_with_effects(&mut conn, effects, stamped)
                .await?;
            Ok::<_, PgError>(Filing::Written)
        })?;
        Ok(match filing {
            Filing::Written => Filed::Written,
            Filing::IdTaken => Filed::IdTaken,
            Filing::Refused(refusal) => Filed::Refused(refusal),
        })
    }

    async fn live_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let bodies: Vec<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM requests WHERE live")
                .await?;
            let rows = conn.client().query(&statement, &[]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        bodies.iter().map(|body| decode(body)).collect()
    }

    async fn principal_owner(
        &self,
        group: &str,
        principal: &str,
    ) -> Result<Option<Actor>, StoreError> {
        let owner: Option<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT owner FROM principal_owners WHERE grp = $1 AND principal = $2")
                .await?;
            let row = conn
                .client()
                .query_opt(&statement, &[&group, &principal])
                .await?;
            Ok::<_, PgError>(row.map(|row| row.get(0)))
        })?;
        owner.map(|owner| decode(&owner)).transpose()
    }

    async fn record(&self, effects: &Effects) -> Result<(), StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            conn.begin().await?;
            self.commit_with_effects(&mut conn, effects, now).await?;
            Ok::<_, PgError>(())
        })
    }
}
