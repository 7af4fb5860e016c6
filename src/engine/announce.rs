//! What each lifecycle step owes: its audit event, the messages to send and
//! the jobs to schedule — written in the same transaction as the step.

use chrono::{DateTime, Utc};

use super::{show_time, Engine};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::{Actor, Destination, Platform};
use crate::domain::job::JobKind;
use crate::domain::message::Outgoing;
use crate::domain::policy::GroupPolicy;
use crate::domain::request::{AccessRequest, Happened};
use crate::domain::routing::approval_destinations;
use crate::domain::text::literal;
use crate::store::{Effects, StoreError};

/// Where a request's approval cards and notices go, resolved before the
/// transaction (it reads the run-time mappings).
#[derive(Debug, Clone, Default)]
pub(super) struct Audience {
    pub channels: Vec<Destination>,
    /// Approvers who get the card directly: chat approvers when there is
    /// no channel, and email approvers always.
    pub direct: Vec<Actor>,
}

impl Audience {
    /// Everyone any of `audiences` names, each once: where a bundle's one
    /// card goes.
    pub(super) fn union(audiences: Vec<Audience>) -> Audience {
        let mut union = Audience::default();
        for audience in audiences {
            for channel in audience.channels {
                if !union.channels.contains(&channel) {
                    union.channels.push(channel);
                }
            }
            for person in audience.direct {
                if !union.direct.iter().any(|known| known.is(&person)) {
                    union.direct.push(person);
                }
            }
        }
        union
    }
}

impl Engine {
    /// Where approval cards for `group` go: per platform, the channels
    /// admins mapped at run time, or else the policy's channel.
    pub(super) async fn destinations(
        &self,
        group: &GroupPolicy,
    ) -> Result<Vec<Destination>, StoreError> {
        Ok(approval_destinations(
            group,
            &self.store.mappings().await?,
            self.platforms(),
        ))
    }

    pub(super) async fn audience(&self, request: &AccessRequest) -> Result<Audience, StoreError> {
        let Some(group) = self.policy.group(&request.group) else {
            return Ok(Audience::default());
        };
        let channels = self.destinations(group).await?;
        // In a chain, only the step now waiting is asked.
        let step = group.current_step(request);
        let mut direct = if channels.is_empty() {
            self.direct_approvers(&step.approvers)
        } else {
            Vec::new()
        };
        direct.extend(self.email_approvers(&step.approvers));
        for asked in request.on_call_for(&step.approvers) {
            if !direct.iter().any(|person| person.is(&asked.person)) {
                direct.push(asked.person.clone());
            }
        }
        Ok(Audience { channels, direct })
    }

    /// The jobs that watch a step of the chain wait from `now`: its
    /// time-out, and its escalation when the group escalates.
    async fn waiting_jobs(
        &self,
        request: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::job::Job>, StoreError> {
        let Some(group) = self.policy.group(&request.group) else {
            return Ok(Vec::new());
        };
        let lane = Self::lane_of(request);
        let mut jobs = vec![
            self.new_job(
                JobKind::TimeOut {
                    request: request.id.clone(),
                },
                now + group.limits.pending_timeout.as_chrono(),
                lane.clone(),
            )
            .await?,
        ];
        if let Some(after) = group.escalate_after {
            jobs.push(
                self.new_job(
                    JobKind::Escalate {
                        request: request.id.clone(),
                    },
                    now + after.as_chrono(),
                    lane,
                )
                .await?,
            );
        }
        Ok(jobs)
    }

    /// The jobs that end a grant at `expires_at`: the warning (if there is
    /// still time for one) and the expiry.
    async fn end_jobs(
        &self,
        request: &AccessRequest,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::job::Job>, StoreError> {
        let lane = Self::lane_of(request);
        let mut jobs = vec![
            self.new_job(
                JobKind::Expire {
                    request: request.id.clone(),
                },
                expires_at,
                lane.clone(),
            )
            .await?,
        ];
        let warn_before = self
            .policy
            .group(&request.group)
            .map(|g| g.limits.warn_before.as_chrono());
        if let Some(warn_at) = warn_before.map(|w| expires_at - w).filter(|at| *at > now) {
            jobs.push(
                self.new_job(
                    JobKind::Warn {
                        request: request.id.clone(),
                        expires_at,
                    },
                    warn_at,
                    lane,
                )
                .await?,
            );
        }
        Ok(jobs)
    }

    /// The effects of `happened`, which moved a request to `request`.
    /// `actor` did it (`None`: jitbot itself); `detail` overrides the audit text.
    pub(super) async fn effects_of(
        &self,
        request: &AccessRequest,
        happened: &Happened,
        actor: Option<&Actor>,
        audience: &Audience,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        let mut effects = Effects::default();
        // A decision taken on the email page says so, with the address.
        let by_email = actor
            .filter(|a| a.platform == Platform::Email)
            .map(|a| format!(" (by email, {})", a.user));
        let audit = |action: AuditAction, text: String| AuditRecord {
            at: now,
            action,
            actor: actor.cloned(),
            request: Some(request.id.clone()),
            group: Some(request.group.clone()),
            detail: detail.clone().unwrap_or(text) + by_email.as_deref().unwrap_or(""),
        };
        // A bundle's members share the first member's cards.
        let refresh = Outgoing::RefreshCards {
            request: request.card_owner().clone(),
        };
        let requester = request.requester_inbox(self.email_enabled);
        let tell_requester = |text: String| Outgoing::Direct {
            to: requester.clone(),
            text,
            about: Some(request.id.clone()),
        };
        let group = &request.group;
        let id = &request.id;
        match happened {
            Happened::Requested { auto_approved } => {
                let ticket = request
                    .ticket
                    .as_ref()
                    .map(|ticket| format!(" (ticket {ticket})"))
                    .unwrap_or_default();
                effects.audit.push(audit(
                    AuditAction::Requested,
                    format!(
                        "{group} for {}{ticket}: {}",
                        request.duration, request.reason
                    ),
                ));
                for destination in &audience.channels {
                    effects.outbox.push(Outgoing::PostCard {
                        request: id.clone(),
                        to: destination.clone(),
                    });
                }
                if *auto_approved && request.break_glass.is_some() {
                    effects.audit.push(audit(
                        AuditAction::BreakGlassUsed,
                        format!(
                            "break-glass: {group} for {} without approval",
                            request.duration
                        ),
                    ));
                    effects
                        .outbox
                        .extend(self.break_glass_alarm(request, &audience.channels).await);
                    for approver in &audience.direct {
                        effects.outbox.push(Outgoing::DirectCard {
                            request: id.clone(),
                            to: approver.clone(),
                        });
                    }
                    effects.jobs.push(self.activate_job(request, now).await?);
                } else if *auto_approved {
                    effects.audit.push(AuditRecord {
                        actor: None,
                        ..audit(
                            AuditAction::AutoApproved,
                            match &request.auto_approval {
                                Some(conditions) => format!("auto_approve: {conditions}"),
                                None => "auto_approve rule of the policy".into(),
                            },
                        )
                    });
                    effects.jobs.push(self.activate_job(request, now).await?);
                } else {
                    effects.jobs.extend(self.waiting_jobs(request, now).await?);
                    for approver in &audience.direct {
                        effects.outbox.push(Outgoing::DirectCard {
                            request: id.clone(),
                            to: approver.clone(),
                        });
                    }
                }
            }
            Happened::StepMet { step, of, .. } => {
                effects.audit.push(audit(
                    AuditAction::ApprovalRecorded,
                    format!("step {step} of {of} met; step {} is asked now", step + 1),
                ));
                effects.outbox.push(refresh);
                // Groups without a channel: the next step's approvers get
                // their cards only now.
                for approver in &audience.direct {
                    effects.outbox.push(Outgoing::DirectCard {
                        request: id.clone(),
                        to: approver.clone(),
                    });
                }
                effects.jobs.extend(self.waiting_jobs(request, now).await?);
            }
            Happened::ApprovalRecorded {
                count, required, ..
            } => {
                effects.audit.push(audit(
                    AuditAction::ApprovalRecorded,
                    format!("{count} of {required} approvals"),
                ));
                effects.outbox.push(refresh);
            }
            Happened::Approved { by } => {
                effects
                    .audit
                    .push(audit(AuditAction::Approved, "approved".into()));
                effects.outbox.push(refresh);
                let by = by
                    .as_ref()
                    .map_or_else(|| "policy".to_string(), |a| literal(a.name_or_id()));
                let then = if request.in_bundle() {
                    format!(
                        "Access is granted once every group of the request ({}) is approved.",
                        request.groups_label()
                    )
                } else {
                    "Granting access now…".to_string()
                };
                effects.outbox.push(tell_requester(format!(
                    "Your request {id} for {group} ({}) was approved by {by}. {then}",
                    request.duration
                )));
                // A bundle's member waits in its activation for the others.
                effects.jobs.push(self.activate_job(request, now).await?);
            }
            Happened::Denied { by, reason } => {
                effects
                    .audit
                    .push(audit(AuditAction::Denied, reason.clone()));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your request {id} for {group} was denied by {}: {}",
                    literal(by.name_or_id()),
                    literal(reason)
                )));
            }
            Happened::Cancelled => {
                effects.audit.push(audit(
                    AuditAction::Cancelled,
                    "cancelled by the requester".into(),
                ));
                effects.outbox.push(refresh);
            }
            Happened::Activated { expires_at } => {
                effects.audit.push(audit(
                    AuditAction::Granted,
                    format!("access live until {}", expires_at.to_rfc3339()),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Access to {group} is live until {} (grant {}). It is revoked automatically then; `/jit release {}` ends it earlier.",
                    show_time(*expires_at),
                    id.grant_id(),
                    id.grant_id()
                )));
                effects
                    .jobs
                    .extend(self.end_jobs(request, *expires_at, now).await?);
            }
            Happened::GrantFailed { error } => {
                effects
                    .audit
                    .push(audit(AuditAction::GrantFailed, error.clone()));
                // The provider may have granted despite the error (a timeout
                // after the fact): revoke as a precaution.
                // An extension never called the provider.
                if request.extends.is_none() {
                    effects.jobs.push(
                        self.new_job(
                            JobKind::RevokeAfterFailedGrant {
                                request: id.clone(),
                            },
                            now,
                            Self::lane_of(request),
                        )
                        .await?,
                    );
                }
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your request {id} for {group} was approved, but granting the access failed: {}",
                    literal(error)
                )));
                for destination in &audience.channels {
                    effects.outbox.push(Outgoing::ChannelNotice {
                        to: destination.clone(),
                        text: format!(
                            "Granting {group} to {} for request {id} failed: {}",
                            literal(request.requester.name_or_id()),
                            literal(error)
                        ),
                    });
                }
            }
            Happened::Expired => {
                effects.audit.push(audit(
                    AuditAction::Expired,
                    "access revoked at the end of the grant".into(),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) has expired and was revoked.",
                    id.grant_id()
                )));
            }
            Happened::Released => {
                effects.audit.push(audit(
                    AuditAction::Released,
                    "released by the requester; access revoked".into(),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) was released and revoked.",
                    id.grant_id()
                )));
            }
            Happened::ReleasedIdle { unused_for } => {
                effects.audit.push(audit(
                    AuditAction::Released,
                    format!("idle: not used for {unused_for}; released and access revoked"),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) was released because it was not used for {unused_for}; the access is revoked. Ask again with `/jit request {group} <duration> <reason>` when you need it.",
                    id.grant_id()
                )));
            }
            Happened::Revoked { by, reason } => {
                effects
                    .audit
                    .push(audit(AuditAction::Revoked, reason.clone()));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) was revoked by admin {}: {}",
                    id.grant_id(),
                    literal(by.name_or_id()),
                    literal(reason)
                )));
            }
            Happened::GrantExtended {
                by_request,
                duration,
                until,
            } => {
                effects.audit.push(audit(
                    AuditAction::Extended,
                    format!(
                        "extended by {duration} ({by_request}); now ends {}",
                        until.to_rfc3339()
                    ),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) was extended by {duration}; it now ends at {}.",
                    id.grant_id(),
                    show_time(*until)
                )));
                effects
                    .jobs
                    .extend(self.end_jobs(request, *until, now).await?);
            }
            Happened::ExtensionApplied { .. } => effects.outbox.push(refresh),
            Happened::Escalated { to } => {
                let names: Vec<String> = to.iter().map(|a| a.user.to_string()).collect();
                effects.audit.push(audit(
                    AuditAction::Escalated,
                    format!("undecided; re-posted to {}", names.join(", ")),
                ));
                for approver in to {
                    effects.outbox.push(Outgoing::DirectCard {
                        request: id.clone(),
                        to: approver.clone(),
                    });
                }
            }
            Happened::Withdrawn { because } => {
                effects.audit.push(audit(
                    AuditAction::Cancelled,
                    format!("withdrawn with its request, nothing granted: {because}"),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your request {id} for {group} was withdrawn: {because}."
                )));
            }
            Happened::Undone { because } => {
                effects.audit.push(audit(
                    AuditAction::Revoked,
                    format!("undone with its request, access revoked: {because}"),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your access to {group} (grant {}) was revoked, because the request is granted all together or not at all: {because}.",
                    id.grant_id()
                )));
                for destination in &audience.channels {
                    effects.outbox.push(Outgoing::ChannelNotice {
                        to: destination.clone(),
                        text: format!(
                            "{group} for {} (request {id}) was revoked with the rest of the request: {because}.",
                            literal(request.requester.name_or_id())
                        ),
                    });
                }
            }
            Happened::TimedOut => {
                effects.audit.push(audit(
                    AuditAction::TimedOut,
                    "no decision within the pending timeout".into(),
                ));
                effects.outbox.push(refresh);
                effects.outbox.push(tell_requester(format!(
                    "Your request {id} for {group} timed out: nobody decided it in time. File it again with `/jit request` if you still need access."
                )));
            }
        }
        effects
            .jobs
            .extend(self.bundle_follows(request, happened, now).await?);
        effects.outbox.extend(self.home_updates(request).await);
        Ok(effects)
    }
}
