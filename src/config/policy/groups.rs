//! `[[groups]]`: each group's keys, its approvers and approval count, its
//! channels, auto-approval and sweep settings.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::{Item, TableLike, Value};

use super::reader::{Reader, Span};
use crate::domain::duration::HumanDuration;
use crate::domain::hours::Hours;
use crate::domain::ids::{ChannelId, GroupName};
use crate::domain::on_call::Schedule;
use crate::domain::policy::{
    ApprovalStep, AutoApprove, BreakGlass, GroupPolicy, Limits, ProviderKind, ProviderSpec,
    ReasonPattern, Subject, SweepMode,
};

pub(super) const GROUP_KEYS: &[&str] = &[
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
    "activity_interval",
    "idle_release",
    "sweep_unused",
    "reason_pattern",
    "break_glass",
    "steps",
];
const STEP_KEYS: &[&str] = &["approvers", "approvals_required"];
const BREAK_GLASS_KEYS: &[&str] = &["requesters", "max_duration"];
const AUTO_APPROVE_KEYS: &[&str] = &["requesters", "on_call", "hours", "max_duration"];
pub(super) const DEFAULT_SWEEP_INTERVAL: HumanDuration = HumanDuration::from_secs(15 * 60);

impl Reader<'_> {
    pub(super) fn groups(
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

    pub(super) fn group(
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
        let steps = match table.get("steps") {
            Some(item) => self.steps(table, item, context),
            None => {
                let approvers = self
                    .subjects(table, "approvers", context)
                    .unwrap_or_default();
                let approvals_required = self.approvals_required(table, context, &approvers);
                vec![ApprovalStep {
                    approvers,
                    approvals_required,
                }]
            }
        };
        let mut approvers: Vec<Subject> = Vec::new();
        for subject in steps.iter().flat_map(|step| &step.approvers) {
            if !approvers.contains(subject) {
                approvers.push(subject.clone());
            }
        }
        let approvals_required = steps.first().map_or(1, |step| step.approvals_required);
        let requesters = self
            .subjects_or_anyone(table, "requesters", context)
            .unwrap_or_else(|| vec![Subject::Anyone]);
        let channel = self.channel(table, context);
        let teams_channel = self
            .string(table, "teams_channel", context)
            .map(ChannelId::new);
        let limits = self.limits(table, *defaults, context, at.clone());
        let auto_approve = self.auto_approve(table, context, &limits);
        let break_glass = self.break_glass(table, context, &limits);
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

        let reason_pattern = self
            .string(table, "reason_pattern", context)
            .and_then(|source| match ReasonPattern::parse(&source) {
                Ok(pattern) => Some(pattern),
                Err(why) => {
                    self.problem(
                        Reader::value_span(table, "reason_pattern"),
                        format!("`reason_pattern` in {context}: {why}"),
                    );
                    None
                }
            });
        let idle_release = self.duration(table, "idle_release", context);
        let sweep_unused = self.duration(table, "sweep_unused", context);
        self.check_activity(
            table,
            context,
            providers,
            &limits,
            idle_release,
            sweep,
            sweep_unused,
        );

        let direct_approvers = approvers.iter().any(|s| {
            matches!(
                s,
                Subject::SlackUser(_)
                    | Subject::TeamsUser(_)
                    | Subject::Email(_)
                    | Subject::OnCall(_)
            )
        });
        // A broken `steps` list has said what is wrong with it already.
        if approvers.is_empty() && auto_approve.is_none() && table.get("steps").is_none() {
            self.problem(
                at.clone(),
                format!("{context} has no `approvers`, so nobody could approve its requests"),
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
            steps,
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
            idle_release,
            sweep_unused,
            reason_pattern,
            break_glass,
        })
    }

    /// `break_glass = { requesters = [...], max_duration = "1h" }`: the
    /// people must be named (not `"*"`), and the time stays within the
    /// group's maximum.
    fn break_glass(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        limits: &Limits,
    ) -> Option<BreakGlass> {
        let item = table.get("break_glass")?;
        let inner_context = format!("break_glass of {context}");
        let Some(rule) = item.as_table_like() else {
            self.problem(item.span(), format!("{inner_context} must be a table like {{ requesters = [\"U0ONCALL\"], max_duration = \"1h\" }}"));
            return None;
        };
        self.check_keys(rule, BREAK_GLASS_KEYS, &inner_context);
        let requesters = self
            .subjects(rule, "requesters", &inner_context)
            .unwrap_or_default();
        if requesters.is_empty() {
            self.problem(
                item.span(),
                format!("{inner_context} needs `requesters`: the people who may take access without approval"),
            );
            return None;
        }
        let max_duration = self
            .duration(rule, "max_duration", &inner_context)
            .unwrap_or(limits.max_duration);
        if max_duration > limits.max_duration || max_duration < limits.min_duration {
            self.problem(
                Reader::value_span(rule, "max_duration"),
                format!(
                    "{inner_context}: max_duration ({max_duration}) is outside the group's min_duration..max_duration ({}..{})",
                    limits.min_duration, limits.max_duration
                ),
            );
        }
        Some(BreakGlass {
            requesters,
            max_duration,
        })
    }

    /// `idle_release` and `sweep_unused` need a provider that can tell
    /// whether access is used, and sane durations.
    #[allow(clippy::too_many_arguments)]
    fn check_activity(
        &mut self,
        table: &dyn TableLike,
        context: &str,
        providers: &BTreeMap<String, ProviderSpec>,
        limits: &Limits,
        idle_release: Option<HumanDuration>,
        sweep: SweepMode,
        sweep_unused: Option<HumanDuration>,
    ) {
        let interval = limits.activity_interval;
        if interval.as_secs() == 0 {
            self.problem(
                Reader::value_span(table, "activity_interval"),
                format!("{context}: activity_interval must be at least 1s"),
            );
        }
        if let Some(idle) = idle_release {
            let span = Reader::value_span(table, "idle_release");
            if idle.as_secs() < interval.as_secs().saturating_mul(2) {
                self.problem(
                    span,
                    format!(
                        "{context}: idle_release ({idle}) must be at least twice activity_interval ({interval}): use is sampled every activity_interval"
                    ),
                );
            } else if idle > limits.max_duration {
                self.problem(
                    span,
                    format!(
                        "{context}: idle_release ({idle}) is longer than the group's max_duration ({}), so it could never apply",
                        limits.max_duration
                    ),
                );
            }
        }
        // A sweep samples its holders afresh, so sweep_unused may be any length.
        if sweep_unused.is_some() && sweep == SweepMode::Off {
            self.problem(
                Reader::value_span(table, "sweep_unused"),
                format!("{context}: sweep_unused needs sweep = \"report\" or \"enforce\""),
            );
        }
        let Some(key) = [
            ("idle_release", idle_release),
            ("sweep_unused", sweep_unused),
        ]
        .into_iter()
        .find_map(|(key, value)| value.map(|_| key)) else {
            return;
        };
        let provider = table
            .get("provider")
            .and_then(|item| item.as_str())
            .and_then(|name| providers.get(name));
        if let Some(spec) = provider {
            if let Some(why) = spec.kind.cannot_tell_activity() {
                self.problem(
                    Reader::value_span(table, key),
                    format!(
                        "{context}: {key} needs a provider that can tell whether access is used, and provider `{}` ({}) cannot: {why}",
                        spec.name,
                        spec.kind.label()
                    ),
                );
            }
        }
    }

    /// `steps = [{ approvers = [...], approvals_required = 1 }, ...]`: the
    /// approval chain, in place of `approvers`.
    fn steps(&mut self, group: &dyn TableLike, item: &Item, context: &str) -> Vec<ApprovalStep> {
        for replaced in ["approvers", "approvals_required"] {
            if group.get(replaced).is_some() {
                self.problem(
                    Reader::key_span(group, replaced),
                    format!("{context}: `steps` replaces `{replaced}`; give each step its approvers (and approvals_required)"),
                );
            }
        }
        let tables: Vec<&dyn TableLike> = match (item.as_array(), item.as_array_of_tables()) {
            (Some(array), _) => array
                .iter()
                .filter_map(|value| value.as_inline_table().map(|t| t as &dyn TableLike))
                .collect(),
            (_, Some(tables)) => tables.iter().map(|t| t as &dyn TableLike).collect(),
            _ => Vec::new(),
        };
        let all_tables = item
            .as_array()
            .map_or(true, |array| array.len() == tables.len());
        if tables.is_empty() || !all_tables {
            self.problem(
                item.span(),
                format!("`steps` in {context} must be a list of tables like [{{ approvers = [\"U0LEAD\"] }}, {{ approvers = [\"S0SECURITY\"], approvals_required = 1 }}]"),
            );
            return Vec::new();
        }
        let mut steps = Vec::new();
        for (index, step) in tables.into_iter().enumerate() {
            let step_context = format!("step {} of {context}", index + 1);
            self.check_keys(step, STEP_KEYS, &step_context);
            let approvers = self
                .subjects(step, "approvers", &step_context)
                .unwrap_or_default();
            if approvers.is_empty() {
                self.problem(
                    Reader::value_span(group, "steps"),
                    format!("{step_context} has no `approvers`, so nobody could meet it"),
                );
            }
            let approvals_required = self.approvals_required(step, &step_context, &approvers);
            steps.push(ApprovalStep {
                approvers,
                approvals_required,
            });
        }
        steps
    }

    pub(super) fn approvals_required(
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

    pub(super) fn channel(&mut self, table: &dyn TableLike, context: &str) -> Option<ChannelId> {
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

    pub(super) fn auto_approve(
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
        let requesters = self.subjects_or_anyone(rule, "requesters", &inner_context);
        let hours = self
            .string(rule, "hours", &inner_context)
            .and_then(|text| match Hours::parse(&text) {
                Ok(hours) => Some(hours),
                Err(why) => {
                    self.problem(
                        Reader::value_span(rule, "hours"),
                        format!("`hours` in {inner_context}: {why}"),
                    );
                    None
                }
            });
        let on_call = self.schedules(rule, "on_call", &inner_context);
        if ["requesters", "on_call", "hours"]
            .iter()
            .all(|key| rule.get(key).is_none())
        {
            self.problem(
                item.span(),
                format!("{inner_context} needs a condition: `requesters`, `on_call`, `hours`, or several"),
            );
            return None;
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
            requesters,
            hours,
            on_call,
            max_duration,
        })
    }

    /// A list of on-call schedules (`auto_approve.on_call`); an empty list
    /// would approve nobody and is refused.
    fn schedules(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<Vec<Schedule>> {
        let entries = self.string_list(table, key, context)?;
        if entries.is_empty() {
            self.problem(
                Reader::value_span(table, key),
                format!("`{key}` in {context} is empty; name schedules like \"pagerduty:PABC123\" or \"opsgenie:Platform\""),
            );
            return None;
        }
        let mut schedules = Vec::new();
        for (text, span) in entries {
            match Schedule::parse(&text) {
                Ok(schedule) => schedules.push(schedule),
                Err(why) => self.problem(span, format!("in `{key}` of {context}: {why}")),
            }
        }
        Some(schedules)
    }

    pub(super) fn sweep(
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
}
