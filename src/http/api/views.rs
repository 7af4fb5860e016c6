//! The JSON shapes the API answers with (described in docs/openapi.json).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::ids::{Actor, Platform};
use crate::domain::request::{AccessRequest, Approval, RequestState};
use crate::engine::{FindingAction, MappingView, SweepOutcome, SweepReport};

/// A request, and — once active — the grant made from it. The lifecycle
/// state is spelled out in plain fields (null when not applicable).
#[derive(Debug, Serialize)]
pub(super) struct RequestJson {
    pub(super) id: String,
    pub(super) grant_id: String,
    pub(super) requester: Actor,
    pub(super) group: String,
    pub(super) duration: String,
    pub(super) reason: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) state: &'static str,
    pub(super) approvals: Vec<Approval>,
    /// When it was approved, and whether by policy rather than people.
    pub(super) approved_at: Option<DateTime<Utc>>,
    pub(super) auto_approved: bool,
    pub(super) activated_at: Option<DateTime<Utc>>,
    /// When the access ends (approved or active: fixed at the approval), or
    /// the grant's new end (extended).
    pub(super) expires_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub(super) ended_at: Option<DateTime<Utc>>,
    /// Who denied or revoked it.
    pub(super) ended_by: Option<Actor>,
    /// The denial's or revocation's reason, or the provider's error.
    pub(super) end_reason: Option<String>,
    /// For an extension: the request whose grant it extends.
    pub(super) extends: Option<String>,
    /// The principal the provider granted, once granted.
    pub(super) principal: Option<String>,
}

impl From<&AccessRequest> for RequestJson {
    fn from(request: &AccessRequest) -> Self {
        let mut json = RequestJson {
            id: request.id.to_string(),
            grant_id: request.id.grant_id().to_string(),
            requester: request.requester.clone(),
            group: request.group.to_string(),
            duration: request.duration.to_string(),
            reason: request.reason.clone(),
            created_at: request.created_at,
            state: state_name(&request.state),
            approvals: request.approvals.clone(),
            approved_at: None,
            auto_approved: false,
            activated_at: None,
            expires_at: None,
            ended_at: None,
            ended_by: None,
            end_reason: None,
            extends: request.extends.as_ref().map(ToString::to_string),
            principal: request.principal.clone(),
        };
        match &request.state {
            RequestState::Pending => {}
            RequestState::Approved { at, auto } => {
                json.approved_at = Some(*at);
                json.auto_approved = *auto;
                // Fixed at approval: the access ends then however long
                // granting takes.
                json.expires_at = request.approved_until();
            }
            RequestState::Active {
                activated_at,
                expires_at,
            } => {
                json.activated_at = Some(*activated_at);
                json.expires_at = Some(*expires_at);
            }
            RequestState::Denied { by, at, reason } | RequestState::Revoked { by, at, reason } => {
                json.ended_at = Some(*at);
                json.ended_by = Some(by.clone());
                json.end_reason = Some(reason.clone());
            }
            RequestState::Failed { at, error } => {
                json.ended_at = Some(*at);
                json.end_reason = Some(error.clone());
            }
            RequestState::Extended { at, until } => {
                json.ended_at = Some(*at);
                json.expires_at = Some(*until);
            }
            RequestState::Cancelled { at }
            | RequestState::TimedOut { at }
            | RequestState::Expired { at }
            | RequestState::Released { at } => json.ended_at = Some(*at),
        }
        json
    }
}

/// The state as one machine-friendly word.
fn state_name(state: &RequestState) -> &'static str {
    match state {
        RequestState::Pending => "pending",
        RequestState::Approved { .. } => "approved",
        RequestState::Active { .. } => "active",
        RequestState::Denied { .. } => "denied",
        RequestState::Cancelled { .. } => "cancelled",
        RequestState::TimedOut { .. } => "timed_out",
        RequestState::Failed { .. } => "failed",
        RequestState::Expired { .. } => "expired",
        RequestState::Extended { .. } => "extended",
        RequestState::Released { .. } => "released",
        RequestState::Revoked { .. } => "revoked",
    }
}

/// What a sweep found and did.
#[derive(Debug, Serialize)]
pub(super) struct SweepJson {
    pub(super) group: String,
    pub(super) target: String,
    pub(super) provider: String,
    pub(super) mode: &'static str,
    pub(super) dry_run: bool,
    /// Why the holders could not be listed (then nothing else is known).
    pub(super) error: Option<String>,
    pub(super) holders: Option<usize>,
    pub(super) allowed: Vec<String>,
    pub(super) findings: Vec<FindingJson>,
    /// Why nothing was revoked this time, if enforcement was held back.
    pub(super) held_back: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct FindingJson {
    pub(super) principal: String,
    pub(super) owner: Option<Actor>,
    /// `reported`, `would_revoke`, `revoked`, `revoke_failed`, `now_granted`.
    pub(super) action: &'static str,
    pub(super) error: Option<String>,
}

impl From<&SweepReport> for SweepJson {
    fn from(report: &SweepReport) -> Self {
        let mut json = SweepJson {
            group: report.group.clone(),
            target: report.target.clone(),
            provider: report.provider.clone(),
            mode: report.mode.label(),
            dry_run: report.dry_run,
            error: None,
            holders: None,
            allowed: Vec::new(),
            findings: Vec::new(),
            held_back: None,
        };
        match &report.outcome {
            SweepOutcome::ListingFailed(error) => json.error = Some(error.clone()),
            SweepOutcome::Listed {
                holders,
                allowed,
                findings,
                held_back,
            } => {
                json.holders = Some(*holders);
                json.allowed = allowed.clone();
                json.held_back = held_back.clone();
                json.findings = findings
                    .iter()
                    .map(|f| {
                        let (action, error) = match &f.action {
                            FindingAction::Reported => ("reported", None),
                            FindingAction::WouldRevoke => ("would_revoke", None),
                            FindingAction::Revoked => ("revoked", None),
                            FindingAction::RevokeFailed(e) => ("revoke_failed", Some(e.clone())),
                            FindingAction::NowGranted => ("now_granted", None),
                        };
                        FindingJson {
                            principal: f.principal.clone(),
                            owner: f.owner.clone(),
                            action,
                            error,
                        }
                    })
                    .collect();
            }
        }
        json
    }
}

/// Where a group's approval cards go.
#[derive(Debug, Serialize)]
pub(super) struct MappingJson {
    pub(super) group: String,
    pub(super) platform: Platform,
    pub(super) channel: String,
    /// `policy` (the group's own channel, the fallback) or `runtime`.
    pub(super) source: &'static str,
    pub(super) mapped_by: Option<Actor>,
    pub(super) mapped_at: Option<DateTime<Utc>>,
}

impl From<&MappingView> for MappingJson {
    fn from(view: &MappingView) -> Self {
        MappingJson {
            group: view.group.to_string(),
            platform: view.destination.platform,
            channel: view.destination.channel.to_string(),
            source: if view.mapped.is_some() {
                "runtime"
            } else {
                "policy"
            },
            mapped_by: view.mapped.as_ref().map(|(by, _)| by.clone()),
            mapped_at: view.mapped.as_ref().map(|(_, at)| *at),
        }
    }
}
