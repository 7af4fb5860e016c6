//! The `jitbot` command line. `serve` (the default) runs the bot; `grants`,
//! `unused`, `revoke`, `mappings` and `audit export` ask the running server through
//! its HTTP API; `check-config`, `audit verify`, `audit head`, `sweep` and `store
//! migrate` work offline (they open the store: a sled store only while the
//! server is stopped, a PostgreSQL one while replicas run). Each subcommand
//! returns its exit code.

mod args;
mod logging;
mod offline;
mod remote;
mod serve;

use crate::config::{EnvSource, Settings};

pub use args::{AuditCommand, Cli, CliCommand, MappingChange, StoreCommand};

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
        CliCommand::Serve => serve::serve(settings, env).await,
        CliCommand::Console {
            user,
            groups,
            use_configured_store,
            data_dir,
        } => {
            let store = serve::ConsoleStore {
                use_configured: use_configured_store,
                data_dir,
            };
            serve::console(settings, env, user, groups, store).await
        }
        CliCommand::CheckConfig { path } => {
            offline::check_config(path.as_deref().unwrap_or(&settings.config_path), &settings)
        }
        CliCommand::Audit {
            command: AuditCommand::Verify { head },
        } => offline::audit_verify(&settings, head.as_deref()).await,
        CliCommand::Audit {
            command: AuditCommand::Head,
        } => offline::audit_head(&settings).await,
        CliCommand::Store {
            command: StoreCommand::Migrate { from_sled },
        } => offline::migrate_from_sled(&settings, &from_sled).await,
        CliCommand::Grants { json } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => remote::run(remote::grants(&api, json)).await,
            Err(failure) => report(failure),
        },
        CliCommand::Unused { group, json } => match remote::Remote::from_env(&env, &settings) {
            Ok(api) => remote::run(remote::unused(&api, group.as_deref(), json)).await,
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
        CliCommand::Sweep { dry_run, group, .. } => {
            offline::sweep(settings, env, dry_run, group).await
        }
    }
}

fn report(failure: remote::Failure) -> i32 {
    eprintln!("jitbot: {}", failure.message);
    failure.code
}
