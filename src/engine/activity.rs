//! Watching whether access is used: sampling the provider for a group's
//! active grants (`idle_release`) and standing holders (`sweep_unused`),
//! recording the last use seen, warning before an idle release and
//! scheduling it, the Keep it button, and the list of what is unused.
//!
//! What is seen is recorded per group and principal in the store, so it
//! survives restarts and is shared by replicas; the decisions are in
//! `domain::usage`.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::duration::HumanDuration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{show_time, Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::ids::{Actor, GrantId};
use crate::domain::job::JobKind;
use crate::domain::message::Outgoing;
use crate::domain::policy::GroupPolicy;
use crate::domain::request::{AccessRequest, RequestState};
use crate::domain::usage::{IdleStep, Sample, Usage};
use crate::providers::Provider;
use crate::store::Effects;
use crate::telemetry::{GroupLabel, Metrics};

/// One line of `/jit admin unused` and `GET /api/v1/unused`: a watched
/// grant or standing holder and the last use jitbot saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedEntry {
    pub group: String,
    pub principal: String,
    /// `None` for standing access (no grant explains it).
    pub grant_id: Option<String>,
    /// `None`: never seen in use.
    pub last_used: Option<DateTime<Utc>>,
}

/// What a Keep it click did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepOutcome {
    Kept(String),
    Refused(String),
}

impl KeepOutcome {
    pub fn text(&self) -> &str {
        match self {
            KeepOutcome::Kept(text) | KeepOutcome::Refused(text) => text,
        }
    }
}

impl Engine {
    /// Ask the provider whether `principal` uses `group`'s target now and
    /// record the answer; the usage as recorded. A failed answer is
    /// recorded as "unknown" (possible use), never as "unused".
    pub(super) async fn sample_use(
        &self,
        group: &GroupPolicy,
        provider: &dyn Provider,
        principal: &str,
    ) -> Result<Usage, EngineError> {
        let answer = provider.activity(principal, &group.target).await;
        let now = self.now();
        let sample = match answer {
            Ok(activity) => {
                self.activity_answers_again(group, principal);
                Metrics::count(
                    &self.metrics.activity_samples,
                    if activity.in_use { "in_use" } else { "unused" },
                );
                Sample::Seen {
                    in_use: activity.in_use,
                    last_used: activity.last_used,
                }
            }
            Err(error) => {
                self.activity_failed(group, principal, &error.to_string());
                Metrics::count(&self.metrics.activity_samples, "unknown");
                Sample::Unknown
            }
        };
        let mut usage = self
            .store
            .usage(group.name.as_str(), principal)
            .await?
            .unwrap_or_else(|| Usage::new(principal, now));
        usage.observe(sample, now);
        self.store.put_usage(group.name.as_str(), &usage).await?;
        Ok(usage)
    }

    /// Log a failing activity answer once, not at every sample.
    fn activity_failed(&self, group: &GroupPolicy, principal: &str, error: &str) {
        let key = format!("{}\0{principal}", group.name);
        let first = self
            .activity_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        if first {
            tracing::warn!(group = %group.name, principal, %error, "cannot tell whether access is used; counted as possibly used until the provider answers");
        }
    }

    fn activity_answers_again(&self, group: &GroupPolicy, principal: &str) {
        let key = format!("{}\0{principal}", group.name);
        let was_failing = self
            .activity_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if was_failing {
            tracing::info!(group = %group.name, principal, "the provider tells whether access is used again");
        }
    }

    /// One round for `group`: sample its active grants (with
    /// `idle_release`) and its standing holders (with `sweep_unused`), and
    /// warn or release idle grants. Returns when the group needs looking at
    /// again (the next sample, or a warning or release due before it).
    pub async fn sample_activity(&self, group: &GroupPolicy) -> Result<DateTime<Utc>, EngineError> {
        let mut next = self.now() + group.limits.activity_interval.as_chrono();
        let Some(provider) = self.providers.get(&group.provider).cloned() else {
            return Ok(next);
        };
        if let Some(idle_release) = group.idle_release {
            let grants = self.watched_grants(group).await?;
            let mut sampled: BTreeMap<String, Usage> = BTreeMap::new();
            for (grant, principal) in grants {
                let usage = match sampled.get(&principal) {
                    Some(usage) => usage.clone(),
                    None => self.sample_use(group, &*provider, &principal).await?,
                };
                let (usage, look) = self
                    .act_on_idleness(group, idle_release, &grant, usage)
                    .await?;
                if let Some(look) = look {
                    next = next.min(look);
                }
                sampled.insert(principal, usage);
            }
        }
        if let Some(period) = group.sweep_unused {
            self.sample_standing(group, &*provider, period).await?;
        }
        // What was seen is durable before the round counts as done.
        self.store.sync().await?;
        Ok(next)
    }

    /// The group's active grants and their principals.
    async fn watched_grants(
        &self,
        group: &GroupPolicy,
    ) -> Result<Vec<(AccessRequest, String)>, EngineError> {
        Ok(self
            .store
            .live_requests()
            .await?
            .into_iter()
            .filter(|r| r.group == group.name && r.extends.is_none())
            .filter(|r| matches!(r.state, RequestState::Active { .. }))
            .filter_map(|r| r.principal.clone().map(|p| (r, p)))
            .collect())
    }

    /// Warn about or release `grant` if it has been idle long enough; the
    /// usage as now recorded, and when to look again.
    async fn act_on_idleness(
        &self,
        group: &GroupPolicy,
        idle_release: HumanDuration,
        grant: &AccessRequest,
        mut usage: Usage,
    ) -> Result<(Usage, Option<DateTime<Utc>>), EngineError> {
        let Some(activated_at) = grant.activated_at() else {
            return Ok((usage, None));
        };
        let now = self.now();
        match usage.idle_step(activated_at, idle_release, now) {
            IdleStep::Wait { next_look } => Ok((usage, Some(next_look))),
            IdleStep::Releasing => Ok((usage, None)),
            // The message or job is written first: a crash in between
            // sends a warning twice rather than none.
            IdleStep::Warn { release_at } => {
                let last_use = match usage.used_since(activated_at) {
                    Some(at) => format!("last seen in use {}", at.to_rfc3339()),
                    None => "not seen in use since it was granted".to_string(),
                };
                self.record_effects(Effects {
                    audit: vec![AuditRecord {
                        at: now,
                        action: AuditAction::IdleWarned,
                        actor: None,
                        request: Some(grant.id.clone()),
                        group: Some(grant.group.clone()),
                        detail: format!(
                            "idle: {last_use}; released at {} unless used or kept",
                            release_at.to_rfc3339()
                        ),
                    }],
                    outbox: vec![Outgoing::IdleWarning {
                        request: grant.id.clone(),
                        release_at,
                    }],
                    ..Effects::default()
                })
                .await?;
                usage.warned(activated_at, now);
                self.store.put_usage(group.name.as_str(), &usage).await?;
                Ok((usage, Some(release_at)))
            }
            IdleStep::Release { quiet_since } => {
                let job = self
                    .new_job(
                        JobKind::ReleaseIdle {
                            request: grant.id.clone(),
                            quiet_since,
                        },
                        now,
                        Self::lane_of(grant),
                    )
                    .await?;
                self.record_effects(Effects {
                    jobs: vec![job],
                    ..Effects::default()
                })
                .await?;
                usage.release_scheduled_for = Some(quiet_since);
                self.store.put_usage(group.name.as_str(), &usage).await?;
                Ok((usage, None))
            }
        }
    }

    /// Sample the standing holders of `group` (holders no grant explains,
    /// not allow-listed), starting to watch the new ones and forgetting
    /// those that no longer hold the target.
    async fn sample_standing(
        &self,
        group: &GroupPolicy,
        provider: &dyn Provider,
        period: HumanDuration,
    ) -> Result<(), EngineError> {
        let holders = match provider.holders(&group.target).await {
            Ok(holders) => holders,
            Err(error) => {
                // Nothing can be sampled: whoever is watched may be in use.
                tracing::warn!(group = %group.name, %error, "cannot list holders to sample their use");
                let now = self.now();
                for mut usage in self.store.usages(group.name.as_str()).await? {
                    usage.observe(Sample::Unknown, now);
                    self.store.put_usage(group.name.as_str(), &usage).await?;
                }
                return Ok(());
            }
        };
        let covered = self.covered_principals(group).await?;
        let holders: BTreeSet<String> = holders.into_iter().collect();
        let mut unused = 0;
        for principal in &holders {
            if covered.principals.contains(principal)
                || group.standing.iter().any(|allowed| allowed == principal)
            {
                continue;
            }
            let usage = self.sample_use(group, provider, principal).await?;
            if usage.unused_for(period, self.now()) {
                unused += 1;
            }
        }
        if covered.unknown.is_none() {
            for usage in self.store.usages(group.name.as_str()).await? {
                let watched = holders.contains(&usage.principal)
                    || covered.principals.contains(&usage.principal);
                if !watched {
                    self.store
                        .forget_usage(group.name.as_str(), &usage.principal)
                        .await?;
                }
            }
        }
        self.metrics
            .unused_holders
            .get_or_create(&GroupLabel {
                group: group.name.to_string(),
            })
            .set(unused);
        Ok(())
    }

    /// Of `standing` (holders of `group` without a grant), those unused
    /// for `period` — each sampled afresh first — and those kept because
    /// they were used within it or have not been watched that long.
    pub(super) async fn split_unused(
        &self,
        group: &GroupPolicy,
        standing: Vec<String>,
        period: HumanDuration,
    ) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let Some(provider) = self.providers.get(&group.provider).cloned() else {
            return Ok((Vec::new(), standing));
        };
        let (mut unused, mut kept) = (Vec::new(), Vec::new());
        for principal in standing {
            let usage = self.sample_use(group, &*provider, &principal).await?;
            if usage.unused_for(period, self.now()) {
                unused.push(principal);
            } else {
                kept.push(principal);
            }
        }
        Ok((unused, kept))
    }

    /// The requester pressed Keep it on `grant`: that counts as use, and
    /// the idle clock starts again.
    pub async fn keep_grant(
        &self,
        by: &Actor,
        grant: &GrantId,
    ) -> Result<KeepOutcome, EngineError> {
        let Some(request) = self.store.get_request(&grant.request_id()).await? else {
            return Ok(KeepOutcome::Refused(format!("There is no grant {grant}.")));
        };
        if !request.requester.is(by) {
            return Ok(KeepOutcome::Refused(format!(
                "Only the requester can keep {grant}."
            )));
        }
        let (Some(activated_at), Some(expires_at), Some(principal)) = (
            request.activated_at(),
            request.expires_at(),
            request.principal.clone(),
        ) else {
            return Ok(KeepOutcome::Refused(format!(
                "{grant} is {}, not active; there is nothing to keep.",
                request.state.label()
            )));
        };
        let now = self.now();
        let group = request.group.as_str();
        let mut usage = self
            .store
            .usage(group, &principal)
            .await?
            .unwrap_or_else(|| Usage::new(&principal, activated_at));
        usage.keep(now);
        self.store.put_usage(group, &usage).await?;
        self.record_effects(Effects {
            audit: vec![AuditRecord {
                at: now,
                action: AuditAction::KeptInUse,
                actor: Some(by.clone()),
                request: Some(request.id.clone()),
                group: Some(request.group.clone()),
                detail: "Keep it: the requester still needs the access (counted as use)".into(),
            }],
            ..Effects::default()
        })
        .await?;
        let idle = self
            .policy
            .group(&request.group)
            .and_then(|g| g.idle_release)
            .map(|idle| format!(" It is released early only if it goes unused for {idle} again."))
            .unwrap_or_default();
        Ok(KeepOutcome::Kept(format!(
            "Kept: {grant} ({}) stays until {}.{idle}",
            request.group,
            show_time(expires_at)
        )))
    }

    /// What jitbot watches and the last use it saw: the active grants of
    /// groups with `idle_release`, and the standing holders of groups with
    /// `sweep_unused` — of every group, or of `only`.
    pub async fn unused(&self, only: Option<&str>) -> Result<Vec<UnusedEntry>, EngineError> {
        let live = self.store.live_requests().await?;
        let mut entries = Vec::new();
        for group in &self.policy.groups {
            if !group.watches_activity() || only.is_some_and(|name| name != group.name.as_str()) {
                continue;
            }
            let usages: BTreeMap<String, Usage> = self
                .store
                .usages(group.name.as_str())
                .await?
                .into_iter()
                .map(|u| (u.principal.clone(), u))
                .collect();
            let grants: Vec<&AccessRequest> = live
                .iter()
                .filter(|r| r.group == group.name && r.extends.is_none())
                .filter(|r| matches!(r.state, RequestState::Active { .. }))
                .collect();
            let granted: BTreeSet<&str> = grants
                .iter()
                .filter_map(|r| r.principal.as_deref())
                .collect();
            if group.idle_release.is_some() {
                for grant in &grants {
                    let Some(principal) = &grant.principal else {
                        continue;
                    };
                    let last_used = match (usages.get(principal), grant.activated_at()) {
                        (Some(usage), Some(since)) => usage.used_since(since),
                        _ => None,
                    };
                    entries.push(UnusedEntry {
                        group: group.name.to_string(),
                        principal: principal.clone(),
                        grant_id: Some(grant.id.grant_id().to_string()),
                        last_used,
                    });
                }
            }
            if group.sweep_unused.is_some() {
                for usage in usages.values() {
                    if granted.contains(usage.principal.as_str())
                        || group.standing.contains(&usage.principal)
                    {
                        continue;
                    }
                    entries.push(UnusedEntry {
                        group: group.name.to_string(),
                        principal: usage.principal.clone(),
                        grant_id: None,
                        last_used: usage.last_used,
                    });
                }
            }
        }
        Ok(entries)
    }
}
