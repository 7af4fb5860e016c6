//! Break-glass: access taken at once, without approval, by someone the
//! group's `break_glass` lists — then reviewed by one of its approvers, who
//! acknowledges the use or has the access revoked now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccessRequest, Decider, Refusal, RequestState};
use crate::domain::identity::Sameness;
use crate::domain::ids::Actor;

/// A request filed as break-glass, and its review so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassUse {
    /// Set once an approver acted on the review card.
    #[serde(default)]
    pub review: Option<BreakGlassReview>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassReview {
    pub by: Actor,
    pub at: DateTime<Utc>,
    pub verdict: Verdict,
}

/// What the reviewer chose on the review card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The use was justified; the access runs its course.
    Acknowledged,
    /// The access is taken away now.
    Revoked,
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Acknowledged => "acknowledged",
            Verdict::Revoked => "revoked",
        }
    }
}

impl AccessRequest {
    /// Whether it was filed as break-glass and no approver has reviewed it.
    pub fn awaits_break_glass_review(&self) -> bool {
        self.break_glass
            .as_ref()
            .is_some_and(|used| used.review.is_none())
    }

    /// `decider` reviews this break-glass use. Only the group's approvers
    /// may, never the person who broke the glass, and only once; access
    /// can be revoked only while it is active. Acknowledging lets the
    /// access stand, so it also needs jitbot to know the reviewer is not
    /// the requester; revoking takes access away, and needs only that they
    /// are not known to be.
    pub fn review_break_glass(
        &self,
        decider: &Decider,
        verdict: Verdict,
        now: DateTime<Utc>,
    ) -> Result<AccessRequest, Refusal> {
        let by = &decider.by;
        let Some(used) = &self.break_glass else {
            return Err(Refusal::NotBreakGlass(self.id.clone()));
        };
        if let Some(review) = &used.review {
            return Err(Refusal::AlreadyReviewed {
                id: self.id.clone(),
                verdict: review.verdict.label(),
                by: review.by.name_or_id().to_string(),
            });
        }
        match (decider.versus_requester, verdict) {
            (Sameness::Same, _) => return Err(Refusal::OwnBreakGlass(self.id.clone())),
            (Sameness::Unknown, Verdict::Acknowledged) => {
                return Err(Refusal::CannotTellFromRequester(self.id.clone()))
            }
            _ => {}
        }
        if !decider.may_decide {
            return Err(Refusal::NotAReviewer {
                id: self.id.clone(),
                group: self.group.clone(),
            });
        }
        if verdict == Verdict::Revoked {
            match self.state {
                RequestState::Active { .. } => {}
                RequestState::Approved { .. } => {
                    return Err(Refusal::StillGranting(self.id.grant_id()))
                }
                _ => {
                    return Err(Refusal::NotActive {
                        id: self.id.grant_id(),
                        state: self.state.label(),
                    })
                }
            }
        }
        let mut next = self.clone();
        next.break_glass = Some(BreakGlassUse {
            review: Some(BreakGlassReview {
                by: by.clone(),
                at: now,
                verdict,
            }),
        });
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::duration::HumanDuration;
    use crate::domain::ids::{GroupName, Platform, RequestId, UserId};

    fn person(id: &str) -> Actor {
        Actor::new(Platform::Slack, UserId::new(id), id)
    }

    fn used(state: RequestState) -> AccessRequest {
        let now = Utc::now();
        let (mut request, _) = AccessRequest::file(
            RequestId::generate(),
            person("U0ALICE"),
            GroupName::parse("prod-db").unwrap(),
            HumanDuration::parse("1h").unwrap(),
            "INC-1 outage".into(),
            None,
            true,
            now,
        );
        request.break_glass = Some(BreakGlassUse::default());
        request.state = state;
        request
    }

    fn active() -> RequestState {
        let now = Utc::now();
        RequestState::Active {
            activated_at: now,
            expires_at: now + chrono::Duration::hours(1),
        }
    }

    #[test]
    fn an_approver_reviews_once_and_the_user_never_reviews_their_own_use() {
        let request = used(active());
        let now = Utc::now();
        assert!(matches!(
            request.review_break_glass(
                &Decider::from_ids(&person("U0ALICE"), true, &request),
                Verdict::Acknowledged,
                now
            ),
            Err(Refusal::OwnBreakGlass(_))
        ));
        assert!(matches!(
            request.review_break_glass(
                &Decider::from_ids(&person("U0BOB"), false, &request),
                Verdict::Acknowledged,
                now
            ),
            Err(Refusal::NotAReviewer { .. })
        ));
        let reviewed = request
            .review_break_glass(
                &Decider::from_ids(&person("U0LEAD"), true, &request),
                Verdict::Acknowledged,
                now,
            )
            .unwrap();
        assert!(!reviewed.awaits_break_glass_review());
        assert_eq!(
            reviewed.state, request.state,
            "acknowledging changes no access"
        );
        assert!(matches!(
            reviewed.review_break_glass(
                &Decider::from_ids(&person("U0DBA"), true, &reviewed),
                Verdict::Revoked,
                now
            ),
            Err(Refusal::AlreadyReviewed { .. })
        ));
    }

    #[test]
    fn revoke_now_needs_live_access() {
        let now = Utc::now();
        let granting = used(RequestState::Approved {
            at: now,
            auto: true,
        });
        assert!(matches!(
            granting.review_break_glass(
                &Decider::from_ids(&person("U0LEAD"), true, &granting),
                Verdict::Revoked,
                now
            ),
            Err(Refusal::StillGranting(_))
        ));
        let expired = used(RequestState::Expired { at: now });
        assert!(matches!(
            expired.review_break_glass(
                &Decider::from_ids(&person("U0LEAD"), true, &expired),
                Verdict::Revoked,
                now
            ),
            Err(Refusal::NotActive { .. })
        ));
        // An ended use can still be acknowledged: the review is what counts.
        assert!(expired
            .review_break_glass(
                &Decider::from_ids(&person("U0LEAD"), true, &expired),
                Verdict::Acknowledged,
                now
            )
            .is_ok());
    }

    #[test]
    fn only_break_glass_requests_have_a_review() {
        let mut request = used(active());
        request.break_glass = None;
        assert!(matches!(
            request.review_break_glass(
                &Decider::from_ids(&person("U0LEAD"), true, &request),
                Verdict::Acknowledged,
                Utc::now()
            ),
            Err(Refusal::NotBreakGlass(_))
        ));
    }

    #[test]
    fn a_reviewer_jitbot_cannot_tell_from_the_requester_may_revoke_but_not_acknowledge() {
        let request = used(active());
        let now = Utc::now();
        let unknown = Decider {
            by: person("U0LEAD"),
            may_decide: true,
            versus_requester: Sameness::Unknown,
            versus_approvers: Sameness::Different,
        };
        assert!(matches!(
            request.review_break_glass(&unknown, Verdict::Acknowledged, now),
            Err(Refusal::CannotTellFromRequester(_))
        ));
        assert!(request
            .review_break_glass(&unknown, Verdict::Revoked, now)
            .is_ok());
    }
}
