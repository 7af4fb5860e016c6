//! The `jitbot` command line. `serve` (the default) runs the bot; `grants`,
//! `revoke`, `mappings` and `audit export` ask the running server through
//! its HTTP API; `check-config`, `audit verify` and `sweep` work offline
//! (the last two open the store, so the server must be stopped). Each
//! subcommand returns its exit code.

mod remote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::chat::directory::CachedDirectory;
use crate::chat::slack::SlackClient;
use crate::clock::SystemClock;
use crate::config::policy::{self, PolicyError};
use crate::config::settings::LogFormat;
use crate::config::{EnvSource, Settings};
use crate::domain::ids::Platform;
use crate::domain::policy::{GroupPolicy, Policy, SweepMode};
use crate::engine::{Engine, Wakers};
use crate::providers::Providers;
use crate::server::{self, ServerParts};
use crate::store::{SledStore, Store};

#[derive(Debug, Parser)]
#[command(
    name = "jitbot",
    version,
    about = "Just-in-time access, requested and approved in chat"
)]
pub struct Cli {
    /// Read settings from this KEY=value file too (the real environment wins).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the bot (the default).
    Serve,
    /// The whole bot with the terminal as its chat: no Slack needed.
    Console {
        /// Who you are at first (switch with `/as U0LEAD`).
        #[arg(long = "as", value_name = "USER_ID", default_value = "U0ALICE")]
        user: String,
        /// A Slack user group the console should know, e.g. S0DBAS=U0DBA,U0LEAD
        /// (repeatable).
        #[arg(long = "group", value_name = "ID=USERS")]
        groups: Vec<String>,
    },
    /// Validate a policy file and report every problem with its line and column.
    CheckConfig {
        /// Policy file; defaults to $JITBOT_CONFIG.
        path: Option<PathBuf>,
    },
    /// Active grants, soonest expiry first (asks the running server).
    Grants {
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant now, telling the holder why (admin token).
    Revoke {
        /// The grant, like G-7K3Q9X.
        grant: String,
        /// Why; the holder is told.
        #[arg(required = true, num_args = 1..)]
        reason: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Where each group's approval cards go; `add` and `remove` change the
    /// run-time mappings (admin token).
    Mappings {
        #[command(subcommand)]
        change: Option<MappingChange>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// The audit log: `verify` its hash chain (offline), `export` it (API).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Look for standing access: holders of a group's target without an
    /// active grant. With JITBOT_API_TOKEN set, the running server sweeps
    /// (admin token, --group needed); otherwise the store is opened directly
    /// (stop the server first).
    Sweep {
        /// Only print what would happen: revoke, send and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Sweep this group only (with --dry-run, even if its sweep is off).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// With the API: its JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain from the first event to the last
    /// (opens the store directly: stop the server first).
    Verify,
    /// Write the audit log as JSON lines to stdout, oldest first (asks the
    /// running server; admin token).
    Export {
        /// Only events since this: an RFC 3339 time or a duration like 24h.
        #[arg(long)]
        since: Option<String>,
        /// Only events after this sequence number (to resume an export).
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingChange {
    /// Send a group's approval cards to a channel too.
    Add {
        group: String,
        /// The channel id (C… on Slack).
        channel: String,
        #[arg(long, default_value = "slack")]
        platform: String,
    },
    /// Stop sending a group's approval cards to a channel.
    Remove {
        group: String,
        channel: String,
        #[arg(long, default_value = "slack")]
        platform: String,
    },
}

/// Exit codes: 0 success, 1 the check failed, 2 the input or setup is wrong.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_SETUP: i32 = 2;

pub async fn run(cli: Cli) -> i32 {
    let env = match &cli.env_file {
        Some(path) => match EnvSource::process_with_file(path) {
            Ok(env) => env,
            Err(error) => {
                eprintln!("jitbot: {error}");
                return EXIT_BAD_SETUP;
            }
        },
        None => EnvSource::process(),
    };
    let settings = match Settings::from_env(&env) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    match cli.command.unwrap_or(CliCommand::Serve) {
        CliCommand::Serve => serve(settings, env).await,
        CliCommand::Console { user, groups } => console(settings, env, user, groups).await,
        CliCommand::CheckConfig { path } => {
            check_config(path.as_deref().unwrap_or(&settings.config_path))
        }
        CliCommand::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(&settings.data_dir),
        CliCommand::Grants { json } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => remote::run(remote::grants(&api, json)).await,
            Err(failure) => report(failure),
        },
        CliCommand::Revoke {
            grant,
            reason,
            json,
        } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => remote::run(remote::revoke(&api, &grant, &reason.join(" "), json)).await,
            Err(failure) => report(failure),
        },
        CliCommand::Mappings { change, json } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => {
                let change = change.map(|change| match change {
                    MappingChange::Add {
                        group,
                        channel,
                        platform,
                    } => (true, group, platform, channel),
                    MappingChange::Remove {
                        group,
                        channel,
                        platform,
                    } => (false, group, platform, channel),
                });
                remote::run(remote::mappings(&api, change, json)).await
            }
            Err(failure) => report(failure),
        },
        CliCommand::Audit {
            command: AuditCommand::Export { since, after },
        } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => remote::run(remote::audit_export(&api, since.as_deref(), after)).await,
            Err(failure) => report(failure),
        },
        CliCommand::Sweep {
            dry_run,
            group,
            json,
        } if env.get("JITBOT_API_TOKEN").is_some() => {
            let Some(group) = group else {
                eprintln!(
                    "jitbot: name the group to sweep (--group NAME) when asking the running server"
                );
                return EXIT_BAD_SETUP;
            };
            match remote::Remote::from_env(&env, &settings) {
                Ok(api) => remote::run(remote::sweep(&api, &group, dry_run, json)).await,
                Err(failure) => report(failure),
            }
        }
        CliCommand::Sweep { dry_run, group, .. } => sweep(settings, env, dry_run, group).await,
    }
}

async fn console(settings: Settings, env: EnvSource, user: String, groups: Vec<String>) -> i32 {
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
    let terminal = crate::console::Terminal::new(Box::new(std::io::stdout()));
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    let options = crate::console::ConsoleOptions { user, user_groups };
    match crate::console::run(
        &settings.data_dir,
        policy,
        providers,
        options,
        input,
        terminal,
    )
    .await
    {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("jitbot: {error}");
            EXIT_BAD_SETUP
        }
    }
}

fn report(failure: remote::Failure) -> i32 {
    eprintln!("jitbot: {}", failure.message);
    failure.code
}

fn init_logging(format: LogFormat) {
    init_logging_with(format, "info");
}

/// Logs go to stderr; `RUST_LOG` overrides `default_filter`.
fn init_logging_with(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn report_policy_error(error: &PolicyError) {
    eprintln!("{error}");
    if let PolicyError::Invalid { problems, .. } = error {
        eprintln!("{} problem(s) found", problems.len());
    }
}

fn check_config(path: &Path) -> i32 {
    match policy::load(path) {
        Ok(policy) => {
            println!(
                "{}: OK ({} group(s), {} provider(s))",
                path.display(),
                policy.groups.len(),
                policy.providers.len()
            );
            EXIT_OK
        }
        Err(error) => {
            report_policy_error(&error);
            EXIT_FAILED
        }
    }
}

/// The policy and its providers, or the exit code after saying what is wrong.
fn policy_and_providers(settings: &Settings, env: &EnvSource) -> Result<(Policy, Providers), i32> {
    let policy = match policy::load(&settings.config_path) {
        Ok(policy) => policy,
        Err(error) => {
            report_policy_error(&error);
            eprintln!("jitbot: refusing to start with an invalid policy");
            return Err(EXIT_BAD_SETUP);
        }
    };
    match crate::providers::build(&policy, env) {
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

async fn serve(settings: Settings, env: EnvSource) -> i32 {
    init_logging(settings.log_format);
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
        data_dir: settings.data_dir.clone(),
        policy,
        providers,
        slack: settings.slack.clone(),
        teams: settings.teams.clone(),
        teams_webhook_secret: settings.teams_webhook_secret.clone(),
        api_tokens: settings.api_tokens.clone(),
        user_limits: settings.user_limits,
        max_in_flight: settings.max_in_flight,
        clock: Arc::new(SystemClock),
    };
    let running = match server::start(parts, listener).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    // On stdout, whatever the log settings: with `JITBOT_LISTEN=…:0` this
    // is how a supervisor (or a test) learns the port the system chose.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        // Nobody reading stdout is no reason to stop.
        let _ = writeln!(stdout, "jitbot listening on {}", running.addr);
        let _ = stdout.flush();
    }
    match running.run_until(shutdown_signal()).await {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("jitbot: {error}");
            EXIT_FAILED
        }
    }
}

/// Resolves on ctrl-c or SIGTERM (what Kubernetes and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn audit_verify(data_dir: &Path) -> i32 {
    let store = match SledStore::open(data_dir) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    match store.verify_audit() {
        Ok(Ok(count)) => {
            println!("audit chain OK: {count} event(s) verified");
            EXIT_OK
        }
        Ok(Err(broken)) => {
            eprintln!("audit chain BROKEN: {broken}");
            EXIT_FAILED
        }
        Err(error) => {
            eprintln!("jitbot: cannot read the audit log: {error}");
            EXIT_BAD_SETUP
        }
    }
}

async fn sweep(settings: Settings, env: EnvSource, dry_run: bool, only: Option<String>) -> i32 {
    let (policy, providers) = match policy_and_providers(&settings, &env) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let groups: Vec<GroupPolicy> = match &only {
        Some(name) => match policy.groups.iter().find(|g| g.name.as_str() == name) {
            Some(group) if group.sweep == SweepMode::Off && !dry_run => {
                eprintln!("jitbot: group {name} has sweep = \"off\"; use --dry-run to see what a sweep would find");
                return EXIT_BAD_SETUP;
            }
            Some(group) => vec![group.clone()],
            None => {
                eprintln!("jitbot: there is no group {name} in the policy");
                return EXIT_BAD_SETUP;
            }
        },
        None => policy
            .groups
            .iter()
            .filter(|g| g.sweep != SweepMode::Off)
            .cloned()
            .collect(),
    };
    if groups.is_empty() {
        println!("no group has sweep = \"report\" or \"enforce\"");
        return EXIT_OK;
    }
    let store: Arc<dyn Store> = match SledStore::open(&settings.data_dir) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    let mut directories = HashMap::new();
    if let Some(slack) = &settings.slack {
        match SlackClient::new(&slack.api_url, slack.bot_token.clone()) {
            Ok(client) => {
                directories.insert(
                    Platform::Slack,
                    Arc::new(CachedDirectory::new(Arc::new(client))),
                );
            }
            Err(error) => {
                eprintln!("jitbot: cannot set up Slack: {error}");
                return EXIT_BAD_SETUP;
            }
        }
    }
    let engine = Engine::new(
        Arc::new(SystemClock),
        store,
        Arc::new(policy),
        providers,
        directories,
        Wakers::default(),
    );
    let mut code = EXIT_OK;
    for group in &groups {
        match engine.sweep(group, dry_run).await {
            Ok(report) => {
                for line in report.lines() {
                    println!("{line}");
                }
                if !report.succeeded() {
                    code = EXIT_FAILED;
                }
            }
            Err(error) => {
                eprintln!("jitbot: sweep of {} failed: {error}", group.name);
                code = EXIT_FAILED;
            }
        }
    }
    code
}
