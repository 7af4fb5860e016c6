//! Deciding by email: what the approval page shows and the decision it
//! posts, for the approver a signed link names. The decision takes the one
//! click path every platform takes ([`Engine::click`]), with the same
//! rules; the page then waits briefly for the scheduler's verdict, so it
//! can say what became of it.

use std::time::Duration;

use super::{Click, ClickOutcome, Engine, EngineError};
use crate::domain::ids::Actor;
use crate::domain::job::Decision;
use crate::domain::request::{AccessRequest, Refusal, RequestState};
use crate::email::token::ApprovalLink;

/// How long the page waits for the decision it posted to be taken. With
/// the wait for the grant and the click's own look-ups, the answer stays
/// inside the server's ten-second request timeout.
const DECISION_WAIT: Duration = Duration::from_secs(5);
/// How long it then waits for an approved grant to go live.
const GRANT_WAIT: Duration = Duration::from_millis(1500);
const POLL: Duration = Duration::from_millis(50);

/// What the approval page needs.
#[derive(Debug, Clone)]
pub struct EmailApproval {
    pub request: AccessRequest,
    pub description: String,
    pub approvals_required: u32,
    /// The approver the link names, as they act.
    pub approver: Actor,
}

impl EmailApproval {
    /// Whether this approver's approval is already counted.
    pub fn approved_by_them(&self) -> bool {
        self.request
            .approvals
            .iter()
            .any(|a| a.by.is(&self.approver))
    }
}

/// What became of a decision posted from the page.
#[derive(Debug)]
pub enum EmailDecision {
    /// Taken: the request as it now stands.
    Taken(Box<EmailApproval>),
    /// Recorded, and not taken yet after a while (a busy moment): the
    /// request as it now stands.
    Recorded(Box<EmailApproval>),
    Refused(Refusal, Box<EmailApproval>),
}

impl Engine {
    /// The page behind `link`: `None` when the request is gone or the
    /// link's approver is not named by its group (so a link says nothing
    /// about a request its holder may not decide).
    pub async fn email_approval(
        &self,
        link: &ApprovalLink,
    ) -> Result<Option<EmailApproval>, EngineError> {
        let Some(linked) = self.store.get_request(&link.request).await? else {
            return Ok(None);
        };
        // A bundle's link shows the member whose group names the approver
        // (the decision still counts for every group they may decide).
        let members = crate::store::bundle_members(self.store.as_ref(), &linked).await?;
        let named_in = |request: &AccessRequest| {
            self.policy
                .group(&request.group)
                .filter(|group| group.names_email_approver(&link.approver))
        };
        let Some((request, group)) = members
            .into_iter()
            .find_map(|member| named_in(&member).map(|group| (member, group)))
        else {
            return Ok(None);
        };
        Ok(Some(EmailApproval {
            request,
            description: group.description.clone(),
            // A chain needs every step's approvals in turn.
            approvals_required: group.step_requirements().iter().sum::<u32>().max(1),
            approver: Actor::by_email(&link.approver),
        }))
    }

    /// Decide as the approver `link` names; then wait (briefly) until the
    /// decision has been taken, to say what became of it.
    pub async fn decide_by_email(
        &self,
        link: &ApprovalLink,
        decision: Decision,
    ) -> Result<Option<EmailDecision>, EngineError> {
        let Some(before) = self.email_approval(link).await? else {
            return Ok(None);
        };
        let click = Click {
            request: link.request.clone(),
            by: before.approver.clone(),
            decision,
            reply_in: None,
            answers_inline: true,
        };
        match self.click(click).await? {
            ClickOutcome::Missing => Ok(None),
            ClickOutcome::Refused(refusal) => {
                Ok(Some(EmailDecision::Refused(refusal, Box::new(before))))
            }
            ClickOutcome::Recorded(_) => {
                let deadline = tokio::time::Instant::now() + DECISION_WAIT;
                let mut now = before.clone();
                while tokio::time::Instant::now() < deadline {
                    let Some(current) = self.email_approval(link).await? else {
                        return Ok(None);
                    };
                    now = current;
                    if now.request.state != RequestState::Pending || now.approved_by_them() {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                // Approved: a moment more, to say the access is live.
                let deadline = tokio::time::Instant::now() + GRANT_WAIT;
                while matches!(now.request.state, RequestState::Approved { .. })
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(POLL).await;
                    match self.email_approval(link).await? {
                        Some(current) => now = current,
                        None => break,
                    }
                }
                // Still pending without their approval: not taken yet.
                if now.request.state == RequestState::Pending && !now.approved_by_them() {
                    return Ok(Some(EmailDecision::Recorded(Box::new(now))));
                }
                Ok(Some(EmailDecision::Taken(Box::new(now))))
            }
        }
    }
}
