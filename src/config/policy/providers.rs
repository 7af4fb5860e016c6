//! `[providers.<name>]`: which kinds exist, the keys each takes, and the
//! placeholders its templates may use.

use std::collections::BTreeMap;

use toml_edit::TableLike;

use super::reader::{Reader, Span};
use crate::domain::duration::HumanDuration;
use crate::domain::policy::{ProviderKind, ProviderSpec};

const WEBHOOK_KEYS: &[&str] = &[
    "kind",
    "url",
    "secret_env",
    "holders_url",
    "activity_url",
    "principal",
    "timeout",
];
const EXEC_KEYS: &[&str] = &[
    "kind",
    "grant",
    "revoke",
    "holders",
    "activity",
    "principal",
    "timeout",
];
const POSTGRES_KEYS: &[&str] = &[
    "kind",
    "url_env",
    "terminate_sessions",
    "principal",
    "timeout",
];
const SLACK_USERGROUP_KEYS: &[&str] = &["kind", "token_env", "principal", "timeout"];
const MYSQL_KEYS: &[&str] = &[
    "kind",
    "url_env",
    "default_role",
    "kill_sessions",
    "principal",
    "timeout",
];
const KUBERNETES_KEYS: &[&str] = &[
    "kind",
    "kubeconfig_env",
    "subject_kind",
    "principal",
    "timeout",
];
const AWS_KEYS: &[&str] = &[
    "kind",
    "instance_arn",
    "identity_store_id",
    "endpoint_url",
    "principal",
    "timeout",
];
const OKTA_KEYS: &[&str] = &["kind", "org_url", "api_token_env", "principal", "timeout"];
const ENTRA_KEYS: &[&str] = &[
    "kind",
    "tenant_id",
    "client_id",
    "client_secret_env",
    "graph_url",
    "token_url",
    "principal",
    "timeout",
];
const PROVIDER_KINDS: &[&str] = &[
    "webhook",
    "exec",
    "postgres",
    "slack_usergroup",
    "mysql",
    "kubernetes",
    "aws_identity_center",
    "okta",
    "entra",
];

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
/// The token a `slack_usergroup` provider uses unless it names another.
const DEFAULT_SLACK_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";

impl Reader<'_> {
    pub(super) fn providers(&mut self, root: &dyn TableLike) -> BTreeMap<String, ProviderSpec> {
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
            if crate::domain::identity::LINK_KEYS.contains(&name) {
                self.problem(
                    at.clone(),
                    format!(
                        "{context}: `{name}` cannot name a provider: [identities] entries use it to link a person's ids ({}); pick another name",
                        crate::domain::identity::LINK_KEYS.join(", ")
                    ),
                );
            }
            if let Some(spec) = self.provider(name, provider, &context, at) {
                providers.insert(name.to_string(), spec);
            }
        }
        providers
    }

    pub(super) fn provider(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        context: &str,
        at: Span,
    ) -> Option<ProviderSpec> {
        let kind = self.required_string(table, "kind", context, at.clone())?;
        // A Slack user group holds Slack user ids, whatever else a user is.
        let default_principal = match kind.as_str() {
            "slack_usergroup" => "{slack_user_id}",
            // An identity provider knows people by their login: the email.
            "okta" | "entra" | "kubernetes" | "aws_identity_center" => "{email}",
            _ => DEFAULT_PRINCIPAL,
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
                    self.check_http_scheme(table, "url", context, url);
                }
                let secret_env = self.required_string(table, "secret_env", context, at);
                let holders_url = self.optional_http_url(table, "holders_url", context);
                let activity_url = self.optional_http_url(table, "activity_url", context);
                ProviderKind::Webhook {
                    url: url?,
                    secret_env: secret_env?,
                    holders_url,
                    activity_url,
                }
            }
            "exec" => {
                self.check_keys(table, EXEC_KEYS, context);
                let grant = self.command(table, "grant", context, at.clone());
                let revoke = self.command(table, "revoke", context, at.clone());
                let holders = match table.get("holders") {
                    Some(_) => Some(self.command(table, "holders", context, at.clone())?),
                    None => None,
                };
                let activity = match table.get("activity") {
                    Some(_) => Some(self.command(table, "activity", context, at)?),
                    None => None,
                };
                ProviderKind::Exec {
                    grant: grant?,
                    revoke: revoke?,
                    holders,
                    activity,
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
            "mysql" => {
                self.check_keys(table, MYSQL_KEYS, context);
                let url_env = self.required_string(table, "url_env", context, at);
                ProviderKind::Mysql {
                    url_env: url_env?,
                    default_role: self
                        .boolean(table, "default_role", context)
                        .unwrap_or(false),
                    kill_sessions: self
                        .boolean(table, "kill_sessions", context)
                        .unwrap_or(false),
                }
            }
            "kubernetes" => {
                self.check_keys(table, KUBERNETES_KEYS, context);
                let subject_kind = self
                    .string(table, "subject_kind", context)
                    .unwrap_or_else(|| "User".to_string());
                if subject_kind != "User" && subject_kind != "Group" {
                    self.problem(
                        Reader::value_span(table, "subject_kind"),
                        format!("`subject_kind` in {context} must be \"User\" or \"Group\""),
                    );
                    return None;
                }
                ProviderKind::Kubernetes {
                    kubeconfig_env: self.string(table, "kubeconfig_env", context),
                    subject_kind,
                }
            }
            "aws_identity_center" => {
                self.check_keys(table, AWS_KEYS, context);
                let instance_arn = self.required_string(table, "instance_arn", context, at.clone());
                let identity_store_id =
                    self.required_string(table, "identity_store_id", context, at);
                let endpoint_url = match table.get("endpoint_url") {
                    Some(_) => Some(self.http_url(table, "endpoint_url", context, None)?),
                    None => None,
                };
                if let Some(arn) = &instance_arn {
                    if !arn.starts_with("arn:") {
                        self.problem(
                            Reader::value_span(table, "instance_arn"),
                            format!("`instance_arn` in {context} must be the Identity Center instance's ARN (arn:aws:sso:::instance/ssoins-…)"),
                        );
                    }
                }
                ProviderKind::AwsIdentityCenter {
                    instance_arn: instance_arn?,
                    identity_store_id: identity_store_id?,
                    endpoint_url,
                }
            }
            "okta" => {
                self.check_keys(table, OKTA_KEYS, context);
                let org_url = self.http_url(table, "org_url", context, at.clone());
                let api_token_env = self.required_string(table, "api_token_env", context, at);
                ProviderKind::Okta {
                    org_url: org_url?,
                    api_token_env: api_token_env?,
                }
            }
            "entra" => {
                self.check_keys(table, ENTRA_KEYS, context);
                let tenant_id = self.required_string(table, "tenant_id", context, at.clone());
                let client_id = self.required_string(table, "client_id", context, at.clone());
                let client_secret_env =
                    self.required_string(table, "client_secret_env", context, at);
                let graph_url = match table.get("graph_url") {
                    Some(_) => self.http_url(table, "graph_url", context, None)?,
                    None => crate::providers::entra::DEFAULT_GRAPH_URL.to_string(),
                };
                let tenant_id = tenant_id?;
                let tenant_ok = !tenant_id.is_empty()
                    && tenant_id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !tenant_ok {
                    self.problem(
                        Reader::value_span(table, "tenant_id"),
                        format!("`tenant_id` in {context} must be the tenant's id (a GUID) or its domain"),
                    );
                    return None;
                }
                let token_url = match table.get("token_url") {
                    Some(_) => self.http_url(table, "token_url", context, None)?,
                    None => {
                        format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
                    }
                };
                ProviderKind::Entra {
                    client_id: client_id?,
                    client_secret_env: client_secret_env?,
                    graph_url,
                    token_url,
                }
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

    /// A required http(s) URL.
    fn http_url(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
        at: Span,
    ) -> Option<String> {
        let url = self.required_string(table, key, context, at)?;
        self.check_http_scheme(table, key, context, &url)
            .then_some(url)
    }

    /// Whether `url` (the value of `key`) is http(s); if not, says so.
    fn check_http_scheme(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
        url: &str,
    ) -> bool {
        let http = url.starts_with("https://") || url.starts_with("http://");
        if !http {
            self.problem(
                Reader::value_span(table, key),
                format!("`{key}` in {context} must be an http(s) URL"),
            );
        }
        http
    }

    /// An optional key that, when given, must be an http(s) URL.
    fn optional_http_url(
        &mut self,
        table: &dyn TableLike,
        key: &str,
        context: &str,
    ) -> Option<String> {
        let url = self.string(table, key, context)?;
        self.check_http_scheme(table, key, context, &url);
        Some(url)
    }

    pub(super) fn command(
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

    pub(super) fn check_placeholders(
        &mut self,
        template: &str,
        allowed: &[&str],
        span: Span,
        context: &str,
    ) {
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
