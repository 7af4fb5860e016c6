//! Writing a lifecycle step: the transition a use case chose, with the
//! effects it owes, in one transaction of the store, made durable before
//! anyone is told — and the workers woken to do what it scheduled.

use chrono::{DateTime, Utc};

use super::{backoff, Announce, Engine, EngineError};
use crate::domain::ids::{Actor, Destination, RequestId};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::request::{AccessRequest, Happened};
use crate::store::{Applied, Effects, StoreError, Write};

impl Engine {
    /// Make all writes so far durable (concurrent callers share the work),
    /// then let the workers see the new jobs and messages. Nobody is told
    /// of a change before it is durable.
    pub(super) async fn commit_and_wake(&self) -> Result<(), EngineError> {
        self.store.sync().await?;
        self.wakers.scheduler.wake();
        self.wakers.outbox.notify_one();
        Ok(())
    }

    /// [`Self::commit_and_wake`] after writing `effects`, waking only the
    /// workers they give work to.
    pub(super) async fn commit_and_wake_for(&self, effects: &Effects) -> Result<(), EngineError> {
        self.store.sync().await?;
        self.wakers.scheduler.wake_for(&effects.jobs);
        if !effects.outbox.is_empty() {
            self.wakers.outbox.notify_one();
        }
        Ok(())
    }

    /// Make all writes so far durable.
    pub async fn flush(&self) -> Result<(), EngineError> {
        Ok(self.store.sync().await?)
    }

    /// The job that grants an approved request, due now.
    pub(super) async fn activate_job(
        &self,
        request: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let kind = JobKind::Activate {
            request: request.id.clone(),
            by_sibling: false,
        };
        self.new_job(kind, now, Self::lane_of(request)).await
    }

    pub(super) async fn new_job(
        &self,
        kind: JobKind,
        due_at: DateTime<Utc>,
        lane: String,
    ) -> Result<Job, StoreError> {
        Ok(Job {
            id: self.store.next_id().await?,
            due_at,
            attempt: 0,
            lane,
            kind,
        })
    }

    /// Jobs that touch one user's access to one group run one at a time.
    pub(super) fn lane_of(request: &AccessRequest) -> String {
        format!("{}:{}", request.requester, request.group)
    }

    /// Write effects that belong to no single request change, durably.
    pub(super) async fn record_effects(&self, effects: Effects) -> Result<(), EngineError> {
        self.store.record(&effects).await?;
        self.commit_and_wake_for(&effects).await
    }

    /// Say `text` in a channel or conversation, durably.
    pub async fn say_in(&self, to: Destination, text: String) -> Result<(), EngineError> {
        self.record_effects(Effects {
            outbox: vec![Outgoing::ChannelNotice { to, text }],
            ..Effects::default()
        })
        .await
    }

    /// Send `to` a direct message, durably.
    pub async fn tell(&self, to: &Actor, text: String) -> Result<(), EngineError> {
        self.record_effects(Effects {
            outbox: vec![Outgoing::Direct {
                to: to.clone(),
                text,
                about: None,
            }],
            ..Effects::default()
        })
        .await
    }

    pub async fn get_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, EngineError> {
        Ok(self.store.get_request(id).await?)
    }

    /// Write `write`, consuming `job`, if the request is still at the point
    /// of its lifecycle `snapshot` was at (cards posted meanwhile are kept).
    /// `Skipped` means it moved on: decide again from a fresh snapshot.
    pub(super) async fn write_if_unchanged(
        &self,
        snapshot: &AccessRequest,
        job: Option<&Job>,
        write: &Write,
    ) -> Result<Applied, StoreError> {
        self.store
            .apply(&snapshot.id, job, &mut |current| {
                let current = current.filter(|c| c.same_point(snapshot))?;
                let mut write = write.clone();
                if let Some(request) = &mut write.request {
                    request.cards.clone_from(&current.cards);
                }
                Some(write)
            })
            .await
    }

    /// [`Engine::write_if_unchanged`] for a job's outcome, made durable and
    /// announced when written.
    pub(super) async fn settle(
        &self,
        job: &Job,
        snapshot: &AccessRequest,
        write: Write,
    ) -> Result<Applied, EngineError> {
        let applied = self.write_if_unchanged(snapshot, Some(job), &write).await?;
        if applied == Applied::Written {
            self.commit_and_wake_for(&write.effects).await?;
        }
        Ok(applied)
    }

    /// Record a lifecycle step that `job` took on `request` (`step`, from a
    /// transition; `None` when it no longer applies, and the job is simply
    /// consumed), with the effects it owes.
    pub(super) async fn record_step(
        &self,
        job: &Job,
        request: &AccessRequest,
        step: Option<(AccessRequest, Happened)>,
        announce: Announce<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some((next, happened)) = step else {
            return self.consume(job).await;
        };
        let audience = self.audience(request).await?;
        let mut effects = self
            .effects_of(
                &next,
                &happened,
                announce.by,
                &audience,
                announce.detail,
                now,
            )
            .await?;
        effects.outbox.extend(announce.extra);
        self.settle(
            job,
            request,
            Write {
                request: Some(next),
                effects,
            },
        )
        .await?;
        Ok(())
    }

    /// Remove `job` from the due-index: it has nothing (more) to do.
    pub(super) async fn consume(&self, job: &Job) -> Result<(), EngineError> {
        self.store
            .apply(job.kind.request(), Some(job), &mut |_| {
                Some(Write::default())
            })
            .await?;
        Ok(())
    }

    /// Run `job` again later (backoff by its attempt count), atomically
    /// with `effects`.
    pub(super) async fn retry_later(&self, job: &Job, effects: Effects) -> Result<(), EngineError> {
        let next = Job {
            id: self.store.next_id().await?,
            attempt: job.attempt + 1,
            due_at: self.now() + backoff(job.attempt),
            ..job.clone()
        };
        self.store.reschedule(job, &next, &effects).await?;
        self.commit_and_wake_for(&Effects {
            jobs: vec![next],
            ..effects
        })
        .await?;
        Ok(())
    }

    /// Run `job` again at `at` (not a failure: it came too early), keeping
    /// its attempt count.
    pub(super) async fn run_again_at(
        &self,
        job: &Job,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let next = Job {
            id: self.store.next_id().await?,
            due_at: at,
            ..job.clone()
        };
        self.store
            .reschedule(job, &next, &Effects::default())
            .await?;
        self.commit_and_wake_for(&Effects {
            jobs: vec![next],
            ..Effects::default()
        })
        .await?;
        Ok(())
    }
}
