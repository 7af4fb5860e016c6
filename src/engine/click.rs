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
        let Some(group) = self.policy.group(&request.group) else {
            return Ok(ClickOutcome::Missing);
        };
        let glance = self.decider_at_a_glance(&request, group, &click.by).await;
        let now = self.now();
        let outcome = match &click.decision {
            Decision::Approve => glance.request.approve_in_steps(
                &glance.by,
                glance.is_approver,
                &group.step_requirements(),
                now,
            ),
            Decision::Deny { reason } => {
                glance
                    .request
                    .deny(&glance.by, glance.is_approver, reason, now)
            }
        };
        let next = match outcome {
            Ok((next, _)) => next,
            Err(refusal) => {
                Metrics::count(&self.metrics.decisions, "refused");
                let mut effects = self.refusal_effects(&request, &click.by, &refusal, None);
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
        };
        let job = self
            .new_job(
                JobKind::Decide {
                    request: click.request.clone(),
                    by: click.by,
                    decision: click.decision,
                    reply_in: click.reply_in,
                },
                now,
                Self::lane_of(&request),
            )
            .await?;
        self.record_effects(Effects {
            jobs: vec![job],
            ..Effects::default()
        })
        .await?;
        Ok(ClickOutcome::Recorded(Box::new(next)))
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
        let Some(group) = self.policy.group(&request.group) else {
            return Ok(false);
        };
        let glance = self.decider_at_a_glance(&request, group, by).await;
        // A trial denial answers every rule at once: pending, not one's own,
        // approver.
        match glance
            .request
            .deny(&glance.by, glance.is_approver, "check", self.now())
        {
            Ok(_) => Ok(true),
            Err(refusal) => {
                let effects = self.refusal_effects(&request, by, &refusal, reply_in.as_ref());
                self.record_effects(effects).await?;
                Ok(false)
            }
        }
    }
}
