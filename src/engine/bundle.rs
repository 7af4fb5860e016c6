//! Several groups in one request: its members are granted together, once
//! each group's approvers approved, and closed together — when one member
//! ends (denied, cancelled, timed out, its grant failed for good, released,
//! revoked, expired), the others follow it through a durable job each.

use chrono::{DateTime, Utc};

use super::{Announce, Engine, EngineError};
use crate::domain::ids::Actor;
use crate::domain::job::{Job, JobKind};
use crate::domain::request::{AccessRequest, BundleEnd, BundleFollow, Happened, RequestState};
use crate::store::{Applied, Effects, StoreError, Write};

/// Whether an approved member of a bundle may be granted now.
pub(super) enum Readiness {
    /// Every member is approved: grant it (as given: its grant counted
    /// from the bundle's approval).
    Grant(Box<AccessRequest>),
    /// A member still waits for its approvers, or one has ended: not now.
    /// The last approval's activation, or the ended member's follow-up,
    /// takes it from here.
    NotNow,
    /// It changed meanwhile: look again.
    Changed,
}

impl Engine {
    /// The jobs by which the other members of `request`'s bundle follow
    /// it, when `happened` ended it. Members that end because they follow
    /// one do not start another round.
    pub(super) async fn bundle_follows(
        &self,
        request: &AccessRequest,
        happened: &Happened,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let ends = matches!(
            happened,
            Happened::Denied { .. }
                | Happened::Cancelled
                | Happened::TimedOut
                | Happened::GrantFailed { .. }
                | Happened::Released
                | Happened::Revoked { .. }
                | Happened::Expired
        );
        let mut jobs = Vec::new();
        if !ends {
            return Ok(jobs);
        }
        for sibling in request.siblings() {
            jobs.push(
                self.new_job(
                    JobKind::FollowBundle {
                        request: sibling.request.clone(),
                        ended: request.id.clone(),
                    },
                    now,
                    // The sibling's lane: its own grant or revoke never
                    // runs at the same time.
                    format!("{}:{}", request.requester, sibling.group),
                )
                .await?,
            );
        }
        Ok(jobs)
    }

    pub(super) async fn run_follow_bundle(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::FollowBundle { request: id, ended } = &job.kind else {
            return Ok(());
        };
        let (Some(member), Some(ended)) = (
            self.store.get_request(id).await?,
            self.store.get_request(ended).await?,
        ) else {
            return self.consume(job).await;
        };
        let now = self.now();
        match member.follow_bundle(&ended) {
            None => self.consume(job).await,
            Some(BundleFollow::Withdraw { because }) => {
                let step = member.withdraw(&because, now);
                self.record_step(job, &member, step, Announce::default(), now)
                    .await
            }
            Some(BundleFollow::Revoke { end }) => {
                let by: Option<&Actor> = match &end {
                    BundleEnd::Release { by } | BundleEnd::Revoke { by, .. } => Some(by),
                    BundleEnd::Undo { .. } | BundleEnd::Expire => None,
                };
                let what = format!("ended with {}, asked in the same request", ended.group);
                self.revoke_and_end(job, &member, by, &what, |now| {
                    member.end_with_bundle(&end, now)
                })
                .await
                .map(drop)
            }
        }
    }

    /// Whether `request`, an approved member of a bundle, may be granted
    /// now. The activation that finds every member approved (at least the
    /// one written after the last approval does) has its approved siblings
    /// granted too — their own activations may have found it still
    /// waiting; a run asked for so (`by_sibling`), or a retry, never asks
    /// again, so two members that keep failing cannot ask each other
    /// forever. Every member's grant is counted from the last approval, so
    /// the bundle ends together.
    pub(super) async fn bundle_readiness(
        &self,
        job: &Job,
        request: &AccessRequest,
        by_sibling: bool,
    ) -> Result<Readiness, EngineError> {
        let members = crate::store::bundle_members(self.store.as_ref(), request).await?;
        let Some(approved_at) = AccessRequest::bundle_approved_at(&members) else {
            return Ok(Readiness::NotNow);
        };
        if !by_sibling && job.attempt == 0 {
            let mut jobs = Vec::new();
            for sibling in members.iter().filter(|m| m.id != request.id) {
                if matches!(sibling.state, RequestState::Approved { .. }) {
                    jobs.push(
                        self.new_job(
                            JobKind::Activate {
                                request: sibling.id.clone(),
                                by_sibling: true,
                            },
                            self.now(),
                            Self::lane_of(sibling),
                        )
                        .await?,
                    );
                }
            }
            if !jobs.is_empty() {
                self.record_effects(Effects {
                    jobs,
                    ..Effects::default()
                })
                .await?;
            }
        }
        let Some(restamped) = request.approved_from(approved_at) else {
            return Ok(Readiness::Grant(Box::new(request.clone())));
        };
        let write = Write {
            request: Some(restamped.clone()),
            effects: Effects::default(),
        };
        Ok(
            match self.write_if_unchanged(request, None, &write).await? {
                Applied::Written => Readiness::Grant(Box::new(restamped)),
                Applied::Skipped | Applied::JobGone => Readiness::Changed,
            },
        )
    }
}
