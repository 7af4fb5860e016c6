//! Ending access early — `/jit release` by the requester, `/jit admin
//! revoke` by an admin. Ending is a durable job: the command records it and
//! answers; the scheduler revokes through the provider (retrying like an
//! expiry) and then records the end.

use super::{Announce, Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::command::ReleaseTarget;
use crate::domain::ids::{Actor, GrantId};
use crate::domain::job::{Job, JobKind};
use crate::domain::request::{AccessRequest, Refusal, RequestState};
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
        let now = self.now();
        match self.revoke_unless_covered(&request, now).await? {
            Ok(covering) => {
                let detail = covering.map(|(other, _)| {
                    format!(
                        "grant ended; provider revoke skipped because {} keeps the access",
                        other.grant_id()
                    )
                });
                let announce = Announce {
                    by: Some(by),
                    detail,
                    extra: self.resolved_notices(job, &request).await?,
                };
                let step = request.end_early(by, admin_reason.as_deref(), now);
                self.record_step(job, &request, step, announce, now).await?;
                Ok(())
            }
            Err(error) => self.revoke_failed(job, &request, &error, now).await,
        }
    }
}
