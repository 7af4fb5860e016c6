//! A grant is revoked exactly as it was granted. When a request is
//! approved, the provider and target its group names are recorded with it
//! ([`GrantedWith`]); the grant, every revoke and the "another grant covers
//! this" check use the record, whatever the policy says later.
//!
//! At start, every live grant is checked against the policy it now runs
//! under: one whose provider is gone cannot be revoked, so jitbot refuses
//! to start and names it; one whose target was renamed, or whose group was
//! removed, is still revoked as granted at its end — and the admins are
//! told, once.

use super::{Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::message::Outgoing;
use crate::domain::request::{AccessRequest, GrantedWith, RequestState};
use crate::domain::text::literal;
use crate::store::{Effects, Write};

/// Why jitbot does not start: live grants it could not revoke.
#[derive(Debug, thiserror::Error)]
pub enum LiveGrantsError {
    #[error("{}", orphans_text(.0))]
    Orphaned(Vec<String>),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn orphans_text(orphans: &[String]) -> String {
    format!(
        "the policy no longer has what {} live grant(s) were granted through, so jitbot could not revoke them: {}. Put the provider back in the policy (it may be renamed only once the grants have ended), or revoke them by hand and with `jitbot grants` / the audit log as the record",
        orphans.len(),
        orphans.join("; ")
    )
}

impl Engine {
    /// What `request`'s access is granted through: as recorded when it
    /// was approved, or — for a request approved before that was recorded
    /// — as its group names it now. `None` for extensions, and for an
    /// unrecorded request whose group is gone.
    pub(super) fn granted_with(&self, request: &AccessRequest) -> Option<GrantedWith> {
        if request.extends.is_some() {
            return None;
        }
        request.granted_with.clone().or_else(|| {
            let group = self.policy.group(&request.group)?;
            Some(GrantedWith {
                provider: group.provider.clone(),
                target: group.target.clone(),
                details: Default::default(),
                drift_told: false,
            })
        })
    }

    /// Record, on a request just approved, what its access will be granted
    /// through: its group's provider and target, as the policy names them
    /// now — the approvers approved that.
    pub(super) fn fix_grant_target(&self, request: &mut AccessRequest) {
        let approved = matches!(request.state, RequestState::Approved { .. });
        if !approved || request.extends.is_some() || request.granted_with.is_some() {
            return;
        }
        if let Some(group) = self.policy.group(&request.group) {
            request.granted_with = Some(GrantedWith {
                provider: group.provider.clone(),
                target: group.target.clone(),
                details: Default::default(),
                drift_told: false,
            });
        }
    }

    /// The check at start. Refuses (naming them) live grants whose
    /// provider the policy no longer has; records the provider and target
    /// of live grants approved before they were recorded; and tells the
    /// admins, once, of grants the policy no longer grants the way they
    /// were granted.
    pub async fn check_live_grants(&self) -> Result<(), LiveGrantsError> {
        let live: Vec<AccessRequest> = self
            .store
            .live_requests()
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|request| request.extends.is_none())
            .collect();
        let mut orphans = Vec::new();
        let mut drifted = Vec::new();
        for request in &live {
            let Some(granted) = self.granted_with(request) else {
                orphans.push(format!(
                    "{} of {} (group `{}` is gone, and it was granted before jitbot recorded providers)",
                    request.id.grant_id(),
                    request.requester,
                    request.group
                ));
                continue;
            };
            if !self.providers.contains_key(&granted.provider)
                || self.policy.provider(&granted.provider).is_none()
            {
                orphans.push(format!(
                    "{} of {} (group `{}`, provider `{}`, target `{}`)",
                    request.id.grant_id(),
                    request.requester,
                    request.group,
                    granted.provider,
                    granted.target
                ));
                continue;
            }
            if request.granted_with.is_none() {
                self.record_granted_with(request, granted.clone()).await?;
            }
            let now_granted_with = self
                .policy
                .group(&request.group)
                .map(|group| (group.provider.as_str(), group.target.as_str()));
            let drift = match now_granted_with {
                None => Some(format!(
                    "group `{}` is no longer in the policy",
                    request.group
                )),
                Some((provider, target))
                    if provider != granted.provider || target != granted.target =>
                {
                    Some(format!(
                        "group `{}` now grants `{target}` through `{provider}`",
                        request.group
                    ))
                }
                Some(_) => None,
            };
            if let Some(why) = drift.filter(|_| !granted.drift_told) {
                drifted.push((request, granted, why));
            }
        }
        if !orphans.is_empty() {
            return Err(LiveGrantsError::Orphaned(orphans));
        }
        if drifted.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = drifted
            .iter()
            .map(|(request, granted, why)| {
                format!(
                    "• {} of {}: granted `{}` through `{}`; {why}",
                    request.id.grant_id(),
                    literal(request.requester.name_or_id()),
                    granted.target,
                    granted.provider
                )
            })
            .collect();
        let text = format!(
            ":warning: The policy changed under {} live grant(s). Each is still revoked as it was granted, at its end (or by `/jit admin revoke`):\n{}",
            drifted.len(),
            lines.join("\n")
        );
        let now = self.now();
        let mut effects = Effects {
            outbox: self.admin_messages(&text).await,
            ..Effects::default()
        };
        for (request, granted, why) in &drifted {
            effects.audit.push(AuditRecord {
                at: now,
                action: AuditAction::PolicyDrift,
                actor: None,
                request: Some(request.id.clone()),
                group: Some(request.group.clone()),
                detail: format!(
                    "granted `{}` through `{}`; {why}; it is revoked as granted",
                    granted.target, granted.provider
                ),
            });
        }
        self.record_effects(effects).await?;
        for (request, granted, _) in drifted {
            self.record_granted_with(
                request,
                GrantedWith {
                    drift_told: true,
                    ..granted
                },
            )
            .await?;
        }
        self.flush().await?;
        Ok(())
    }

    /// Write `granted` onto the stored request (nothing else of it).
    async fn record_granted_with(
        &self,
        request: &AccessRequest,
        granted: GrantedWith,
    ) -> Result<(), EngineError> {
        self.store
            .apply(&request.id, None, &mut |current| {
                let mut next = current?.clone();
                next.granted_with = Some(granted.clone());
                Some(Write {
                    request: Some(next),
                    effects: Effects::default(),
                })
            })
            .await?;
        Ok(())
    }

    /// A DM to every admin jitbot can reach.
    pub(super) async fn admin_messages(&self, text: &str) -> Vec<Outgoing> {
        match self.people(&self.policy.admins).await {
            Ok(admins) => admins
                .into_iter()
                .map(|admin| Outgoing::Direct {
                    to: admin,
                    text: text.to_string(),
                    about: None,
                })
                .collect(),
            Err(error) => {
                tracing::error!(%error, "cannot list the admins to tell them: {text}");
                Vec::new()
            }
        }
    }
}
