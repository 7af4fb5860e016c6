//! Running the bot: `serve` (chat over HTTP) and `console` (the terminal as
//! its chat), both from a checked policy and its providers.

use std::collections::HashMap;
use std::sync::Arc;

use super::logging::{init_logging, init_logging_with};
use super::{EXIT_BAD_SETUP, EXIT_FAILED, EXIT_OK};
use crate::clock::SystemClock;
use crate::config::policy::{self, PolicyError};
use crate::config::{EnvSource, Settings};
use crate::domain::policy::Policy;
use crate::providers::exclusive::{DatabaseExclusive, Exclusive, LocalExclusive};
use crate::providers::Providers;
use crate::server::{self, ServerParts};
use crate::store::StoreLocation;

pub(super) async fn serve(settings: Settings, env: EnvSource) -> i32 {
    init_logging(settings.log_format);
    // Before anything is opened: the connection cap, not "too many open
    // files", must be what bounds a flood of connections.
    match crate::http::raise_open_file_limit() {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let (policy, providers) = match policy_and_providers(&settings, &env) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("jitbot: cannot listen on {}: {error}", settings.listen);
            return EXIT_BAD_SETUP;
        }
    };
    let parts = ServerParts {
        store: store_location(&settings),
        policy,
        providers,
        slack: settings.slack.clone(),
        teams: settings.teams.clone(),
        teams_webhook_secret: settings.teams_webhook_secret.clone(),
        api_tokens: settings.api_tokens.clone(),
        user_limits: settings.user_limits,
        max_in_flight: settings.max_in_flight,
        max_connections_per_peer: settings.max_connections_per_peer,
        ingress: settings.ingress.clone(),
        clock: Arc::new(SystemClock),
        email: settings.email.clone(),
        paging: settings.paging.clone(),
        audit_key: settings.audit_key.clone(),
    };
    let running = match server::start(parts, listener).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    let signal = shutdown_signal();
    // On stdout, whatever the log settings: with `JITBOT_LISTEN=…:0` this
    // is how a supervisor (or a test) learns the port the system chose.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        // Nobody reading stdout is no reason to stop.
        let _ = writeln!(stdout, "jitbot listening on {}", running.addr);
        let _ = stdout.flush();
    }
    match running.run_until(signal).await {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("jitbot: {error}");
            EXIT_FAILED
        }
    }
}

/// Resolves on ctrl-c or SIGTERM (what Kubernetes and systemd send). Both
/// are hooked before this returns, not when first awaited: a SIGTERM sent
/// as soon as the server says it listens would otherwise kill the process
/// before its clean shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hooked = |kind| tokio::signal::unix::signal(kind).ok();
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = (
        hooked(tokio::signal::unix::SignalKind::interrupt()),
        hooked(tokio::signal::unix::SignalKind::terminate()),
    );
    async move {
        #[cfg(unix)]
        {
            let on = |signal: &mut Option<tokio::signal::unix::Signal>| {
                let signal = signal.take();
                async move {
                    match signal {
                        Some(mut signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
            };
            tokio::select! {
                _ = on(&mut interrupt) => {}
                _ = on(&mut terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Which store `jitbot console` runs on.
pub(super) struct ConsoleStore {
    /// The configured one (else a fresh temporary one).
    pub use_configured: bool,
    /// With `use_configured`: this sled directory instead of JITBOT_DATA_DIR.
    pub data_dir: Option<std::path::PathBuf>,
}

pub(super) async fn console(
    settings: Settings,
    env: EnvSource,
    user: String,
    groups: Vec<String>,
    store: ConsoleStore,
) -> i32 {
    init_logging_with(settings.log_format, "warn");
    let mut user_groups = HashMap::new();
    for group in &groups {
        let Some((id, members)) = group.split_once('=') else {
            eprintln!("jitbot: --group {group}: expected ID=USER,USER (e.g. S0DBAS=U0DBA,U0LEAD)");
            return EXIT_BAD_SETUP;
        };
        let members = members
            .split(',')
            .filter(|m| !m.trim().is_empty())
            .map(|m| crate::domain::ids::UserId::new(m.trim()))
            .collect();
        user_groups.insert(id.trim().to_string(), members);
    }
    let (policy, providers) = match policy_and_providers(&settings, &env) {
        Ok(both) => both,
        Err(code) => return code,
    };
    // A console is for trying things: by default it must not write
    // requests and audit events into a store that a server (or several
    // replicas) share, so it gets its own, discarded at the end.
    let scratch = (!store.use_configured).then(ScratchDir::new);
    let location = match (&scratch, store.data_dir) {
        (Some(Ok(scratch)), _) => StoreLocation::Sled(scratch.0.clone()),
        (Some(Err(error)), _) => {
            eprintln!("jitbot: cannot make a temporary store for the console: {error}");
            return EXIT_BAD_SETUP;
        }
        (None, Some(dir)) => StoreLocation::Sled(dir),
        (None, None) => store_location(&settings),
    };
    let terminal = crate::console::Terminal::new(Box::new(std::io::stdout()));
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    let options = crate::console::ConsoleOptions {
        user,
        user_groups,
        fresh_store: scratch.is_some(),
        audit_key: settings.audit_key.clone(),
    };
    let outcome = crate::console::run(&location, policy, providers, options, input, terminal).await;
    drop(scratch);
    match outcome {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("jitbot: {error}");
            EXIT_BAD_SETUP
        }
    }
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> std::io::Result<ScratchDir> {
        let suffix: u64 = rand::random();
        let path = std::env::temp_dir().join(format!(
            "jitbot-console-{}-{suffix:016x}",
            std::process::id()
        ));
        std::fs::create_dir(&path)?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn report_policy_error(error: &PolicyError) {
    eprintln!("{error}");
    if let PolicyError::Invalid { problems, .. } = error {
        eprintln!("{} problem(s) found", problems.len());
    }
}

/// Where the store lives: the database replicas share, when
/// `JITBOT_DATABASE_URL` is set (then `JITBOT_DATA_DIR` is not used), else
/// the sled directory.
pub(super) fn store_location(settings: &Settings) -> StoreLocation {
    match &settings.database {
        Some(database) => StoreLocation::Postgres {
            url: database.url.clone(),
            lease: database.lease,
        },
        None => StoreLocation::Sled(settings.data_dir.clone()),
    }
}

/// The policy and its providers, or the exit code after saying what is wrong.
pub(super) fn policy_and_providers(
    settings: &Settings,
    env: &EnvSource,
) -> Result<(Policy, Providers), i32> {
    let policy = match policy::load(&settings.config_path, settings.email.setup()) {
        Ok(policy) => policy,
        Err(error) => {
            report_policy_error(&error);
            eprintln!("jitbot: refusing to start with an invalid policy");
            return Err(EXIT_BAD_SETUP);
        }
    };
    let exclusive: Arc<dyn Exclusive> = match &settings.database {
        Some(database) => match DatabaseExclusive::new(database.url.expose()) {
            Ok(exclusive) => Arc::new(exclusive),
            Err(why) => {
                eprintln!("jitbot: JITBOT_DATABASE_URL: {why}");
                return Err(EXIT_BAD_SETUP);
            }
        },
        None => Arc::new(LocalExclusive::default()),
    };
    match crate::providers::build(&policy, env, exclusive) {
        Ok(providers) => Ok((policy, providers)),
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            eprintln!("jitbot: refusing to start: providers are not configured");
            Err(EXIT_BAD_SETUP)
        }
    }
}
