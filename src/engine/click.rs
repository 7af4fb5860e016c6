//! The one way a click reaches a decision, from every platform: Slack's
//! block actions and deny form, Teams' `Action.Execute` and `Action.Submit`,
//! the console's numbered buttons. A click is checked at once against the
//! request as it stands (so the clicker hears at once why it cannot count),
//! then recorded durably as a job; the scheduler decides it, re-checking the
//! clicker's rights fresh, and writes the outcome.

use super::{Engine, EngineError};
use crate::domain::ids::{Actor, Destination, RequestId};
use crate::domain::job::{Decision, JobKind};
use crate::domain::request::{AccessRequest, Refusal};
use crate::store::Effects;
use crate::telemetry::Metrics;

/// Someone pressed Approve or Deny.
#[derive(Debug, Clone)]
pub struct Click {
    pub request: RequestId,
    pub by: Actor,
    pub decision: Decision,
    /// Where to answer the clicker privately: the card's channel, or (none)
    /// a DM.
    pub reply_in: Option<Destination>,
    /// Whether the platform shows the outcome in its own answer to the
    /// click (a Teams invoke, a Slack form's field error): a refusal is
    /// then not sent again as a message.
    pub answers_inline: bool,
}

/// What became of a click.
#[derive(Debug)]
pub enum ClickOutcome {
    /// Recorded durably, to be decided by the scheduler; the request as it
    /// will be if the decision stands (for a card refreshed at once).
    Recorded(Box<AccessRequest>),
    /// It cannot count, and nothing was recorded; the refusal says why. A
    /// click that broke a rule (not an approver, one's own request) is
    /// audited.
    Refused(Refusal),
    /// There is no such request.
    Missing,
}

impl Engine {
    pub async fn click(&self, click: Click) -> Result<ClickOutcome, EngineError> {
        let Some(request) = self.store.get_request(&click.request).await? else {
            return Ok(ClickOutcome::Missing);
        };
        // A bundle's card stands for all its groups: the click counts for
        // each one the clicker may decide (a denial: for the first, and the
        // others are withdrawn with it).
        let members = crate::store::bundle_members(self.store.as_ref(), &request).await?;
        let now = self.now();
        let mut counted = Vec::new();
        let mut refusals = Vec::new();
        for member in &members {
            let Some(group) = self.policy.group(&member.group) else {
                continue;
            };
            let glance = self.decider_at_a_glance(member, group, &click.by).await;
            let outcome = match &click.decision {
                Decision::Approve => {
                    member.approve_in_steps(&glance, &group.step_requirements(), now)
                }
                Decision::Deny { reason } => member.deny(&glance, reason, now),
            };
            match outcome {
                Ok((next, _)) => {
                    counted.push(next);
                    if matches!(click.decision, Decision::Deny { .. }) {
                        break;
                    }
                }
                Err(refusal) => refusals.push((member, refusal)),
            }
        }
        if counted.is_empty() {
            let Some((member, refusal)) = telling(&refusals).cloned() else {
                return Ok(ClickOutcome::Missing);
            };
            Metrics::count(&self.metrics.decisions, "refused");
            let mut effects = self.refusal_effects(member, &click.by, &refusal, None);
            if click.answers_inline {
                effects.outbox.clear();
            } else {
                effects.outbox = vec![self.private_reply(
                    &click.by,
                    click.reply_in.as_ref(),
                    refusal.to_string(),
                )];
            }
            if !(effects.audit.is_empty() && effects.outbox.is_empty()) {
                self.record_effects(effects).await?;
            }
            return Ok(ClickOutcome::Refused(refusal));
        }
        let mut jobs = Vec::new();
        for next in &counted {
            jobs.push(
                self.new_job(
                    JobKind::Decide {
                        request: next.id.clone(),
                        by: click.by.clone(),
                        decision: click.decision.clone(),
                        reply_in: click.reply_in.clone(),
                    },
                    now,
                    Self::lane_of(next),
                )
                .await?,
            );
        }
        self.record_effects(Effects {
            jobs,
            ..Effects::default()
        })
        .await?;
        // The card as it will be: the clicked request, with what changed.
        let shown = counted
            .into_iter()
            .find(|next| next.id == request.id)
            .unwrap_or(request);
        Ok(ClickOutcome::Recorded(Box::new(shown)))
    }

    /// Whether `by` could decide `request_id` now; if not, they are told
    /// why (privately) and `false` is returned. Asked before the deny form
    /// opens, so nobody types a reason that will not count.
    pub async fn may_decide(
        &self,
        request_id: &RequestId,
        by: &Actor,
        reply_in: Option<Destination>,
    ) -> Result<bool, EngineError> {
        let Some(request) = self.store.get_request(request_id).await? else {
            return Ok(false);
        };
        let members = crate::store::bundle_members(self.store.as_ref(), &request).await?;
        let mut refusals = Vec::new();
        for member in &members {
            let Some(group) = self.policy.group(&member.group) else {
                continue;
            };
            let glance = self.decider_at_a_glance(member, group, by).await;
            // A trial denial answers every rule at once: pending, not one's
            // own, approver.
            match member.deny(&glance, "check", self.now()) {
                Ok(_) => return Ok(true),
                Err(refusal) => refusals.push((member, refusal)),
            }
        }
        if let Some((member, refusal)) = telling(&refusals) {
            let effects = self.refusal_effects(member, by, refusal, reply_in.as_ref());
            self.record_effects(effects).await?;
        }
        Ok(false)
    }
}

/// Of the refusals of a bundle's members, the one that says most: about the
/// request itself (decided already, one's own) before "not an approver" of
/// one of its groups.
fn telling<'a>(
    refusals: &'a [(&'a AccessRequest, Refusal)],
) -> Option<&'a (&'a AccessRequest, Refusal)> {
    refusals
        .iter()
        .find(|(_, r)| !matches!(r, Refusal::NotAnApprover { .. }))
        .or(refusals.first())
}
