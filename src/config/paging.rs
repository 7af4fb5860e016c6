//! Paging services jitbot asks who is on call (`auto_approve.on_call` and
//! on-call approvers): PagerDuty (`PAGERDUTY_API_TOKEN`, `PAGERDUTY_API_URL`)
//! and Opsgenie (`OPSGENIE_API_KEY`, `OPSGENIE_API_URL`). Each may be
//! missing; then nobody counts as on call for its schedules.

use super::secret::Secret;
use super::settings::{EnvSource, SettingsError};

pub const PAGERDUTY_TOKEN_VAR: &str = "PAGERDUTY_API_TOKEN";
pub const PAGERDUTY_URL_VAR: &str = "PAGERDUTY_API_URL";
pub const OPSGENIE_KEY_VAR: &str = "OPSGENIE_API_KEY";
pub const OPSGENIE_URL_VAR: &str = "OPSGENIE_API_URL";

const PAGERDUTY_DEFAULT_URL: &str = "https://api.pagerduty.com";
const OPSGENIE_DEFAULT_URL: &str = "https://api.opsgenie.com";

#[derive(Debug, Clone, Default)]
pub struct PagingSettings {
    pub pagerduty: Option<PagingAccount>,
    pub opsgenie: Option<PagingAccount>,
}

/// How to reach one paging service's API.
#[derive(Debug, Clone)]
pub struct PagingAccount {
    /// The API's base URL, without a trailing slash.
    pub api_url: String,
    pub token: Secret,
}

impl PagingSettings {
    pub fn from_env(env: &EnvSource) -> Result<PagingSettings, SettingsError> {
        Ok(PagingSettings {
            pagerduty: account(
                env,
                PAGERDUTY_TOKEN_VAR,
                PAGERDUTY_URL_VAR,
                PAGERDUTY_DEFAULT_URL,
            )?,
            opsgenie: account(
                env,
                OPSGENIE_KEY_VAR,
                OPSGENIE_URL_VAR,
                OPSGENIE_DEFAULT_URL,
            )?,
        })
    }
}

fn account(
    env: &EnvSource,
    token_var: &str,
    url_var: &str,
    default_url: &str,
) -> Result<Option<PagingAccount>, SettingsError> {
    let Some(token) = env.get(token_var).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let url = env.get(url_var).unwrap_or_else(|| default_url.to_string());
    let trimmed = url.trim().trim_end_matches('/');
    let usable = url::Url::parse(trimmed)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !usable {
        return Err(SettingsError::Paging(format!(
            "{url_var}=`{trimmed}` must be an http(s) URL like {default_url}"
        )));
    }
    Ok(Some(PagingAccount {
        api_url: trimmed.to_string(),
        token: Secret::new(token.trim()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_is_set_up_by_its_token_with_a_default_url() {
        let env = EnvSource::from_pairs([("PAGERDUTY_API_TOKEN", "pd-token")]);
        let settings = PagingSettings::from_env(&env).unwrap();
        let pagerduty = settings.pagerduty.unwrap();
        assert_eq!(pagerduty.api_url, "https://api.pagerduty.com");
        assert_eq!(pagerduty.token.expose(), "pd-token");
        assert!(settings.opsgenie.is_none());
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_by_name() {
        let env = EnvSource::from_pairs([
            ("OPSGENIE_API_KEY", "key"),
            ("OPSGENIE_API_URL", "ftp://opsgenie.example"),
        ]);
        let error = PagingSettings::from_env(&env).unwrap_err().to_string();
        assert!(error.contains("OPSGENIE_API_URL"), "{error}");
    }
}
