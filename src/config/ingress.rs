//! Who may reach jitbot's chat routes and its metrics, beyond a valid
//! signature or token: the Teams tenants (`TEAMS_ALLOWED_TENANTS`) and
//! Bot Framework services (`TEAMS_ALLOWED_SERVICE_URLS`) it answers, the
//! Slack workspaces (`SLACK_TEAM_ID`), and the token a scraper of
//! `/metrics` must present (`JITBOT_METRICS_TOKEN`).

use super::secret::Secret;
use super::settings::{EnvSource, SettingsError};

pub const TEAMS_TENANTS_VAR: &str = "TEAMS_ALLOWED_TENANTS";
pub const TEAMS_SERVICE_URLS_VAR: &str = "TEAMS_ALLOWED_SERVICE_URLS";
pub const SLACK_TEAMS_VAR: &str = "SLACK_TEAM_ID";
pub const METRICS_TOKEN_VAR: &str = "JITBOT_METRICS_TOKEN";

/// The Bot Framework's Teams services: the public cloud and the
/// government clouds (GCC, GCC High, DoD). jitbot later sends messages,
/// with its own access token, to the `serviceUrl` an activity names, so
/// only these are believed unless `TEAMS_ALLOWED_SERVICE_URLS` says
/// otherwise.
pub const DEFAULT_TEAMS_SERVICE_URLS: &[&str] = &[
    "https://smba.trafficmanager.net/",
    "https://smba.infra.gcc.teams.microsoft.com/",
    "https://smba.infra.gov.teams.microsoft.us/",
    "https://smba.infra.dod.teams.microsoft.us/",
];

/// Tokens shorter than this are refused: they are guessable.
const MIN_METRICS_TOKEN_CHARS: usize = 24;

#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// Teams tenants whose activities are taken; `None`: any tenant.
    pub teams_tenants: Option<Vec<String>>,
    /// Where a Teams activity's `serviceUrl` may point.
    pub teams_service_urls: Vec<ServiceUrlPrefix>,
    /// Slack workspaces whose requests are taken; `None`: any workspace
    /// (the signing secret is then the only check).
    pub slack_teams: Option<Vec<String>>,
    /// What a `/metrics` scrape must present as `Authorization: Bearer`.
    pub metrics_token: Option<Secret>,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            teams_tenants: None,
            teams_service_urls: DEFAULT_TEAMS_SERVICE_URLS
                .iter()
                .map(|url| ServiceUrlPrefix::parse(url).expect("the defaults parse"))
                .collect(),
            slack_teams: None,
            metrics_token: None,
        }
    }
}

impl IngressSettings {
    pub fn from_env(env: &EnvSource) -> Result<IngressSettings, SettingsError> {
        let teams_service_urls = match list(env, TEAMS_SERVICE_URLS_VAR) {
            None => IngressSettings::default().teams_service_urls,
            Some(urls) => urls
                .iter()
                .map(|url| ServiceUrlPrefix::parse(url))
                .collect::<Result<_, _>>()
                .map_err(SettingsError::Ingress)?,
        };
        let metrics_token = env
            .get(METRICS_TOKEN_VAR)
            .map(|token| token.trim().to_string());
        if metrics_token
            .as_ref()
            .is_some_and(|token| token.chars().count() < MIN_METRICS_TOKEN_CHARS)
        {
            return Err(SettingsError::Ingress(format!(
                "{METRICS_TOKEN_VAR} must be at least {MIN_METRICS_TOKEN_CHARS} characters"
            )));
        }
        Ok(IngressSettings {
            teams_tenants: list(env, TEAMS_TENANTS_VAR),
            teams_service_urls,
            slack_teams: list(env, SLACK_TEAMS_VAR),
            metrics_token: metrics_token.map(Secret::new),
        })
    }

    /// Whether a Teams activity naming these tenant ids (from
    /// `channelData.tenant.id` and `conversation.tenantId`) may act.
    pub fn admits_teams_tenants<'a>(&self, named: impl IntoIterator<Item = &'a str>) -> bool {
        all_allowed(self.teams_tenants.as_deref(), named)
    }

    /// Whether a Teams activity's `serviceUrl` is one jitbot may talk to.
    pub fn admits_teams_service_url(&self, service_url: &str) -> bool {
        self.teams_service_urls
            .iter()
            .any(|prefix| prefix.admits(service_url))
    }

    /// Whether a Slack payload naming these workspace ids (`team_id`,
    /// `team.id`, `user.team_id`) may act.
    pub fn admits_slack_teams<'a>(&self, named: impl IntoIterator<Item = &'a str>) -> bool {
        all_allowed(self.slack_teams.as_deref(), named)
    }
}

/// With no list, anything goes. With one, every id a payload names must
/// be on it — so one field cannot vouch for another — and a payload naming
/// none is refused.
fn all_allowed<'a>(allowed: Option<&[String]>, named: impl IntoIterator<Item = &'a str>) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let mut any = false;
    for id in named {
        any = true;
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(id.trim())) {
            return false;
        }
    }
    any
}

/// The non-empty, trimmed entries of a comma-separated variable; `None`
/// when it is unset or names nothing.
fn list(env: &EnvSource, var: &str) -> Option<Vec<String>> {
    let entries: Vec<String> = env
        .get(var)?
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect();
    (!entries.is_empty()).then_some(entries)
}

/// Where allowed service URLs begin: a scheme, a host and port, and a path
/// ending in `/`. Compared as parsed URLs, not as text, so a prefix holds
/// at the host's boundary (`https://smba.trafficmanager.net/` admits
/// nothing on `smba.trafficmanager.net.attacker.com`) and at a path
/// segment's (`…/teams/` does not admit `…/teamsx/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrlPrefix {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl ServiceUrlPrefix {
    pub fn parse(text: &str) -> Result<ServiceUrlPrefix, String> {
        let refused = |why: &str| format!("{TEAMS_SERVICE_URLS_VAR} entry `{text}`: {why}");
        let url = url::Url::parse(text.trim()).map_err(|e| refused(&e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(refused("must be an https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(refused("must be a scheme, host and path, nothing more"));
        }
        let parts = Self::parts_of(&url).ok_or_else(|| refused("names no host"))?;
        Ok(parts)
    }

    fn parts_of(url: &url::Url) -> Option<ServiceUrlPrefix> {
        let mut path = url.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        Some(ServiceUrlPrefix {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
            path,
        })
    }

    /// Whether `service_url` lies under this prefix.
    pub fn admits(&self, service_url: &str) -> bool {
        let Ok(url) = url::Url::parse(service_url) else {
            return false;
        };
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let Some(candidate) = Self::parts_of(&url) else {
            return false;
        };
        candidate.scheme == self.scheme
            && candidate.host == self.host
            && candidate.port == self.port
            && candidate.path.starts_with(&self.path)
    }
}

impl std::fmt::Display for ServiceUrlPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> ServiceUrlPrefix {
        ServiceUrlPrefix::parse(text).unwrap()
    }

    #[test]
    fn a_service_url_prefix_holds_at_the_host_and_the_path_segment() {
        let public = prefix("https://smba.trafficmanager.net/");
        assert!(public.admits("https://smba.trafficmanager.net/emea/"));
        assert!(public.admits("https://SMBA.trafficmanager.net:443/amer/"));
        for other in [
            "https://smba.trafficmanager.net.attacker.com/",
            "https://smba.trafficmanager.net@attacker.com/",
            "https://user@smba.trafficmanager.net/emea/",
            "http://smba.trafficmanager.net/emea/",
            "https://smba.trafficmanager.net:8443/emea/",
            "https://attacker.com/smba.trafficmanager.net/",
            "not a url",
            "",
        ] {
            assert!(!public.admits(other), "{other}");
        }
        let fake = prefix("http://127.0.0.1:4000/teams");
        assert!(fake.admits("http://127.0.0.1:4000/teams/"));
        assert!(!fake.admits("http://127.0.0.1:4000/teamsx/"));
        assert!(!fake.admits("http://127.0.0.1:4000/"));
    }

    #[test]
    fn the_defaults_are_the_bot_framework_hosts_and_nothing_is_a_prefix_by_accident() {
        let settings = IngressSettings::from_env(&EnvSource::from_pairs([])).unwrap();
        assert!(settings.admits_teams_service_url("https://smba.infra.gov.teams.microsoft.us/x/"));
        assert!(!settings.admits_teams_service_url("https://smba.trafficmanager.net.attacker.com/"));
        assert!(settings.admits_teams_tenants(["anything"]));
        assert!(settings.admits_slack_teams([]));
        assert!(ServiceUrlPrefix::parse("ftp://smba.trafficmanager.net/").is_err());
        assert!(ServiceUrlPrefix::parse("https://smba.trafficmanager.net/?x=1").is_err());
    }

    #[test]
    fn every_tenant_an_activity_names_must_be_allowed() {
        let env = EnvSource::from_pairs([(TEAMS_TENANTS_VAR, " T1 , t2,")]);
        let settings = IngressSettings::from_env(&env).unwrap();
        assert!(settings.admits_teams_tenants(["t1"]));
        assert!(settings.admits_teams_tenants(["t1", "T2"]));
        assert!(!settings.admits_teams_tenants(["t1", "t3"]));
        assert!(!settings.admits_teams_tenants([]));
    }

    #[test]
    fn every_workspace_a_slack_payload_names_must_be_allowed() {
        let env = EnvSource::from_pairs([(SLACK_TEAMS_VAR, "T0ONE,T0TWO")]);
        let settings = IngressSettings::from_env(&env).unwrap();
        assert!(settings.admits_slack_teams(["T0ONE"]));
        assert!(!settings.admits_slack_teams(["T0ONE", "T0EVIL"]));
        assert!(!settings.admits_slack_teams([]));
    }

    #[test]
    fn a_short_metrics_token_is_refused() {
        let env = EnvSource::from_pairs([(METRICS_TOKEN_VAR, "short")]);
        assert!(IngressSettings::from_env(&env).is_err());
    }
}
