//! What a transition reports: the fact that happened, or why nothing did.

use chrono::{DateTime, Utc};

use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, GrantId, GroupName, RequestId};

/// What a transition did, for the engine to audit and announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    Requested {
        auto_approved: bool,
    },
    ApprovalRecorded {
        by: Actor,
        count: usize,
        required: u32,
    },
    /// A step of the approval chain was met (`step` of `of`, 1-based);
    /// the next step's approvers are asked.
    StepMet {
        by: Actor,
        step: usize,
        of: usize,
    },
    Approved {
        by: Option<Actor>,
    },
    Denied {
        by: Actor,
        reason: String,
    },
    Cancelled,
    Activated {
        expires_at: DateTime<Utc>,
    },
    GrantFailed {
        error: String,
    },
    Expired,
    /// The requester gave the access back before its end.
    Released,
    /// Nobody used the access for the group's `idle_release`: released early.
    ReleasedIdle {
        unused_for: HumanDuration,
    },
    /// An admin took the access away.
    Revoked {
        by: Actor,
        reason: String,
    },
    /// Nobody decided within the group's `pending_timeout`.
    TimedOut,
    /// Still undecided after `escalate_after`: re-posted to these people.
    Escalated {
        to: Vec<Actor>,
    },
    /// An approved extension moved this grant's end.
    GrantExtended {
        by_request: RequestId,
        duration: HumanDuration,
        until: DateTime<Utc>,
    },
    /// This extension request was applied to its grant.
    ExtensionApplied {
        until: DateTime<Utc>,
    },
    /// Withdrawn, nothing granted, because another group asked for in the
    /// same request ended (`because` says which and how).
    Withdrawn {
        because: String,
    },
    /// Revoked because granting another group of the same request failed
    /// for good: the request is all or nothing.
    Undone {
        because: String,
    },
}

/// Why a decision or action on a request changes nothing. The text is what
/// the person who tried it is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{id} is already {state}; nothing changed.")]
    NoLongerPending { id: RequestId, state: &'static str },
    #[error("You cannot approve your own request {0}.")]
    OwnRequest(RequestId),
    #[error("You cannot deny your own request {0}; cancel it with `/jit cancel {0}`.")]
    DenyOwnRequest(RequestId),
    #[error("You are not an approver for `{group}`, so your decision on {id} was not counted.")]
    NotAnApprover { id: RequestId, group: GroupName },
    #[error("You already approved {0}; it needs another approver.")]
    AlreadyApproved(RequestId),
    /// The decider and the requester are known on no common platform (a
    /// Slack requester whose address cannot be read, and an email
    /// approver): they may be one person.
    #[error("jitbot cannot verify that you are not the requester of {0}, so your decision was not counted. An admin can link your accounts in the policy's [identities].")]
    CannotTellFromRequester(RequestId),
    /// Likewise for someone whose approval counts already.
    #[error("jitbot cannot verify that you have not approved {0} already (from another account), so your approval was not counted. An admin can link your accounts in the policy's [identities].")]
    CannotTellFromApprovers(RequestId),
    #[error("Only the requester can cancel {0}.")]
    NotYourRequest(RequestId),
    #[error("A denial needs a reason.")]
    DenyReasonMissing,
    #[error("The reason is longer than {0} characters; say it in fewer words.")]
    ReasonTooLong(usize),
    #[error("Only the requester can release {0}.")]
    NotYourGrant(GrantId),
    #[error("{id} is {state}, not active; there is nothing to end.")]
    NotActive { id: GrantId, state: &'static str },
    #[error("{0} was not a break-glass use; there is nothing to review.")]
    NotBreakGlass(RequestId),
    #[error("The break-glass use {id} was already {verdict} by {by}; nothing changed.")]
    AlreadyReviewed {
        id: RequestId,
        verdict: &'static str,
        by: String,
    },
    #[error("You cannot review your own break-glass use {0}; another approver must.")]
    OwnBreakGlass(RequestId),
    #[error(
        "You are not an approver for `{group}`, so you cannot review the break-glass use {id}."
    )]
    NotAReviewer { id: RequestId, group: GroupName },
    #[error("{0} is still being granted; try Revoke now again in a moment.")]
    StillGranting(GrantId),
}
