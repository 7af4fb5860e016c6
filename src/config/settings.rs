//! Deployment settings and secrets, from the environment (and, for local
//! runs, an env file such as `.env.example`; real environment variables win).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::secret::Secret;
use crate::domain::ids::Actor;
use crate::domain::policy::user_actor;
use crate::domain::quota::{FilingLimits, DEFAULT_PENDING, DEFAULT_PER_MINUTE};

pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
/// Overrides the Slack Web API base URL (tests, proxies).
pub const SLACK_API_URL_VAR: &str = "SLACK_API_URL";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_CONFIG: &str = "jitbot.toml";
pub const DEFAULT_DATA_DIR: &str = "data";

#[derive(Debug, Clone)]
pub struct Settings {
    pub slack: Option<SlackSettings>,
    /// The Teams bot (Bot Framework), if configured.
    pub teams: Option<TeamsSettings>,
    /// The Teams outgoing webhook's security token (base64), if configured.
    pub teams_webhook_secret: Option<Secret>,
    /// Bearer tokens for the HTTP API (`JITBOT_API_TOKENS`).
    pub api_tokens: Vec<ApiTokenSpec>,
    pub config_path: PathBuf,
    /// The sled store's directory (`JITBOT_DATA_DIR`); not used when
    /// `database` is set.
    pub data_dir: PathBuf,
    /// The PostgreSQL store replicas share (`JITBOT_DATABASE_URL`), if set.
    pub database: Option<DatabaseSettings>,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// How much one person may file (`JITBOT_USER_RATE` a minute,
    /// `JITBOT_USER_PENDING` waiting).
    pub user_limits: FilingLimits,
    /// Chat and API requests worked on at once (`JITBOT_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Connections one peer may hold at once
    /// (`JITBOT_MAX_CONNECTIONS_PER_PEER`).
    pub max_connections_per_peer: usize,
    /// Email approvals and notifications (`JITBOT_SMTP_URL` and friends).
    pub email: super::email::EmailSettings,
    /// Paging services asked who is on call (`PAGERDUTY_API_TOKEN`,
    /// `OPSGENIE_API_KEY` and their URLs).
    pub paging: super::paging::PagingSettings,
    /// The audit chain's HMAC key (`JITBOT_AUDIT_KEY`), if set: without it
    /// the chain is plain SHA-256, which whoever can write the store can
    /// recompute after a rewrite.
    pub audit_key: Option<crate::domain::audit::AuditKey>,
    /// Which Teams tenants and services, Slack workspaces and metrics
    /// scrapers are taken (`TEAMS_ALLOWED_TENANTS` and friends).
    pub ingress: super::ingress::IngressSettings,
}

/// The shared PostgreSQL store.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/db[?sslmode=…]`; holds a password.
    pub url: Secret,
    /// How long a replica's claim on work lasts unless renewed (`JITBOT_LEASE`).
    pub lease: std::time::Duration,
}

/// `JITBOT_LEASE`'s default, and its bounds: short enough that a dead
/// replica's work is taken over quickly, long enough that renewing it (a
/// third of it) is cheap and survives a slow moment of the database.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(5);
const MIN_LEASE: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(300);

/// `JITBOT_MAX_IN_FLIGHT`'s default.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;

#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// Checks the HTTP routes' requests; without it (Socket Mode only)
    /// they answer 404.
    pub signing_secret: Option<Secret>,
    pub bot_token: Secret,
    /// `SLACK_APP_TOKEN` (`xapp-…`): Slack's events come over Socket Mode,
    /// a WebSocket jitbot opens, with no public URL.
    pub app_token: Option<Secret>,
    /// Base URL of the Slack Web API, without a trailing slash.
    pub api_url: String,
}

#[derive(Debug, Clone)]
pub struct TeamsSettings {
    /// The bot's Microsoft App ID: the audience of incoming tokens.
    pub app_id: String,
    pub app_password: Secret,
    /// Where the Bot Framework publishes its signing keys' location.
    pub openid_metadata_url: String,
    /// Where the bot gets its own tokens (client credentials).
    pub token_url: String,
}

/// The Bot Framework's public cloud; sovereign clouds and tests override it.
pub const DEFAULT_TEAMS_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
pub const DEFAULT_TEAMS_TOKEN_URL: &str =
    "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token";

/// One HTTP API token: who it acts as, and whether it may do admin things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenSpec {
    /// A chat user (Slack `U…`/`W…`, or a Teams AAD object id): requests
    /// made with the token are that user's, under the same policy rules.
    pub identity: Actor,
    pub admin: bool,
    pub token: Secret,
}

/// Tokens shorter than this are refused: they are guessable.
pub const MIN_API_TOKEN_CHARS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{0} is set but {1} is not; Slack needs both")]
    HalfSlack(&'static str, &'static str),
    #[error(
        "SLACK_APP_TOKEN must be an app-level token (xapp-…), with the connections:write scope"
    )]
    NotAnAppToken,
    #[error("{0} is set but {1} is not; the Teams bot needs both")]
    HalfTeams(&'static str, &'static str),
    #[error("JITBOT_LISTEN=`{0}` is not an address like 127.0.0.1:8080")]
    BadListen(String),
    #[error("JITBOT_LOG_FORMAT=`{0}` must be `text` or `json`")]
    BadLogFormat(String),
    #[error("cannot read env file {0}: {1}")]
    EnvFile(String, String),
    #[error("env file {0}, line {1}: expected KEY=value")]
    EnvFileSyntax(String, usize),
    #[error("JITBOT_API_TOKENS entry {0}: {1} (entries look like U0CIBOT:user:<token>,U0ADMIN:admin:<token>)")]
    BadApiToken(usize, String),
    #[error("{0}=`{1}` must be a whole number from 1")]
    BadLimit(&'static str, String),
    #[error("JITBOT_LEASE=`{0}` must be a duration from 1s to 5m, like 5s")]
    BadLease(String),
    #[error("JITBOT_DATABASE_URL must start with postgres:// or postgresql://")]
    BadDatabaseUrl,
    #[error("{0}")]
    Email(String),
    #[error("{0}")]
    Paging(String),
    /// The key is not echoed: only its length is said.
    #[error("{0}")]
    BadAuditKey(String),
    #[error("{0}")]
    Ingress(String),
}

/// Where settings come from: the process environment, then an optional env file.
#[derive(Default, Clone)]
pub struct EnvSource {
    file: HashMap<String, String>,
    use_process_env: bool,
}

/// The file may hold secrets: show only which keys it sets.
impl std::fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.file.keys().collect();
        keys.sort();
        f.debug_struct("EnvSource")
            .field("file_keys", &keys)
            .field("use_process_env", &self.use_process_env)
            .finish()
    }
}

impl EnvSource {
    pub fn process() -> Self {
        Self {
            file: HashMap::new(),
            use_process_env: true,
        }
    }

    /// The process environment, falling back to the `KEY=value` lines of `path`.
    pub fn process_with_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::EnvFile(path.display().to_string(), e.to_string()))?;
        let mut file = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                return Err(SettingsError::EnvFileSyntax(
                    path.display().to_string(),
                    index + 1,
                ));
            };
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            file.insert(key.trim().to_string(), unquoted.to_string());
        }
        Ok(Self {
            file,
            use_process_env: true,
        })
    }

    /// Only the given pairs; for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            file: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            use_process_env: false,
        }
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<String> {
        let from_process = self
            .use_process_env
            .then(|| std::env::var(key).ok())
            .flatten();
        from_process
            .or_else(|| self.file.get(key).cloned())
            .filter(|v| !v.trim().is_empty())
    }
}

impl Settings {
    pub fn from_env(env: &EnvSource) -> Result<Settings, SettingsError> {
        let app_token = env.get("SLACK_APP_TOKEN");
        if app_token
            .as_ref()
            .is_some_and(|token| !token.starts_with("xapp-"))
        {
            return Err(SettingsError::NotAnAppToken);
        }
        let slack = match (
            env.get("SLACK_SIGNING_SECRET"),
            env.get("SLACK_BOT_TOKEN"),
            app_token,
        ) {
            (None, None, None) => None,
            (None, Some(_), None) => {
                return Err(SettingsError::HalfSlack(
                    "SLACK_BOT_TOKEN",
                    "SLACK_SIGNING_SECRET",
                ))
            }
            (signing_secret, Some(bot_token), app_token) => Some(SlackSettings {
                signing_secret: signing_secret.map(Secret::new),
                bot_token: Secret::new(bot_token),
                app_token: app_token.map(Secret::new),
                api_url: env
                    .get(SLACK_API_URL_VAR)
                    .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_string())
                    .trim_end_matches('/')
                    .to_string(),
            }),
            (Some(_), None, _) => {
                return Err(SettingsError::HalfSlack(
                    "SLACK_SIGNING_SECRET",
                    "SLACK_BOT_TOKEN",
                ))
            }
            (None, None, Some(_)) => {
                return Err(SettingsError::HalfSlack(
                    "SLACK_APP_TOKEN",
                    "SLACK_BOT_TOKEN",
                ))
            }
        };
        let listen_text = env
            .get("JITBOT_LISTEN")
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text
            .parse()
            .map_err(|_| SettingsError::BadListen(listen_text.clone()))?;
        let log_format = match env.get("JITBOT_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(SettingsError::BadLogFormat(other.to_string())),
        };
        let api_tokens = parse_api_tokens(env.get("JITBOT_API_TOKENS").as_deref().unwrap_or(""))?;
        let teams = match (env.get("TEAMS_APP_ID"), env.get("TEAMS_APP_PASSWORD")) {
            (Some(app_id), Some(password)) => Some(TeamsSettings {
                app_id,
                app_password: Secret::new(password),
                openid_metadata_url: env
                    .get("TEAMS_OPENID_METADATA_URL")
                    .unwrap_or_else(|| DEFAULT_TEAMS_OPENID_METADATA_URL.to_string()),
                token_url: env
                    .get("TEAMS_TOKEN_URL")
                    .unwrap_or_else(|| DEFAULT_TEAMS_TOKEN_URL.to_string()),
            }),
            (Some(_), None) => {
                return Err(SettingsError::HalfTeams(
                    "TEAMS_APP_ID",
                    "TEAMS_APP_PASSWORD",
                ))
            }
            (None, Some(_)) => {
                return Err(SettingsError::HalfTeams(
                    "TEAMS_APP_PASSWORD",
                    "TEAMS_APP_ID",
                ))
            }
            (None, None) => None,
        };
        let teams_webhook_secret = env.get("TEAMS_WEBHOOK_SECRET").map(Secret::new);
        let database = database(env)?;
        Ok(Settings {
            slack,
            teams,
            teams_webhook_secret,
            api_tokens,
            config_path: env
                .get("JITBOT_CONFIG")
                .unwrap_or_else(|| DEFAULT_CONFIG.to_string())
                .into(),
            data_dir: env
                .get("JITBOT_DATA_DIR")
                .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string())
                .into(),
            database,
            listen,
            log_format,
            user_limits: FilingLimits {
                per_minute: limit(env, "JITBOT_USER_RATE", DEFAULT_PER_MINUTE)?,
                pending: limit(env, "JITBOT_USER_PENDING", DEFAULT_PENDING)?,
            },
            max_in_flight: limit(env, "JITBOT_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)? as usize,
            max_connections_per_peer: limit(
                env,
                "JITBOT_MAX_CONNECTIONS_PER_PEER",
                crate::http::DEFAULT_MAX_CONNECTIONS_PER_PEER as u32,
            )? as usize,
            email: super::email::EmailSettings::from_env(env)?,
            paging: super::paging::PagingSettings::from_env(env)?,
            audit_key: env
                .get("JITBOT_AUDIT_KEY")
                .map(|key| crate::domain::audit::AuditKey::new(key.trim().as_bytes()))
                .transpose()
                .map_err(SettingsError::BadAuditKey)?,
            ingress: super::ingress::IngressSettings::from_env(env)?,
        })
    }
}

fn database(env: &EnvSource) -> Result<Option<DatabaseSettings>, SettingsError> {
    let Some(url) = env
        .get("JITBOT_DATABASE_URL")
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(None);
    };
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(SettingsError::BadDatabaseUrl);
    }
    let lease = match env.get("JITBOT_LEASE") {
        None => DEFAULT_LEASE,
        Some(text) => crate::domain::duration::HumanDuration::parse(text.trim())
            .ok()
            .map(|d| d.as_std())
            .filter(|d| (MIN_LEASE..=MAX_LEASE).contains(d))
            .ok_or(SettingsError::BadLease(text))?,
    };
    Ok(Some(DatabaseSettings {
        url: Secret::new(url),
        lease,
    }))
}

fn limit(env: &EnvSource, var: &'static str, default: u32) -> Result<u32, SettingsError> {
    match env.get(var) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(SettingsError::BadLimit(var, text)),
    }
}

/// `identity:role:token` entries separated by commas; the token is never
/// echoed in an error.
fn parse_api_tokens(text: &str) -> Result<Vec<ApiTokenSpec>, SettingsError> {
    let mut tokens: Vec<ApiTokenSpec> = Vec::new();
    for (index, entry) in text.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let bad = |why: &str| SettingsError::BadApiToken(index + 1, why.to_string());
        let mut parts = entry.splitn(3, ':');
        let (Some(identity), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected identity:role:token"));
        };
        let Some(actor) = user_actor(identity) else {
            return Err(bad(&format!(
                "`{identity}` is not a chat user id (U…/W… on Slack, an AAD object id on Teams)"
            )));
        };
        let admin = match role {
            "admin" => true,
            "user" => false,
            other => return Err(bad(&format!("role `{other}` must be `admin` or `user`"))),
        };
        if token.chars().count() < MIN_API_TOKEN_CHARS {
            return Err(bad(&format!(
                "the token is shorter than {MIN_API_TOKEN_CHARS} characters"
            )));
        }
        if tokens.iter().any(|t| t.token.expose() == token) {
            return Err(bad("the same token is given twice"));
        }
        tokens.push(ApiTokenSpec {
            identity: actor,
            admin,
            token: Secret::new(token),
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_name_a_user_a_role_and_a_long_secret() {
        let tokens = parse_api_tokens(
            "U0CIBOT:user:aaaaaaaaaaaaaaaaaaaaaaaaaaaa, U0ADMIN:admin:bbbbbbbbbbbbbbbbbbbbbbbb:with:colons",
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].identity.user.as_str(), "U0CIBOT");
        assert!(!tokens[0].admin);
        assert!(tokens[1].admin);
        assert_eq!(
            tokens[1].token.expose(),
            "bbbbbbbbbbbbbbbbbbbbbbbb:with:colons"
        );
        let short = parse_api_tokens("U0CIBOT:user:short-secret").unwrap_err();
        assert_eq!(
            short.to_string(),
            "JITBOT_API_TOKENS entry 1: the token is shorter than 24 characters (entries look like U0CIBOT:user:<token>,U0ADMIN:admin:<token>)"
        );
        assert!(!short.to_string().contains("short-secret"));
        assert!(parse_api_tokens("ci-bot:user:aaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(parse_api_tokens("U0CIBOT:root:aaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(parse_api_tokens("").unwrap().is_empty());
    }

    #[test]
    fn defaults_apply_when_unset() {
        let settings = Settings::from_env(&EnvSource::from_pairs([])).unwrap();
        assert!(settings.slack.is_none());
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn the_audit_key_is_32_bytes_or_more_and_never_echoed() {
        let short = Settings::from_env(&EnvSource::from_pairs([(
            "JITBOT_AUDIT_KEY",
            "not-long-enough-secret",
        )]))
        .unwrap_err()
        .to_string();
        assert!(short.contains("JITBOT_AUDIT_KEY is 22 bytes"), "{short}");
        assert!(!short.contains("not-long-enough-secret"), "{short}");
        let settings = Settings::from_env(&EnvSource::from_pairs([(
            "JITBOT_AUDIT_KEY",
            " 0123456789abcdef0123456789abcdef\n",
        )]))
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(settings.audit_key.is_some());
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        let unset = Settings::from_env(&EnvSource::from_pairs([])).unwrap();
        assert!(unset.audit_key.is_none());
    }

    #[test]
    fn slack_needs_both_secrets() {
        let err = Settings::from_env(&EnvSource::from_pairs([("SLACK_SIGNING_SECRET", "x")]))
            .unwrap_err();
        assert_eq!(
            err,
            SettingsError::HalfSlack("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")
        );
        let settings = Settings::from_env(&EnvSource::from_pairs([
            ("SLACK_SIGNING_SECRET", "x"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_API_URL", "http://127.0.0.1:9/api/"),
        ]))
        .unwrap();
        assert_eq!(settings.slack.unwrap().api_url, "http://127.0.0.1:9/api");
    }

    #[test]
    fn socket_mode_needs_the_bot_token_and_an_app_token() {
        let socket_only = Settings::from_env(&EnvSource::from_pairs([
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_APP_TOKEN", "xapp-1-A0-1-abc"),
        ]))
        .unwrap()
        .slack
        .unwrap();
        assert!(socket_only.signing_secret.is_none() && socket_only.app_token.is_some());
        let err = Settings::from_env(&EnvSource::from_pairs([("SLACK_APP_TOKEN", "xapp-1")]))
            .unwrap_err();
        assert_eq!(
            err,
            SettingsError::HalfSlack("SLACK_APP_TOKEN", "SLACK_BOT_TOKEN")
        );
        let err = Settings::from_env(&EnvSource::from_pairs([
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_APP_TOKEN", "xoxb-1"),
        ]))
        .unwrap_err();
        assert_eq!(err, SettingsError::NotAnAppToken);
    }

    #[test]
    fn debug_output_names_keys_but_not_values() {
        let env = EnvSource::from_pairs([("SLACK_BOT_TOKEN", "xoxb-secret")]);
        let shown = format!("{env:?}");
        assert!(
            shown.contains("SLACK_BOT_TOKEN") && !shown.contains("xoxb-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_listen_address_is_explained() {
        let err = Settings::from_env(&EnvSource::from_pairs([("JITBOT_LISTEN", "localhost")]))
            .unwrap_err();
        assert!(err.to_string().contains("localhost"));
    }
}
