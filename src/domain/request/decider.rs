//! Who is deciding a request, as far as the rules need to know: whether
//! they may decide it, and whether they are the requester or someone whose
//! approval counts already — established by the engine from trusted
//! sources ([`crate::domain::identity`]), never from what a request says.

use super::AccessRequest;
use crate::domain::identity::{Person, Sameness};
use crate::domain::ids::Actor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub by: Actor,
    /// Whether `by` may decide the step now waiting: an approver of it, an
    /// `escalate_to` once escalated, the person asked when on call.
    pub may_decide: bool,
    /// `by` against the requester.
    pub versus_requester: Sameness,
    /// `by` against everyone whose approval counts already (the worst
    /// answer of them all).
    pub versus_approvers: Sameness,
}

impl Decider {
    /// Judged by the ids the parties act with alone (and the addresses
    /// their actors carry), without asking a directory: exact when every
    /// party acts on one platform.
    pub fn from_ids(by: &Actor, may_decide: bool, request: &AccessRequest) -> Decider {
        let person = Person::of(by);
        Decider {
            by: by.clone(),
            may_decide,
            versus_requester: person.compare(&Person::of(&request.requester)),
            versus_approvers: Sameness::worst(
                request
                    .approvals
                    .iter()
                    .map(|approval| person.compare(&Person::of(&approval.by))),
            ),
        }
    }
}
