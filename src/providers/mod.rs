//! Providers really grant and revoke access. The contract
//! ([`Provider`]): `grant` and `revoke` are idempotent, take the same
//! [`Access`] description, and report failure as a [`ProviderError`] whose
//! message is safe to show (no secrets, no credentials in URLs); `holders`
//! lists who holds a target now, for the sweep. Every call has a deadline.

pub mod aws;
pub mod entra;
pub mod exclusive;
pub mod exec;
pub mod kubernetes;
pub mod mysql;
pub mod okta;
pub mod postgres;
pub mod principal;
mod rest;
pub mod slack_usergroup;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::EnvSource;
use crate::domain::policy::{Policy, ProviderKind};

/// Everything a provider needs to know about one grant — or, for standing
/// access a sweep removes, about one holder (no request, and a chat user
/// only if jitbot knows who the principal is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub user: Option<AccessUser>,
    /// The user as the provider knows them (from the principal template).
    pub principal: String,
    pub group: String,
    pub target: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// For a revoke: what [`Provider::grant_details`] said the grant made,
    /// recorded with it (empty for a grant, for standing access, and for
    /// grants recorded before details were).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessUser {
    pub platform: String,
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub message: String,
    /// Retrying cannot help (the system refused the call: no such user, no
    /// permission): a grant fails at once, with this explanation. A revoke
    /// is retried whatever the error — access must end.
    pub permanent: bool,
}

impl ProviderError {
    /// A failure that may pass (an outage, throttling, a 5xx).
    pub fn new(provider: &str, message: impl Into<String>) -> Self {
        Self {
            provider: provider.to_string(),
            message: message.into(),
            permanent: false,
        }
    }

    /// A refusal that retrying cannot change (a 4xx).
    pub fn permanent(provider: &str, message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::new(provider, message)
        }
    }
}

/// What a provider can tell of a principal's use of a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// In use right now (an open session, a live connection).
    pub in_use: bool,
    /// When it was last used, if the system keeps that.
    pub last_used: Option<DateTime<Utc>>,
}

/// Remove every occurrence of each secret from a message that is about to
/// be shown, logged or audited — a last line of defence for errors that
/// echo what they were given (a connection string, a token).
pub fn redact(message: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| secret.len() >= 4)
        .fold(message.to_string(), |text, secret| {
            text.replace(secret, "[redacted]")
        })
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError>;
    async fn revoke(&self, access: &Access) -> Result<(), ProviderError>;
    /// What a grant of `access` makes beyond its principal and target (a
    /// binding's namespace and name, an assignment's instance), recorded
    /// with the grant so that its revoke — handed them back in
    /// [`Access::details`] — undoes exactly that, whatever the
    /// configuration says by then.
    fn grant_details(&self, access: &Access) -> BTreeMap<String, String> {
        let _ = access;
        BTreeMap::new()
    }
    /// The principals holding `target` now. A provider configured without
    /// a way to list them answers with an error saying so (check-config
    /// refuses a sweep on such a provider, so the sweep never asks).
    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError>;
    /// Whether `principal` uses `target`. Providers that cannot tell keep
    /// this answer (check-config refuses `idle_release` and `sweep_unused`
    /// on them, so nothing asks).
    async fn activity(&self, principal: &str, target: &str) -> Result<Activity, ProviderError> {
        let _ = (principal, target);
        Err(ProviderError::permanent(
            "provider",
            "this provider cannot tell whether access is used",
        ))
    }
}

/// The providers of a policy, by name.
pub type Providers = HashMap<String, Arc<dyn Provider>>;

/// Build every provider the policy declares; secrets come from `env`.
/// On failure, one message per provider that could not be built.
/// Build every provider the policy names. Calls that must not interleave
/// are serialised through `exclusive` (across replicas, when they share a
/// database).
pub fn build(
    policy: &Policy,
    env: &EnvSource,
    exclusive: Arc<dyn exclusive::Exclusive>,
) -> Result<Providers, Vec<String>> {
    let mut providers: Providers = HashMap::new();
    let mut problems = Vec::new();
    for (name, spec) in &policy.providers {
        let built: Result<Arc<dyn Provider>, String> = match &spec.kind {
            ProviderKind::Webhook {
                url,
                secret_env,
                holders_url,
                activity_url,
            } => required_env(env, name, secret_env, "secret_env").and_then(|secret| {
                webhook::WebhookProvider::new(
                    name,
                    webhook::Urls {
                        call: url,
                        holders: holders_url.as_deref(),
                        activity: activity_url.as_deref(),
                    },
                    secret,
                    spec.timeout.as_std(),
                )
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
            ProviderKind::Exec {
                grant,
                revoke,
                holders,
                activity,
            } => Ok(Arc::new(exec::ExecProvider::new(
                name,
                exec::Commands {
                    grant: grant.clone(),
                    revoke: revoke.clone(),
                    holders: holders.clone(),
                    activity: activity.clone(),
                },
                spec.timeout.as_std(),
            ))),
            ProviderKind::Postgres {
                url_env,
                terminate_sessions,
            } => required_env(env, name, url_env, "url_env").and_then(|url| {
                postgres::PostgresProvider::new(
                    name,
                    &url,
                    *terminate_sessions,
                    spec.timeout.as_std(),
                )
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
            ProviderKind::SlackUsergroup { token_env } => {
                required_env(env, name, token_env, "token_env").and_then(|token| {
                    let api_url = env
                        .get(crate::config::settings::SLACK_API_URL_VAR)
                        .unwrap_or_else(|| crate::config::settings::DEFAULT_SLACK_API_URL.into());
                    slack_usergroup::SlackUsergroupProvider::new(
                        name,
                        &api_url,
                        token,
                        spec.timeout.as_std(),
                        exclusive.clone(),
                    )
                    .map(|p| Arc::new(p) as Arc<dyn Provider>)
                })
            }
            ProviderKind::Mysql {
                url_env,
                default_role,
                kill_sessions,
            } => required_env(env, name, url_env, "url_env").and_then(|url| {
                mysql::MysqlProvider::new(
                    name,
                    &url,
                    *default_role,
                    *kill_sessions,
                    spec.timeout.as_std(),
                )
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
            ProviderKind::Kubernetes {
                kubeconfig_env,
                subject_kind,
            } => {
                let cluster = match kubeconfig_env {
                    Some(var) => required_env(env, name, var, "kubeconfig_env").and_then(|path| {
                        kubernetes::Cluster::from_kubeconfig(&path)
                            .map_err(|why| format!("provider {name}: {why}"))
                    }),
                    None => kubernetes::Cluster::in_cluster()
                        .map_err(|why| format!("provider {name}: {why}")),
                };
                cluster.and_then(|cluster| {
                    kubernetes::KubernetesProvider::new(
                        name,
                        cluster,
                        subject_kind,
                        spec.timeout.as_std(),
                    )
                    .map(|p| Arc::new(p) as Arc<dyn Provider>)
                })
            }
            ProviderKind::AwsIdentityCenter {
                instance_arn,
                identity_store_id,
                endpoint_url,
            } => aws_environment(env, name).and_then(|(region, credentials)| {
                aws::IdentityCenterProvider::new(
                    name,
                    aws::AwsSettings {
                        instance_arn,
                        identity_store_id,
                        endpoint_url: endpoint_url.as_deref(),
                        region,
                        credentials,
                    },
                    spec.timeout.as_std(),
                )
                .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
            ProviderKind::Okta {
                org_url,
                api_token_env,
            } => required_env(env, name, api_token_env, "api_token_env").and_then(|token| {
                okta::OktaProvider::new(name, org_url, token, spec.timeout.as_std())
                    .map(|p| Arc::new(p) as Arc<dyn Provider>)
            }),
            ProviderKind::Entra {
                client_id,
                client_secret_env,
                graph_url,
                token_url,
            } => required_env(env, name, client_secret_env, "client_secret_env").and_then(
                |client_secret| {
                    entra::EntraProvider::new(
                        name,
                        entra::EntraSettings {
                            graph_url,
                            token_url,
                            client_id,
                            client_secret,
                        },
                        spec.timeout.as_std(),
                    )
                    .map(|p| Arc::new(p) as Arc<dyn Provider>)
                },
            ),
        };
        match built {
            Ok(provider) => {
                providers.insert(name.clone(), provider);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(providers)
    } else {
        Err(problems)
    }
}

/// The region and credentials of the standard AWS environment variables.
fn aws_environment(
    env: &EnvSource,
    provider: &str,
) -> Result<(String, aws::sigv4::Credentials), String> {
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .ok_or_else(|| format!("provider {provider}: set AWS_REGION (or AWS_DEFAULT_REGION)"))?;
    let access_key_id = required_env(env, provider, "AWS_ACCESS_KEY_ID", "AWS credentials")?;
    let secret = required_env(env, provider, "AWS_SECRET_ACCESS_KEY", "AWS credentials")?;
    Ok((
        region,
        aws::sigv4::Credentials {
            access_key_id,
            secret_access_key: crate::config::Secret::new(secret),
            session_token: env.get("AWS_SESSION_TOKEN").map(crate::config::Secret::new),
        },
    ))
}

fn required_env(env: &EnvSource, provider: &str, var: &str, key: &str) -> Result<String, String> {
    env.get(var).ok_or_else(|| {
        format!("provider {provider}: environment variable {var} (its {key}) is not set")
    })
}
