//! Providers really grant and revoke access. The contract
//! ([`Provider`]): `grant` and `revoke` are idempotent, take the same
//! [`Access`] description, and report failure as a [`ProviderError`] whose
//! message is safe to show (no secrets, no credentials in URLs).

pub mod exec;
pub mod principal;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::EnvSource;
use crate::domain::policy::{Policy, ProviderKind};

/// Everything a provider needs to know about one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    pub request_id: String,
    pub grant_id: String,
    pub user: AccessUser,
    /// The user as the provider knows them (from the principal template).
    pub principal: String,
    pub group: String,
    pub target: String,
    pub expires_at: Option<DateTime<Utc>>,
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
}

impl ProviderError {
    pub fn new(provider: &str, message: impl Into<String>) -> Self {
        Self {
            provider: provider.to_string(),
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError>;
    async fn revoke(&self, access: &Access) -> Result<(), ProviderError>;
}

/// The providers of a policy, by name.
pub type Providers = HashMap<String, Arc<dyn Provider>>;

/// Build every provider the policy declares; secrets come from `env`.
/// On failure, one message per provider that could not be built.
pub fn build(policy: &Policy, env: &EnvSource) -> Result<Providers, Vec<String>> {
    let mut providers: Providers = HashMap::new();
    let mut problems = Vec::new();
    for (name, spec) in &policy.providers {
        let built: Result<Arc<dyn Provider>, String> = match &spec.kind {
            ProviderKind::Webhook { url, secret_env } => match env.get(secret_env) {
                Some(secret) => {
                    webhook::WebhookProvider::new(name, url, secret, spec.timeout.as_std())
                        .map(|p| Arc::new(p) as Arc<dyn Provider>)
                }
                None => Err(format!(
                    "provider {name}: environment variable {secret_env} (its secret_env) is not set"
                )),
            },
            ProviderKind::Exec { grant, revoke } => Ok(Arc::new(exec::ExecProvider::new(
                name,
                grant.clone(),
                revoke.clone(),
                spec.timeout.as_std(),
            ))),
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
