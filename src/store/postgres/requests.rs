//! Requests and their lifecycle changes, with their effects, in one
//! transaction each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::{decode, encode, with_conn, Kind, PgError, PgStore, LONG_CALL, SHORT_CALL};
use crate::domain::ids::{Actor, RequestId};
use crate::domain::job::Job;
use crate::domain::quota::FilingLimits;
use crate::domain::quota::Quota;
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::postgres::write::{requester_key, Pipeline};
use crate::store::{Applied, Effects, Filed, RequestStore, StoreError, Write};

/// Ids fetched from the sequence at once.
const ID_BLOCK: i32 = 32;

/// What one attempt at filing found.
enum Filing {
    Written,
    IdTaken,
    Refused(crate::domain::quota::QuotaRefusal),
}

#[async_trait]
impl RequestStore for PgStore {
    async fn next_id(&self) -> Result<u64, StoreError> {
        if let Some(id) = self.spare_ids().pop() {
            return Ok(id);
        }
        // A block at a time: ids are unique across replicas (one
        // sequence), and the round trip is paid once per block.
        let mut block: Vec<u64> = with_conn!(self, bookkeeping, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT nextval('ids') FROM generate_series(1, $1::integer)")
                .await?;
            let rows = conn.client().query(&statement, &[&ID_BLOCK]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get::<_, i64>(0) as u64).collect())
        })?;
        // Handed out in increasing order (a job id breaks ties between jobs
        // due at the same millisecond), also when two callers fetched a
        // block at the same time.
        let mut spare = self.spare_ids();
        spare.append(&mut block);
        spare.sort_unstable_by(|a, b| b.cmp(a));
        spare
            .pop()
            .ok_or_else(|| StoreError::Corrupt("the id sequence gave nothing".into()))
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
            // One round trip: open, take the job (if any), lock and read
            // the request.
            let consume = PgStore::consume_statement(&mut conn).await?;
            let read = conn
                .prepared("SELECT body FROM requests WHERE id = $1 FOR UPDATE")
                .await?;
            conn.begin_pending();
            let job_id = consume_job.map(|job| job.id as i64);
            let id_text = id.as_str();
            let read_params: [&(dyn ToSql + Sync); 1] = [&id_text];
            let (begun, consumed, row) = {
                let client = conn.client();
                let consuming = async {
                    match job_id {
                        Some(job_id) => client
                            .execute(&consume, &[&job_id, &self.me])
                            .await
                            .map(Some),
                        None => Ok(None),
                    }
                };
                tokio::join!(
                    client.batch_execute("BEGIN"),
                    consuming,
                    client.query_opt(&read, &read_params)
                )
            };
            begun?;
            if consumed? == Some(0) {
                conn.rollback().await?;
                return Ok(Applied::JobGone);
            }
            let current: Option<AccessRequest> = match row? {
                Some(row) => Some(decode(row.get(0))?),
                None => None,
            };
            let Some(write) = change(current.as_ref()) else {
                // Not even the job's removal is kept.
                conn.rollback().await?;
                return Ok(Applied::Skipped);
            };
            let mut pipeline = Pipeline::default();
            if let Some(request) = &write.request {
                self.put_request(&mut conn, &mut pipeline, current.as_ref(), request)
                    .await?;
            }
            self.commit_with_effects(&mut conn, pipeline, &write.effects, now)
                .await?;
            Ok::<_, PgError>(Applied::Written)
        })
    }

    async fn file(
        &self,
        requests: &[AccessRequest],
        effects: &Effects,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<Filed, StoreError> {
        let Some((request, others)) = requests.split_first() else {
            return Ok(Filed::Written);
        };
        let bodies = requests.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let stamped = self.clock.now();
        let empty_quota = encode(&Quota::default())?;
        let requester = requester_key(&request.requester);
        let filing = with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            // One round trip: open, insert the request unless its id is
            // taken, lock and read the requester's quota.
            let insert = conn
                .prepared(
                    "INSERT INTO requests (id, requester, created_ms, live, body)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            let lock_quota = PgStore::lock_quota_statement(&mut conn).await?;
            conn.begin_pending();
            let row = |request: &AccessRequest| {
                (
                    request.id.as_str().to_string(),
                    request.created_at.timestamp_millis(),
                    request.may_hold_access(),
                )
            };
            let (id_text, created_ms, live) = row(request);
            let insert_params: [&(dyn ToSql + Sync); 5] =
                [&id_text, &requester, &created_ms, &live, &bodies[0]];
            let quota_params: [&(dyn ToSql + Sync); 2] = [&requester, &empty_quota];
            let (begun, inserted, quota) = {
                let client = conn.client();
                tokio::join!(
                    client.batch_execute("BEGIN"),
                    client.execute(&insert, &insert_params),
                    client.query_one(&lock_quota, &quota_params)
                )
            };
            begun?;
            let mut inserted = inserted?;
            // The other members of a bundle, in the same transaction.
            for (other, body) in others.iter().zip(&bodies[1..]) {
                let (id_text, created_ms, live) = row(other);
                let params: [&(dyn ToSql + Sync); 5] =
                    [&id_text, &requester, &created_ms, &live, body];
                inserted = inserted.min(conn.client().execute(&insert, &params).await?);
            }
            if inserted == 0 {
                conn.rollback().await?;
                return Ok(Filing::IdTaken);
            }
            let mut quota: Quota = decode(quota?.get(0))?;
            for request in requests {
                if let Err(refusal) = quota.admit_request(request, limits, now) {
                    conn.rollback().await?;
                    return Ok(Filing::Refused(refusal));
                }
            }
            let mut pipeline = Pipeline::default();
            self.put_quota(&mut conn, &mut pipeline, &request.requester, &quota)
                .await?;
            self.commit_with_effects(&mut conn, pipeline, effects, stamped)
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

    async fn pending_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let quotas: Vec<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            let statement = conn.prepared("SELECT body FROM quotas").await?;
            let rows = conn.client().query(&statement, &[]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        let mut ids = Vec::new();
        for body in &quotas {
            let quota: Quota = decode(body)?;
            ids.extend(quota.pending_ids().iter().map(|id| id.as_str().to_string()));
        }
        let bodies: Vec<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM requests WHERE id = ANY($1)")
                .await?;
            let rows = conn.client().query(&statement, &[&ids]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        let mut requests = bodies
            .iter()
            .map(|body| decode(body))
            .collect::<Result<Vec<AccessRequest>, _>>()?;
        requests.retain(|r| r.state == RequestState::Pending);
        requests.sort_by_key(|r| r.created_at);
        Ok(requests)
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
            self.commit_with_effects(&mut conn, Pipeline::default(), effects, now)
                .await?;
            Ok::<_, PgError>(())
        })
    }
}
