//! The scheduling logic on tokio's paused clock: a real engine and sled
//! store, a provider that records when it is called, and virtual time moved
//! forward by hours in milliseconds of real time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Scheduler;
use crate::clock::{Clock, TokioClock};
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, GroupName, Platform, UserId};
use crate::engine::{Engine, Wakers};
use crate::providers::{Access, Provider, ProviderError, Providers};
use crate::store::{SledStore, Store};

const POLICY: &str = r#"
[providers.recorder]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]

[[groups]]
name = "db"
provider = "recorder"
target = "db_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1m"
max_duration = "1d"
warn_before = "1m"
auto_approve = { requesters = ["*"], max_duration = "1d" }
"#;

/// Records each call with the (virtual) time it was made; fails the first
/// `failing_revokes` revokes.
struct Recorder {
    clock: Arc<dyn Clock>,
    calls: Mutex<Vec<(String, String, DateTime<Utc>)>>,
    failing_revokes: AtomicU32,
}

#[async_trait]
impl Provider for Recorder {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        let call = ("grant".into(), access.principal.clone(), self.clock.now());
        self.calls.lock().unwrap().push(call);
        Ok(())
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        let call = ("revoke".into(), access.principal.clone(), self.clock.now());
        self.calls.lock().unwrap().push(call);
        let failing = self.failing_revokes.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_revokes.store(failing - 1, Ordering::SeqCst);
            return Err(ProviderError::new("recorder", "IAM unavailable"));
        }
        Ok(())
    }

    async fn holders(&self, _target: &str) -> Result<Vec<String>, ProviderError> {
        Err(ProviderError::new("recorder", "cannot list holders"))
    }
}

struct Setup {
    start: DateTime<Utc>,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    recorder: Arc<Recorder>,
    wakers: Wakers,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(failing_revokes: u32) -> Setup {
        let start = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .to_utc();
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let recorder = Arc::new(Recorder {
            clock: clock.clone(),
            calls: Mutex::new(Vec::new()),
            failing_revokes: AtomicU32::new(failing_revokes),
        });
        let mut providers: Providers = HashMap::new();
        providers.insert("recorder".into(), recorder.clone());
        let wakers = Wakers::default();
        let policy = Arc::new(crate::config::policy::parse(POLICY).unwrap());
        let engine = Arc::new(Engine::new(
            clock,
            store.clone(),
            policy,
            providers,
            HashMap::new(),
            wakers.clone(),
        ));
        Setup {
            start,
            engine,
            store,
            recorder,
            wakers,
            _dir: dir,
        }
    }

    fn run_scheduler(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = CancellationToken::new();
        let scheduler = Scheduler::new(
            self.engine.clone(),
            self.store.clone(),
            self.wakers.scheduler.clone(),
        );
        let task = tokio::spawn(scheduler.run(cancel.clone()));
        (cancel, task)
    }

    async fn grant(&self, user: &str, duration: &str) {
        let actor = Actor::new(Platform::Slack, UserId::new(user), user);
        self.engine
            .submit(
                actor,
                None,
                &GroupName::parse("db").unwrap(),
                Some(HumanDuration::parse(duration).unwrap()),
                "scheduled work",
            )
            .await
            .unwrap();
    }

    fn calls(&self, action: &str) -> Vec<(String, i64)> {
        self.recorder
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _, _)| a == action)
            .map(|(_, user, at)| (user.clone(), (*at - self.start).num_seconds()))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn grants_are_revoked_at_their_end_in_order_and_never_early() {
    let setup = Setup::new(0);
    let (cancel, task) = setup.run_scheduler();
    setup.grant("U0CAROL", "30m").await;
    setup.grant("U0ALICE", "10m").await;
    setup.grant("U0BOB", "20m").await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(setup.calls("grant").len(), 3);
    assert!(setup.calls("revoke").is_empty());

    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert_eq!(setup.calls("revoke"), vec![("U0ALICE".to_string(), 600)]);

    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(
        setup.calls("revoke"),
        vec![
            ("U0ALICE".to_string(), 600),
            ("U0BOB".to_string(), 1200),
            ("U0CAROL".to_string(), 1800)
        ]
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn whatever_fell_due_while_stopped_runs_at_once_on_start() {
    let setup = Setup::new(0);
    let (cancel, task) = setup.run_scheduler();
    for user in ["U0A", "U0B", "U0C"] {
        setup.grant(user, "5m").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(setup.calls("grant").len(), 3);
    cancel.cancel();
    task.await.unwrap();

    // Down for an hour: nothing happens meanwhile.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(setup.calls("revoke").is_empty());

    let (cancel, task) = setup.run_scheduler();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let revokes = setup.calls("revoke");
    assert_eq!(revokes.len(), 3, "{revokes:?}");
    assert!(revokes.iter().all(|(_, at)| *at == 3601), "{revokes:?}");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_revoke_is_retried_with_growing_pauses_until_it_works() {
    let setup = Setup::new(4);
    let (cancel, task) = setup.run_scheduler();
    setup.grant("U0ALICE", "10m").await;
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    let attempts: Vec<i64> = setup
        .calls("revoke")
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    assert_eq!(
        attempts.len(),
        5,
        "four failures, then success: {attempts:?}"
    );
    assert_eq!(attempts[0], 600, "first try at the end of the grant");
    // Backoff doubles from one second (±20 % jitter, whole seconds here).
    let pauses: Vec<i64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (pause, base) in pauses.iter().zip([1, 2, 4, 8]) {
        assert!(
            (*pause as f64) >= (base as f64 * 0.8).floor()
                && (*pause as f64) <= (base as f64 * 1.2).ceil(),
            "{pauses:?}"
        );
    }
    cancel.cancel();
    task.await.unwrap();
}
