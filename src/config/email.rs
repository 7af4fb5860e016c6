//! Email settings, from the environment: the SMTP server
//! (`JITBOT_SMTP_URL`), the sender (`JITBOT_EMAIL_FROM`), the address people
//! reach jitbot at (`JITBOT_PUBLIC_URL`, for the links in approval emails)
//! and the key that signs those links (`JITBOT_EMAIL_TOKEN_KEY`). Each may
//! be missing; the policy check says which one an email approver needs.

use super::secret::Secret;
use super::settings::{EnvSource, SettingsError};
use crate::domain::email::EmailAddress;

/// The token key must be at least this long: it is all that stands
/// between a guessed link and a decision.
pub const MIN_TOKEN_KEY_BYTES: usize = 32;

pub const SMTP_URL_VAR: &str = "JITBOT_SMTP_URL";
pub const PUBLIC_URL_VAR: &str = "JITBOT_PUBLIC_URL";
pub const TOKEN_KEY_VAR: &str = "JITBOT_EMAIL_TOKEN_KEY";
pub const FROM_VAR: &str = "JITBOT_EMAIL_FROM";

#[derive(Debug, Clone, Default)]
pub struct EmailSettings {
    pub smtp: Option<SmtpSettings>,
    /// `JITBOT_PUBLIC_URL` without a trailing slash.
    pub public_url: Option<String>,
    pub token_key: Option<Secret>,
    /// Who the emails are from; `jitbot@<public host>` unless set.
    pub from: Option<EmailAddress>,
}

/// How to reach the SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The URL as given; it may hold a password.
    pub url: Secret,
    pub security: SmtpSecurity,
    pub host: String,
    pub port: u16,
    /// User and password, for `smtp+starttls://` and `smtps://`.
    pub credentials: Option<(String, Secret)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: a local relay, no TLS, no AUTH.
    Plain,
    /// `smtp+starttls://`: STARTTLS required before AUTH.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// Which email settings are present: what the policy check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailSetup {
    pub smtp_url: bool,
    pub public_url: bool,
    pub token_key: bool,
}

impl EmailSetup {
    /// Everything set: for checking a policy's shape alone.
    pub const READY: EmailSetup = EmailSetup {
        smtp_url: true,
        public_url: true,
        token_key: true,
    };

    /// The variables an email approver needs that are not set.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            (self.smtp_url, SMTP_URL_VAR),
            (self.public_url, PUBLIC_URL_VAR),
            (self.token_key, TOKEN_KEY_VAR),
        ]
        .into_iter()
        .filter(|(set, _)| !set)
        .map(|(_, var)| var)
        .collect()
    }
}

impl EmailSettings {
    pub fn from_env(env: &EnvSource) -> Result<EmailSettings, SettingsError> {
        let smtp = env.get(SMTP_URL_VAR).map(|url| smtp(&url)).transpose()?;
        let public_url = env
            .get(PUBLIC_URL_VAR)
            .map(|text| public_url(&text))
            .transpose()?;
        let token_key = match env.get(TOKEN_KEY_VAR) {
            Some(key) if key.len() < MIN_TOKEN_KEY_BYTES => {
                return Err(SettingsError::Email(format!(
                    "{TOKEN_KEY_VAR} is shorter than {MIN_TOKEN_KEY_BYTES} bytes; use a random key, e.g. `openssl rand -hex 32`"
                )))
            }
            key => key.map(Secret::new),
        };
        let from = env
            .get(FROM_VAR)
            .map(|text| {
                EmailAddress::parse(&text)
                    .map_err(|e| SettingsError::Email(format!("{FROM_VAR}: {e}")))
            })
            .transpose()?;
        Ok(EmailSettings {
            smtp,
            public_url,
            token_key,
            from,
        })
    }

    pub fn setup(&self) -> EmailSetup {
        EmailSetup {
            smtp_url: self.smtp.is_some(),
            public_url: self.public_url.is_some(),
            token_key: self.token_key.is_some(),
        }
    }

    /// The sender: `JITBOT_EMAIL_FROM`, else `jitbot@` the public URL's host.
    pub fn sender(&self) -> EmailAddress {
        let host = self
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        self.from.clone().unwrap_or_else(|| {
            EmailAddress::parse(&format!("jitbot@{host}"))
                .or_else(|_| EmailAddress::parse("jitbot@localhost.localdomain"))
                .expect("a fixed address parses")
        })
    }
}

fn smtp(text: &str) -> Result<SmtpSettings, SettingsError> {
    // Never echo the URL: it may hold a password.
    let bad = |why: &str| SettingsError::Email(format!("{SMTP_URL_VAR}: {why}"));
    let url = url::Url::parse(text.trim()).map_err(|_| {
        bad("not a URL like smtp://relay:25, smtp+starttls://user:password@host:587 or smtps://user:password@host:465")
    })?;
    let (security, default_port) = match url.scheme() {
        "smtp" => (SmtpSecurity::Plain, 25),
        "smtp+starttls" => (SmtpSecurity::StartTls, 587),
        "smtps" => (SmtpSecurity::Tls, 465),
        _ => {
            return Err(bad(
                "the scheme must be smtp://, smtp+starttls:// or smtps://",
            ))
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let user = percent_decode(url.username());
    let credentials = match (user.is_empty(), url.password()) {
        (true, None) => None,
        (false, Some(password)) => Some((user, Secret::new(percent_decode(password)))),
        _ => return Err(bad("give both a user and a password, or neither")),
    };
    if security == SmtpSecurity::Plain && credentials.is_some() {
        return Err(bad(
            "smtp:// is a local relay without TLS; credentials go only over smtp+starttls:// or smtps://",
        ));
    }
    Ok(SmtpSettings {
        url: Secret::new(text.trim()),
        security,
        host,
        port: url.port().unwrap_or(default_port),
        credentials,
    })
}

fn public_url(text: &str) -> Result<String, SettingsError> {
    let trimmed = text.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none()
    });
    match parsed {
        Some(_) => Ok(trimmed.to_string()),
        None => Err(SettingsError::Email(format!(
            "{PUBLIC_URL_VAR}=`{trimmed}` must be an http(s) URL people reach jitbot at, like https://jitbot.example.com"
        ))),
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<EmailSettings, SettingsError> {
        EmailSettings::from_env(&EnvSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn the_three_smtp_schemes_are_understood() {
        let relay = settings(&[(SMTP_URL_VAR, "smtp://127.0.0.1:2525")]).unwrap();
        let smtp = relay.smtp.unwrap();
        assert_eq!(
            (smtp.security, smtp.host.as_str(), smtp.port),
            (SmtpSecurity::Plain, "127.0.0.1", 2525)
        );
        assert!(smtp.credentials.is_none());

        let tls = settings(&[(SMTP_URL_VAR, "smtps://mailer:p%40ss+w@mail.example.com")]).unwrap();
        let smtp = tls.smtp.unwrap();
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::Tls, 465));
        let (user, password) = smtp.credentials.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("mailer", "p@ss+w"));

        let starttls =
            settings(&[(SMTP_URL_VAR, "smtp+starttls://u:p@mail.example.com:2587")]).unwrap();
        let smtp = starttls.smtp.unwrap();
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::StartTls, 2587));
    }

    #[test]
    fn bad_email_settings_are_refused_without_echoing_secrets() {
        for url in [
            "http://mail.example.com",
            "smtp://user:hunter2@relay:25",
            "smtps://user@mail.example.com",
            "not a url hunter2",
        ] {
            let error = settings(&[(SMTP_URL_VAR, url)]).unwrap_err().to_string();
            assert!(error.starts_with(SMTP_URL_VAR), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let short = settings(&[(TOKEN_KEY_VAR, "too-short")]).unwrap_err();
        assert!(short.to_string().contains("32 bytes"));
        assert!(settings(&[(PUBLIC_URL_VAR, "ftp://x")]).is_err());
        assert!(settings(&[(FROM_VAR, "jitbot@")]).is_err());
    }

    #[test]
    fn the_sender_defaults_to_the_public_host() {
        let email = settings(&[(PUBLIC_URL_VAR, "https://jit.example.com/")]).unwrap();
        assert_eq!(email.public_url.as_deref(), Some("https://jit.example.com"));
        assert_eq!(email.sender().as_str(), "jitbot@jit.example.com");
    }
}
