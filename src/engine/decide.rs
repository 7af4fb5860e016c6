//! Decisions: a click is recorded durably as a job the moment it arrives,
//! and decided by the scheduler, which re-checks the clicker's rights
//! against the policy (and user-group membership) every time.

use super::{Engine, EngineError, Lookup};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::{Actor, Destination, RequestId};
use crate::domain::job::{Decision, Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::request::{AccessRequest, Refusal, RequestState};
use crate::domain::text::literal;
use crate::store::{Applied, Effects, Write};
use crate::telemetry::Metrics;

/// Directory look-ups are retried this many times (about four minutes in
/// all) before the clicker is told to try again.
const DECIDE_ATTEMPTS: u32 = 8;

/// What a decision would do, as [`Engine::preview_decision`] sees it.
#[derive(Debug)]
pub enum Preview {
    Missing,
    Refused(Refusal),
    /// The request as it would be after the decision.
    Allowed(Box<AccessRequest>),
}

impl Engine {
    /// Record a decision to be taken by the scheduler. Durable when this
    /// returns, so an accepted click survives a crash.
    pub async fn record_decision(
        &self,
        request_id: &RequestId,
        by: Actor,
        decision: Decision,
        reply_in: Option<Destination>,
    ) -> Result<bool, EngineError> {
        let Some(request) = self.store.get_request(request_id)? else {
            return Ok(false);
        };
        let job = self.new_job(
            JobKind::Decide {
                request: request_id.clone(),
                by,
                decision,
                reply_in,
            },
            self.now(),
            Self::lane_of(&request),
        )?;
        self.store.record(&Effects {
            jobs: vec![job],
            ..Effects::default()
        })?;
        self.commit_and_wake().await?;
        Ok(true)
    }

    /// Whether `by` could decide `request_id` now; if not, they are told
    /// why (privately) and `false` is returned. Used before opening the
    /// deny form, so nobody types a reason that will not count.
    pub async fn may_decide(
        &self,
        request_id: &RequestId,
        by: &Actor,
        reply_in: Option<Destination>,
    ) -> Result<bool, EngineError> {
        let Some(request) = self.store.get_request(request_id)? else {
            return Ok(false);
        };
        // If membership cannot be checked right now, let them fill in the
        // form: the decision itself re-checks their rights before it counts.
        let is_approver = match self.policy.group(&request.group) {
            Some(group) => tokio::time::timeout(
                super::PROMPT_LOOKUP_TIMEOUT,
                self.may_approve(&request, group, by, Lookup::Cached),
            )
            .await
            .map_or(true, |checked| checked.unwrap_or(true)),
            None => false,
        };
        // A trial denial answers every rule at once: pending, not one's own,
        // approver.
        match request.deny(by, is_approver, "check", self.now()) {
            Ok(_) => Ok(true),
            Err(refusal) => {
                let effects = self.refusal_effects(&request, by, &refusal, reply_in.as_ref());
                self.store.record(&effects)?;
                self.commit_and_wake().await?;
                Ok(false)
            }
        }
    }

    pub(super) async fn run_decide(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Decide {
            request: id,
            by,
            decision,
            reply_in,
        } = &job.kind
        else {
            return Ok(());
        };
        loop {
            let Some(snapshot) = self.store.get_request(id)? else {
                self.store
                    .apply(id, Some(job), &mut |_| Some(Write::default()))?;
                return Ok(());
            };
            let group = self.policy.group(&snapshot.group);
            let is_approver = match group {
                Some(group) => match self.may_approve(&snapshot, group, by, Lookup::Fresh).await {
                    Ok(named) => named,
                    Err(error) if job.attempt + 1 < DECIDE_ATTEMPTS => {
                        tracing::warn!(request = %id, %error, "cannot resolve approver groups; retrying");
                        return self.retry_later(job, Effects::default()).await;
                    }
                    Err(error) => {
                        tracing::error!(request = %id, %error, "giving up on resolving approver groups");
                        let text = format!(
                            "I could not check your approver rights for {id} ({}); your click was not counted. Please click again.",
                            literal(&error.to_string())
                        );
                        let effects = Effects {
                            outbox: vec![self.private_reply(by, reply_in.as_ref(), text)],
                            ..Effects::default()
                        };
                        self.store.apply(id, Some(job), &mut |_| {
                            Some(Write {
                                request: None,
                                effects: effects.clone(),
                            })
                        })?;
                        self.commit_and_wake().await?;
                        return Ok(());
                    }
                },
                None => false,
            };
            let required = group.map_or(1, |g| g.approvals_required);
            let now = self.now();
            let outcome = match decision {
                Decision::Approve => snapshot.approve(by, is_approver, required, now),
                Decision::Deny { reason } => snapshot.deny(by, is_approver, reason, now),
            };
            let counted = match &outcome {
                Ok((next, _)) if matches!(next.state, RequestState::Approved { .. }) => "approved",
                Ok((next, _)) if matches!(next.state, RequestState::Denied { .. }) => "denied",
                Ok(_) => "approval_recorded",
                Err(_) => "refused",
            };
            let write = match outcome {
                Ok((next, happened)) => {
                    let audience = self.audience(&next)?;
                    let effects =
                        self.effects_of(&next, &happened, Some(by), &audience, None, now)?;
                    Write {
                        request: Some(next),
                        effects,
                    }
                }
                Err(refusal) => Write {
                    request: None,
                    effects: self.refusal_effects(&snapshot, by, &refusal, reply_in.as_ref()),
                },
            };
            // Decide on the snapshot, write only if it is still current;
            // otherwise another decision landed first and we decide again.
            let applied = self.write_if_unchanged(&snapshot, Some(job), &write)?;
            match applied {
                Applied::Skipped => continue,
                Applied::Written | Applied::JobGone => {
                    if applied == Applied::Written {
                        Metrics::count(&self.metrics.decisions, counted);
                    }
                    self.commit_and_wake().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Tell the clicker why nothing changed; attempts that break a rule
    /// (not an approver, one's own request) are audited too.
    fn refusal_effects(
        &self,
        request: &AccessRequest,
        by: &Actor,
        refusal: &Refusal,
        reply_in: Option<&Destination>,
    ) -> Effects {
        Effects {
            outbox: vec![self.private_reply(by, reply_in, refusal.to_string())],
            audit: self
                .refusal_audit(request, by, refusal)
                .into_iter()
                .collect(),
            ..Effects::default()
        }
    }

    /// Attempts that break a rule (not an approver, one's own request) are
    /// audited; others (already decided) are not.
    fn refusal_audit(
        &self,
        request: &AccessRequest,
        by: &Actor,
        refusal: &Refusal,
    ) -> Option<AuditRecord> {
        let breaks_a_rule = matches!(
            refusal,
            Refusal::NotAnApprover { .. } | Refusal::OwnRequest(_) | Refusal::DenyOwnRequest(_)
        );
        breaks_a_rule.then(|| AuditRecord {
            at: self.now(),
            action: AuditAction::DecisionRefused,
            actor: Some(by.clone()),
            request: Some(request.id.clone()),
            group: Some(request.group.clone()),
            detail: refusal.to_string(),
        })
    }

    /// What `decision` by `by` would do to the request now, without
    /// recording anything — for platforms that answer a click with the
    /// updated card at once (Teams). The recorded decision re-checks it.
    pub async fn preview_decision(
        &self,
        request_id: &RequestId,
        by: &Actor,
        decision: &Decision,
    ) -> Result<Preview, EngineError> {
        let Some(request) = self.store.get_request(request_id)? else {
            return Ok(Preview::Missing);
        };
        let Some(group) = self.policy.group(&request.group) else {
            return Ok(Preview::Missing);
        };
        // A look-up that does not answer in time does not refuse: the
        // recorded decision checks again.
        let is_approver = tokio::time::timeout(
            super::PROMPT_LOOKUP_TIMEOUT,
            self.may_approve(&request, group, by, Lookup::Cached),
        )
        .await
        .map_or(true, |checked| checked.unwrap_or(true));
        let now = self.now();
        let outcome = match decision {
            Decision::Approve => request.approve(by, is_approver, group.approvals_required, now),
            Decision::Deny { reason } => request.deny(by, is_approver, reason, now),
        };
        Ok(match outcome {
            Ok((next, _)) => Preview::Allowed(Box::new(next)),
            Err(refusal) => Preview::Refused(refusal),
        })
    }

    /// Audit a refusal the person was shown directly (as `preview_decision`
    /// found it), when it broke a rule.
    pub async fn note_refused_decision(
        &self,
        request_id: &RequestId,
        by: &Actor,
        refusal: &Refusal,
    ) -> Result<(), EngineError> {
        let Some(request) = self.store.get_request(request_id)? else {
            return Ok(());
        };
        if let Some(audit) = self.refusal_audit(&request, by, refusal) {
            self.store.record(&Effects {
                audit: vec![audit],
                ..Effects::default()
            })?;
            self.flush().await?;
        }
        Ok(())
    }

    /// A message only `to` sees: ephemeral in the channel of the card, or a
    /// DM when the card was not in a channel.
    pub(super) fn private_reply(
        &self,
        to: &Actor,
        channel: Option<&Destination>,
        text: String,
    ) -> Outgoing {
        match channel {
            Some(destination) => Outgoing::Ephemeral {
                platform: destination.platform,
                channel: destination.channel.clone(),
                user: to.user.clone(),
                text,
            },
            None => Outgoing::Direct {
                to: to.clone(),
                text,
                about: None,
            },
        }
    }
}
