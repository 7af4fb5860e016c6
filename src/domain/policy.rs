//! The policy as data, and the decisions it drives: who may request a group,
//! who may approve it, whether a request is auto-approved, which limits
//! apply. Parsing the TOML file lives in `config`; nothing here does I/O.

use std::collections::BTreeMap;

use super::command::MAX_REASON_CHARS;
use super::duration::HumanDuration;
use super::email::EmailAddress;
use super::hours::Hours;
use super::identity::Identities;
use super::ids::{Actor, ChannelId, GroupName, Platform, UserId};
use super::on_call::Schedule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub admins: Vec<Subject>,
    pub defaults: Limits,
    pub providers: BTreeMap<String, ProviderSpec>,
    pub groups: Vec<GroupPolicy>,
    /// `[identities]`: links between one person's ids, and per-person
    /// principal overrides.
    pub identities: Identities,
}

/// Time limits and rules that `[defaults]` sets and each group may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_duration: HumanDuration,
    pub max_duration: HumanDuration,
    pub default_duration: HumanDuration,
    pub warn_before: HumanDuration,
    pub pending_timeout: HumanDuration,
    pub reason_required: bool,
    /// How often the provider is asked whether watched access is used
    /// (for `idle_release` and `sweep_unused`).
    pub activity_interval: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_duration: HumanDuration::from_secs(60),
            max_duration: HumanDuration::from_secs(8 * 3600),
            default_duration: HumanDuration::from_secs(3600),
            warn_before: HumanDuration::from_secs(600),
            pending_timeout: HumanDuration::from_secs(3600),
            reason_required: true,
            activity_interval: HumanDuration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    pub name: GroupName,
    pub description: String,
    pub provider: String,
    pub target: String,
    /// Everyone who approves in any step (the union of `steps`).
    pub approvers: Vec<Subject>,
    /// What the first step needs (the only step, without `steps`).
    pub approvals_required: u32,
    /// The approval chain, asked in order; `approvers` alone is one step.
    pub steps: Vec<ApprovalStep>,
    pub requesters: Vec<Subject>,
    /// Default Slack approval channel; run-time mappings add more.
    pub channel: Option<ChannelId>,
    /// Teams approval conversation.
    pub teams_channel: Option<ChannelId>,
    pub limits: Limits,
    pub auto_approve: Option<AutoApprove>,
    pub escalate_after: Option<HumanDuration>,
    pub escalate_to: Vec<Subject>,
    pub sweep: SweepMode,
    /// How often the sweep runs (when `sweep` is not off).
    pub sweep_interval: HumanDuration,
    /// Principals allowed to hold the target without a grant (service
    /// accounts, break-glass logins); the sweep leaves them alone.
    pub standing: Vec<String>,
    /// Release an active grant early once nobody has used it for this long.
    pub idle_release: Option<HumanDuration>,
    /// With `sweep` on, act only on standing holders unused for this long
    /// (watched by jitbot for at least as long).
    pub sweep_unused: Option<HumanDuration>,
    /// Every reason (of a request or an extension) must contain a match,
    /// a ticket id; the match is kept on the request.
    pub reason_pattern: Option<ReasonPattern>,
    /// Who may take access at once, without approval, reviewed afterwards.
    pub break_glass: Option<BreakGlass>,
}

/// One step of an approval chain: any `approvals_required` of these
/// approvers meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStep {
    pub approvers: Vec<Subject>,
    pub approvals_required: u32,
}

/// A group's `break_glass`: these requesters may take access for up to
/// `max_duration` without waiting for approval; every use is announced
/// loudly and reviewed by an approver afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub requesters: Vec<Subject>,
    pub max_duration: HumanDuration,
}

/// A group's `reason_pattern`: a regular expression a reason must contain
/// a match of (a ticket id like `INC-123`).
#[derive(Clone)]
pub struct ReasonPattern {
    source: String,
    regex: regex_lite::Regex,
}

impl ReasonPattern {
    /// Compile `source`; why not, when it is not a usable pattern.
    pub fn parse(source: &str) -> Result<ReasonPattern, String> {
        let regex = regex_lite::Regex::new(source)
            .map_err(|e| format!("it is not a valid regular expression: {e}"))?;
        if regex.is_match("") {
            return Err("it matches an empty reason, so it would let any reason through".into());
        }
        Ok(ReasonPattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first match in `reason`: the ticket id.
    pub fn ticket_in(&self, reason: &str) -> Option<String> {
        self.regex.find(reason).map(|m| m.as_str().to_string())
    }
}

impl PartialEq for ReasonPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ReasonPattern {}

impl std::fmt::Debug for ReasonPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReasonPattern({:?})", self.source)
    }
}

impl GroupPolicy {
    /// Whether `address` is named to decide its requests by email (an
    /// approver of any step, or someone it escalates to).
    pub fn names_email_approver(&self, address: &EmailAddress) -> bool {
        self.approvers
            .iter()
            .chain(&self.escalate_to)
            .any(|s| s.email() == Some(address))
    }

    /// How many approvals each step of the chain needs, in order.
    pub fn step_requirements(&self) -> Vec<u32> {
        self.steps
            .iter()
            .map(|s| s.approvals_required.max(1))
            .collect()
    }

    /// The step of the chain `request` waits for.
    pub fn current_step(&self, request: &super::request::AccessRequest) -> &ApprovalStep {
        let index = request.current_step(&self.step_requirements());
        &self.steps[index.min(self.steps.len().saturating_sub(1))]
    }

    /// Whether jitbot samples this group's use of its target.
    pub fn watches_activity(&self) -> bool {
        self.idle_release.is_some() || self.sweep_unused.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApprove {
    /// Only these requesters (none given: anyone who may request).
    pub requesters: Option<Vec<Subject>>,
    /// Only inside these hours.
    pub hours: Option<Hours>,
    /// Only while the requester is on call for one of these schedules.
    pub on_call: Option<Vec<Schedule>>,
    /// Requests up to this long are approved without a card; longer ones go
    /// through the normal approval.
    pub max_duration: HumanDuration,
}

impl AutoApprove {
    /// The conditions that held for a request this rule approved, for the
    /// card and the audit; `on_call_for` is the schedule the requester was
    /// found on call for, when the rule asks for one.
    pub fn conditions(&self, on_call_for: Option<&Schedule>) -> String {
        let mut conditions = Vec::new();
        if let Some(schedule) = on_call_for {
            conditions.push(format!("the requester is on call for schedule {schedule}"));
        }
        if self.requesters.is_some() {
            conditions.push("the requester is listed".to_string());
        }
        if let Some(hours) = &self.hours {
            conditions.push(format!("within {}", hours.as_str()));
        }
        conditions.push(format!("at most {}", self.max_duration));
        conditions.join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    #[default]
    Off,
    Report,
    Enforce,
}

impl SweepMode {
    pub fn label(&self) -> &'static str {
        match self {
            SweepMode::Off => "off",
            SweepMode::Report => "report",
            SweepMode::Enforce => "enforce",
        }
    }
}

/// One entry of an `admins`, `approvers`, `requesters` or `escalate_to` list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// `"*"`: anyone.
    Anyone,
    /// A Slack user id (`U…` or `W…`).
    SlackUser(UserId),
    /// A Slack user group id (`S…`); membership is looked up at decision time.
    SlackUserGroup(String),
    /// A Teams user by Azure AD object id.
    TeamsUser(UserId),
    /// Someone reached by email (approvers and `escalate_to` only); a chat
    /// user whose profile has this address is the same person.
    Email(EmailAddress),
    /// Whoever is on call for this schedule when a request is filed
    /// (approvers only): they are asked by DM, and recorded on the request
    /// as the one who may decide for it.
    OnCall(Schedule),
}

impl Subject {
    /// Classify a policy entry by its shape; `None` if it is none of the kinds.
    pub fn parse(raw: &str) -> Option<Subject> {
        let text = raw.trim();
        if text == "*" {
            return Some(Subject::Anyone);
        }
        if EmailAddress::looks_like(text) {
            return EmailAddress::parse(text).ok().map(Subject::Email);
        }
        if Schedule::looks_like(text) {
            return Schedule::parse(text).ok().map(Subject::OnCall);
        }
        let slack_shaped = text.len() >= 2
            && text.len() <= 32
            && text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if slack_shaped {
            return match text.as_bytes()[0] {
                b'U' | b'W' => Some(Subject::SlackUser(UserId::new(text))),
                b'S' => Some(Subject::SlackUserGroup(text.to_string())),
                _ => None,
            };
        }
        is_guid(text).then(|| Subject::TeamsUser(UserId::new(text.to_ascii_lowercase())))
    }

    /// The email address this entry names, if it is one.
    pub fn email(&self) -> Option<&EmailAddress> {
        match self {
            Subject::Email(address) => Some(address),
            _ => None,
        }
    }

    /// The on-call schedule this entry names, if it is one.
    pub fn schedule(&self) -> Option<&Schedule> {
        match self {
            Subject::OnCall(schedule) => Some(schedule),
            _ => None,
        }
    }

    /// The Slack user group this entry names, if it is one.
    pub fn user_group(&self) -> Option<&str> {
        match self {
            Subject::SlackUserGroup(id) => Some(id),
            _ => None,
        }
    }

    /// Whether `actor` is this entry; `in_user_group` answers membership of
    /// Slack user groups (resolved by the caller, which may cache it).
    pub fn matches(&self, actor: &Actor, in_user_group: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Subject::Anyone => true,
            Subject::SlackUser(id) => actor.platform.uses_slack_ids() && &actor.user == id,
            Subject::SlackUserGroup(group) => {
                actor.platform.uses_slack_ids() && in_user_group(group)
            }
            Subject::TeamsUser(id) => {
                actor.platform == Platform::Teams
                    && actor.user.as_str().eq_ignore_ascii_case(id.as_str())
            }
            Subject::Email(address) => actor.email.as_ref() == Some(address),
            // Who may decide for a schedule is recorded on each request.
            Subject::OnCall(_) => false,
        }
    }
}

/// Whether `text` is a GUID (an Azure AD / Entra object id).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The chat user a policy-style id names (`U…`/`W…` on Slack, an AAD
/// object id on Teams), if it names one; the id doubles as the name.
pub fn user_actor(id: &str) -> Option<Actor> {
    match Subject::parse(id)? {
        Subject::SlackUser(user) => Some(Actor::new(Platform::Slack, user, id.trim())),
        Subject::TeamsUser(user) => Some(Actor::new(Platform::Teams, user, id.trim())),
        _ => None,
    }
}

/// Whether `actor` is named by any entry of `subjects`.
pub fn any_matches(
    subjects: &[Subject],
    actor: &Actor,
    in_user_group: &dyn Fn(&str) -> bool,
) -> bool {
    subjects.iter().any(|s| s.matches(actor, in_user_group))
}

/// A provider as declared under `[providers.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    pub name: String,
    /// Template turning a chat user into the provider's principal.
    pub principal: String,
    pub timeout: HumanDuration,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Webhook {
        url: String,
        /// Name of the environment variable holding the signing secret.
        secret_env: String,
        /// Where to GET the current holders of a target, if the IAM can say.
        holders_url: Option<String>,
        /// Where to GET whether a principal uses a target, if the IAM can say.
        activity_url: Option<String>,
    },
    Exec {
        grant: Vec<String>,
        revoke: Vec<String>,
        /// A command printing the target's holders, one principal per line.
        holders: Option<Vec<String>>,
        /// A command printing `in_use`, a last-used time, or `never`.
        activity: Option<Vec<String>>,
    },
    Postgres {
        /// Name of the environment variable holding the connection URL
        /// (it carries a password, so it never sits in the policy file).
        url_env: String,
        /// Also end the principal's open sessions when access is revoked:
        /// revoking a role does not affect a session already using it.
        terminate_sessions: bool,
    },
    SlackUsergroup {
        /// Name of the environment variable holding the Slack token allowed
        /// to edit user groups (`usergroups:write`).
        token_env: String,
    },
    /// MySQL / MariaDB role membership.
    Mysql {
        /// Name of the environment variable holding the `mysql://` URL.
        url_env: String,
        /// Also make the role the account's default role.
        default_role: bool,
        /// Also end the account's open connections when access is revoked.
        kill_sessions: bool,
    },
    /// A Kubernetes RBAC binding per grant.
    Kubernetes {
        /// Name of the environment variable holding a kubeconfig file's
        /// path; in-cluster configuration when unset.
        kubeconfig_env: Option<String>,
        /// `User` or `Group`.
        subject_kind: String,
    },
    /// AWS IAM Identity Center account assignments.
    AwsIdentityCenter {
        instance_arn: String,
        identity_store_id: String,
        /// Overrides the SSO Admin and Identity Store endpoints.
        endpoint_url: Option<String>,
    },
    /// Okta group membership.
    Okta {
        /// The org's base URL (`https://example.okta.com`).
        org_url: String,
        /// Name of the environment variable holding the API token.
        api_token_env: String,
    },
    /// Microsoft Entra ID group membership, through Microsoft Graph.
    Entra {
        client_id: String,
        /// Name of the environment variable holding the client secret.
        client_secret_env: String,
        /// Graph's base URL, with its version.
        graph_url: String,
        /// The token endpoint (from `tenant_id` unless given).
        token_url: String,
    },
}

impl ProviderKind {
    pub fn label(&self) -> &'static str {
        match self {
            ProviderKind::Webhook { .. } => "webhook",
            ProviderKind::Exec { .. } => "exec",
            ProviderKind::Postgres { .. } => "postgres",
            ProviderKind::SlackUsergroup { .. } => "slack_usergroup",
            ProviderKind::Mysql { .. } => "mysql",
            ProviderKind::Kubernetes { .. } => "kubernetes",
            ProviderKind::AwsIdentityCenter { .. } => "aws_identity_center",
            ProviderKind::Okta { .. } => "okta",
            ProviderKind::Entra { .. } => "entra",
        }
    }

    /// Whether this provider, as configured, can list a target's holders
    /// (which a sweep needs).
    pub fn lists_holders(&self) -> bool {
        match self {
            ProviderKind::Webhook { holders_url, .. } => holders_url.is_some(),
            ProviderKind::Exec { holders, .. } => holders.is_some(),
            ProviderKind::Postgres { .. }
            | ProviderKind::SlackUsergroup { .. }
            | ProviderKind::Mysql { .. }
            | ProviderKind::Kubernetes { .. }
            | ProviderKind::AwsIdentityCenter { .. }
            | ProviderKind::Okta { .. }
            | ProviderKind::Entra { .. } => true,
        }
    }
}

impl ProviderKind {
    /// Why this provider, as configured, cannot tell whether a principal
    /// uses a target (which `idle_release` and `sweep_unused` need); `None`
    /// when it can.
    pub fn cannot_tell_activity(&self) -> Option<&'static str> {
        match self {
            ProviderKind::Webhook { activity_url, .. } => activity_url
                .is_none()
                .then_some("give it an `activity_url`"),
            ProviderKind::Exec { activity, .. } => activity
                .is_none()
                .then_some("give it an `activity` command"),
            ProviderKind::Postgres { .. } | ProviderKind::Mysql { .. } => None,
            ProviderKind::SlackUsergroup { .. } => {
                Some("Slack does not say when a user group's membership is used")
            }
            ProviderKind::Kubernetes { .. } => {
                Some("the Kubernetes API does not say when a binding is used")
            }
            ProviderKind::AwsIdentityCenter { .. } => {
                Some("Identity Center does not say when an account assignment is used")
            }
            ProviderKind::Okta { .. } | ProviderKind::Entra { .. } => {
                Some("the identity provider does not say when a group membership is used")
            }
        }
    }
}

/// Why a request is refused before it is filed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    #[error("There is no group `{0}`. Type `/jit groups` to see the groups you can request.")]
    UnknownGroup(String),
    #[error("`{0}` is named twice; name each group once.")]
    NamedTwice(String),
    #[error("You are not allowed to request `{0}`. Type `/jit groups` to see the groups you can request.")]
    NotARequester(String),
    #[error("{duration} is shorter than the minimum of {min} for `{group}`. Ask for at least {min}, e.g. `/jit request {group} {min} <reason>`.")]
    TooShort {
        group: String,
        duration: HumanDuration,
        min: HumanDuration,
    },
    #[error("{duration} is longer than the maximum of {max} for `{group}`. Ask for {max} or less, e.g. `/jit request {group} {max} <reason>`.")]
    TooLong {
        group: String,
        duration: HumanDuration,
        max: HumanDuration,
    },
    #[error("`{0}` needs a reason. Try `/jit request {0} <duration> <reason>`, e.g. `/jit request {0} 1h fixing INC-123`.")]
    ReasonMissing(String),
    #[error("The reason is longer than {max} characters; say it in fewer words.")]
    ReasonTooLong { max: usize },
    #[error("The reason for `{group}` must name a ticket matching `{pattern}`; nothing was filed. Add the ticket id to the reason and try again.")]
    TicketMissing { group: String, pattern: String },
    #[error(
        "`{0}` has no break-glass access; ask for it with `/jit request {0} <duration> <reason>`."
    )]
    NoBreakGlass(String),
    #[error("You may not use break-glass for `{0}`; only the people its policy lists may. Ask for it with `/jit request {0} <duration> <reason>`.")]
    NotABreakGlassRequester(String),
    #[error("{duration} is longer than break-glass allows for `{group}` ({max}). Ask for {max} or less, e.g. `/jit breakglass {group} {max} <reason>`.")]
    BreakGlassTooLong {
        group: String,
        duration: HumanDuration,
        max: HumanDuration,
    },
    #[error("Break-glass for `{0}` needs a reason: `/jit breakglass {0} <duration> <reason>`.")]
    BreakGlassReasonMissing(String),
    #[error("There is no grant {0}. `/jit list` shows yours.")]
    NoSuchGrant(String),
    #[error("{0} is not your grant; only its holder can extend it.")]
    NotYourGrant(String),
    #[error("{0} is {1}, not active; request access again with `/jit request`.")]
    GrantNotActive(String, &'static str),
    /// The grant's whole length — its first duration and every extension —
    /// would pass the group's `max_duration`.
    #[error("{grant} has lasted {so_far} in all; {more} more would make {whole}, past `{group}`'s max_duration of {max}. Request access again with `/jit request` when it ends.")]
    GrantTooLong {
        grant: String,
        group: String,
        so_far: HumanDuration,
        more: HumanDuration,
        whole: HumanDuration,
        max: HumanDuration,
    },
}

/// Every reason — of a request, an extension, a denial, a revoke — whatever
/// way it arrives (command, form, card, API), is at most
/// [`MAX_REASON_CHARS`] characters: it is shown on cards, and Slack refuses
/// a section longer than 3,000.
pub fn check_reason_length(reason: &str) -> Result<(), RequestRefusal> {
    if reason.trim().chars().count() > MAX_REASON_CHARS {
        Err(RequestRefusal::ReasonTooLong {
            max: MAX_REASON_CHARS,
        })
    } else {
        Ok(())
    }
}

impl Policy {
    pub fn group(&self, name: &GroupName) -> Option<&GroupPolicy> {
        self.groups.iter().find(|g| &g.name == name)
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderSpec> {
        self.providers.get(name)
    }

    /// The principal override for this person and provider, if the policy
    /// sets one (in their `[identities]` entry, whichever of their linked
    /// ids they act with).
    pub fn principal_override(&self, actor: &Actor, provider: &str) -> Option<&str> {
        self.identities
            .entry_of_actor(actor)
            .and_then(|entry| entry.principals.get(provider))
            .map(String::as_str)
    }

    /// The email address `[identities]` links to this person.
    pub fn linked_email(&self, actor: &Actor) -> Option<EmailAddress> {
        self.identities
            .entry_of_actor(actor)
            .and_then(|entry| entry.email())
            .cloned()
    }
}

impl GroupPolicy {
    /// The email approvers: each gets an email with a link for every
    /// request, whatever channels the cards go to.
    pub fn email_approvers(&self) -> impl Iterator<Item = &EmailAddress> {
        self.approvers.iter().filter_map(Subject::email)
    }

    /// Whether anyone may decide this group's requests by email (then who
    /// is who across chat and email matters: a chat user and an email
    /// approver may be one person).
    pub fn decided_by_email(&self) -> bool {
        self.approvers
            .iter()
            .chain(&self.escalate_to)
            .any(|s| s.email().is_some())
    }

    /// The duration to grant, or why it is outside the group's limits.
    pub fn check_request(
        &self,
        duration: Option<HumanDuration>,
        reason: &str,
    ) -> Result<HumanDuration, RequestRefusal> {
        let duration = duration.unwrap_or(self.limits.default_duration);
        self.check_within(&self.limits, duration, reason)
    }

    fn check_within(
        &self,
        limits: &Limits,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<HumanDuration, RequestRefusal> {
        let group = self.name.to_string();
        if duration < limits.min_duration {
            return Err(RequestRefusal::TooShort {
                group,
                duration,
                min: limits.min_duration,
            });
        }
        if duration > limits.max_duration {
            return Err(RequestRefusal::TooLong {
                group,
                duration,
                max: limits.max_duration,
            });
        }
        if limits.reason_required && reason.trim().is_empty() {
            return Err(RequestRefusal::ReasonMissing(group));
        }
        check_reason_length(reason)?;
        if let Some(pattern) = &self.reason_pattern {
            if pattern.ticket_in(reason).is_none() {
                return Err(RequestRefusal::TicketMissing {
                    group,
                    pattern: pattern.as_str().to_string(),
                });
            }
        }
        Ok(duration)
    }

    /// The duration of a break-glass use, or why it cannot be one. The
    /// group's minimum and ticket pattern still apply; its maximum is the
    /// break-glass one, and a reason is always needed.
    pub fn check_break_glass(
        &self,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<HumanDuration, RequestRefusal> {
        let group = self.name.to_string();
        let Some(rule) = &self.break_glass else {
            return Err(RequestRefusal::NoBreakGlass(group));
        };
        if duration > rule.max_duration {
            return Err(RequestRefusal::BreakGlassTooLong {
                group,
                duration,
                max: rule.max_duration,
            });
        }
        if reason.trim().is_empty() {
            return Err(RequestRefusal::BreakGlassReasonMissing(group));
        }
        let limits = Limits {
            max_duration: rule.max_duration,
            reason_required: true,
            ..self.limits
        };
        self.check_within(&limits, duration, reason)
    }

    /// The ticket id `reason` names, under the group's `reason_pattern`.
    pub fn ticket_in(&self, reason: &str) -> Option<String> {
        self.reason_pattern
            .as_ref()
            .and_then(|pattern| pattern.ticket_in(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack(id: &str) -> Actor {
        Actor::new(Platform::Slack, UserId::new(id), id)
    }

    #[test]
    fn subjects_are_classified_by_shape() {
        assert_eq!(Subject::parse("*"), Some(Subject::Anyone));
        assert_eq!(
            Subject::parse("U0LEAD"),
            Some(Subject::SlackUser(UserId::new("U0LEAD")))
        );
        assert_eq!(
            Subject::parse("S0DBAS"),
            Some(Subject::SlackUserGroup("S0DBAS".into()))
        );
        assert_eq!(
            Subject::parse("6F1C2E4A-0000-4000-8000-00000000A11D"),
            Some(Subject::TeamsUser(UserId::new(
                "6f1c2e4a-0000-4000-8000-00000000a11d"
            )))
        );
        assert_eq!(Subject::parse("bob"), None);
        assert_eq!(Subject::parse("C0CHANNEL"), None);
    }

    #[test]
    fn user_group_membership_is_asked_of_the_caller() {
        let approvers = vec![Subject::SlackUserGroup("S0DBAS".into())];
        assert!(any_matches(&approvers, &slack("U1"), &|g| g == "S0DBAS"));
        assert!(!any_matches(&approvers, &slack("U1"), &|_| false));
        let teams = Actor::new(Platform::Teams, UserId::new("U1"), "");
        assert!(!any_matches(
            &[Subject::SlackUser(UserId::new("U1"))],
            &teams,
            &|_| true
        ));
    }
}
