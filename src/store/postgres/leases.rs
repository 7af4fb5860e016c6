//! Keeping this replica's claims alive. Every claim it holds — a job, an
//! outbox queue, a named lease (a sweep) — is renewed every third of the
//! lease. A claim that another replica now owns is lost at once; when the
//! database cannot be reached, every claim not renewed for most of a lease
//! is lost, because another replica may take it over soon. Losing a claim
//! cancels its [`Lease`], and the work under it stops.
//!
//! Given-up claims are released in batches, so other replicas need not
//! wait for them to lapse.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use crate::postgres::pool::Pool;
use crate::store::Lease;

/// Which table a claim is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Claim {
    Job(u64),
    Queue(String),
    Named(String),
}

struct Held {
    lost: CancellationToken,
    renewed: Instant,
    /// Which claim of this key it is, so that giving up an old claim does
    /// not end a newer one of the same job or queue.
    generation: u64,
}

#[derive(Default)]
struct Claims {
    held: HashMap<Claim, Held>,
    /// Given up, to be released.
    released: Vec<Claim>,
    /// Being released now. Until that is done this replica must not claim
    /// them again: the release would clear the new claim.
    releasing: Vec<Claim>,
    generation: u64,
}

pub(super) struct Keeper {
    me: String,
    lease: Duration,
    claims: Mutex<Claims>,
    released: Notify,
}

impl Keeper {
    pub(super) fn new(me: String, lease: Duration) -> Keeper {
        Keeper {
            me,
            lease,
            claims: Mutex::new(Claims::default()),
            released: Notify::new(),
        }
    }

    pub(super) fn lease_ms(&self) -> i64 {
        self.lease.as_millis().min(i64::MAX as u128) as i64
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(self: &std::sync::Arc<Self>, claim: Claim) -> Lease {
        let lost = CancellationToken::new();
        let generation = {
            let mut claims = self.claims();
            claims.generation += 1;
            let generation = claims.generation;
            claims.held.insert(
                claim.clone(),
                Held {
                    lost: lost.clone(),
                    renewed: Instant::now(),
                    generation,
                },
            );
            generation
        };
        let keeper = std::sync::Arc::downgrade(self);
        Lease::new(lost, move || {
            let Some(keeper) = keeper.upgrade() else {
                return;
            };
            let mut claims = keeper.claims();
            if claims
                .held
                .get(&claim)
                .is_some_and(|held| held.generation == generation)
            {
                claims.held.remove(&claim);
                claims.released.push(claim);
                drop(claims);
                keeper.released.notify_one();
            }
        })
    }

    pub(super) fn hold_job(self: &std::sync::Arc<Self>, id: u64) -> Lease {
        self.hold(Claim::Job(id))
    }

    pub(super) fn hold_queue(self: &std::sync::Arc<Self>, queue: &str) -> Lease {
        self.hold(Claim::Queue(queue.to_string()))
    }

    pub(super) fn hold_named(self: &std::sync::Arc<Self>, name: &str) -> Lease {
        self.hold(Claim::Named(name.to_string()))
    }

    /// Jobs and queues given up but not yet released: not to be claimed
    /// again meanwhile.
    fn releasing(&self) -> Vec<Claim> {
        let claims = self.claims();
        claims
            .released
            .iter()
            .chain(&claims.releasing)
            .cloned()
            .collect()
    }

    /// Jobs this replica must not claim now: given up, not yet released.
    pub(super) fn releasing_jobs(&self) -> Vec<u64> {
        self.releasing()
            .into_iter()
            .filter_map(|claim| match claim {
                Claim::Job(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Queues this replica must not claim now: given up, not yet released.
    pub(super) fn releasing_queues(&self) -> Vec<String> {
        self.releasing()
            .into_iter()
            .filter_map(|claim| match claim {
                Claim::Queue(queue) => Some(queue),
                _ => None,
            })
            .collect()
    }

    /// The jobs claimed now.
    pub(super) fn held_jobs(&self) -> Vec<u64> {
        self.claims()
            .held
            .keys()
            .filter_map(|claim| match claim {
                Claim::Job(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// The queues claimed now.
    pub(super) fn held_queues(&self) -> Vec<String> {
        self.claims()
            .held
            .keys()
            .filter_map(|claim| match claim {
                Claim::Queue(queue) => Some(queue.clone()),
                _ => None,
            })
            .collect()
    }

    /// Mark `claim` lost (another replica owns it) and forget it.
    fn lose(&self, claim: &Claim) {
        if let Some(held) = self.claims().held.remove(claim) {
            tracing::warn!(?claim, "lost a claim: another replica owns it now");
            held.lost.cancel();
        }
    }

    /// The claim is gone from the database (the work finished): forget it.
    fn forget(&self, claim: &Claim) {
        self.claims().held.remove(claim);
    }

    /// After a failed renewal: lose every claim not renewed for most of a
    /// lease (another replica may take it over when it lapses).
    fn expire_unproven(&self) {
        let deadline = self.lease.mul_f32(0.8);
        let mut claims = self.claims();
        let stale: Vec<Claim> = claims
            .held
            .iter()
            .filter(|(_, held)| held.renewed.elapsed() >= deadline)
            .map(|(claim, _)| claim.clone())
            .collect();
        for claim in stale {
            if let Some(held) = claims.held.remove(&claim) {
                tracing::warn!(?claim, "cannot renew a claim: stopping its work");
                held.lost.cancel();
            }
        }
    }
}

/// Renew and release claims until `stop`.
pub(super) async fn keep(keeper: std::sync::Arc<Keeper>, pool: Pool, stop: CancellationToken) {
    let every = keeper.lease / 3;
    let mut next_renewal = Instant::now() + every;
    loop {
        let wait = next_renewal.saturating_duration_since(Instant::now());
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = release(&keeper, &pool).await;
                return;
            }
            _ = keeper.released.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(error) = release(&keeper, &pool).await {
            tracing::warn!(%error, "could not release claims; they will lapse");
        }
        if Instant::now() >= next_renewal {
            next_renewal = Instant::now() + every;
            if let Err(error) = renew(&keeper, &pool).await {
                tracing::error!(%error, "could not renew claims");
                keeper.expire_unproven();
            }
        }
    }
}

/// The deadline of one renewal or release: well within a lease.
fn call_limit(keeper: &Keeper) -> Duration {
    (keeper.lease / 3).max(Duration::from_millis(500))
}

async fn release(keeper: &Keeper, pool: &Pool) -> Result<(), String> {
    let released = {
        let mut claims = keeper.claims();
        let released = std::mem::take(&mut claims.released);
        claims.releasing = released.clone();
        released
    };
    if released.is_empty() {
        return Ok(());
    }
    let (mut jobs, mut queues, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for claim in released {
        match claim {
            Claim::Job(id) => jobs.push(id as i64),
            Claim::Queue(queue) => queues.push(queue),
            Claim::Named(name) => names.push(name),
        }
    }
    let work = async {
        let mut conn = pool.get().await?;
        let client = conn.client();
        let me = &keeper.me;
        let job_params: [&(dyn ToSql + Sync); 2] = [&jobs, me];
        let queue_params: [&(dyn ToSql + Sync); 2] = [&queues, me];
        let name_params: [&(dyn ToSql + Sync); 2] = [&names, me];
        // Only the kinds of claim released are written to.
        let (a, b, c) = tokio::join!(
            execute_unless_empty(
                client,
                jobs.is_empty(),
                "UPDATE jobs SET claimed_by = NULL, lease_until = NULL
                 WHERE id = ANY($1) AND claimed_by = $2",
                &job_params,
            ),
            execute_unless_empty(
                client,
                queues.is_empty(),
                "UPDATE outbox_queues SET claimed_by = NULL, lease_until = NULL
                 WHERE queue = ANY($1) AND claimed_by = $2",
                &queue_params,
            ),
            execute_unless_empty(
                client,
                names.is_empty(),
                "DELETE FROM leases WHERE name = ANY($1) AND holder = $2",
                &name_params,
            ),
        );
        a.and(b).and(c).map_err(|e| e.to_string())?;
        conn.reusable();
        Ok::<_, String>(())
    };
    let outcome = tokio::time::timeout(call_limit(keeper), work)
        .await
        .map_err(|_| "the database did not answer in time".to_string())
        .and_then(|done| done);
    // Released or not (then they lapse), they may be claimed again.
    keeper.claims().releasing.clear();
    outcome
}

/// Run `sql` unless there is nothing to run it on.
async fn execute_unless_empty(
    client: &tokio_postgres::Client,
    empty: bool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if empty {
        return Ok(0);
    }
    client.execute(sql, params).await
}

async fn renew(keeper: &Keeper, pool: &Pool) -> Result<(), String> {
    let held: Vec<Claim> = keeper.claims().held.keys().cloned().collect();
    if held.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let (mut jobs, mut queues, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for claim in &held {
        match claim {
            Claim::Job(id) => jobs.push(*id as i64),
            Claim::Queue(queue) => queues.push(queue.clone()),
            Claim::Named(name) => names.push(name.clone()),
        }
    }
    let lease_ms = keeper.lease_ms();
    let me = &keeper.me;
    let work = async {
        let mut conn = pool.get().await?;
        let client = conn.client();
        // Renewed, and (for what was not) whether the row still exists:
        // a missing row is work that finished, a row owned by another
        // replica is a lost claim.
        let job_params: [&(dyn ToSql + Sync); 3] = [&jobs, me, &lease_ms];
        let queue_params: [&(dyn ToSql + Sync); 3] = [&queues, me, &lease_ms];
        let name_params: [&(dyn ToSql + Sync); 3] = [&names, me, &lease_ms];
        let job_ids: [&(dyn ToSql + Sync); 1] = [&jobs];
        let queue_names: [&(dyn ToSql + Sync); 1] = [&queues];
        let (renewed_jobs, renewed_queues, renewed_names, existing_jobs, existing_queues) = tokio::join!(
            client.query(
                "UPDATE jobs SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
                 WHERE id = ANY($1) AND claimed_by = $2 RETURNING id",
                &job_params,
            ),
            client.query(
                "UPDATE outbox_queues SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
                 WHERE queue = ANY($1) AND claimed_by = $2 RETURNING queue",
                &queue_params,
            ),
            client.query(
                "UPDATE leases SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
                 WHERE name = ANY($1) AND holder = $2 RETURNING name",
                &name_params,
            ),
            client.query("SELECT id FROM jobs WHERE id = ANY($1)", &job_ids),
            client.query(
                "SELECT queue FROM outbox_queues WHERE queue = ANY($1)",
                &queue_names,
            ),
        );
        let rows = |r: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>| {
            r.map_err(|e| e.to_string())
        };
        let renewed_jobs = rows(renewed_jobs)?;
        let renewed_queues = rows(renewed_queues)?;
        let renewed_names = rows(renewed_names)?;
        let existing_jobs = rows(existing_jobs)?;
        let existing_queues = rows(existing_queues)?;
        conn.reusable();
        let mut renewed: Vec<Claim> = Vec::new();
        renewed.extend(
            renewed_jobs
                .iter()
                .map(|r| Claim::Job(r.get::<_, i64>(0) as u64)),
        );
        renewed.extend(renewed_queues.iter().map(|r| Claim::Queue(r.get(0))));
        renewed.extend(renewed_names.iter().map(|r| Claim::Named(r.get(0))));
        let mut existing: Vec<Claim> = Vec::new();
        existing.extend(
            existing_jobs
                .iter()
                .map(|r| Claim::Job(r.get::<_, i64>(0) as u64)),
        );
        existing.extend(existing_queues.iter().map(|r| Claim::Queue(r.get(0))));
        Ok::<_, String>((renewed, existing))
    };
    let (renewed, existing) = tokio::time::timeout(call_limit(keeper), work)
        .await
        .map_err(|_| "the database did not answer in time".to_string())??;
    {
        let mut claims = keeper.claims();
        for claim in &renewed {
            if let Some(held) = claims.held.get_mut(claim) {
                held.renewed = started;
            }
        }
    }
    for claim in held {
        if renewed.contains(&claim) {
            continue;
        }
        match &claim {
            // A named lease has no row when released; if it is not ours,
            // someone else holds it.
            Claim::Named(_) => keeper.lose(&claim),
            _ if existing.contains(&claim) => keeper.lose(&claim),
            _ => keeper.forget(&claim),
        }
    }
    Ok(())
}
