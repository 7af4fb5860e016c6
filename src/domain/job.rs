//! Work the scheduler owes: each job is stored in the due-index under its due
//! time and survives restarts until the transaction that records its outcome
//! removes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{Actor, Destination, RequestId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique across the store's life; orders jobs due at the same millisecond.
    pub id: u64,
    pub due_at: DateTime<Utc>,
    /// How many times this job has failed so far (for backoff and alerts).
    #[serde(default)]
    pub attempt: u32,
    /// Jobs with the same lane never run at the same time. Grant and revoke
    /// jobs for one user and group share a lane, so an expiry can never
    /// interleave with the activation of an overlapping grant.
    #[serde(default)]
    pub lane: String,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum JobKind {
    /// Someone clicked Approve or submitted a denial. Recorded durably at the
    /// click and decided here, where approver rights can be resolved.
    Decide {
        request: RequestId,
        by: Actor,
        decision: Decision,
        /// Where to answer the clicker privately if the decision is refused.
        reply_in: Option<Destination>,
    },
    /// Call the provider to grant an approved request. `by_sibling`: a
    /// member of its bundle found every member approved and asked for it
    /// (such a run never asks the others in turn).
    Activate {
        request: RequestId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_sibling: bool,
    },
    /// Call the provider to revoke an active grant at its end.
    Expire { request: RequestId },
    /// End an active grant early: released by its requester, or revoked by
    /// an admin (with `admin_reason`).
    End {
        request: RequestId,
        by: Actor,
        admin_reason: Option<String>,
    },
    /// Warn the requester `warn_before` the grant ends (at `expires_at`),
    /// with an Extend button.
    Warn {
        request: RequestId,
        expires_at: DateTime<Utc>,
    },
    /// A pending request reached the group's `escalate_after`.
    Escalate { request: RequestId },
    /// A pending request reached the group's `pending_timeout`.
    TimeOut { request: RequestId },
    /// After a grant failed for good, revoke anyway: a provider that timed
    /// out may have granted after all, and access must not linger.
    RevokeAfterFailedGrant { request: RequestId },
    /// Nobody used an active grant since `quiet_since`, for longer than
    /// its group's `idle_release`: release it — unless it was used (or
    /// kept) since this was scheduled.
    ReleaseIdle {
        request: RequestId,
        quiet_since: DateTime<Utc>,
    },
    /// `ended`, a member of the same bundle, has ended: this member follows
    /// it (withdrawn, or revoked) so the bundle is all or nothing.
    FollowBundle {
        request: RequestId,
        ended: RequestId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny { reason: String },
}

impl JobKind {
    pub fn request(&self) -> &RequestId {
        match self {
            JobKind::Decide { request, .. }
            | JobKind::Activate { request, .. }
            | JobKind::Expire { request }
            | JobKind::RevokeAfterFailedGrant { request }
            | JobKind::End { request, .. }
            | JobKind::TimeOut { request }
            | JobKind::Warn { request, .. }
            | JobKind::Escalate { request }
            | JobKind::ReleaseIdle { request, .. }
            | JobKind::FollowBundle { request, .. } => request,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            JobKind::Decide { .. } => "decide",
            JobKind::Activate { .. } => "activate",
            JobKind::Expire { .. } => "expire",
            JobKind::RevokeAfterFailedGrant { .. } => "revoke_after_failed_grant",
            JobKind::End { .. } => "end",
            JobKind::TimeOut { .. } => "time_out",
            JobKind::Warn { .. } => "warn",
            JobKind::Escalate { .. } => "escalate",
            JobKind::ReleaseIdle { .. } => "release_idle",
            JobKind::FollowBundle { .. } => "follow_bundle",
        }
    }
}
