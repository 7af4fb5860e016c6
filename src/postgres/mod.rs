//! Reaching a PostgreSQL server, shared by the `postgres` provider and the
//! PostgreSQL store: the connection URL with libpq's `sslmode`, one way to
//! connect (with a deadline), a small connection pool, and error text that
//! names the server but never the password.

pub mod pool;
mod tls;

use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

/// A server to connect to, parsed from a `postgres://` URL.
#[derive(Clone)]
pub struct Target {
    config: Config,
    /// `None` for `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Where the server is, for messages (never the URL: it has a password).
    shown_server: String,
    /// The URL's password, removed from any error text.
    password: Option<String>,
}

impl Target {
    /// Parse `url` (found `origin`, e.g. "in JITBOT_DATABASE_URL");
    /// connecting gives up after `connect_timeout`. The error never quotes
    /// the URL.
    pub fn parse(url: &str, origin: &str, connect_timeout: Duration) -> Result<Target, String> {
        let (url, tls_mode) =
            tls::split_url(url).map_err(|why| format!("connection URL: {why}"))?;
        let mut config: Config = url.parse().map_err(|_| {
            format!("the connection URL {origin} is not valid (expected postgres://user:password@host:port/database)")
        })?;
        let tls = match tls_mode {
            tls::TlsMode::Off => None,
            mode => Some(tls::connector(&mode)?),
        };
        config.connect_timeout(connect_timeout);
        config.application_name("jitbot");
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Ok(Target {
            shown_server: shown_server(&config),
            config,
            tls,
            password,
        })
    }

    /// The same server, with these session `options` (`-c name=value`).
    pub fn with_options(&self, options: &str) -> Target {
        let mut target = self.clone();
        target.config.options(options);
        target
    }

    /// `host:port`, for messages.
    pub fn shown_server(&self) -> &str {
        &self.shown_server
    }

    /// The database name, if the URL gives one.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// `text` with the password taken out.
    pub fn redact(&self, text: &str) -> String {
        match &self.password {
            Some(password) if password.len() >= 4 => text.replace(password, "[redacted]"),
            _ => text.to_string(),
        }
    }

    /// One new connection, its I/O driven by a spawned task.
    pub async fn connect(&self) -> Result<Client, String> {
        let connecting = async {
            match &self.tls {
                None => {
                    let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    Ok(client)
                }
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    tokio::spawn(connection);
                    Ok(client)
                }
            }
        };
        connecting.await.map_err(|e: tokio_postgres::Error| {
            self.redact(&format!(
                "could not connect to PostgreSQL at {}: {}",
                self.shown_server,
                describe(&e)
            ))
        })
    }
}

fn shown_server(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_string());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// The server's own message for database errors; the driver's otherwise.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}
