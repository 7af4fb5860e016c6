//! Deciding a recorded click: the scheduler runs it, re-checking the
//! clicker's rights against the policy (user groups asked fresh) and the
//! request as it is then; racing clicks give one outcome.

use super::rights::Lookup;
use super::{Engine, EngineError};
use crate::chat::ChatError;
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::{Actor, Destination, Platform};
use crate::domain::job::{Decision, Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::policy::GroupPolicy;
use crate::domain::request::{AccessRequest, Decider, Refusal, RequestState};
use crate::domain::text::literal;
use crate::store::{Applied, Effects, Write};
use crate::telemetry::Metrics;

/// Directory look-ups are retried this many times (about four minutes in
/// all) before the clicker is told to try again.
const DECIDE_ATTEMPTS: u32 = 8;

impl Engine {
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
            let Some(snapshot) = self.store.get_request(id).await? else {
                self.store
                    .apply(id, Some(job), &mut |_| Some(Write::default()))
                    .await?;
                return Ok(());
            };
            let group = self.policy.group(&snapshot.group);
            let checked = match group {
                Some(group) => self.who_decides(&snapshot, group, by, Lookup::Fresh).await,
                None => Ok(Decider::from_ids(by, false, &snapshot)),
            };
            let decider = match checked {
                Ok(decider) => decider,
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
                    self.store
                        .apply(id, Some(job), &mut |_| {
                            Some(Write {
                                request: None,
                                effects: effects.clone(),
                            })
                        })
                        .await?;
                    self.commit_and_wake_for(&effects).await?;
                    return Ok(());
                }
            };
            let by = &decider.by;
            let steps = group.map_or_else(|| vec![1], |g| g.step_requirements());
            let now = self.now();
            let outcome = match decision {
                Decision::Approve => snapshot.approve_in_steps(&decider, &steps, now),
                Decision::Deny { reason } => snapshot.deny(&decider, reason, now),
            };
            let counted = match &outcome {
                Ok((next, _)) if matches!(next.state, RequestState::Approved { .. }) => "approved",
                Ok((next, _)) if matches!(next.state, RequestState::Denied { .. }) => "denied",
                Ok(_) => "approval_recorded",
                Err(_) => "refused",
            };
            let write = match outcome {
                Ok((mut next, happened)) => {
                    self.fix_grant_target(&mut next);
                    let audience = self.audience(&next).await?;
                    let effects = self
                        .effects_of(&next, &happened, Some(by), &audience, None, now)
                        .await?;
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
            let applied = self
                .write_if_unchanged(&snapshot, Some(job), &write)
                .await?;
            match applied {
                Applied::Skipped => continue,
                Applied::Written | Applied::JobGone => {
                    if applied == Applied::Written {
                        Metrics::count(&self.metrics.decisions, counted);
                    }
                    self.commit_and_wake_for(&write.effects).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Who is deciding `request`, as far as the rules need to know: the
    /// clicker with the address that may give them rights (an email
    /// approver by chat), whether they may decide the step now waiting,
    /// and whether jitbot can tell them apart from the requester and from
    /// those who approved already.
    pub(super) async fn who_decides(
        &self,
        request: &AccessRequest,
        group: &GroupPolicy,
        by: &Actor,
        lookup: Lookup,
    ) -> Result<Decider, ChatError> {
        let by = self.with_rights_email(by, group.decided_by_email()).await?;
        let may_decide = self.may_approve(request, group, &by, lookup).await?;
        self.judge(request, &by, may_decide).await
    }

    /// Tell the clicker why nothing changed; attempts that break a rule
    /// (not an approver, one's own request) are audited too.
    pub(super) fn refusal_effects(
        &self,
        request: &AccessRequest,
        by: &Actor,
        refusal: &Refusal,
        reply_in: Option<&Destination>,
    ) -> Effects {
        // Someone deciding by email reads the outcome on the page they
        // decided on; an email saying it again would only be noise.
        let reply = (by.platform != Platform::Email)
            .then(|| self.private_reply(by, reply_in, refusal.to_string()));
        Effects {
            outbox: reply.into_iter().collect(),
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
            Refusal::NotAnApprover { .. }
                | Refusal::OwnRequest(_)
                | Refusal::DenyOwnRequest(_)
                | Refusal::CannotTellFromRequester(_)
                | Refusal::CannotTellFromApprovers(_)
                | Refusal::NotAReviewer { .. }
                | Refusal::OwnBreakGlass(_)
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
