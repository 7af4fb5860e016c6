//! Ending access early — `/jit release` by the requester, `/jit admin
//! revoke` by an admin, an idle release when nobody used it. Ending is a
//! durable job: the command (or the activity sampler) records it; the
//! scheduler revokes through the provider (retrying like an expiry) and
//! then records the end.

use chrono::{DateTime, Utc};

use super::{Announce, Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::command::ReleaseTarget;
use crate::domain::ids::{Actor, GrantId};
use crate::domain::job::{Job, JobKind};
use crate::domain::request::{AccessRequest, Happened, Refusal, RequestState};
use crate::domain::text::literal;
use crate::store::Effects;

/// Why a grant was not ended.
#[derive(Debug, thiserror::Error)]
pub enum EndError {
    #[error("There is no grant {0}.")]
    NoSuchGrant(GrantId),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// End `grant` early: released by its holder, or revoked by an admin
    /// (`admin_reason`; the caller has checked the admin's rights). The
    /// revoke runs as a durable job; this returns once it is recorded.
    pub async fn end_grant(
        &self,
        by: &Actor,
        grant: &GrantId,
        admin_reason: Option<&str>,
    ) -> Result<AccessRequest, EndError> {
        let request = self
            .store
            .get_request(&grant.request_id())
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| EndError::NoSuchGrant(grant.clone()))?;
        request.check_end(by, admin_reason)?;
        self.schedule_end(&request, by, admin_reason.map(|r| r.trim().to_string()))
            .await?;
        self.commit_and_wake().await?;
        Ok(request)
    }

    /// `/jit release <grant-id|group>`: the requester ends their own grant(s).
    pub(super) async fn release(
        &self,
        by: &Actor,
        target: &ReleaseTarget,
    ) -> Result<String, EngineError> {
        let grants: Vec<AccessRequest> = match target {
            ReleaseTarget::Grant(grant) => match self.store.get_request(&grant.request_id()).await?
            {
                Some(request) => vec![request],
                None => {
                    return Ok(format!(
                        "There is no grant {grant}. `/jit list` shows yours."
                    ))
                }
            },
            ReleaseTarget::Group(group) => {
                let active: Vec<AccessRequest> = self
                    .store
                    .requests_of(by)
                    .await?
                    .into_iter()
                    .filter(|r| &r.group == group && matches!(r.state, RequestState::Active { .. }))
                    .collect();
                if active.is_empty() {
                    return Ok(format!(
                        "You have no active grant for {group}. `/jit list` shows yours."
                    ));
                }
                active
            }
        };
        let mut ended = Vec::new();
        for grant in &grants {
            if let Err(refusal) = grant.check_end(by, None) {
                return Ok(refusal.to_string());
            }
            self.schedule_end(grant, by, None).await?;
            ended.push(grant.id.grant_id().to_string());
        }
        self.commit_and_wake().await?;
        Ok(format!(
            "Releasing {}: the access is being revoked now; I'll DM you when it is done.",
            ended.join(", ")
        ))
    }

    /// `/jit admin revoke <grant-id> <reason>`.
    pub(super) async fn admin_revoke(
        &self,
        by: &Actor,
        grant: &GrantId,
        reason: &str,
    ) -> Result<String, EngineError> {
        if reason.trim().is_empty() {
            return Ok(format!("Say why: `/jit admin revoke {grant} <reason>`."));
        }
        let request = match self.end_grant(by, grant, Some(reason)).await {
            Ok(request) => request,
            Err(EndError::Engine(error)) => return Err(error),
            Err(refusal) => return Ok(refusal.to_string()),
        };
        Ok(format!(
            "Revoking {grant} ({} for {}): the access is being revoked now, and they are told why.",
            request.group,
            literal(request.requester.name_or_id())
        ))
    }

    async fn schedule_end(
        &self,
        request: &AccessRequest,
        by: &Actor,
        admin_reason: Option<String>,
    ) -> Result<(), EngineError> {
        let detail = match &admin_reason {
            Some(reason) => format!("admin revoke requested: {reason}"),
            None => "release requested by the requester".to_string(),
        };
        let job = self
            .new_job(
                JobKind::End {
                    request: request.id.clone(),
                    by: by.clone(),
                    admin_reason,
                },
                self.now(),
                Self::lane_of(request),
            )
            .await?;
        self.store
            .record(&Effects {
                audit: vec![AuditRecord {
                    at: self.now(),
                    action: AuditAction::EndRequested,
                    actor: Some(by.clone()),
                    request: Some(request.id.clone()),
                    group: Some(request.group.clone()),
                    detail,
                }],
                jobs: vec![job],
                ..Effects::default()
            })
            .await?;
        Ok(())
    }

    pub(super) async fn run_end(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::End {
            request: id,
            by,
            admin_reason,
        } = &job.kind
        else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        if !matches!(request.state, RequestState::Active { .. }) {
            // Expired or ended meanwhile: nothing left to do.
            return self.consume(job).await;
        }
        self.revoke_and_end(job, &request, Some(by), "grant ended", |now| {
            request.end_early(by, admin_reason.as_deref(), now)
        })
        .await
        .map(drop)
    }

    /// Revoke `request`'s access (unless another grant covers it) and
    /// record `step` as its end; on a failed revoke, retry the job later.
    /// Whether it ended.
    pub(super) async fn revoke_and_end(
        &self,
        job: &Job,
        request: &AccessRequest,
        by: Option<&Actor>,
        what: &str,
        step: impl FnOnce(DateTime<Utc>) -> Option<(AccessRequest, Happened)>,
    ) -> Result<bool, EngineError> {
        let now = self.now();
        match self.revoke_unless_covered(request, now).await? {
            Ok(covering) => {
                let detail = covering.map(|(other, _)| {
                    format!(
                        "{what}; provider revoke skipped because {} keeps the access",
                        other.grant_id()
                    )
                });
                let announce = Announce {
                    by,
                    detail,
                    extra: self.resolved_notices(job, request).await?,
                };
                self.record_step(job, request, step(now), announce, now)
                    .await?;
                Ok(true)
            }
            Err(error) => {
                self.revoke_failed(job, request, &error, now).await?;
                Ok(false)
            }
        }
    }

    /// Release a grant nobody used for its group's `idle_release` — unless
    /// it was used or kept since the release was decided.
    pub(super) async fn run_release_idle(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::ReleaseIdle {
            request: id,
            quiet_since,
        } = &job.kind
        else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        let idle_release = self
            .policy
            .group(&request.group)
            .and_then(|group| group.idle_release);
        let (Some(activated_at), Some(principal), Some(idle_release)) = (
            request.activated_at(),
            request.principal.clone(),
            idle_release,
        ) else {
            // Ended meanwhile, or the policy no longer releases idle grants.
            return self.consume(job).await;
        };
        let usage = self.store.usage(request.group.as_str(), &principal).await?;
        if usage.is_some_and(|usage| usage.quiet_since(activated_at) > *quiet_since) {
            return self.consume(job).await;
        }
        let what = format!("idle: not used for {idle_release}; released");
        let ended = self
            .revoke_and_end(job, &request, None, &what, |now| {
                request.release_idle(idle_release, now)
            })
            .await?;
        if ended {
            self.metrics.idle_releases.inc();
        }
        Ok(())
    }
}
