//! Commands that work without the server: `check-config`, and the two that
//! open the store directly (the server must be stopped): `audit verify` and
//! the offline `sweep`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::serve::{policy_and_providers, report_policy_error};
use super::{EXIT_BAD_SETUP, EXIT_FAILED, EXIT_OK};
use crate::chat::directory::CachedDirectory;
use crate::chat::slack::SlackClient;
use crate::clock::SystemClock;
use crate::config::policy;
use crate::config::{EnvSource, Settings};
use crate::domain::ids::Platform;
use crate::domain::policy::{GroupPolicy, SweepMode};
use crate::engine::{Engine, Wakers};
use crate::store::prelude::*;
use crate::store::{SledStore, Store};

pub(super) fn check_config(path: &Path) -> i32 {
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

pub(super) async fn audit_verify(data_dir: &Path) -> i32 {
    let store = match SledStore::open(data_dir) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    match store.verify_audit().await {
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

pub(super) async fn sweep(
    settings: Settings,
    env: EnvSource,
    dry_run: bool,
    only: Option<String>,
) -> i32 {
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
