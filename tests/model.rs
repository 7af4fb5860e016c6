//! A model-based test of the engine: random sequences of what people and
//! the world do — requests, clicks by approvers, non-approvers and the
//! requester, cancels, releases, extensions, admin revokes, a provider that
//! fails and recovers, time jumping ahead, restarts — run against the real
//! engine, scheduler, outbox and sled store on tokio's paused clock, with
//! only the chat platform and the provider faked in memory. After every step
//! the promises are checked:
//!
//! - nobody holds access past its grant's end + 2 s once the provider is up
//!   (after an outage: once the longest retry pause has passed);
//! - no grant without its approvals (never the requester's, never a
//!   non-approver's, each approver once, enough of them) or an auto-approve
//!   rule;
//! - at most one grant per request;
//! - every revocation owed is eventually done (at the end: the provider up,
//!   time moved on, nothing held);
//! - the audit chain verifies.
//!
//! `PROPTEST_CASES` sets how many sequences run (CI: the default below).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jitbot::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use jitbot::clock::{Clock, TokioClock};
use jitbot::domain::audit::AuditAction;
use jitbot::domain::ids::{Actor, ChannelId, Platform, RequestId, UserId};
use jitbot::domain::job::Decision;
use jitbot::domain::request::{AccessRequest, RequestState};
use jitbot::engine::{Click, Engine, Reply, Wakers};
use jitbot::providers::{Access, Provider, ProviderError, Providers};
use jitbot::store::{SledStore, Store};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"
max_duration = "8h"
warn_before = "5m"
pending_timeout = "2h"

[providers.fake]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]

[[groups]]
name = "db"
provider = "fake"
target = "db_rw"
approvers = ["U0LEAD", "U0DBA"]
channel = "C0APPROVALS"

[[groups]]
name = "db-oncall"
provider = "fake"
target = "db_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = { requesters = ["U0ONCALL"], max_duration = "1h" }

[[groups]]
name = "vault"
provider = "fake"
target = "vault_admin"
approvers = ["U0LEAD", "U0DBA", "U0SEC"]
approvals_required = 2
channel = "C0APPROVALS"
escalate_after = "30m"
escalate_to = ["U0HEAD"]
"#;

/// Approvers ask for access too: their own clicks must never count.
const REQUESTERS: [&str; 4] = ["U0ALICE", "U0BOB", "U0ONCALL", "U0LEAD"];
/// Everyone who may click: approvers, the escalation approver, someone
/// with no rights, and the requesters themselves.
const CLICKERS: [&str; 8] = [
    "U0LEAD",
    "U0DBA",
    "U0SEC",
    "U0HEAD",
    "U0MALLORY",
    "U0ALICE",
    "U0BOB",
    "U0ONCALL",
];
const GROUPS: [&str; 3] = ["db", "db-oncall", "vault"];

/// The longest pause between two retries of a failing revoke (with its
/// jitter), and the slack given on top of a grant's end.
const MAX_RETRY_PAUSE: i64 = 360;
const GRACE: i64 = 2;

/// The provider: who holds what, up or down, and every grant made.
#[derive(Default)]
struct FakeProvider {
    down: AtomicBool,
    held: Mutex<BTreeSet<(String, String)>>,
    grants: Mutex<Vec<String>>,
}

#[async_trait]
impl Provider for FakeProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::new("fake", "down"));
        }
        self.held
            .lock()
            .unwrap()
            .insert((access.principal.clone(), access.target.clone()));
        self.grants
            .lock()
            .unwrap()
            .push(access.request_id.clone().unwrap_or_default());
        Ok(())
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::new("fake", "down"));
        }
        self.held
            .lock()
            .unwrap()
            .remove(&(access.principal.clone(), access.target.clone()));
        Ok(())
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        Ok(self
            .held
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| t == target)
            .map(|(p, _)| p.clone())
            .collect())
    }
}

/// The chat platform: every message accepted, nothing kept.
struct QuietChat;

#[async_trait]
impl ChatPlatform for QuietChat {
    fn platform(&self) -> Platform {
        Platform::Slack
    }
    async fn post_card(&self, channel: &ChannelId, _: &Card) -> Result<PostedMessage, ChatError> {
        Ok(PostedMessage {
            channel: channel.clone(),
            message_id: "1.1".into(),
        })
    }
    async fn update_card(&self, _: &PostedMessage, _: &Card) -> Result<(), ChatError> {
        Ok(())
    }
    async fn direct_message(
        &self,
        user: &UserId,
        _: &str,
        _: Option<&Card>,
    ) -> Result<PostedMessage, ChatError> {
        Ok(PostedMessage {
            channel: ChannelId::new(format!("D{user}")),
            message_id: "1.2".into(),
        })
    }
    async fn ephemeral(&self, _: &ChannelId, _: &UserId, _: &str) -> Result<(), ChatError> {
        Ok(())
    }
    async fn post_text(&self, _: &ChannelId, _: &str) -> Result<(), ChatError> {
        Ok(())
    }
}

/// What happens next.
#[derive(Debug, Clone)]
enum Op {
    Request {
        user: usize,
        group: usize,
        minutes: u32,
    },
    Approve {
        clicker: usize,
        request: usize,
    },
    Deny {
        clicker: usize,
        request: usize,
    },
    Cancel {
        user: usize,
        request: usize,
    },
    Release {
        user: usize,
        request: usize,
    },
    Extend {
        user: usize,
        request: usize,
        minutes: u32,
    },
    AdminRevoke {
        request: usize,
    },
    ProviderDown,
    ProviderUp,
    Advance {
        seconds: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..REQUESTERS.len(), 0..GROUPS.len(), 1u32..120)
            .prop_map(|(user, group, minutes)| Op::Request { user, group, minutes }),
        5 => (0..CLICKERS.len(), 0..8usize)
            .prop_map(|(clicker, request)| Op::Approve { clicker, request }),
        1 => (0..CLICKERS.len(), 0..8usize).prop_map(|(clicker, request)| Op::Deny { clicker, request }),
        1 => (0..REQUESTERS.len(), 0..8usize).prop_map(|(user, request)| Op::Cancel { user, request }),
        1 => (0..REQUESTERS.len(), 0..8usize).prop_map(|(user, request)| Op::Release { user, request }),
        1 => (0..REQUESTERS.len(), 0..8usize, 1u32..60)
            .prop_map(|(user, request, minutes)| Op::Extend { user, request, minutes }),
        1 => (0..8usize).prop_map(|request| Op::AdminRevoke { request }),
        1 => Just(Op::ProviderDown),
        2 => Just(Op::ProviderUp),
        4 => prop_oneof![1u64..30, 60u64..3600, 3600u64..10_000].prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Restart),
    ]
}

fn actor(id: &str) -> Actor {
    Actor::new(Platform::Slack, UserId::new(id), id.to_lowercase())
}

/// The system under test, and what the test knows of the world.
struct World {
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
    provider: Arc<FakeProvider>,
    engine: Option<Arc<Engine>>,
    workers: Option<(CancellationToken, tokio_util::task::TaskTracker)>,
    /// Requests filed, in order (ops name them by index).
    filed: Vec<RequestId>,
    /// Since when the provider has been up (None: down now).
    up_since: Option<DateTime<Utc>>,
}

impl World {
    fn new() -> World {
        let start = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .to_utc();
        let mut world = World {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(TokioClock::starting_at(start)),
            provider: Arc::default(),
            engine: None,
            workers: None,
            filed: Vec::new(),
            up_since: Some(start),
        };
        world.start();
        world
    }

    fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("running")
    }

    fn start(&mut self) {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(self.dir.path()).unwrap());
        let policy = Arc::new(jitbot::config::policy::parse(POLICY).unwrap());
        let mut providers: Providers = HashMap::new();
        providers.insert("fake".into(), self.provider.clone());
        let wakers = Wakers::default();
        let chat: HashMap<Platform, Arc<dyn ChatPlatform>> = HashMap::from([(
            Platform::Slack,
            Arc::new(QuietChat) as Arc<dyn ChatPlatform>,
        )]);
        let engine = Arc::new(
            Engine::new(
                self.clock.clone(),
                store,
                policy.clone(),
                providers,
                HashMap::new(),
                wakers.clone(),
            )
            .with_chat(chat.clone())
            .with_limits(jitbot::domain::quota::FilingLimits {
                per_minute: 1000,
                pending: 1000,
            }),
        );
        let cancel = CancellationToken::new();
        let tracker = jitbot::server::spawn_workers(&engine, policy, chat, None, &wakers, &cancel);
        self.engine = Some(engine);
        self.workers = Some((cancel, tracker));
    }

    async fn stop(&mut self) {
        if let Some((cancel, tracker)) = self.workers.take() {
            cancel.cancel();
            tracker.wait().await;
        }
        let engine = self.engine.take().expect("running");
        engine.flush().await.unwrap();
        drop(engine);
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.engine().store()
    }

    fn request(&self, index: usize) -> Option<RequestId> {
        (!self.filed.is_empty()).then(|| self.filed[index % self.filed.len()].clone())
    }

    async fn say(&self, user: &str, text: &str) -> String {
        match self.engine().handle_command(actor(user), None, text).await {
            Reply::Text(text) => text,
            Reply::OpenRequestForm(_) | Reply::Home(_) => String::new(),
        }
    }

    /// Let the workers finish what is due now.
    async fn settle(&self) {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let due = self
                .store()
                .due_jobs(self.now(), 1, &|_| false)
                .await
                .unwrap();
            if due.jobs.is_empty() {
                return;
            }
        }
    }

    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Request {
                user,
                group,
                minutes,
            } => {
                let text = self
                    .say(
                        REQUESTERS[*user],
                        &format!("request {} {minutes}m model step", GROUPS[*group]),
                    )
                    .await;
                if let Some(id) = text
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .find(|w| w.len() == 8 && w.starts_with("R-"))
                {
                    self.filed.push(RequestId::parse(id).unwrap());
                }
            }
            Op::Approve { clicker, request } | Op::Deny { clicker, request } => {
                let Some(id) = self.request(*request) else {
                    return;
                };
                let decision = match op {
                    Op::Approve { .. } => Decision::Approve,
                    _ => Decision::Deny {
                        reason: "not now".into(),
                    },
                };
                self.engine()
                    .click(Click {
                        request: id,
                        by: actor(CLICKERS[*clicker]),
                        decision,
                        reply_in: None,
                        answers_inline: false,
                    })
                    .await
                    .unwrap();
            }
            Op::Cancel { user, request } => {
                let Some(id) = self.request(*request) else {
                    return;
                };
                self.say(REQUESTERS[*user], &format!("cancel {id}")).await;
            }
            Op::Release { user, request } => {
                let Some(id) = self.request(*request) else {
                    return;
                };
                self.say(REQUESTERS[*user], &format!("release {}", id.grant_id()))
                    .await;
            }
            Op::Extend {
                user,
                request,
                minutes,
            } => {
                let Some(id) = self.request(*request) else {
                    return;
                };
                let text = self
                    .say(
                        REQUESTERS[*user],
                        &format!("extend {} {minutes}m more time", id.grant_id()),
                    )
                    .await;
                if let Some(extension) = text
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .find(|w| w.len() == 8 && w.starts_with("R-"))
                {
                    self.filed.push(RequestId::parse(extension).unwrap());
                }
            }
            Op::AdminRevoke { request } => {
                let Some(id) = self.request(*request) else {
                    return;
                };
                self.say(
                    "U0ADMIN",
                    &format!("admin revoke {} model says so", id.grant_id()),
                )
                .await;
            }
            Op::ProviderDown => {
                self.provider.down.store(true, Ordering::SeqCst);
                self.up_since = None;
            }
            Op::ProviderUp => {
                if self.provider.down.swap(false, Ordering::SeqCst) {
                    self.up_since = Some(self.now());
                }
            }
            Op::Advance { seconds } => {
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
            }
            Op::Restart => {
                self.stop().await;
                self.start();
            }
        }
        self.settle().await;
    }

    /// Every promise, checked against the store and the provider now.
    async fn check(&self, history: &[Op]) -> Result<(), TestCaseError> {
        let store = self.store();
        let now = self.now();
        let mut requests: Vec<AccessRequest> = Vec::new();
        for id in &self.filed {
            requests.extend(store.get_request(id).await.unwrap());
        }
        let policy = self.engine().policy();

        // The audit chain verifies.
        let verified = store.verify_audit().await.unwrap();
        prop_assert!(
            verified.is_ok(),
            "audit chain broken: {verified:?} after {history:?}"
        );
        let events = store.audit_events(0, usize::MAX).await.unwrap();

        for request in &requests {
            let group = policy.group(&request.group).unwrap();
            // Approvals: approvers only, each once, never the requester.
            let mut seen = BTreeSet::new();
            for approval in &request.approvals {
                prop_assert!(
                    !approval.by.is(&request.requester),
                    "{} approved their own request {}",
                    approval.by.user,
                    request.id
                );
                prop_assert!(
                    seen.insert(approval.by.user.clone()),
                    "counted twice on {}",
                    request.id
                );
                let named = group
                    .approvers
                    .iter()
                    .any(|s| s.matches(&approval.by, &|_| false))
                    || (request.escalated_at.is_some()
                        && group
                            .escalate_to
                            .iter()
                            .any(|s| s.matches(&approval.by, &|_| false)));
                prop_assert!(
                    named,
                    "{} is no approver of {}",
                    approval.by.user,
                    request.group
                );
            }
            // A grant only with its approvals or an auto-approve rule.
            let granted_events = events
                .iter()
                .filter(|e| {
                    e.action == AuditAction::Granted && e.request.as_ref() == Some(&request.id)
                })
                .count();
            prop_assert!(
                granted_events <= 1,
                "{} granted {granted_events} times",
                request.id
            );
            let approved_by_policy = events.iter().any(|e| {
                e.action == AuditAction::AutoApproved && e.request.as_ref() == Some(&request.id)
            });
            if granted_events == 1 || matches!(request.state, RequestState::Active { .. }) {
                prop_assert!(
                    approved_by_policy
                        || request.approvals.len() >= group.approvals_required.max(1) as usize,
                    "{} granted with {} approvals",
                    request.id,
                    request.approvals.len()
                );
            }
        }

        // Nobody holds access past the end of every grant that explains it.
        let held = self.provider.held.lock().unwrap().clone();
        for (principal, target) in held {
            let covering_end = requests
                .iter()
                .filter(|r| r.requester.user.as_str() == principal)
                .filter(|r| policy.group(&r.group).is_some_and(|g| g.target == target))
                .filter_map(|r| match r.state {
                    RequestState::Active { expires_at, .. } => Some(expires_at),
                    RequestState::Approved { .. } => r.approved_until(),
                    _ => None,
                })
                .max();
            // Ended grants leave access only while a revoke may be pending:
            // until their end + GRACE, or while the provider is down, or
            // within one retry pause of its recovery.
            let last_end = requests
                .iter()
                .filter(|r| r.requester.user.as_str() == principal)
                .filter(|r| policy.group(&r.group).is_some_and(|g| g.target == target))
                .filter_map(|r| {
                    events
                        .iter()
                        .filter(|e| e.request.as_ref() == Some(&r.id))
                        .filter(|e| {
                            matches!(
                                e.action,
                                AuditAction::Expired
                                    | AuditAction::Released
                                    | AuditAction::Revoked
                                    | AuditAction::GrantFailed
                            )
                        })
                        .map(|e| e.at)
                        .max()
                        .or(r.expires_at())
                })
                .max();
            let allowed_until = match (covering_end, self.up_since) {
                (Some(end), _) if end + chrono::Duration::seconds(GRACE) >= now => continue,
                (_, None) => continue,
                (end, Some(up)) => {
                    let end = end.or(last_end).unwrap_or(up);
                    if up <= end {
                        end + chrono::Duration::seconds(GRACE)
                    } else {
                        up + chrono::Duration::seconds(MAX_RETRY_PAUSE + GRACE)
                    }
                }
            };
            prop_assert!(
                now <= allowed_until,
                "{principal} still holds {target} at {now}, allowed until {allowed_until}; after {history:?}"
            );
        }
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut world = World::new();
        let mut history = Vec::new();
        for op in ops {
            history.push(op.clone());
            world.apply(&op).await;
            world.check(&history).await?;
        }
        // Every revocation owed is done in the end: the provider up, and
        // time moved past every grant's end and every retry pause.
        world.apply(&Op::ProviderUp).await;
        world.apply(&Op::Advance { seconds: 9 * 3600 }).await;
        world.check(&history).await?;
        let held: BTreeMap<String, String> = world
            .provider
            .held
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        prop_assert!(
            held.is_empty(),
            "still held at the end: {held:?} after {history:?}"
        );
        world.stop().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        max_shrink_iters: 400,
        .. ProptestConfig::default()
    })]

    #[test]
    fn the_promises_hold_whatever_happens(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
