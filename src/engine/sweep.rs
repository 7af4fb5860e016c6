//! Sweeps: finding standing access. Whoever holds a group's target without
//! an active grant — and is not in the group's `standing` allow-list — is
//! standing access, the thing a JIT tool exists to remove. `report` tells
//! the approval channel and audits it; `enforce` also revokes it through the
//! provider and tells the holder, when jitbot knows who they are.
//!
//! Races with grants are closed by the order of reads: holders are listed
//! first, then the grants that may hold access (approved or active), so a
//! grant that lands in between is seen as a grant; and before each revoke
//! the grants are read again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::grant::Unresolved;
use super::{Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::Actor;
use crate::domain::message::Outgoing;
use crate::domain::policy::{user_actor, GroupPolicy, SweepMode};
use crate::domain::sweep::{Finding, FindingAction, SweepNotice, SweepOutcome, SweepReport};
use crate::providers::{Access, AccessUser};
use crate::store::{Effects, SweepRun};
use crate::telemetry::Metrics;

/// Principals that jitbot grants explain; `unknown` says why the list may
/// be incomplete (a grant in progress whose principal cannot be resolved).
pub(super) struct Covered {
    pub principals: BTreeSet<String>,
    pub unknown: Option<String>,
}

impl Engine {
    /// Sweep `group` as its policy says (`report` or `enforce`); with
    /// `dry_run`, only say what would happen: nothing is revoked, sent or
    /// audited.
    pub async fn sweep(
        &self,
        group: &GroupPolicy,
        dry_run: bool,
    ) -> Result<SweepReport, EngineError> {
        let now = self.now();
        let mut report = SweepReport {
            group: group.name.to_string(),
            target: group.target.clone(),
            provider: group.provider.clone(),
            mode: group.sweep,
            dry_run,
            outcome: SweepOutcome::ListingFailed(String::new()),
            unused_after: group.sweep_unused,
        };
        let Some(provider) = self.providers.get(&group.provider) else {
            report.outcome = SweepOutcome::ListingFailed(format!(
                "provider {} is not configured",
                group.provider
            ));
            return self.finish_sweep(group, report, now).await;
        };
        let holders = match provider.holders(&group.target).await {
            Ok(holders) => holders,
            Err(error) => {
                report.outcome = SweepOutcome::ListingFailed(error.to_string());
                return self.finish_sweep(group, report, now).await;
            }
        };
        let covered = self.covered_principals(group).await?;
        let mut allowed = Vec::new();
        let mut standing = Vec::new();
        for holder in holders.iter().collect::<BTreeSet<_>>() {
            if group.standing.iter().any(|allowed| allowed == holder) {
                allowed.push(holder.clone());
            } else if !covered.principals.contains(holder) {
                standing.push(holder.clone());
            }
        }
        // With `sweep_unused`, only holders nobody used for that long count.
        let mut kept_in_use = Vec::new();
        if let Some(period) = group.sweep_unused {
            (standing, kept_in_use) = self.split_unused(group, standing, period).await?;
        }
        // Without knowing every grant's principal, a holder might be a grant
        // in progress: report, but revoke nothing this time.
        let held_back = match (&covered.unknown, group.sweep) {
            (Some(why), SweepMode::Enforce) if !standing.is_empty() => Some(why.clone()),
            _ => None,
        };
        let mut findings = Vec::new();
        for principal in standing {
            let owner = self.owner_of(group, &principal).await?;
            let action = match group.sweep {
                _ if held_back.is_some() => FindingAction::Reported,
                SweepMode::Enforce if dry_run => FindingAction::WouldRevoke,
                SweepMode::Enforce => self.remove_standing(group, &principal, &owner).await?,
                SweepMode::Report | SweepMode::Off => FindingAction::Reported,
            };
            findings.push(Finding {
                principal,
                owner,
                action,
            });
        }
        report.outcome = SweepOutcome::Listed {
            holders: holders.len(),
            allowed,
            findings,
            held_back,
            kept_in_use,
        };
        self.finish_sweep(group, report, now).await
    }

    /// The principals of grants that may hold `group`'s target: active
    /// grants (their recorded principal) and approved ones being granted
    /// (resolved now), across every group with the same provider and target.
    pub(super) async fn covered_principals(
        &self,
        group: &GroupPolicy,
    ) -> Result<Covered, EngineError> {
        let mut covered = Covered {
            principals: BTreeSet::new(),
            unknown: None,
        };
        for request in self.store.live_requests().await? {
            let holds_this = self
                .granted_with(&request)
                .is_some_and(|g| g.provider == group.provider && g.target == group.target);
            if request.extends.is_some() || !holds_this {
                continue;
            }
            if let Some(principal) = &request.principal {
                covered.principals.insert(principal.clone());
                continue;
            }
            let Some(spec) = self.policy.provider(&group.provider) else {
                continue;
            };
            match self.resolve_principal(spec, &request.requester).await {
                Ok((principal, _)) => {
                    covered.principals.insert(principal);
                }
                // That grant cannot happen at all, so it explains nothing.
                Err(Unresolved::Impossible(_)) => {}
                Err(Unresolved::Unavailable(why)) => {
                    covered.unknown = Some(format!(
                        "the principal of {} (being granted) is unknown: {why}",
                        request.id.grant_id()
                    ));
                }
            }
        }
        Ok(covered)
    }

    /// Who `principal` is in chat: the user jitbot granted it to before,
    /// an `[identities]` entry naming it, or a template that embeds the
    /// chat user id.
    async fn owner_of(
        &self,
        group: &GroupPolicy,
        principal: &str,
    ) -> Result<Option<Actor>, EngineError> {
        if let Some(owner) = self
            .store
            .principal_owner(group.name.as_str(), principal)
            .await?
        {
            return Ok(Some(owner));
        }
        let by_identity = self
            .policy
            .identities
            .entries()
            .iter()
            .find(|entry| {
                entry.principals.get(&group.provider).map(String::as_str) == Some(principal)
            })
            .and_then(|entry| entry.actor());
        if by_identity.is_some() {
            return Ok(by_identity);
        }
        let template = self
            .policy
            .provider(&group.provider)
            .map(|spec| spec.principal.as_str())
            .unwrap_or_default();
        Ok(["{slack_user_id}", "{user_id}", "{teams_aad_id}"]
            .iter()
            .find_map(|placeholder| {
                let (before, after) = template.split_once(placeholder)?;
                let id = principal.strip_prefix(before)?.strip_suffix(after)?;
                user_actor(id)
            }))
    }

    /// Revoke one standing holder, unless a grant for it appeared meanwhile.
    async fn remove_standing(
        &self,
        group: &GroupPolicy,
        principal: &str,
        owner: &Option<Actor>,
    ) -> Result<FindingAction, EngineError> {
        let covered = self.covered_principals(group).await?;
        if covered.principals.contains(principal) {
            return Ok(FindingAction::NowGranted);
        }
        if covered.unknown.is_some() {
            // A grant started since the sweep began, and its principal is
            // not known yet: it may be this one.
            return Ok(FindingAction::Reported);
        }
        let Some(provider) = self.providers.get(&group.provider) else {
            return Ok(FindingAction::RevokeFailed(
                "provider is not configured".into(),
            ));
        };
        let access = Access {
            user: owner.as_ref().map(|owner| AccessUser {
                platform: owner.platform.to_string(),
                id: owner.user.to_string(),
                name: owner.name.clone(),
                email: None,
            }),
            principal: principal.to_string(),
            group: group.name.to_string(),
            target: group.target.clone(),
            ..Access::default()
        };
        let outcome = provider.revoke(&access).await;
        let counted = if outcome.is_ok() { "ok" } else { "failed" };
        Metrics::count(&self.metrics.revocations, counted);
        Ok(match outcome {
            Ok(()) => FindingAction::Revoked,
            Err(error) => FindingAction::RevokeFailed(error.to_string()),
        })
    }

    /// Audit the sweep, tell the channel and the people it concerns, and
    /// remember when it ran — unless it was a dry run.
    async fn finish_sweep(
        &self,
        group: &GroupPolicy,
        report: SweepReport,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, EngineError> {
        if report.dry_run {
            return Ok(report);
        }
        let previous = self.store.last_sweep(group.name.as_str()).await?;
        let listed = matches!(report.outcome, SweepOutcome::Listed { .. });
        let mut effects = Effects::default();
        let audit = |action, detail: String| AuditRecord {
            at: now,
            action,
            actor: None,
            request: None,
            group: Some(group.name.clone()),
            detail,
        };
        let tell_channel = match &report.outcome {
            SweepOutcome::ListingFailed(error) => {
                effects.audit.push(audit(
                    AuditAction::SweepFailed,
                    format!("could not list holders: {error}"),
                ));
                // Say it once when it starts failing, not at every interval.
                previous.as_ref().map_or(true, |run| run.listed)
            }
            SweepOutcome::Listed {
                holders,
                allowed,
                findings,
                ..
            } => {
                let without_grant: Vec<&str> =
                    findings.iter().map(|f| f.principal.as_str()).collect();
                let unused = report
                    .unused_after
                    .map(|period| format!(" and unused for {period}"))
                    .unwrap_or_default();
                effects.audit.push(audit(
                    AuditAction::SweepRan,
                    format!(
                        "sweep = {}: {holders} holder(s) of {}; allowed standing: [{}]; without a grant{unused}: [{}]",
                        group.sweep.label(),
                        group.target,
                        allowed.join(", "),
                        without_grant.join(", ")
                    ),
                ));
                for finding in findings {
                    let who = finding.owner_suffix();
                    match &finding.action {
                        FindingAction::Revoked => {
                            effects.audit.push(audit(
                                AuditAction::StandingRevoked,
                                format!(
                                    "{}{who} held {} without a grant{unused}; revoked",
                                    finding.principal, group.target
                                ),
                            ));
                            let why = match report.unused_after {
                                Some(period) => format!("jitbot saw no use of it for {period}"),
                                None => "it is granted just in time now".to_string(),
                            };
                            if let Some(owner) = &finding.owner {
                                effects.outbox.push(Outgoing::Direct {
                                    to: owner.clone(),
                                    text: format!(
                                        "Your standing access to `{}` ({}) was removed: {why}. Ask for it when you need it with `/jit request {} <duration> <reason>`.",
                                        group.name, group.target, group.name
                                    ),
                                    about: None,
                                });
                            }
                        }
                        FindingAction::RevokeFailed(error) => effects.audit.push(audit(
                            AuditAction::StandingRevokeFailed,
                            format!("{}{who}: {error}", finding.principal),
                        )),
                        _ => {}
                    }
                }
                !findings.is_empty()
            }
        };
        if tell_channel {
            let notice = SweepNotice {
                report: report.clone(),
                interval: group.sweep_interval,
            };
            for to in self.destinations(group).await? {
                effects.outbox.push(Outgoing::SweepNotice {
                    to,
                    notice: notice.clone(),
                });
            }
        }
        self.store.record(&effects).await?;
        self.store
            .put_last_sweep(
                group.name.as_str(),
                &SweepRun {
                    at: now,
                    listed,
                    next_at: None,
                },
            )
            .await?;
        self.commit_and_wake().await?;
        tracing::info!(group = %group.name, report = ?report.lines(), "sweep finished");
        Ok(report)
    }
}
