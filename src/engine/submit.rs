//! Filing a request: policy checks, then one durable write of the request,
//! its audit event, its cards and (if auto-approved) its activation job.

use std::collections::HashSet;

use super::announce::Audience;
use super::grant::Unresolved;
use super::rights::Lookup;
use super::{Engine, EngineError, PROMPT_LOOKUP_TIMEOUT};
use crate::chat::ChatError;
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, Destination, GrantId, GroupName, RequestId};
use crate::domain::policy::{GroupPolicy, RequestRefusal};
use crate::domain::quota::QuotaRefusal;
use crate::domain::request::{AccessRequest, BundleMember, RequestState};
use crate::store::{Effects, Filed};
use crate::telemetry::Metrics;

/// What the requester is told once the request is durably filed.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The request filed (a bundle's first member, whose id names the
    /// whole bundle).
    pub request: AccessRequest,
    /// A bundle's other members.
    pub others: Vec<AccessRequest>,
    /// Every member was approved as it was filed.
    pub auto_approved: bool,
}

impl Receipt {
    /// What the requester is told, wherever they filed it (command, form).
    pub fn summary(&self) -> String {
        let request = &self.request;
        if request.in_bundle() {
            return self.bundle_summary();
        }
        match (&request.extends, self.auto_approved) {
            (Some(grant), auto) => format!(
                "Extension {} of {} (+{}) is filed{}. I'll DM you when the grant's new end is set.",
                request.id,
                grant.grant_id(),
                request.duration,
                if auto { " and approved by policy" } else { " and waiting for approval" }
            ),
            (None, true) if request.break_glass.is_some() => format!(
                "break-glass: access to {} ({}) is being granted now, without approval ({}). The group's approval channels and the admins are told, and an approver will review this use. I'll DM you when it is live.",
                request.group, request.duration, request.id
            ),
            (None, true) => format!(
                "Request {} for {} ({}) was approved automatically by policy{}. Granting access now; I'll DM you when it is live.",
                request.id,
                request.group,
                request.duration,
                request
                    .auto_approval
                    .as_ref()
                    .map(|conditions| format!(" ({conditions})"))
                    .unwrap_or_default()
            ),
            (None, false) => format!(
                "Request {} for {} ({}) is filed and waiting for approval. I'll DM you when it is decided. `/jit cancel {}` withdraws it.",
                request.id, request.group, request.duration, request.id
            ),
        }
    }

    fn bundle_summary(&self) -> String {
        let request = &self.request;
        let id = &request.id;
        let groups = request.groups_label();
        let by_policy: Vec<&str> = std::iter::once(request)
            .chain(&self.others)
            .filter(|member| matches!(member.state, RequestState::Approved { .. }))
            .map(|member| member.group.as_str())
            .collect();
        match (&request.extends, self.auto_approved) {
            (Some(_), auto) => format!(
                "Extension {id} of every grant of the request ({groups}, +{}) is filed{}. I'll DM you when the grants' new end is set.",
                request.duration,
                if auto { " and approved by policy" } else { " and waiting for approval" }
            ),
            (None, true) => format!(
                "Request {id} for {groups} ({}) was approved automatically by policy. Granting access to all of them now; I'll DM you when it is live.",
                request.duration
            ),
            (None, false) => format!(
                "Request {id} for {groups} ({}) is filed and waiting for approval{}; every group's approvers decide, and access to all of them is granted together once each is approved. I'll DM you when it is decided. `/jit cancel {id}` withdraws it.",
                request.duration,
                if by_policy.is_empty() {
                    String::new()
                } else {
                    format!(" ({} approved by policy)", by_policy.join(", "))
                }
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Refused(#[from] RequestRefusal),
    #[error("I could not check your rights for this group right now ({0}); please try again in a minute.")]
    Directory(ChatError),
    #[error("I cannot grant you `{group}`: {why}")]
    NoPrincipal { group: String, why: String },
    #[error("{0} Nothing was filed.")]
    Limited(QuotaRefusal),
    /// One group of several asked for at once cannot be: none is filed.
    #[error("{0} Nothing was filed for any of the groups.")]
    InBundle(Box<SubmitError>),
    #[error("{}", super::failure_text(.0, "filed"))]
    Engine(#[from] EngineError),
}

pub use crate::chat::card::FormChoice;

/// How a request is filed: for approval (auto-approved when the policy's
/// conditions held), as an extension of a grant, or as break-glass.
pub(super) enum Filing<'a> {
    ForApproval {
        auto_approval: Option<String>,
    },
    Extension {
        auto_approval: Option<String>,
        grant: &'a AccessRequest,
    },
    BreakGlass,
}

impl Filing<'_> {
    fn auto_approval(&self) -> Option<&String> {
        match self {
            Filing::ForApproval { auto_approval } | Filing::Extension { auto_approval, .. } => {
                auto_approval.as_ref()
            }
            Filing::BreakGlass => None,
        }
    }

    /// Whether it is approved as it is filed: nobody is asked.
    fn approved_at_once(&self) -> bool {
        matches!(self, Filing::BreakGlass) || self.auto_approval().is_some()
    }
}

/// A random id clashes about once in a billion draws; a handful of tries is
/// more than enough.
const ID_ATTEMPTS: usize = 5;

impl Engine {
    pub async fn submit(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        group_name: &GroupName,
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let result = self
            .submit_checked(requester, origin, group_name, duration, reason)
            .await;
        self.count_submission(&result);
        result
    }

    /// `request a,b,c …`: one request for several groups, all granted
    /// together once each group's approvers approved, or none. Refused as
    /// a whole, nothing filed, if any group may not be requested so.
    pub async fn submit_groups(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        groups: &[GroupName],
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let result = match groups {
            [one] => {
                self.submit_checked(requester, origin, one, duration, reason)
                    .await
            }
            several => self
                .submit_bundle_checked(requester, origin, several, duration, reason)
                .await
                .map_err(|error| match error {
                    SubmitError::Refused(_)
                    | SubmitError::NoPrincipal { .. }
                    | SubmitError::Limited(_) => SubmitError::InBundle(Box::new(error)),
                    other => other,
                }),
        };
        self.count_submission(&result);
        result
    }

    pub(super) fn count_submission(&self, result: &Result<Receipt, SubmitError>) {
        let outcome = match result {
            Ok(receipt) if receipt.request.break_glass.is_some() => "break_glass",
            Ok(receipt) if receipt.auto_approved => "auto_approved",
            Ok(_) => "filed",
            Err(SubmitError::Engine(_)) => "error",
            Err(SubmitError::Limited(_)) => "limited",
            Err(SubmitError::InBundle(inner)) if matches!(**inner, SubmitError::Limited(_)) => {
                "limited"
            }
            Err(_) => "refused",
        };
        Metrics::count(&self.metrics.requests, outcome);
    }

    async fn submit_checked(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        group_name: &GroupName,
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let group = self.requestable(&requester, group_name).await?;
        let (duration, filing) = self
            .for_approval(group, &requester, duration, reason)
            .await?;
        self.file(requester, origin, group, duration, reason, filing)
            .await
    }

    async fn submit_bundle_checked(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        names: &[GroupName],
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let mut groups: Vec<&GroupPolicy> = Vec::new();
        for name in names {
            if groups.iter().any(|g| &g.name == name) {
                return Err(RequestRefusal::NamedTwice(name.to_string()).into());
            }
            groups.push(self.requestable(&requester, name).await?);
        }
        // One length for all, so the grants end together: the one asked
        // for, or else the shortest of the groups' defaults.
        let duration = duration.or_else(|| groups.iter().map(|g| g.limits.default_duration).min());
        let mut members = Vec::new();
        for group in groups {
            let (_, filing) = self
                .for_approval(group, &requester, duration, reason)
                .await?;
            members.push((group, filing));
        }
        let duration = duration.expect("a bundle names groups, each with a default duration");
        self.file_all(requester, origin, members, duration, reason)
            .await
    }

    /// `name`'s policy, if it exists and `requester` may request it.
    async fn requestable(
        &self,
        requester: &Actor,
        name: &GroupName,
    ) -> Result<&GroupPolicy, SubmitError> {
        let group = self
            .policy
            .group(name)
            .ok_or_else(|| RequestRefusal::UnknownGroup(name.to_string()))?;
        let may_request = self
            .is_named_promptly(&group.requesters, requester, Lookup::Cached)
            .await
            .map_err(SubmitError::Directory)?;
        if !may_request {
            return Err(RequestRefusal::NotARequester(group.name.to_string()).into());
        }
        Ok(group)
    }

    /// The duration a request of `group` gets, and how it is filed (auto-
    /// approved when the policy's conditions hold) — or why it cannot be.
    async fn for_approval(
        &self,
        group: &GroupPolicy,
        requester: &Actor,
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<(HumanDuration, Filing<'static>), SubmitError> {
        let duration = group.check_request(duration, reason)?;
        self.check_principal(group, requester).await?;
        let auto_approval = self.auto_approval(group, requester, duration).await?;
        Ok((duration, Filing::ForApproval { auto_approval }))
    }

    /// Refuse up front a requester the group's provider has no principal
    /// for — approvers should not approve what cannot be granted. A look-up
    /// that does not answer in time is not a refusal: activation decides.
    pub(super) async fn check_principal(
        &self,
        group: &GroupPolicy,
        requester: &Actor,
    ) -> Result<(), SubmitError> {
        let Some(spec) = self.policy.provider(&group.provider) else {
            return Ok(());
        };
        let resolved = tokio::time::timeout(
            PROMPT_LOOKUP_TIMEOUT,
            self.resolve_principal(spec, requester),
        )
        .await;
        match resolved {
            Ok(Err(Unresolved::Impossible(why))) => Err(SubmitError::NoPrincipal {
                group: group.name.to_string(),
                why: crate::domain::text::literal(&why),
            }),
            _ => Ok(()),
        }
    }

    /// Ask for more time on an active grant. It is filed as a request of the
    /// grant's group, with the same checks and approvals (auto-approve rules
    /// included); once approved, the grant's end moves without a revoke.
    pub async fn submit_extension(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        grant_id: &GrantId,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let grant = self
            .store
            .get_request(&grant_id.request_id())
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| RequestRefusal::NoSuchGrant(grant_id.to_string()))?;
        // The grant's own requester, as they act (one platform account):
        // their quota is where a grant's one open extension is counted.
        if grant.requester.platform != requester.platform || grant.requester.user != requester.user
        {
            return Err(RequestRefusal::NotYourGrant(grant_id.to_string()).into());
        }
        // A grant of a bundle is extended with the whole bundle, which
        // ends together: one extension per group, approved as a bundle.
        let grants = crate::store::bundle_members(self.store.as_ref(), &grant)
            .await
            .map_err(EngineError::from)?;
        let mut members = Vec::new();
        for grant in &grants {
            if !matches!(grant.state, RequestState::Active { .. }) {
                return Err(RequestRefusal::GrantNotActive(
                    grant.id.grant_id().to_string(),
                    grant.state.label(),
                )
                .into());
            }
            let group = self
                .policy
                .group(&grant.group)
                .ok_or_else(|| RequestRefusal::UnknownGroup(grant.group.to_string()))?;
            let duration = group.check_request(Some(duration), reason)?;
            // The whole grant stays within what its group allows, and an
            // extension is approved by policy only if the whole grant is
            // within what the policy approves by itself.
            let so_far = grant.total_duration();
            let whole = so_far.saturating_add(duration);
            if whole > group.limits.max_duration {
                return Err(RequestRefusal::GrantTooLong {
                    grant: grant.id.grant_id().to_string(),
                    group: group.name.to_string(),
                    so_far,
                    more: duration,
                    whole,
                    max: group.limits.max_duration,
                }
                .into());
            }
            let auto_approval = self.auto_approval(group, &requester, whole).await?;
            members.push((
                group,
                Filing::Extension {
                    auto_approval,
                    grant,
                },
            ));
        }
        self.file_all(requester, origin, members, duration, reason)
            .await
    }

    /// Why an auto-approve rule of `group` covers this request, if it does.
    async fn auto_approval(
        &self,
        group: &GroupPolicy,
        requester: &Actor,
        duration: HumanDuration,
    ) -> Result<Option<String>, SubmitError> {
        let Some(rule) = &group.auto_approve else {
            return Ok(None);
        };
        // Every condition given must hold; the cheap ones first, the
        // paging service last.
        if duration > rule.max_duration
            || rule
                .hours
                .as_ref()
                .is_some_and(|hours| !hours.contains(self.now()))
        {
            return Ok(None);
        }
        if let Some(requesters) = &rule.requesters {
            let listed = self
                .is_named_promptly(requesters, requester, Lookup::Fresh)
                .await
                .map_err(SubmitError::Directory)?;
            if !listed {
                return Ok(None);
            }
        }
        let on_call_for = match &rule.on_call {
            Some(schedules) => match self.on_call_schedule_of(schedules, requester).await {
                Some(schedule) => Some(schedule),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(rule.conditions(on_call_for.as_ref())))
    }

    /// Write a new request, filed as `filing` says, with its effects,
    /// under a fresh id, and make it durable.
    pub(super) async fn file(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        group: &GroupPolicy,
        duration: HumanDuration,
        reason: &str,
        filing: Filing<'_>,
    ) -> Result<Receipt, SubmitError> {
        self.file_all(requester, origin, vec![(group, filing)], duration, reason)
            .await
    }

    /// Write the requests of `members` — one, or the groups of a bundle,
    /// each filed as its `Filing` says — with their effects, under fresh
    /// ids, all or none, and make them durable. A bundle's first member
    /// posts the one card the bundle has in each approval channel.
    pub(super) async fn file_all(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        members: Vec<(&GroupPolicy, Filing<'_>)>,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let mut on_call = Vec::new();
        for (group, filing) in &members {
            on_call.push(if filing.approved_at_once() {
                Vec::new()
            } else {
                self.on_call_approvers(group).await
            });
        }
        let now = self.now();
        for _ in 0..ID_ATTEMPTS {
            let ids: Vec<RequestId> = members.iter().map(|_| RequestId::generate()).collect();
            let bundle: Vec<BundleMember> = if members.len() > 1 {
                ids.iter()
                    .zip(&members)
                    .map(|(id, (group, _))| BundleMember {
                        request: id.clone(),
                        group: group.name.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut filed = Vec::new();
            let mut audiences = Vec::new();
            for ((id, (group, filing)), on_call) in ids.into_iter().zip(&members).zip(&on_call) {
                let (mut request, happened) = AccessRequest::file(
                    id,
                    requester.clone(),
                    group.name.clone(),
                    duration,
                    reason.trim().to_string(),
                    origin.clone(),
                    filing.approved_at_once(),
                    now,
                );
                match filing {
                    Filing::Extension { grant, .. } => request = request.extending(grant),
                    Filing::BreakGlass => request.break_glass = Some(Default::default()),
                    Filing::ForApproval { .. } => {}
                }
                self.fix_grant_target(&mut request);
                request.ticket = group.ticket_in(&request.reason);
                request.auto_approval = filing.auto_approval().cloned();
                request.on_call = on_call.clone();
                request.bundle = bundle.clone();
                audiences.push(self.audience(&request).await.map_err(EngineError::from)?);
                filed.push((request, happened));
            }
            // The first member's card is the bundle's: it goes wherever any
            // member's approvers are; the others post none of their own.
            let lead_audience = Audience::union(audiences);
            let mut effects = Effects::default();
            for (index, (request, happened)) in filed.iter().enumerate() {
                let audience = if index == 0 {
                    lead_audience.clone()
                } else {
                    Audience::default()
                };
                effects.append(
                    self.effects_of(request, happened, Some(&requester), &audience, None, now)
                        .await
                        .map_err(EngineError::from)?,
                );
            }
            let requests: Vec<AccessRequest> =
                filed.into_iter().map(|(request, _)| request).collect();
            match self
                .store
                .file(&requests, &effects, self.limits, now)
                .await
                .map_err(EngineError::from)?
            {
                Filed::Written => {
                    self.commit_and_wake_for(&effects).await?;
                    let auto_approved = members.iter().all(|(_, f)| f.approved_at_once());
                    let mut requests = requests.into_iter();
                    let request = requests.next().expect("at least one member is filed");
                    return Ok(Receipt {
                        request,
                        others: requests.collect(),
                        auto_approved,
                    });
                }
                Filed::Refused(refusal) => return Err(SubmitError::Limited(refusal)),
                Filed::IdTaken => continue,
            }
        }
        Err(SubmitError::Engine(EngineError::Store(
            crate::store::StoreError::Corrupt("could not draw an unused request id".into()),
        )))
    }

    /// The groups `actor` may request, those mapped to `origin` first.
    pub async fn requestable_groups(
        &self,
        actor: &Actor,
        origin: Option<&Destination>,
    ) -> Result<Vec<FormChoice>, SubmitError> {
        let mapped_here: HashSet<GroupName> = match origin {
            Some(origin) => self
                .store
                .mappings()
                .await
                .map_err(EngineError::from)?
                .into_iter()
                .filter(|m| &m.destination == origin)
                .map(|m| m.group)
                .collect(),
            None => HashSet::new(),
        };
        let is_policy_channel = |group: &GroupPolicy| {
            origin.is_some_and(|o| {
                group.channel.as_ref() == Some(&o.channel)
                    || group.teams_channel.as_ref() == Some(&o.channel)
            })
        };
        let mut choices = Vec::new();
        for group in &self.policy.groups {
            if !self
                .is_named_promptly(&group.requesters, actor, Lookup::Cached)
                .await
                .map_err(SubmitError::Directory)?
            {
                continue;
            }
            choices.push(FormChoice {
                name: group.name.clone(),
                description: group.description.clone(),
                mapped_here: mapped_here.contains(&group.name) || is_policy_channel(group),
                default_duration: group.limits.default_duration,
            });
        }
        // Stable sort: mapped groups first, policy order otherwise.
        choices.sort_by_key(|c| !c.mapped_here);
        Ok(choices)
    }
}
