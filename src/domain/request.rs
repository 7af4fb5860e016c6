//! A request and its lifecycle. Every transition is a pure function from the
//! current request to the next one plus the [`Happened`] fact that the
//! engine turns into an audit event, messages and scheduled jobs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::identity::Sameness;
use super::ids::{Actor, ChannelId, Destination, GroupName, Platform, RequestId};
use super::on_call::OnCallApprover;

mod break_glass;
mod bundle;
mod decider;
mod outcome;
pub use break_glass::{BreakGlassReview, BreakGlassUse, Verdict};
pub use bundle::{BundleEnd, BundleFollow, BundleMember};
pub use decider::Decider;
pub use outcome::{Happened, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: RequestId,
    pub requester: Actor,
    pub group: GroupName,
    pub duration: HumanDuration,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// The channel the request was typed in, if any.
    pub origin: Option<Destination>,
    /// Approvals collected so far, in the order they arrived.
    pub approvals: Vec<Approval>,
    pub state: RequestState,
    /// Where approval cards for this request were posted, so they can be
    /// updated in place when it is decided.
    #[serde(default)]
    pub cards: Vec<PostedCard>,
    /// For an extension request: the request whose grant it extends.
    #[serde(default)]
    pub extends: Option<RequestId>,
    /// For a grant: the extensions applied to it, in order.
    #[serde(default)]
    pub extensions: Vec<AppliedExtension>,
    /// When the undecided request was escalated to the group's
    /// `escalate_to`, who may decide it from then on.
    #[serde(default)]
    pub escalated_at: Option<DateTime<Utc>>,
    /// The principal the provider was asked to grant, so the revoke (and
    /// the sweep) names exactly that one even if the policy's identity
    /// mapping has changed since.
    #[serde(default)]
    pub principal: Option<String>,
    /// The requester has no chat jitbot can reach (an API request that gave
    /// an `email`): what the requester is owed goes to their address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify_by_email: bool,
    /// The ticket id its reason names, under the group's `reason_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Why the policy approved it without a person (which `auto_approve`
    /// conditions held, the on-call schedule found), as filed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approval: Option<String>,
    /// Who was on call for the group's approver schedules when it was
    /// filed: they were asked, and they may decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_call: Vec<OnCallApprover>,
    /// Filed as break-glass: granted without approval, reviewed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassUse>,
    /// Filed with other groups as one request: every member, this one
    /// included, in the order they were named (the first shows the cards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<BundleMember>,
    /// What the access is granted through, fixed when the request was
    /// approved: every grant and revoke uses it, whatever the policy says
    /// later (a renamed target, a removed group). `None` for requests
    /// approved before it was recorded, and for extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_with: Option<GrantedWith>,
}

/// The provider and target a request's access is granted through, as the
/// policy named them when it was approved, and what the provider said it
/// made (a binding's name, an assignment), once granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedWith {
    pub provider: String,
    pub target: String,
    /// Provider-specific facts of the grant, recorded when it was made,
    /// for the revoke to undo exactly that.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
    /// The admins were told that the policy no longer grants this the way
    /// it was granted (a renamed target, a removed group).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift_told: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedExtension {
    pub request: RequestId,
    pub duration: HumanDuration,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: Actor,
    pub at: DateTime<Utc>,
    /// The approval chain's step it counted in (0: the first, and only
    /// step of a group without `steps`).
    #[serde(default, skip_serializing_if = "is_first_step")]
    pub step: usize,
}

fn is_first_step(step: &usize) -> bool {
    *step == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedCard {
    pub platform: Platform,
    pub channel: ChannelId,
    /// The platform's id of the message (Slack `ts`, Teams activity id).
    pub message_id: String,
}

/// The lifecycle. Each variant carries what is known in that state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; the provider has not confirmed the grant yet.
    Approved {
        at: DateTime<Utc>,
        auto: bool,
    },
    /// The provider granted access; it ends at `expires_at`.
    Active {
        activated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Denied {
        by: Actor,
        at: DateTime<Utc>,
        reason: String,
    },
    Cancelled {
        at: DateTime<Utc>,
    },
    TimedOut {
        at: DateTime<Utc>,
    },
    /// The provider refused the grant.
    Failed {
        at: DateTime<Utc>,
        error: String,
    },
    /// Access was revoked at the end of its time.
    Expired {
        at: DateTime<Utc>,
    },
    /// An approved extension request, applied to its grant, which now ends
    /// at `until`.
    Extended {
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// The requester gave access back early.
    Released {
        at: DateTime<Utc>,
    },
    /// An admin took access away.
    Revoked {
        by: Actor,
        at: DateTime<Utc>,
        reason: String,
    },
}

impl RequestState {
    /// A short word for messages and listings.
    pub fn label(&self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved { .. } => "approved",
            RequestState::Active { .. } => "active",
            RequestState::Denied { .. } => "denied",
            RequestState::Cancelled { .. } => "cancelled",
            RequestState::TimedOut { .. } => "timed out",
            RequestState::Failed { .. } => "failed",
            RequestState::Expired { .. } => "expired",
            RequestState::Extended { .. } => "extended",
            RequestState::Released { .. } => "released",
            RequestState::Revoked { .. } => "revoked",
        }
    }

    /// Whether the request can still change on its own (not a final state).
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            RequestState::Pending | RequestState::Approved { .. } | RequestState::Active { .. }
        )
    }
}

impl AccessRequest {
    /// A new pending request (or approved, when an auto-approve rule applies).
    #[allow(clippy::too_many_arguments)]
    pub fn file(
        id: RequestId,
        requester: Actor,
        group: GroupName,
        duration: HumanDuration,
        reason: String,
        origin: Option<Destination>,
        auto_approved: bool,
        now: DateTime<Utc>,
    ) -> (AccessRequest, Happened) {
        let state = if auto_approved {
            RequestState::Approved {
                at: now,
                auto: true,
            }
        } else {
            RequestState::Pending
        };
        let notify_by_email = requester.email.is_some();
        let request = AccessRequest {
            id,
            requester,
            group,
            duration,
            reason,
            created_at: now,
            origin,
            approvals: Vec::new(),
            state,
            cards: Vec::new(),
            extends: None,
            extensions: Vec::new(),
            escalated_at: None,
            principal: None,
            // Only the API files a requester with an address given.
            notify_by_email,
            ticket: None,
            auto_approval: None,
            on_call: Vec::new(),
            break_glass: None,
            bundle: Vec::new(),
            granted_with: None,
        };
        (request, Happened::Requested { auto_approved })
    }

    /// Make this new request an extension of `grant`'s request.
    pub fn extending(mut self, grant: &AccessRequest) -> AccessRequest {
        self.extends = Some(grant.id.clone());
        self
    }

    /// The grant's whole length so far: its duration plus every extension.
    pub fn total_duration(&self) -> HumanDuration {
        self.extensions
            .iter()
            .fold(self.duration, |total, e| total.saturating_add(e.duration))
    }

    /// Move an active grant's end by `extension`'s duration (from its
    /// current end, so no time is lost or gained). `None` if the grant is
    /// not active or the extension was applied already (the step is
    /// idempotent).
    pub fn extend_by(
        &self,
        extension: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        let RequestState::Active {
            activated_at,
            expires_at,
        } = self.state
        else {
            return None;
        };
        if self.extensions.iter().any(|e| e.request == extension.id) {
            return None;
        }
        let until = expires_at + extension.duration.as_chrono();
        let mut next = self.clone();
        next.state = RequestState::Active {
            activated_at,
            expires_at: until,
        };
        next.extensions.push(AppliedExtension {
            request: extension.id.clone(),
            duration: extension.duration,
            at: now,
        });
        Some((
            next,
            Happened::GrantExtended {
                by_request: extension.id.clone(),
                duration: extension.duration,
                until,
            },
        ))
    }

    /// Record that this approved extension request was applied.
    pub fn mark_applied(
        &self,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        if !matches!(self.state, RequestState::Approved { .. }) || self.extends.is_none() {
            return None;
        }
        let mut next = self.clone();
        next.state = RequestState::Extended { at: now, until };
        Some((next, Happened::ExtensionApplied { until }))
    }

    fn require_pending(&self) -> Result<(), Refusal> {
        if self.state == RequestState::Pending {
            Ok(())
        } else {
            Err(Refusal::NoLongerPending {
                id: self.id.clone(),
                state: self.state.label(),
            })
        }
    }

    /// An approver's click, judged by the ids alone (no directory): for
    /// tests and tools that know every party on one platform.
    pub fn approve(
        &self,
        by: &Actor,
        is_approver: bool,
        required: u32,
        now: DateTime<Utc>,
    ) -> Result<(AccessRequest, Happened), Refusal> {
        self.approve_in_steps(&Decider::from_ids(by, is_approver, self), &[required], now)
    }

    /// An approval in a chain whose step `i` needs `steps[i]` approvals:
    /// it counts in the step now waiting (`decider.may_decide` says
    /// whether they may approve that step); the last step met approves the
    /// request. One person counts once, in one step only, and never for
    /// their own request — nor when jitbot cannot tell that they are
    /// neither the requester nor someone who approved already.
    pub fn approve_in_steps(
        &self,
        decider: &Decider,
        steps: &[u32],
        now: DateTime<Utc>,
    ) -> Result<(AccessRequest, Happened), Refusal> {
        self.require_pending()?;
        let by = &decider.by;
        match decider.versus_requester {
            Sameness::Same => return Err(Refusal::OwnRequest(self.id.clone())),
            Sameness::Unknown => return Err(Refusal::CannotTellFromRequester(self.id.clone())),
            Sameness::Different => {}
        }
        // Before the rights of the step now asked: who approved an earlier
        // step is told that, not that they cannot approve this one.
        match decider.versus_approvers {
            Sameness::Same => return Err(Refusal::AlreadyApproved(self.id.clone())),
            Sameness::Unknown => return Err(Refusal::CannotTellFromApprovers(self.id.clone())),
            Sameness::Different => {}
        }
        if !decider.may_decide {
            return Err(Refusal::NotAnApprover {
                id: self.id.clone(),
                group: self.group.clone(),
            });
        }
        let step = self.current_step(steps);
        let required = steps.get(step).copied().unwrap_or(1).max(1);
        let mut next = self.clone();
        next.approvals.push(Approval {
            by: by.clone(),
            at: now,
            step,
        });
        let count = next.approvals.iter().filter(|a| a.step == step).count();
        let last_step = step + 1 >= steps.len();
        if count < required as usize {
            return Ok((
                next,
                Happened::ApprovalRecorded {
                    by: by.clone(),
                    count,
                    required,
                },
            ));
        }
        if !last_step {
            // The next step's approvers are asked from now; its waiting
            // time (escalation, time-out) starts now too.
            next.escalated_at = None;
            return Ok((
                next,
                Happened::StepMet {
                    by: by.clone(),
                    step: step + 1,
                    of: steps.len(),
                },
            ));
        }
        next.state = RequestState::Approved {
            at: now,
            auto: false,
        };
        Ok((
            next,
            Happened::Approved {
                by: Some(by.clone()),
            },
        ))
    }

    /// The chain's step waiting for approvals (0-based), when step `i`
    /// needs `steps[i]`; the last step once all are met.
    pub fn current_step(&self, steps: &[u32]) -> usize {
        let met = |(i, need): &(usize, &u32)| {
            self.approvals.iter().filter(|a| a.step == *i).count() >= (**need).max(1) as usize
        };
        steps
            .iter()
            .enumerate()
            .find(|step| !met(step))
            .map_or(steps.len().saturating_sub(1), |(i, _)| i)
    }

    /// The people asked because they were on call for a schedule among
    /// `approvers` (a step's).
    pub fn on_call_for<'a>(
        &'a self,
        approvers: &'a [super::policy::Subject],
    ) -> impl Iterator<Item = &'a OnCallApprover> + 'a {
        self.on_call.iter().filter(move |asked| {
            approvers
                .iter()
                .any(|s| s.schedule() == Some(&asked.schedule))
        })
    }

    /// When the step now waiting was first asked: when the step before it
    /// was met, or when the request was filed.
    pub fn step_asked_at(&self, steps: &[u32]) -> DateTime<Utc> {
        let step = self.current_step(steps);
        self.approvals
            .iter()
            .filter(|a| step > 0 && a.step == step - 1)
            .map(|a| a.at)
            .max()
            .unwrap_or(self.created_at)
    }

    /// An approver's denial, with its reason. Taking access away from
    /// nobody, it needs only that the decider is known not to be the
    /// requester *or* cannot be told apart (a denial by one's own other
    /// account harms nobody but oneself).
    pub fn deny(
        &self,
        decider: &Decider,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(AccessRequest, Happened), Refusal> {
        self.require_pending()?;
        let by = &decider.by;
        if decider.versus_requester == Sameness::Same {
            return Err(Refusal::DenyOwnRequest(self.id.clone()));
        }
        if !decider.may_decide {
            return Err(Refusal::NotAnApprover {
                id: self.id.clone(),
                group: self.group.clone(),
            });
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Refusal::DenyReasonMissing);
        }
        if reason.chars().count() > super::command::MAX_REASON_CHARS {
            return Err(Refusal::ReasonTooLong(super::command::MAX_REASON_CHARS));
        }
        let mut next = self.clone();
        next.state = RequestState::Denied {
            by: by.clone(),
            at: now,
            reason: reason.to_string(),
        };
        Ok((
            next,
            Happened::Denied {
                by: by.clone(),
                reason: reason.to_string(),
            },
        ))
    }

    /// Where the requester hears back: their address, when they filed
    /// through the API with one and jitbot can send email; else their chat.
    pub fn requester_inbox(&self, email_enabled: bool) -> Actor {
        match &self.requester.email {
            Some(address) if self.notify_by_email && email_enabled => Actor::by_email(address),
            _ => self.requester.clone(),
        }
    }

    /// The requester withdraws a pending request.
    pub fn cancel(
        &self,
        by: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(AccessRequest, Happened), Refusal> {
        if !by.is(&self.requester) {
            return Err(Refusal::NotYourRequest(self.id.clone()));
        }
        self.require_pending()?;
        let mut next = self.clone();
        next.state = RequestState::Cancelled { at: now };
        Ok((next, Happened::Cancelled))
    }

    /// Whether the provider may have granted this request's access and not
    /// yet revoked it: approved (the grant may be under way) or active.
    pub fn may_hold_access(&self) -> bool {
        matches!(
            self.state,
            RequestState::Approved { .. } | RequestState::Active { .. }
        )
    }

    /// When access granted for this approved request must end: the moment
    /// of approval plus the requested duration. It is fixed before the
    /// provider is first called, so no retry, crash or outage between the
    /// approval and the recorded activation can lengthen the access.
    pub fn approved_until(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Approved { at, .. } => Some(at + self.duration.as_chrono()),
            _ => None,
        }
    }

    /// The provider confirmed the grant to `principal`: access is live from
    /// now until [`AccessRequest::approved_until`] (it never ends later than
    /// the approval allowed). `None` if the request is not waiting for
    /// activation.
    pub fn activate(
        &self,
        now: DateTime<Utc>,
        principal: &str,
        details: std::collections::BTreeMap<String, String>,
    ) -> Option<(AccessRequest, Happened)> {
        let expires_at = self.approved_until()?;
        let mut next = self.clone();
        next.principal = Some(principal.to_string());
        if let Some(granted) = &mut next.granted_with {
            granted.details = details;
        }
        next.state = RequestState::Active {
            activated_at: now,
            expires_at,
        };
        Some((next, Happened::Activated { expires_at }))
    }

    /// The provider refused the grant for good.
    pub fn fail(&self, error: &str, now: DateTime<Utc>) -> Option<(AccessRequest, Happened)> {
        if !matches!(self.state, RequestState::Approved { .. }) {
            return None;
        }
        let mut next = self.clone();
        next.state = RequestState::Failed {
            at: now,
            error: error.to_string(),
        };
        Some((
            next,
            Happened::GrantFailed {
                error: error.to_string(),
            },
        ))
    }

    /// The provider confirmed the revocation at the end of the grant.
    pub fn expire(&self, now: DateTime<Utc>) -> Option<(AccessRequest, Happened)> {
        match self.state {
            RequestState::Active { expires_at, .. } if expires_at <= now => {
                let mut next = self.clone();
                next.state = RequestState::Expired { at: now };
                Some((next, Happened::Expired))
            }
            _ => None,
        }
    }

    /// Whether the grant can be ended early by `by`: it must be active, and
    /// (unless an admin revokes it) `by` must be its requester. An admin's
    /// reason is checked like every reason.
    pub fn check_end(&self, by: &Actor, admin_reason: Option<&str>) -> Result<(), Refusal> {
        if admin_reason.is_some_and(|r| r.trim().chars().count() > super::command::MAX_REASON_CHARS)
        {
            return Err(Refusal::ReasonTooLong(super::command::MAX_REASON_CHARS));
        }
        let as_admin = admin_reason.is_some();
        if !as_admin && !by.is(&self.requester) {
            return Err(Refusal::NotYourGrant(self.id.grant_id()));
        }
        match self.state {
            RequestState::Active { .. } => Ok(()),
            _ => Err(Refusal::NotActive {
                id: self.id.grant_id(),
                state: self.state.label(),
            }),
        }
    }

    /// The provider confirmed the revocation of a grant ended early:
    /// released by its requester, or revoked by an admin (`admin_reason`).
    pub fn end_early(
        &self,
        by: &Actor,
        admin_reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        if !matches!(self.state, RequestState::Active { .. }) {
            return None;
        }
        let mut next = self.clone();
        let happened = match admin_reason {
            Some(reason) => {
                next.state = RequestState::Revoked {
                    by: by.clone(),
                    at: now,
                    reason: reason.to_string(),
                };
                Happened::Revoked {
                    by: by.clone(),
                    reason: reason.to_string(),
                }
            }
            None => {
                next.state = RequestState::Released { at: now };
                Happened::Released
            }
        };
        Some((next, happened))
    }

    /// Nobody used the grant for `unused_for` (the group's `idle_release`
    /// or more), and the provider confirmed the revocation: it ends as
    /// released.
    pub fn release_idle(
        &self,
        unused_for: HumanDuration,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        if !matches!(self.state, RequestState::Active { .. }) {
            return None;
        }
        let mut next = self.clone();
        next.state = RequestState::Released { at: now };
        Some((next, Happened::ReleasedIdle { unused_for }))
    }

    /// When the grant became live, if it is active.
    pub fn activated_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Active { activated_at, .. } => Some(activated_at),
            _ => None,
        }
    }

    /// Still undecided: escalate (once) to `to`.
    pub fn escalate(
        &self,
        to: Vec<Actor>,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        if self.state != RequestState::Pending || self.escalated_at.is_some() {
            return None;
        }
        let mut next = self.clone();
        next.escalated_at = Some(now);
        Some((next, Happened::Escalated { to }))
    }

    /// Nobody decided in time.
    pub fn time_out(&self, now: DateTime<Utc>) -> Option<(AccessRequest, Happened)> {
        if self.state != RequestState::Pending {
            return None;
        }
        let mut next = self.clone();
        next.state = RequestState::TimedOut { at: now };
        Some((next, Happened::TimedOut))
    }

    /// Whether `other` is this request at the same point of its lifecycle.
    /// Where its cards were posted is left out: the outbox records that
    /// concurrently, and it never changes a decision.
    pub fn same_point(&self, other: &AccessRequest) -> bool {
        self.state == other.state
            && self.approvals == other.approvals
            && self.break_glass == other.break_glass
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Active { expires_at, .. } => Some(expires_at),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
