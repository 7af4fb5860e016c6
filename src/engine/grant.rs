//! Calling providers: activation of approved requests and revocation at
//! expiry. The provider call happens outside any transaction; its outcome is
//! then recorded atomically with the job's removal, so a crash in between
//! only repeats an idempotent call.

use chrono::{DateTime, Utc};

use super::bundle::Readiness;
use super::{show_time, Announce, Engine, EngineError};
use crate::chat::ChatError;
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::{Actor, RequestId};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::policy::ProviderSpec;
use crate::domain::request::{AccessRequest, RequestState};
use crate::domain::text::literal;
use crate::providers::{principal, Access, AccessUser, Provider};
use crate::store::{Effects, Write};
use crate::telemetry::Metrics;

/// A grant that keeps failing is given up after this many tries (the
/// requester and approvers are told); a revoke is never given up.
const GRANT_ATTEMPTS: u32 = 3;

/// After this many failed revokes the approval channels and the admins are
/// alerted.
const REVOKE_ALERT_AFTER: u32 = 3;

/// How a provider call that cannot even be attempted is described.
const CANNOT_ATTEMPT: &str = "cannot be attempted";

enum Prepared {
    Ready(std::sync::Arc<dyn Provider>, Box<Access>),
    /// Cannot be attempted at all (unknown provider, no principal).
    Impossible(String),
    /// Cannot be attempted yet (the chat directory did not answer).
    Unavailable(String),
}

/// Why a user has no principal for a provider (yet).
pub(super) enum Unresolved {
    /// Nothing to map them with; retrying will not help.
    Impossible(String),
    /// The email look-up failed; it may work later.
    Unavailable(String),
}

impl Engine {
    /// The requester as `spec`'s provider knows them, with their email if
    /// the template needed it: the policy's `[identities]` override, else
    /// the provider's template.
    pub(super) async fn resolve_principal(
        &self,
        spec: &ProviderSpec,
        requester: &Actor,
    ) -> Result<(String, Option<String>), Unresolved> {
        if let Some(fixed) = self.policy.principal_override(requester, &spec.name) {
            return principal::check(fixed.to_string())
                .map(|principal| (principal, None))
                .map_err(|e| Unresolved::Impossible(e.to_string()));
        }
        let email = if spec.principal.contains("{email") {
            self.email_of(requester)
                .await
                .map_err(|e| Unresolved::Unavailable(format!("looking up the user's email: {e}")))?
        } else {
            None
        };
        principal::render(&spec.principal, &spec.name, requester, email.as_deref())
            .map(|principal| (principal, email))
            .map_err(|e| Unresolved::Impossible(e.to_string()))
    }

    /// The address a principal template fills in: the one `[identities]`
    /// links, else the chat profile's.
    async fn email_of(&self, user: &Actor) -> Result<Option<String>, ChatError> {
        if let Some(linked) = self.policy.linked_email(user) {
            return Ok(Some(linked.to_string()));
        }
        match self.directories.get(&user.platform) {
            Some(directory) => directory.email(&user.user).await,
            None => Ok(None),
        }
    }

    /// The provider call for `request`'s access, through the provider and
    /// to the target recorded with it (for a grant approved before they
    /// were recorded: the policy's) — never the policy's of today.
    async fn prepare(&self, request: &AccessRequest) -> Prepared {
        let Some(granted) = self.granted_with(request) else {
            return Prepared::Impossible(format!(
                "{CANNOT_ATTEMPT}: group {} is no longer in the policy, and the grant does not record its provider",
                request.group
            ));
        };
        let (Some(spec), Some(provider)) = (
            self.policy.provider(&granted.provider),
            self.providers.get(&granted.provider),
        ) else {
            return Prepared::Impossible(format!(
                "{CANNOT_ATTEMPT}: provider {} is not configured",
                granted.provider
            ));
        };
        let (principal, email) = match &request.principal {
            // Revoke exactly what was granted; the email is only informative
            // here, so a failed look-up does not hold the revoke up.
            Some(granted) => {
                let email = if spec.principal.contains("{email") {
                    self.email_of(&request.requester).await.ok().flatten()
                } else {
                    None
                };
                (granted.clone(), email)
            }
            None => match self.resolve_principal(spec, &request.requester).await {
                Ok(resolved) => resolved,
                Err(Unresolved::Impossible(why)) => return Prepared::Impossible(why),
                Err(Unresolved::Unavailable(why)) => return Prepared::Unavailable(why),
            },
        };
        Prepared::Ready(
            provider.clone(),
            Box::new(Access {
                request_id: Some(request.id.to_string()),
                grant_id: Some(request.id.grant_id().to_string()),
                user: Some(AccessUser {
                    platform: request.requester.platform.to_string(),
                    id: request.requester.user.to_string(),
                    name: request.requester.name.clone(),
                    email,
                }),
                principal,
                group: request.group.to_string(),
                target: granted.target,
                // Fixed at approval, so the provider is told the real end
                // even while granting (a backstop it may enforce itself).
                expires_at: request.expires_at().or_else(|| request.approved_until()),
                details: granted.details,
            }),
        )
    }

    pub(super) async fn run_activate(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Activate {
            request: id,
            by_sibling,
        } = &job.kind
        else {
            return Ok(());
        };
        let Some(mut request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        if !matches!(request.state, RequestState::Approved { .. }) {
            return self.consume(job).await;
        }
        if request.in_bundle() {
            request = match self.bundle_readiness(job, &request, *by_sibling).await? {
                Readiness::Grant(ready) => *ready,
                Readiness::NotNow => return self.consume(job).await,
                Readiness::Changed => return self.run_again_at(job, self.now()).await,
            };
        }
        if request.extends.is_some() {
            return self.apply_extension(job, &request).await;
        }
        let now = self.now();
        if let Some(until) = request.approved_until().filter(|until| *until <= now) {
            // Granting now would give access past what was approved (the
            // provider was down, or jitbot was, for the whole duration).
            let error = format!(
                "the approved time ran out at {} before the access could be granted",
                show_time(until)
            );
            tracing::error!(request = %id, %error, "grant not attempted");
            let step = request.fail(&error, now);
            return self
                .record_step(job, &request, step, Announce::default(), now)
                .await;
        }
        let outcome = match self.prepare(&request).await {
            Prepared::Impossible(reason) => Err((reason, false)),
            Prepared::Unavailable(reason) => Err((reason, true)),
            Prepared::Ready(provider, access) => {
                let details = provider.grant_details(&access);
                provider
                    .grant(&access)
                    .await
                    .map(|()| (access.principal, details))
                    .map_err(|e| (e.to_string(), !e.permanent))
            }
        };
        let now = self.now();
        match outcome {
            Ok((principal, details)) => {
                let made = details
                    .iter()
                    .map(|(key, value)| format!(", {key} {value}"))
                    .collect::<String>();
                let step = request.activate(now, &principal, details);
                let until = step
                    .as_ref()
                    .and_then(|(next, _)| next.expires_at())
                    .unwrap_or(now);
                let target = self
                    .granted_with(&request)
                    .map(|g| {
                        format!(
                            " (target {} through provider {}{made})",
                            g.target, g.provider
                        )
                    })
                    .unwrap_or_default();
                let detail = format!(
                    "granted to principal {principal} until {}{target}",
                    until.to_rfc3339()
                );
                let announce = Announce {
                    detail: Some(detail),
                    ..Announce::default()
                };
                self.record_step(job, &request, step, announce, now).await?;
            }
            Err((error, retryable)) if retryable && job.attempt + 1 < GRANT_ATTEMPTS => {
                tracing::warn!(request = %id, %error, attempt = job.attempt + 1, "grant failed; retrying");
                self.retry_later(job, Effects::default()).await?;
            }
            Err((error, _)) => {
                tracing::error!(request = %id, %error, "grant failed");
                self.record_step(
                    job,
                    &request,
                    request.fail(&error, now),
                    Announce::default(),
                    now,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Revoke the request's access through its provider — unless another
    /// active grant of the same user covers it: one that holds the same
    /// target, through the same provider, for the same principal (as
    /// recorded with each grant). Then the provider is left alone and the
    /// covering grant returned.
    pub(super) async fn revoke_unless_covered(
        &self,
        request: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Result<Result<Option<(RequestId, DateTime<Utc>)>, String>, EngineError> {
        // The access as the revoke would name it (the principal resolved
        // as the grant resolved it, if it never recorded one).
        let prepared = self.prepare(request).await;
        let held = match &prepared {
            Prepared::Ready(_, access) => self.granted_with(request).map(|g| HeldAccess {
                provider: g.provider,
                target: access.target.clone(),
                principal: access.principal.clone(),
                details: g.details,
            }),
            _ => self.held_access(request),
        };
        let covering = match &held {
            Some(held) => self
                .store
                .requests_of(&request.requester)
                .await?
                .into_iter()
                .filter(|other| other.id != request.id)
                .filter(|other| self.held_access(other).as_ref() == Some(held))
                .filter_map(|other| other.expires_at().map(|until| (other.id, until)))
                .find(|(_, until)| *until > now),
            None => None,
        };
        if covering.is_some() {
            return Ok(Ok(covering));
        }
        let revoked = match prepared {
            Prepared::Ready(provider, access) => {
                provider.revoke(&access).await.map_err(|e| e.to_string())
            }
            Prepared::Impossible(reason) | Prepared::Unavailable(reason) => Err(reason),
        };
        let outcome = if revoked.is_ok() { "ok" } else { "failed" };
        Metrics::count(&self.metrics.revocations, outcome);
        Ok(revoked.map(|()| None))
    }

    /// What `request` holds, if its principal is known. Two grants that
    /// hold the same are one access; grants the provider made as objects
    /// of their own (a Kubernetes binding per grant: their details differ)
    /// never cover each other, each is revoked.
    fn held_access(&self, request: &AccessRequest) -> Option<HeldAccess> {
        let granted = self.granted_with(request)?;
        Some(HeldAccess {
            provider: granted.provider,
            target: granted.target,
            principal: request.principal.clone()?,
            details: granted.details,
        })
    }

    /// A revoke failed: audit it, alert the approval channels once it has
    /// failed [`REVOKE_ALERT_AFTER`] times, and retry with backoff — forever.
    pub(super) async fn revoke_failed(
        &self,
        job: &Job,
        request: &AccessRequest,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        tracing::error!(request = %request.id, %error, attempt = job.attempt + 1, "revoke failed; retrying");
        let mut effects = Effects {
            audit: vec![AuditRecord {
                at: now,
                action: AuditAction::RevokeFailed,
                actor: None,
                request: Some(request.id.clone()),
                group: Some(request.group.clone()),
                detail: format!("attempt {}: {error}", job.attempt + 1),
            }],
            ..Effects::default()
        };
        // A revoke that cannot be attempted at all (its provider is gone)
        // alerts at once; one that fails, after a few tries.
        let impossible = error.starts_with(CANNOT_ATTEMPT);
        if job.attempt + 1 == REVOKE_ALERT_AFTER || (impossible && job.attempt == 0) {
            let due = request
                .expires_at()
                .map(|at| format!(", due {}", show_time(at)))
                .unwrap_or_default();
            let times = match job.attempt + 1 {
                1 => "once".to_string(),
                n => format!("{n} times"),
            };
            let text = format!(
                ":rotating_light: Revoking {} ({} for {}{due}) has failed {times}: {}. jitbot keeps retrying.",
                request.id.grant_id(),
                request.group,
                literal(request.requester.name_or_id()),
                literal(error),
            );
            effects.outbox.extend(self.notices(request, &text).await?);
            // Never only the group's channels: the admins own what jitbot
            // cannot take back, and a removed group has no channels.
            effects.outbox.extend(self.admin_messages(&text).await);
        }
        self.retry_later(job, effects).await
    }

    /// The all-clear after an alert, once a revoke that kept failing succeeded.
    pub(super) async fn resolved_notices(
        &self,
        job: &Job,
        request: &AccessRequest,
    ) -> Result<Vec<Outgoing>, EngineError> {
        if job.attempt < REVOKE_ALERT_AFTER {
            return Ok(Vec::new());
        }
        let text = format!(
            "Resolved: {} of {} for {} was revoked after {} failed attempts.",
            request.id.grant_id(),
            request.group,
            literal(request.requester.name_or_id()),
            job.attempt
        );
        self.notices(request, &text).await
    }

    async fn notices(
        &self,
        request: &AccessRequest,
        text: &str,
    ) -> Result<Vec<Outgoing>, EngineError> {
        Ok(self
            .audience(request)
            .await?
            .channels
            .into_iter()
            .map(|to| Outgoing::ChannelNotice {
                to,
                text: text.to_string(),
            })
            .collect())
    }

    pub(super) async fn run_expire(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Expire { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        let now = self.now();
        let Some(expires_at) = request.expires_at() else {
            // Not active any more: ended some other way.
            return self.consume(job).await;
        };
        if expires_at > job.due_at {
            // Extended since this job was scheduled; a later job ends it.
            return self.consume(job).await;
        }
        if expires_at > now {
            // Early (the wall clock stepped back?): never drop an owed
            // revoke — run again when it is due.
            return self.run_again_at(job, expires_at).await;
        }
        match self.revoke_unless_covered(&request, now).await? {
            Ok(covering) => {
                let lag = (self.now() - expires_at).num_milliseconds().max(0) as f64 / 1000.0;
                self.metrics.revocation_lag.observe(lag);
                let detail = covering.map(|(other, until)| {
                    format!(
                        "grant ended; provider revoke skipped because {} keeps the access until {}",
                        other.grant_id(),
                        until.to_rfc3339()
                    )
                });
                let announce = Announce {
                    detail,
                    extra: self.resolved_notices(job, &request).await?,
                    ..Announce::default()
                };
                self.record_step(job, &request, request.expire(now), announce, now)
                    .await?;
                Ok(())
            }
            Err(error) => self.revoke_failed(job, &request, &error, now).await,
        }
    }

    pub(super) async fn run_revoke_after_failed_grant(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::RevokeAfterFailedGrant { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        if !matches!(request.state, RequestState::Failed { .. }) {
            return self.consume(job).await;
        }
        let now = self.now();
        match self.revoke_unless_covered(&request, now).await? {
            Ok(covering) => {
                let detail = match covering {
                    Some((other, _)) => format!(
                        "no revoke after the failed grant: {} is active",
                        other.grant_id()
                    ),
                    None => "revoked as a precaution after the failed grant".to_string(),
                };
                let mut effects = Effects {
                    audit: vec![AuditRecord {
                        at: now,
                        action: AuditAction::CleanupRevoked,
                        actor: None,
                        request: Some(request.id.clone()),
                        group: Some(request.group.clone()),
                        detail,
                    }],
                    ..Effects::default()
                };
                effects
                    .outbox
                    .extend(self.resolved_notices(job, &request).await?);
                self.settle(
                    job,
                    &request,
                    Write {
                        request: None,
                        effects,
                    },
                )
                .await?;
                Ok(())
            }
            Err(error) => self.revoke_failed(job, &request, &error, now).await,
        }
    }
}

/// The access a grant holds at its provider, as far as a revoke undoes it.
#[derive(Debug, PartialEq)]
struct HeldAccess {
    provider: String,
    target: String,
    principal: String,
    details: std::collections::BTreeMap<String, String>,
}
