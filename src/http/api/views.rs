//! The JSON shapes the API answers with (described in docs/openapi.json).
//! Public and deserialisable: the CLI reads the API through these same types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{Actor, Platform};
use crate::domain::request::{AccessRequest, Approval, RequestState, Verdict};
use crate::domain::sweep::{FindingAction, SweepOutcome, SweepReport};
use crate::engine::MappingView;

/// A request, and — once active — the grant made from it. The lifecycle
/// state is spelled out in plain fields (null when not applicable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestJson {
    pub id: String,
    pub grant_id: String,
    pub requester: Actor,
    pub group: String,
    pub duration: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub state: String,
    pub approvals: Vec<Approval>,
    /// When it was approved, and whether by policy rather than people.
    pub approved_at: Option<DateTime<Utc>>,
    pub auto_approved: bool,
    pub activated_at: Option<DateTime<Utc>>,
    /// When the access ends (approved or active: fixed at the approval), or
    /// the grant's new end (extended).
    pub expires_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub ended_at: Option<DateTime<Utc>>,
    /// Who denied or revoked it.
    pub ended_by: Option<Actor>,
    /// The denial's or revocation's reason, or the provider's error.
    pub end_reason: Option<String>,
    /// For an extension: the request whose grant it extends.
    pub extends: Option<String>,
    /// The principal the provider granted, once granted.
    pub principal: Option<String>,
    /// The ticket id the reason names (groups with a `reason_pattern`).
    #[serde(default)]
    pub ticket: Option<String>,
    /// The `auto_approve` conditions that held, when the policy approved it.
    #[serde(default)]
    pub auto_approval: Option<String>,
    /// For a break-glass use: its review so far.
    #[serde(default)]
    pub break_glass: Option<BreakGlassJson>,
    /// Filed with other groups as one request: every member (this one
    /// included), in the order named; each is a request of its own.
    #[serde(default)]
    pub bundle: Option<Vec<BundleMemberJson>>,
}

/// One group of a request for several, and the request filed for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleMemberJson {
    pub id: String,
    pub group: String,
}

/// A break-glass use's review: all null until an approver acts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakGlassJson {
    pub reviewed_by: Option<Actor>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub verdict: Option<Verdict>,
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
            ticket: request.ticket.clone(),
            created_at: request.created_at,
            state: state_name(&request.state).to_string(),
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
            auto_approval: request.auto_approval.clone(),
            break_glass: request.break_glass.as_ref().map(|used| BreakGlassJson {
                reviewed_by: used.review.as_ref().map(|r| r.by.clone()),
                reviewed_at: used.review.as_ref().map(|r| r.at),
                verdict: used.review.as_ref().map(|r| r.verdict),
            }),
            bundle: request.in_bundle().then(|| {
                request
                    .bundle
                    .iter()
                    .map(|member| BundleMemberJson {
                        id: member.request.to_string(),
                        group: member.group.to_string(),
                    })
                    .collect()
            }),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepJson {
    pub group: String,
    pub target: String,
    pub provider: String,
    pub mode: String,
    pub dry_run: bool,
    /// Why the holders could not be listed (then nothing else is known).
    pub error: Option<String>,
    pub holders: Option<usize>,
    pub allowed: Vec<String>,
    pub findings: Vec<FindingJson>,
    /// Why nothing was revoked this time, if enforcement was held back.
    pub held_back: Option<String>,
    /// With `sweep_unused`: holders without a grant kept because they were
    /// used within the period (or not watched that long yet).
    #[serde(default)]
    pub kept_in_use: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindingJson {
    pub principal: String,
    pub owner: Option<Actor>,
    /// `reported`, `would_revoke`, `revoked`, `revoke_failed`, `now_granted`.
    pub action: String,
    pub error: Option<String>,
}

impl From<&SweepReport> for SweepJson {
    fn from(report: &SweepReport) -> Self {
        let mut json = SweepJson {
            group: report.group.clone(),
            target: report.target.clone(),
            provider: report.provider.clone(),
            mode: report.mode.label().to_string(),
            dry_run: report.dry_run,
            error: None,
            holders: None,
            allowed: Vec::new(),
            findings: Vec::new(),
            held_back: None,
            kept_in_use: Vec::new(),
        };
        match &report.outcome {
            SweepOutcome::ListingFailed(error) => json.error = Some(error.clone()),
            SweepOutcome::Listed {
                holders,
                allowed,
                findings,
                held_back,
                kept_in_use,
            } => {
                json.kept_in_use = kept_in_use.clone();
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
                            action: action.to_string(),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MappingJson {
    pub group: String,
    pub platform: Platform,
    pub channel: String,
    /// `policy` (the group's own channel, the fallback) or `runtime`.
    pub source: String,
    pub mapped_by: Option<Actor>,
    pub mapped_at: Option<DateTime<Utc>>,
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
            }
            .to_string(),
            mapped_by: view.mapped.as_ref().map(|(by, _)| by.clone()),
            mapped_at: view.mapped.as_ref().map(|(_, at)| *at),
        }
    }
}
