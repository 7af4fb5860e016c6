//! Commands that work without the server: `check-config`, and those that
//! open the store directly (a sled store only while the server is
//! stopped): `audit verify`, `audit head`, the offline `sweep` and `store
//! migrate`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::serve::{policy_and_providers, report_policy_error, store_location};
use super::{EXIT_BAD_SETUP, EXIT_FAILED, EXIT_OK};
use crate::chat::directory::CachedDirectory;
use crate::chat::slack::SlackClient;
use crate::clock::SystemClock;
use crate::config::policy;
use crate::config::{EnvSource, Settings};
use crate::domain::audit::ChainHead;
use crate::domain::ids::Platform;
use crate::domain::policy::{GroupPolicy, SweepMode};
use crate::engine::{Engine, Wakers};
use crate::store::{ImportError, PgStore, SledStore, Store};

pub(super) fn check_config(path: &Path, settings: &Settings) -> i32 {
    match policy::load(path, settings.email.setup()) {
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

/// The store `settings` name, its audit chain keyed as they say.
async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, i32> {
    crate::store::open_keyed(
        &store_location(settings),
        Arc::new(SystemClock),
        settings.audit_key.clone(),
    )
    .await
    .map_err(|error| {
        eprintln!("jitbot: {error}");
        EXIT_BAD_SETUP
    })
}

/// `jitbot audit verify [--head SEQ:HASH]`.
pub(super) async fn audit_verify(settings: &Settings, shipped: Option<&str>) -> i32 {
    let shipped = match shipped.map(ChainHead::parse).transpose() {
        Ok(shipped) => shipped,
        Err(error) => {
            eprintln!("jitbot: --head: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    let store = match open_store(settings).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.verify_audit_to(shipped.as_ref()).await {
        Ok(Ok(count)) => {
            println!("audit chain OK: {count} event(s) verified");
            if let Some(head) = &shipped {
                println!("it reaches the shipped head {}", head.shown());
            }
            if settings.audit_key.is_none() {
                eprintln!("jitbot: warning: JITBOT_AUDIT_KEY is not set, so only plain SHA-256 links were checked: they show edits, not a rewrite of the whole log");
            }
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

/// `jitbot audit head`: `<seq>:<hash>` on stdout.
pub(super) async fn audit_head(settings: &Settings) -> i32 {
    let store = match open_store(settings).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.audit_head().await {
        Ok(head) => {
            println!("{}", head.shown());
            EXIT_OK
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
    let store: Arc<dyn Store> = match open_store(&settings).await {
        Ok(store) => store,
        Err(code) => return code,
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

/// `jitbot store migrate --from-sled DIR`: copy a stopped sled store into
/// the empty database of `JITBOT_DATABASE_URL`.
pub(super) async fn migrate_from_sled(settings: &Settings, from: &Path) -> i32 {
    let Some(database) = &settings.database else {
        eprintln!("jitbot: set JITBOT_DATABASE_URL to the database to copy into");
        return EXIT_BAD_SETUP;
    };
    if !from.is_dir() {
        eprintln!("jitbot: {} is not a sled store's directory", from.display());
        return EXIT_BAD_SETUP;
    }
    let dir = from.to_path_buf();
    let export = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&dir)?;
        store.export()
    })
    .await;
    let export = match export {
        Ok(Ok(export)) => export,
        Ok(Err(error)) => {
            eprintln!("jitbot: cannot read {}: {error}", from.display());
            return EXIT_BAD_SETUP;
        }
        Err(error) => {
            eprintln!("jitbot: reading {} failed: {error}", from.display());
            return EXIT_FAILED;
        }
    };
    let store = match PgStore::open_keyed(
        database.url.expose(),
        database.lease,
        Arc::new(SystemClock),
        settings.audit_key.clone(),
    )
    .await
    {
        Ok(store) => store,
        Err(error) => {
            eprintln!("jitbot: {error}");
            return EXIT_BAD_SETUP;
        }
    };
    match store.import(&export).await {
        Ok(copied) => {
            println!(
                "copied {} request(s), {} due job(s), {} message(s) owed and {} audit event(s) from {}; the audit chain verifies",
                copied.requests,
                copied.jobs,
                copied.messages,
                copied.audit_events,
                from.display()
            );
            EXIT_OK
        }
        Err(error @ ImportError::NotEmpty(_)) => {
            eprintln!("jitbot: {error}");
            EXIT_BAD_SETUP
        }
        Err(error) => {
            eprintln!("jitbot: the copy failed: {error}");
            EXIT_FAILED
        }
    }
}
