//! Who may do what: request a group, approve it, administer jitbot. A
//! policy names people directly or by Slack user group; groups are resolved
//! through the chat directory — fresh for decisions on someone's rights,
//! from a minute-old cache for what only shows or offers something.

use std::collections::HashSet;

use super::{Engine, EngineError, PROMPT_LOOKUP_TIMEOUT};
use crate::chat::ChatError;
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::identity::Sameness;
use crate::domain::ids::{Actor, Platform};
use crate::domain::policy::{GroupPolicy, Subject};
use crate::domain::request::{AccessRequest, Decider};
use crate::store::Effects;

/// How fresh a user-group membership must be for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Asked of the platform now: for decisions on someone's rights (an
    /// approval, an auto-approval, an admin action). Someone removed from
    /// the approvers' group a moment ago no longer counts.
    Fresh,
    /// A minute old at most: for what only shows or offers something (the
    /// groups one may request, a preview of a click).
    Cached,
}

impl Engine {
    /// Whether `actor` is named by `subjects`, resolving user groups only if
    /// a direct match fails. An error means membership could not be checked.
    pub(super) async fn is_named(
        &self,
        subjects: &[Subject],
        actor: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        if subjects.iter().any(|s| s.matches(actor, &|_| false)) {
            return Ok(true);
        }
        let user_groups: Vec<&str> = subjects.iter().filter_map(Subject::user_group).collect();
        if user_groups.is_empty() {
            return Ok(false);
        }
        let Some(directory) = self.directories.get(&actor.platform) else {
            return Ok(false);
        };
        let mut member_of = HashSet::new();
        for group in user_groups {
            let members = match lookup {
                Lookup::Cached => directory.members(group).await?,
                Lookup::Fresh => directory.members_now(group).await?,
            };
            if members.contains(&actor.user) {
                member_of.insert(group.to_string());
            }
        }
        Ok(subjects
            .iter()
            .any(|s| s.matches(actor, &|g| member_of.contains(g))))
    }

    /// [`Engine::is_named`] for use while a chat request waits for its
    /// answer: a user-group look-up that does not answer quickly counts as
    /// an error, so the ack still goes out within Slack's three seconds.
    pub(super) async fn is_named_promptly(
        &self,
        subjects: &[Subject],
        actor: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        match tokio::time::timeout(
            PROMPT_LOOKUP_TIMEOUT,
            self.is_named(subjects, actor, lookup),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ChatError::Failed("user group look-up timed out".into())),
        }
    }

    /// Whether `by` may decide `request`: an approver of its group, or —
    /// once the request was escalated — one of the group's `escalate_to`.
    pub(super) async fn may_approve(
        &self,
        request: &AccessRequest,
        group: &GroupPolicy,
        by: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        // In a chain, only the step now waiting decides.
        let step = group.current_step(request);
        if self.is_named(&step.approvers, by, lookup).await? {
            return Ok(true);
        }
        // On-call approvers: only the people asked when it was filed.
        if request
            .on_call_for(&step.approvers)
            .any(|asked| asked.person.is(by))
        {
            return Ok(true);
        }
        if request.escalated_at.is_some() {
            return self.is_named(&group.escalate_to, by, lookup).await;
        }
        Ok(false)
    }

    /// [`Engine::who_decides`] while someone waits for an answer, for a
    /// preview only: look-ups that do not answer in time do not refuse
    /// (the decision itself checks again, fresh, before it counts).
    pub(super) async fn decider_at_a_glance(
        &self,
        request: &AccessRequest,
        group: &GroupPolicy,
        by: &Actor,
    ) -> Decider {
        let checked = tokio::time::timeout(
            PROMPT_LOOKUP_TIMEOUT,
            self.who_decides(request, group, by, Lookup::Cached),
        )
        .await;
        match checked {
            Ok(Ok(decider)) => decider,
            _ => Decider {
                by: by.clone(),
                may_decide: true,
                versus_requester: Sameness::Different,
                versus_approvers: Sameness::Different,
            },
        }
    }

    /// The platform whose users the policy's Slack ids name here: Slack,
    /// or — in `jitbot console` — the console.
    fn slack_ids(&self) -> Platform {
        if !self.directories.contains_key(&Platform::Slack)
            && self.directories.contains_key(&Platform::Console)
        {
            Platform::Console
        } else {
            Platform::Slack
        }
    }

    /// The people `subjects` name, with user groups expanded.
    pub(super) async fn people(&self, subjects: &[Subject]) -> Result<Vec<Actor>, ChatError> {
        let slack_ids = self.slack_ids();
        let mut seen = HashSet::new();
        let mut people = Vec::new();
        for subject in subjects {
            let found: Vec<Actor> = match subject {
                Subject::SlackUser(id) => vec![Actor::new(slack_ids, id.clone(), "")],
                Subject::TeamsUser(id) => vec![Actor::new(Platform::Teams, id.clone(), "")],
                Subject::SlackUserGroup(group) => match self.directories.get(&slack_ids) {
                    Some(directory) => directory
                        .members(group)
                        .await?
                        .iter()
                        .map(|id| Actor::new(slack_ids, id.clone(), ""))
                        .collect(),
                    None => Vec::new(),
                },
                Subject::Email(address) => vec![Actor::by_email(address)],
                // Who is on call is known per request, not per group.
                Subject::Anyone | Subject::OnCall(_) => Vec::new(),
            };
            for person in found {
                let reachable = match person.platform {
                    Platform::Email => self.email_enabled,
                    chat => self.directories.contains_key(&chat),
                };
                if reachable && seen.insert((person.platform, person.user.clone())) {
                    people.push(person);
                }
            }
        }
        Ok(people)
    }

    /// The email approvers among `approvers`, who get an email with a
    /// link for each request (when email is set up).
    pub(super) fn email_approvers(&self, approvers: &[Subject]) -> Vec<Actor> {
        if !self.email_enabled {
            return Vec::new();
        }
        approvers
            .iter()
            .filter_map(Subject::email)
            .map(Actor::by_email)
            .collect()
    }

    /// Approvers among `approvers` who get the card directly when the
    /// group has no channel.
    pub(super) fn direct_approvers(&self, approvers: &[Subject]) -> Vec<Actor> {
        let configured: HashSet<Platform> = self.platforms().collect();
        approvers
            .iter()
            .filter_map(|s| match s {
                Subject::SlackUser(id) => Some(Actor::new(self.slack_ids(), id.clone(), "")),
                Subject::TeamsUser(id) => Some(Actor::new(Platform::Teams, id.clone(), "")),
                _ => None,
            })
            .filter(|a| configured.contains(&a.platform))
            .collect()
    }

    /// Whether `by` may use admin commands; a refusal is audited and its
    /// text returned.
    pub(super) async fn check_admin(
        &self,
        by: &Actor,
        command: &str,
    ) -> Result<Option<String>, EngineError> {
        let is_admin = match self
            .is_named_promptly(&self.policy.admins, by, Lookup::Fresh)
            .await
        {
            Ok(is_admin) => is_admin,
            Err(error) => {
                return Ok(Some(format!(
                    "I could not check your admin rights right now ({}); please try again.",
                    crate::domain::text::literal(&error.to_string())
                )))
            }
        };
        if is_admin {
            return Ok(None);
        }
        self.record_effects(Effects {
            audit: vec![AuditRecord {
                at: self.now(),
                action: AuditAction::AdminRefused,
                actor: Some(by.clone()),
                request: None,
                group: None,
                detail: format!("not an admin: /jit admin {command}"),
            }],
            ..Effects::default()
        })
        .await?;
        Ok(Some(
            "Only jitbot admins can use `/jit admin` commands.".to_string(),
        ))
    }
}
