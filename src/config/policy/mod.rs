//! Reading the policy file. The TOML is walked by hand (rather than through
//! serde) so that every problem is collected — not just the first — and each
//! one points at the line and column it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::domain::duration::HumanDuration;
use crate::domain::ids::{ChannelId, GroupName};
use crate::domain::policy::{
    AutoApprove, GroupPolicy, Limits, Policy, ProviderKind, ProviderSpec, Subject, SweepMode,
};

/// One problem in the policy file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
        .collect();
    lines.join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Read and validate the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let source = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&source).map_err(|problems| PolicyError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

const ROOT_KEYS: &[&str] = &["admins", "defaults", "providers", "groups", "identities"];
const LIMIT_KEYS: &[&str] = &[
    "min_duration",
    "max_duration",
    "default_duration",
    "warn_before",
    "pending_timeout",
    "reason_required",
];
const GROUP_KEYS: &[&str] = &[
    "name",
    "description",
    "provider",
    "target",
    "approvers",
    "approvals_required",
    "requesters",
    "channel",
    "teams_channel",
    "min_duration",
    "max_duration",
    "default_duration",
    "warn_before",
    "pending_timeout",
    "reason_required",
    "auto_approve",
    "escalate_after",
    "escalate_to",
    "sweep",
    "sweep_interval",
    "standing",
];
const AUTO_APPROVE_KEYS: &[&str] = &["requesters", "max_duration"];
const WEBHOOK_KEYS: &[&str] = &[
    "kind",
    "url",
    "secret_env",
    "holders_url",
    "principal",
    "timeout",
];
const EXEC_KEYS: &[&str] = &["kind", "grant", "revoke", "holders", "principal", "timeout"];
const POSTGRES_KEYS: &[&str] = &[
    "kind",
    "url_env",
    "terminate_sessions",
    "principal",
    "timeout",
];
const SLACK_USERGROUP_KEYS: &[&str] = &["kind", "token_env", "principal", "timeout"];
const PROVIDER_KINDS: &[&str] = &["webhook", "exec", "postgres", "slack_usergroup"];

/// Placeholders a principal template may use.
pub const PRINCIPAL_PLACEHOLDERS: &[&str] = &[
    "user_id",
    "slack_user_id",
    "teams_aad_id",
    "email",
    "email_local",
];
/// Placeholders an exec argument may use.
pub const EXEC_PLACEHOLDERS: &[&str] = &[
    "principal",
    "target",
    "group",
    "request_id",
    "grant_id",
    "user_id",
    "expires_at",
];

const DEFAULT_PRINCIPAL: &str = "{user_id}";
const DEFAULT_PROVIDER_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);
const DEFAULT_SWEEP_INTERVAL: HumanDuration = HumanDuration::from_secs(15 * 60);
/// The token a `slack_usergroup` provider uses unless it names another.
const DEFAULT_SLACK_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";

/// Parse and validate policy text; on failure, every problem found.
pub fn parse(source: &str) -> Result<Policy, Vec<Problem>> {
    let document = match ImDocument::parse(source) {
        Ok(document) => document,
        Err(error) => {
            let (line, column) = line_col(source, error.span().map_or(0, |s| s.start));
            return Err(vec![Problem {
                line,
                column,
                message: format!("not valid TOML: {}", error.message().trim()),
            }]);
        }
    };
    let mut reader = Reader {
        source,
        problems: Vec::new(),
    };
    let policy = reader.policy(document.as_table());
    if reader.problems.is_empty() {
        Ok(policy)
    } else {
        reader.problems.sort_by_key(|p| (p.line, p.column));
        Err(reader.problems)
    }
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Reader<'s> {
    source: &'s str,
    problems: Vec<Problem>,
}

type Span = Option<Range<usize>>;

impl Reader<'_> {
    fn problem(&mut self, span: Span, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.map_or(0, |s| s.start));
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn key_span(table: &dyn TableLike, key: &str) -> Span {
        table.key(key).and_then(|k| k.span())
    }

    fn value_span(table: &dyn TableLike, key: &str) -> Span {
        table
            .get(key)
            .and_then(Item::span)
            .or_else(|| Self::key_span(table, key))
    }

    /// Report every key not in `allowed`.
    fn check_keys(&mut self, table: &dyn TableLike, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key) {
                let hint = match closest(key, allowed) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => format!(" (expected one of: {})", allowed.join(", ")),
                };
                self.problem(
                    Self::key_span(table, key),
                    format!("unknown key `{key}` in {context}{hint}"),
                );
            }
        }
    }

    fn string(&mut self, table: &dyn TableLike, key: &str, context: &str) -> Option<String> {
        let item = table.get(key)?;
        match item.as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context} must be a string"),
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
        at: Span,
    ) -> Option<String> {
        if table.get(key).is_none() {
            self.problem(at, format!("{context} is missing `{key}`"));
            return None;
        }
        let text = self.string(table, key, context)?;
        if text.trim().is_empty() {
            self.problem(
                Self::value_span(table, key),
                format!("`{key}` in {context} must not be empty"),
            );
            return None;
        }
        Some(text)
    }

    fn duration(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<HumanDuration> {
        let text = self.string(table, key, context)?;
        match HumanDuration::parse(&text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context}: {error}"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, table: &dyn TableLike, key: &str, context: &str) -> Option<bool> {
        let item = table.get(key)?;
        match item.as_bool() {
            Some(value) => Some(value),
            None => {
                self.problem(
                    Self::value_span(table, key),
                    format!("`{key}` in {context} must be true or false"),
                );
                None
            }
        }
    }

    fn string_list(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<(String, Span)>> {
        let item = table.get(key)?;
        let Some(array) = item.as_array() else {
            self.problem(
                Self::value_span(table, key),
                format!("`{key}` in {context} must be a list of strings"),
            );
            return None;
        };
        let mut out = Vec::new();
        for value in array.iter() {
            match value.as_str() {
                Some(text) => out.push((text.to_string(), value.span())),
                None => self.problem(
                    value.span(),
                    format!("`{key}` in {context} must contain only strings"),
                ),
            }
        }
        Some(out)
    }

    fn subjects(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<Subject>> {
        let entries = self.string_list(table, key, context)?;
        let mut subjects = Vec::new();
        for (text, span) in entries {
            match Subject::parse(&text) {
                Some(subject) => subjects.push(subject),
                None => self.problem(
                    span,
                    format!(
                        "`{text}` in `{key}` of {context} is not a Slack user id (U…/W…), a Slack user group id (S…), a Teams AAD object id, or \"*\""
                    ),
                ),
            }
        }
        Some(subjects)
    }

    fn policy(&mut self, root: &dyn TableLike) -> Policy {
        self.check_keys(root, ROOT_KEYS, "the policy");
        let admins = self
            .subjects(root, "admins", "the policy")
            .unwrap_or_default();
        let defaults = match root.get("defaults") {
            Some(item) => match item.as_table_like() {
                Some(table) => {
                    self.check_keys(table, LIMIT_KEYS, "[defaults]");
                    self.limits(
                        table,
                        Limits::default(),
                        "[defaults]",
                        Reader::key_span(root, "defaults"),
                    )
                }
                None => {
                    self.problem(item.span(), "`defaults` must be a table");
                    Limits::default()
                }
            },
            None => Limits::default(),
        };
        let providers = self.providers(root);
        let groups = self.groups(root, &defaults, &providers);
        let identities = self.identities(root, &providers);
        Policy {
            admins,
            defaults,
            providers,
            groups,
            identities,
        }
    }

    /// Limits from `table` on top of `base`, checked for consistency.
    fn limits(&mut self, table: &dyn TableLike, base: Limits, context: &str, at: Span) -> Limits {
        let mut limits = base;
        if let Some(d) = self.duration(table, "min_duration", context) {
            limits.min_duration = d;
        }
        if let Some(d) = self.duration(table, "max_duration", context) {
            limits.max_duration = d;
        }
        if let Some(d) = self.duration(table, "default_duration", context) {
            limits.default_duration = d;
        }
        if let Some(d) = self.duration(table, "warn_before", context) {
            limits.warn_before = d;
        }
        if let Some(d) = self.duration(table, "pending_timeout", context) {
            limits.pending_timeout = d;
        }
        if let Some(b) = self.boolean(table, "reason_required", context) {
            limits.reason_required = b;
        }
        let span_of = |key: &str| Reader::value_span(table, key).or_else(|| at.clone());
        if limits.max_duration < limits.min_duration {
            self.problem(
                span_of("max_duration"),
                format!(
                    "{context}: max_duration ({}) is below min_duration ({})",
                    limits.max_duration, limits.min_duration
                ),
            );
        } else if limits.default_duration < limits.min_duration
            || limits.default_duration > limits.max_duration
        {
            self.problem(
                span_of("default_duration"),
                format!(
                    "{context}: default_duration ({}) is outside min_duration..max_duration ({}..{})",
                    limits.default_duration, limits.min_duration, limits.max_duration
                ),
            );
        }
        limits
    }

    fn providers(&mut self, root: &dyn TableLike) -> BTreeMap<String, ProviderSpec> {
        let mut providers = BTreeMap::new();
        let Some(item) = root.get("providers") else {
            return providers;
        };
        let Some(table) = item.as_table_like() else {
            self.problem(
                item.span(),
                "`providers` must be a table of [providers.<name>] sections",
            );
            return providers;
        };
        for (name, item) in table.iter() {
            let context = format!("[providers.{name}]");
            let at = Reader::key_span(table, name);
            let Some(provider) = item.as_table_like() else {
                self.problem(at, format!("{context} must be a table"));
                continue;
            };
            if let Some(spec) = self.provider(name, provider, &context, at) {
                providers.insert(name.to_string(), spec);
            }
        }
        providers
    }

    fn provider(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        context: &str,
        at: Span,
    ) -> Option<ProviderSpec> {
        let kind = self.required_string(table, "kind", context, at.clone())?;
        // A Slack user group holds Slack user ids, whatever else a user is.
        let default_principal = if kind == "slack_usergroup" {
            "{slack_user_id}"
        } else {
            DEFAULT_PRINCIPAL
        };
        let principal = self
            .string(table, "principal", context)
            .unwrap_or_else(|| default_principal.to_string());
        self.check_placeholders(
            &principal,
            PRINCIPAL_PLACEHOLDERS,
            Reader::value_span(table, "principal"),
            context,
        );
        let timeout = self
            .duration(table, "timeout", context)
            .unwrap_or(DEFAULT_PROVIDER_TIMEOUT);
        let kind = match kind.as_str() {
            "webhook" => {
                self.check_keys(table, WEBHOOK_KEYS, context);
                let url = self.required_string(table, "url", context, at.clone());
                if let Some(url) = &url {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        self.problem(
                            Reader::value_span(table, "url"),
                            format!("`url` in {context} must be an http(s) URL"),
                        );
                    }
                }
                let secret_env = self.required_string(table, "secret_env", context, at);
                let holders_url = self.string(table, "holders_url", context);
                if let Some(holders_url) = &holders_url {
                    if !(holders_url.starts_with("https://") || holders_url.starts_with("http://"))
                    {
                        self.problem(
                            Reader::value_span(table, "holders_url"),
                            format!("`holders_url` in {context} must be an http(s) URL"),
                        );
                    }
                }
                ProviderKind::Webhook {
                    url: url?,
                    secret_env: secret_env?,
                    holders_url,
                }
            }
            "exec" => {
                self.check_keys(table, EXEC_KEYS, context);
                let grant = self.command(table, "grant", context, at.clone());
                let revoke = self.command(table, "revoke", context, at.clone());
                let holders = match table.get("holders") {
                    Some(_) => Some(self.command(table, "holders", context, at)?),
                    None => None,
                };
                ProviderKind::Exec {
                    grant: grant?,
                    revoke: revoke?,
                    holders,
                }
            }
            "postgres" => {
                self.check_keys(table, POSTGRES_KEYS, context);
                let url_env = self.required_string(table, "url_env", context, at);
                let terminate_sessions = self
                    .boolean(table, "terminate_sessions", context)
                    .unwrap_or(false);
                ProviderKind::Postgres {
                    url_env: url_env?,
                    terminate_sessions,
                }
            }
            "slack_usergroup" => {
                self.check_keys(table, SLACK_USERGROUP_KEYS, context);
                let token_env = self
                    .string(table, "token_env", context)
                    .unwrap_or_else(|| DEFAULT_SLACK_TOKEN_ENV.to_string());
                ProviderKind::SlackUsergroup { token_env }
            }
            other => {
                self.problem(
                    Reader::value_span(table, "kind"),
                    format!(
                        "unknown provider kind `{other}` in {context} (this build supports: {})",
                        PROVIDER_KINDS.join(", ")
                    ),
                );
                return None;
            }
        };
        Some(ProviderSpec {
            name: name.to_string(),
            principal,
            timeout,
            kind,
        })
    }

    fn command(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
        at: Span,
    ) -> Option<Vec<String>> {
        if table.get(key).is_none() {
            self.problem(at, format!("{context} is missing `{key}` (an argument list like [\"/usr/local/bin/grant-role\", \"{{principal}}\", \"{{target}}\"])"));
            return None;
        }
        let args = self.string_list(table, key, context)?;
        if args.is_empty() {
            self.problem(
                Reader::value_span(table, key),
                format!("`{key}` in {context} needs at least the program to run"),
            );
            return None;
        }
        for (arg, span) in &args {
            self.check_placeholders(arg, EXEC_PLACEHOLDERS, span.clone(), context);
        }
        Some(args.into_iter().map(|(arg, _)| arg).collect())
    }

    fn check_placeholders(&mut self, template: &str, allowed: &[&str], span: Span, context: &str) {
        for name in placeholders(template) {
            if !allowed.contains(&name) {
                self.problem(
                    span.clone(),
                    format!(
                        "unknown placeholder `{{{name}}}` in {context} (expected one of: {})",
                        allowed
                            .iter()
                            .map(|a| format!("{{{a}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                );
            }
        }
    }

    fn groups(
        &mut self,
        root: &dyn TableLike,
        defaults: &Limits,
        providers: &BTreeMap<String, ProviderSpec>,
    ) -> Vec<GroupPolicy> {
        let Some(item) = root.get("groups") else {
            return Vec::new();
        };
        let tables: Vec<(&dyn TableLike, Span)> = match item {
            Item::ArrayOfTables(array) => array
                .iter()
                .map(|t| (t as &dyn TableLike, t.span()))
                .collect(),
            Item::Value(Value::Array(array)) => array
                .iter()
                .filter_map(|v| v.as_inline_table().map(|t| (t as &dyn TableLike, v.span())))
                .collect(),
            _ => {
                self.problem(
                    item.span(),
                    "`groups` must be a list of [[groups]] sections",
                );
                return Vec::new();
            }
        };
        let mut seen = BTreeSet::new();
        let mut groups = Vec::new();
        for (index, (table, at)) in tables.into_iter().enumerate() {
            let context = match table.get("name").and_then(Item::as_str) {
                Some(name) => format!("group `{name}`"),
                None => format!("[[groups]] #{}", index + 1),
            };
            if let Some(group) = self.group(table, &context, at, defaults, providers) {
                if !seen.insert(group.name.clone()) {
                    self.problem(
                        Reader::value_span(table, "name"),
                        format!("group `{}` is declared twice", group.name),
                    );
                }
                groups.push(group);
            }
        }
        groups
    }

    fn group(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        at: Span,
        defaults: &Limits,
        providers: &BTreeMap<String, ProviderSpec>,
    ) -> Option<GroupPolicy> {
        self.check_keys(table, GROUP_KEYS, context);
        let name = self
            .required_string(table, "name", context, at.clone())
            .and_then(|name| match GroupName::parse(&name) {
                Ok(name) => Some(name),
                Err(error) => {
                    self.problem(Reader::value_span(table, "name"), error.to_string());
                    None
                }
            });
        let description = self
            .string(table, "description", context)
            .unwrap_or_default();
        let provider = self.required_string(table, "provider", context, at.clone());
        if let Some(provider) = &provider {
            if !providers.contains_key(provider) {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                self.problem(
                    Reader::value_span(table, "provider"),
                    format!(
                        "{context} uses unknown provider `{provider}` (declared: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        let target = self.required_string(table, "target", context, at.clone());
        let approvers = self
            .subjects(table, "approvers", context)
            .unwrap_or_default();
        let approvals_required = self.approvals_required(table, context, &approvers);
        let requesters = self
            .subjects(table, "requesters", context)
            .unwrap_or_else(|| vec![Subject::Anyone]);
        let channel = self.channel(table, context);
        let teams_channel = self
            .string(table, "teams_channel", context)
            .map(ChannelId::new);
        let limits = self.limits(table, *defaults, context, at.clone());
        let auto_approve = self.auto_approve(table, context, &limits);
        let escalate_after = self.duration(table, "escalate_after", context);
        let escalate_to = self
            .subjects(table, "escalate_to", context)
            .unwrap_or_default();
        if escalate_after.is_some() == escalate_to.is_empty() {
            self.problem(
                Reader::value_span(table, "escalate_after")
                    .or_else(|| Reader::value_span(table, "escalate_to")),
                format!(
                    "{context}: escalate_after and escalate_to go together; set both or neither"
                ),
            );
        }
        let sweep = self.sweep(table, context, providers);
        let sweep_interval = self
            .duration(table, "sweep_interval", context)
            .unwrap_or(DEFAULT_SWEEP_INTERVAL);
        let standing = self
            .string_list(table, "standing", context)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| s)
            .collect();

        let direct_approvers = approvers
            .iter()
            .any(|s| matches!(s, Subject::SlackUser(_) | Subject::TeamsUser(_)));
        if approvers.is_empty() && auto_approve.is_none() {
            self.problem(
                at.clone(),
                format!("{context} has no `approvers`, so nobody could approve its requests"),
            );
        }
        if approvers.contains(&Subject::Anyone) {
            self.problem(
                Reader::value_span(table, "approvers"),
                format!("{context}: \"*\" is not allowed in `approvers`; name the people or user groups who approve"),
            );
        }
        if channel.is_none()
            && teams_channel.is_none()
            && !direct_approvers
            && !approvers.is_empty()
        {
            self.problem(
                at,
                format!("{context} has no `channel` or `teams_channel`, and no approver to send cards to directly"),
            );
        }
        Some(GroupPolicy {
            name: name?,
            description,
            provider: provider?,
            target: target?,
            approvers,
            approvals_required,
            requesters,
            channel,
            teams_channel,
            limits,
            auto_approve,
            escalate_after,
            escalate_to,
            sweep,
            sweep_interval,
            standing,
        })
    }

    fn approvals_required(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        approvers: &[Subject],
    ) -> u32 {
        let Some(item) = table.get("approvals_required") else {
            return 1;
        };
        let span = Reader::value_span(table, "approvals_required");
        let Some(required) = item.as_integer() else {
            self.problem(
                span,
                format!("`approvals_required` in {context} must be a whole number"),
            );
            return 1;
        };
        if required < 1 {
            self.problem(
                span,
                format!("`approvals_required` in {context} must be at least 1"),
            );
            return 1;
        }
        // A user group may hold any number of approvers, so the count can
        // only be checked when the list names people.
        let has_user_group = approvers.iter().any(|s| s.user_group().is_some());
        if !has_user_group && required as usize > approvers.len() {
            self.problem(
                span,
                format!(
                    "{context}: approvals_required is {required} but only {} approver(s) are listed",
                    approvers.len()
                ),
            );
        }
        u32::try_from(required).unwrap_or(u32::MAX)
    }

    fn channel(&mut self, table: &dyn TableLike, context: &str) -> Option<ChannelId> {
        let text = self.string(table, "channel", context)?;
        let looks_like_channel = text.len() >= 2
            && text.starts_with(['C', 'G', 'D'])
            && text
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !looks_like_channel {
            self.problem(
                Reader::value_span(table, "channel"),
                format!("`channel` in {context} must be a Slack channel id like C0APPROVALS (not a #name)"),
            );
            return None;
        }
        Some(ChannelId::new(text))
    }

    fn auto_approve(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        limits: &Limits,
    ) -> Option<AutoApprove> {
        let item = table.get("auto_approve")?;
        let inner_context = format!("auto_approve of {context}");
        let Some(rule) = item.as_table_like() else {
            self.problem(item.span(), format!("{inner_context} must be a table like {{ requesters = [...], max_duration = \"30m\" }}"));
            return None;
        };
        self.check_keys(rule, AUTO_APPROVE_KEYS, &inner_context);
        let requesters = self.subjects(rule, "requesters", &inner_context);
        if requesters.is_none() {
            self.problem(
                item.span(),
                format!("{inner_context} is missing `requesters`"),
            );
        }
        let max_duration = self
            .duration(rule, "max_duration", &inner_context)
            .unwrap_or(limits.max_duration);
        if max_duration > limits.max_duration {
            self.problem(
                Reader::value_span(rule, "max_duration"),
                format!(
                    "{inner_context}: max_duration ({max_duration}) is above the group's max_duration ({})",
                    limits.max_duration
                ),
            );
        }
        Some(AutoApprove {
            requesters: requesters?,
            max_duration,
        })
    }

    fn sweep(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        providers: &BTreeMap<String, ProviderSpec>,
    ) -> SweepMode {
        let Some(text) = self.string(table, "sweep", context) else {
            return SweepMode::Off;
        };
        let span = Reader::value_span(table, "sweep");
        let mode = match text.as_str() {
            "off" => return SweepMode::Off,
            "report" => SweepMode::Report,
            "enforce" => SweepMode::Enforce,
            other => {
                self.problem(span, format!("`sweep` in {context} must be \"off\", \"report\" or \"enforce\", not `{other}`"));
                return SweepMode::Off;
            }
        };
        let provider = table
            .get("provider")
            .and_then(|item| item.as_str())
            .and_then(|name| providers.get(name));
        if let Some(spec) = provider {
            if !spec.kind.lists_holders() {
                let how = match spec.kind {
                    ProviderKind::Webhook { .. } => " (give it a `holders_url`)",
                    ProviderKind::Exec { .. } => " (give it a `holders` command)",
                    _ => "",
                };
                self.problem(
                    span,
                    format!(
                        "{context}: sweep = \"{text}\" needs a provider that lists holders, and provider `{}` cannot{how}",
                        spec.name
                    ),
                );
                return SweepMode::Off;
            }
        }
        mode
    }

    fn identities(
        &mut self,
        root: &dyn TableLike,
        providers: &BTreeMap<String, ProviderSpec>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut identities = BTreeMap::new();
        let Some(item) = root.get("identities") else {
            return identities;
        };
        let Some(table) = item.as_table_like() else {
            self.problem(
                item.span(),
                "`identities` must be a table like U0LEAD = { pg = \"lead_admin\" }",
            );
            return identities;
        };
        for (user, item) in table.iter() {
            let at = Reader::key_span(table, user);
            let Some(per_provider) = item.as_table_like() else {
                self.problem(
                    at,
                    format!("identities.{user} must be a table like {{ pg = \"lead_admin\" }}"),
                );
                continue;
            };
            let mut overrides = BTreeMap::new();
            for (provider, value) in per_provider.iter() {
                let span = Reader::key_span(per_provider, provider);
                if !providers.contains_key(provider) {
                    self.problem(
                        span.clone(),
                        format!("identities.{user} names unknown provider `{provider}`"),
                    );
                }
                match value.as_str() {
                    Some(principal) if !principal.trim().is_empty() => {
                        overrides.insert(provider.to_string(), principal.to_string());
                    }
                    _ => self.problem(
                        span,
                        format!("identities.{user}.{provider} must be a non-empty string"),
                    ),
                }
            }
            identities.insert(user.to_string(), overrides);
        }
        identities
    }
}

/// The `{name}` placeholders in a template.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                names.push(&after[..close]);
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    names
}

/// The allowed word within edit distance 2 of `word`, if there is one.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests;
