//! A model-based test of the engine: random sequences of what people and
//! the world do — requests, clicks by approvers, non-approvers and the
//! requester (from Slack, from a Teams account `[identities]` links to
//! them, by email with or without an address jitbot knows), cancels,
//! releases, extensions one at a time and in bursts, admin revokes, a
//! provider that fails and recovers, time jumping ahead, restarts, and
//! policy edits between restarts (a target renamed, a group removed, a
//! principal override changed; the provider kept) — run against the real
//! engine, scheduler, outbox and sled store on tokio's paused clock, with
//! only the chat platforms, the directory and the provider faked in memory.
//! After every step the promises are checked, each against the rules the
//! request was filed under and against who each account really is:
//!
//! - nobody holds a (principal, target) the provider granted past its
//!   grant's end + 2 s once the provider is up (after an outage: once the
//!   longest retry pause has passed), whatever the policy calls it now;
//! - no grant or extension without its approvals — never by the requester
//!   or another account of theirs, never a non-approver's, each person
//!   once, enough of them — or an auto-approve rule that covers the whole
//!   grant;
//! - no grant longer in all (extensions included) than its group's
//!   max_duration, and at most one open extension per grant;
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
use jitbot::chat::directory::{CachedDirectory, Directory};
use jitbot::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use jitbot::clock::{Clock, TokioClock};
use jitbot::domain::audit::AuditAction;
use jitbot::domain::email::EmailAddress;
use jitbot::domain::ids::{Actor, ChannelId, Platform, RequestId, UserId};
use jitbot::domain::job::Decision;
use jitbot::domain::policy::{GroupPolicy, Subject};
use jitbot::domain::request::{AccessRequest, RequestState};
use jitbot::engine::{Click, Engine, Reply, Wakers};
use jitbot::providers::{Access, Provider, ProviderError, Providers};
use jitbot::store::{SledStore, Store};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

/// Alice's Teams account, linked to her Slack one in `[identities]`.
const ALICE_AAD: &str = "6f1c2e4a-0000-4000-8000-00000000a11c";
/// Bob's Teams account, which nothing links to his Slack one.
const BOB_AAD: &str = "6f1c2e4a-0000-4000-8000-000000000b0b";

/// What the policy looks like now: each edit can be made or undone
/// between two runs, always keeping the provider `fake`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Variant {
    /// `db_rw` is called `db_readwrite`.
    renamed: bool,
    /// The `vault` group is gone.
    vault_removed: bool,
    /// Alice and Bob are granted under other principals.
    principals_changed: bool,
}

impl Variant {
    fn policy(self) -> String {
        let db_target = if self.renamed {
            "db_readwrite"
        } else {
            "db_rw"
        };
        let (alice, bob) = if self.principals_changed {
            (", fake = \"alice_admin\"", "bob_v2")
        } else {
            ("", "bob")
        };
        let vault = if self.vault_removed {
            String::new()
        } else {
            format!(
                r#"
[[groups]]
name = "vault"
provider = "fake"
target = "vault_admin"
approvers = ["U0LEAD", "U0DBA", "U0SEC", "dba@example.com", "bob@example.com", "{ALICE_AAD}", "{BOB_AAD}"]
approvals_required = 2
channel = "C0APPROVALS"
max_duration = "90m"
escalate_after = "30m"
escalate_to = ["U0HEAD"]
"#
            )
        };
        format!(
            r#"
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
principal = "{{email_local}}"

[identities]
U0ALICE = {{ teams = "{ALICE_AAD}", email = "alice@example.com"{alice} }}
U0BOB = {{ fake = "{bob}" }}

[[groups]]
name = "db"
provider = "fake"
target = "{db_target}"
approvers = ["U0LEAD", "U0DBA", "alice@example.com", "bob@example.com"]
channel = "C0APPROVALS"
max_duration = "2h"

[[groups]]
name = "db-oncall"
provider = "fake"
target = "{db_target}"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
max_duration = "3h"
auto_approve = {{ requesters = ["U0ONCALL"], max_duration = "1h" }}
{vault}"#
        )
    }
}

/// Approvers ask for access too: their own clicks must never count.
const REQUESTERS: [&str; 4] = ["U0ALICE", "U0BOB", "U0ONCALL", "U0LEAD"];
/// Everyone who may click: approvers, the escalation approver, someone
/// with no rights, the requesters themselves, and the other accounts of
/// some of them (Alice's linked Teams account, Bob's unlinked one, email
/// approvers — Bob's address is one jitbot cannot know is his).
const CLICKERS: [(Platform, &str); 13] = [
    (Platform::Slack, "U0LEAD"),
    (Platform::Slack, "U0DBA"),
    (Platform::Slack, "U0SEC"),
    (Platform::Slack, "U0HEAD"),
    (Platform::Slack, "U0MALLORY"),
    (Platform::Slack, "U0ALICE"),
    (Platform::Slack, "U0BOB"),
    (Platform::Slack, "U0ONCALL"),
    (Platform::Teams, ALICE_AAD),
    (Platform::Teams, BOB_AAD),
    (Platform::Email, "alice@example.com"),
    (Platform::Email, "bob@example.com"),
    (Platform::Email, "dba@example.com"),
];
const GROUPS: [&str; 3] = ["db", "db-oncall", "vault"];

/// The longest pause between two retries of a failing revoke (with its
/// jitter), and the slack given on top of a grant's end.
const MAX_RETRY_PAUSE: i64 = 360;
const GRACE: i64 = 2;

/// Who an account really is (the truth jitbot may only partly know):
/// `U0ALICE`, Alice's Teams account and alice@example.com are all Alice.
fn person_of(actor: &Actor) -> String {
    let id = actor.user.as_str();
    match actor.platform {
        Platform::Teams if id.eq_ignore_ascii_case(ALICE_AAD) => "alice".into(),
        Platform::Teams if id.eq_ignore_ascii_case(BOB_AAD) => "bob".into(),
        Platform::Email => id.split('@').next().unwrap_or(id).to_lowercase(),
        _ => id.trim_start_matches("U0").to_lowercase(),
    }
}

/// The address that gives an account rights: `[identities]` links
/// Alice's (to her Teams account too), the Slack profile everyone's but
/// Bob's.
fn rights_email(actor: &Actor) -> Option<EmailAddress> {
    let address = match (actor.platform, person_of(actor).as_str()) {
        (Platform::Teams, "alice") | (Platform::Slack, _) => {
            format!("{}@example.com", person_of(actor))
        }
        _ => return actor.email.clone(),
    };
    (person_of(actor) != "bob").then(|| EmailAddress::parse(&address).unwrap())
}

/// The provider: who holds what, up or down, and every grant made.
#[derive(Default)]
struct FakeProvider {
    down: AtomicBool,
    held: Mutex<BTreeSet<(String, String)>>,
    /// (request, principal, target) of every grant made.
    grants: Mutex<Vec<(String, String, String)>>,
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
        self.grants.lock().unwrap().push((
            access.request_id.clone().unwrap_or_default(),
            access.principal.clone(),
            access.target.clone(),
        ));
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

/// A chat platform: every message accepted, nothing kept.
struct QuietChat(Platform);

#[async_trait]
impl ChatPlatform for QuietChat {
    fn platform(&self) -> Platform {
        self.0
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

/// The Slack workspace's profiles: everyone has an address but Bob.
struct Profiles;

#[async_trait]
impl Directory for Profiles {
    async fn user_group_members(&self, _: &str) -> Result<Vec<UserId>, ChatError> {
        Ok(Vec::new())
    }
    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        let actor = Actor::new(Platform::Slack, user.clone(), "");
        Ok(rights_email(&actor).map(|a| a.to_string()))
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
    /// Its requester asks for more time on one grant several times at once.
    ExtendBurst {
        request: usize,
        minutes: Vec<u32>,
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
    /// Restart under another policy.
    EditPolicy(Variant),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..REQUESTERS.len(), 0..GROUPS.len(), 1u32..120)
            .prop_map(|(user, group, minutes)| Op::Request { user, group, minutes }),
        6 => (0..CLICKERS.len(), 0..8usize)
            .prop_map(|(clicker, request)| Op::Approve { clicker, request }),
        1 => (0..CLICKERS.len(), 0..8usize).prop_map(|(clicker, request)| Op::Deny { clicker, request }),
        1 => (0..REQUESTERS.len(), 0..8usize).prop_map(|(user, request)| Op::Cancel { user, request }),
        1 => (0..REQUESTERS.len(), 0..8usize).prop_map(|(user, request)| Op::Release { user, request }),
        2 => (0..REQUESTERS.len(), 0..8usize, 1u32..60)
            .prop_map(|(user, request, minutes)| Op::Extend { user, request, minutes }),
        2 => (0..8usize, proptest::collection::vec(1u32..60, 2..=5))
            .prop_map(|(request, minutes)| Op::ExtendBurst { request, minutes }),
        1 => (0..8usize).prop_map(|request| Op::AdminRevoke { request }),
        1 => Just(Op::ProviderDown),
        2 => Just(Op::ProviderUp),
        4 => prop_oneof![3 => 1u64..30, 3 => 60u64..3600, 1 => 3600u64..10_000].prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Restart),
        1 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(renamed, vault_removed, principals_changed)| {
            Op::EditPolicy(Variant { renamed, vault_removed, principals_changed })
        }),
    ]
}

fn actor(id: &str) -> Actor {
    Actor::new(Platform::Slack, UserId::new(id), id.to_lowercase())
}

fn clicker(index: usize) -> Actor {
    match CLICKERS[index] {
        (Platform::Email, address) => Actor::by_email(&EmailAddress::parse(address).unwrap()),
        (platform, id) => Actor::new(platform, UserId::new(id), person_of(&actor(id))),
    }
}

/// The request ids a reply names.
fn named_requests(text: &str) -> Vec<RequestId> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() == 8 && w.starts_with("R-"))
        .filter_map(|w| RequestId::parse(w).ok())
        .collect()
}

fn is_named(subjects: &[Subject], by: &Actor) -> bool {
    let with_email = by.clone().with_email(rights_email(by));
    subjects
        .iter()
        .any(|s| s.matches(by, &|_| false) || s.matches(&with_email, &|_| false))
}

/// The system under test, and what the test knows of the world.
struct World {
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
    provider: Arc<FakeProvider>,
    engine: Option<Arc<Engine>>,
    workers: Option<(CancellationToken, tokio_util::task::TaskTracker)>,
    /// The policy jitbot runs under.
    variant: Variant,
    /// Requests filed, in order (ops name them by index).
    filed: Vec<RequestId>,
    /// The rules of each request's group when it was filed.
    filed_under: HashMap<RequestId, GroupPolicy>,
    /// Since when the provider has been up (None: down now).
    up_since: Option<DateTime<Utc>>,
}

impl World {
    async fn new() -> Result<World, TestCaseError> {
        let start = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .to_utc();
        let mut world = World {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(TokioClock::starting_at(start)),
            provider: Arc::default(),
            engine: None,
            workers: None,
            variant: Variant::default(),
            filed: Vec::new(),
            filed_under: HashMap::new(),
            up_since: Some(start),
        };
        world.start(&[]).await?;
        Ok(world)
    }

    fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("running")
    }

    async fn start(&mut self, history: &[Op]) -> Result<(), TestCaseError> {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(self.dir.path()).unwrap());
        let policy = Arc::new(jitbot::config::policy::parse(&self.variant.policy()).unwrap());
        let mut providers: Providers = HashMap::new();
        providers.insert("fake".into(), self.provider.clone());
        let wakers = Wakers::default();
        let chat: HashMap<Platform, Arc<dyn ChatPlatform>> = [Platform::Slack, Platform::Teams]
            .into_iter()
            .map(|p| (p, Arc::new(QuietChat(p)) as Arc<dyn ChatPlatform>))
            .collect();
        let directories = HashMap::from([(
            Platform::Slack,
            Arc::new(CachedDirectory::new(Arc::new(Profiles))),
        )]);
        let engine = Arc::new(
            Engine::new(
                self.clock.clone(),
                store,
                policy.clone(),
                providers,
                directories,
                wakers.clone(),
            )
            .with_chat(chat.clone())
            .with_limits(jitbot::domain::quota::FilingLimits {
                per_minute: 1000,
                pending: 1000,
            }),
        );
        // The provider is kept in every policy, so every live grant can
        // still be revoked: the start must go ahead.
        let checked = engine.check_live_grants().await;
        prop_assert!(
            checked.is_ok(),
            "start refused under {:?}: {:?}; after {history:?}",
            self.variant,
            checked.err()
        );
        let cancel = CancellationToken::new();
        let tracker = jitbot::server::spawn_workers(&engine, policy, chat, None, &wakers, &cancel);
        self.engine = Some(engine);
        self.workers = Some((cancel, tracker));
        Ok(())
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

    /// One of the requests filed, a pending one if any is: most clicks
    /// are on a card that still waits.
    async fn pending(&self, index: usize) -> Option<RequestId> {
        let mut pending = Vec::new();
        for id in &self.filed {
            let request = self.store().get_request(id).await.unwrap();
            if request.is_some_and(|r| r.state == RequestState::Pending) {
                pending.push(id.clone());
            }
        }
        match pending.len() {
            0 => self.request(index),
            n => Some(pending[index % n].clone()),
        }
    }

    /// One of the grants filed (not an extension): an active one if any
    /// is, so extensions, releases and revokes mostly meet a live grant.
    async fn grant(&self, index: usize) -> Option<AccessRequest> {
        let mut grants = Vec::new();
        for id in &self.filed {
            grants.extend(
                self.store()
                    .get_request(id)
                    .await
                    .unwrap()
                    .filter(|r| r.extends.is_none()),
            );
        }
        let active: Vec<AccessRequest> = grants
            .iter()
            .filter(|r| matches!(r.state, RequestState::Active { .. }))
            .cloned()
            .collect();
        let pool = if active.is_empty() { grants } else { active };
        (!pool.is_empty()).then(|| pool[index % pool.len()].clone())
    }

    async fn say(&self, user: &str, text: &str) -> String {
        match self.engine().handle_command(actor(user), None, text).await {
            Reply::Text(text) => text,
            Reply::OpenRequestForm(_) | Reply::Home(_) => String::new(),
        }
    }

    /// Remember the requests a reply says were filed, with their group's
    /// rules as they are now.
    async fn note_filed(&mut self, reply: &str) {
        for id in named_requests(reply) {
            if self.filed_under.contains_key(&id) {
                continue;
            }
            let Some(request) = self.store().get_request(&id).await.unwrap() else {
                continue;
            };
            let group = self.engine().policy().group(&request.group).cloned();
            if let Some(group) = group {
                self.filed_under.insert(id.clone(), group);
                self.filed.push(id);
            }
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

    async fn apply(&mut self, op: &Op, history: &[Op]) -> Result<(), TestCaseError> {
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
                self.note_filed(&text).await;
            }
            Op::Approve {
                clicker: who,
                request,
            }
            | Op::Deny {
                clicker: who,
                request,
            } => {
                let id = match op {
                    Op::Approve { .. } => self.pending(*request).await,
                    _ => self.request(*request),
                };
                let Some(id) = id else {
                    return Ok(());
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
                        by: clicker(*who),
                        decision,
                        reply_in: None,
                        answers_inline: CLICKERS[*who].0 == Platform::Email,
                    })
                    .await
                    .unwrap();
            }
            Op::Cancel { user, request } => {
                let Some(id) = self.request(*request) else {
                    return Ok(());
                };
                self.say(REQUESTERS[*user], &format!("cancel {id}")).await;
            }
            Op::Release { user, request } => {
                let Some(id) = self.grant(*request).await.map(|g| g.id) else {
                    return Ok(());
                };
                self.say(REQUESTERS[*user], &format!("release {}", id.grant_id()))
                    .await;
            }
            Op::Extend {
                user,
                request,
                minutes,
            } => {
                let Some(id) = self.grant(*request).await.map(|g| g.id) else {
                    return Ok(());
                };
                let text = self
                    .say(
                        REQUESTERS[*user],
                        &format!("extend {} {minutes}m more time", id.grant_id()),
                    )
                    .await;
                self.note_filed(&text).await;
            }
            Op::ExtendBurst { request, minutes } => {
                let Some(grant) = self.grant(*request).await else {
                    return Ok(());
                };
                let id = grant.id;
                let requester = grant.requester.user.to_string();
                let texts: Vec<String> = minutes
                    .iter()
                    .map(|minutes| format!("extend {} {minutes}m all at once", id.grant_id()))
                    .collect();
                let replies = futures_util::future::join_all(
                    texts.iter().map(|text| self.say(&requester, text)),
                )
                .await;
                for reply in replies {
                    self.note_filed(&reply).await;
                }
            }
            Op::AdminRevoke { request } => {
                let Some(id) = self.grant(*request).await.map(|g| g.id) else {
                    return Ok(());
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
                self.start(history).await?;
            }
            Op::EditPolicy(variant) => {
                self.stop().await;
                self.variant = *variant;
                self.start(history).await?;
            }
        }
        self.settle().await;
        Ok(())
    }

    /// Every promise, checked against the store and the provider now.
    async fn check(&self, history: &[Op]) -> Result<(), TestCaseError> {
        let store = self.store();
        let now = self.now();
        let mut requests: Vec<AccessRequest> = Vec::new();
        for id in &self.filed {
            requests.extend(store.get_request(id).await.unwrap());
        }
        let by_id: HashMap<&RequestId, &AccessRequest> =
            requests.iter().map(|r| (&r.id, r)).collect();

        // The audit chain verifies.
        let verified = store.verify_audit().await.unwrap();
        prop_assert!(
            verified.is_ok(),
            "audit chain broken: {verified:?} after {history:?}"
        );
        let events = store.audit_events(0, usize::MAX).await.unwrap();
        let audited = |request: &RequestId, action: AuditAction| {
            events
                .iter()
                .filter(|e| e.action == action && e.request.as_ref() == Some(request))
                .count()
        };

        for request in &requests {
            let group = &self.filed_under[&request.id];
            let requester = person_of(&request.requester);
            // Approvals: approvers only, each person once, never the
            // requester from any of their accounts.
            let mut seen = BTreeSet::new();
            for approval in &request.approvals {
                let who = person_of(&approval.by);
                prop_assert!(
                    who != requester,
                    "{requester} approved their own request {} as {}; after {history:?}",
                    request.id,
                    approval.by
                );
                prop_assert!(
                    seen.insert(who.clone()),
                    "{who} counted twice on {} (last as {}); after {history:?}",
                    request.id,
                    approval.by
                );
                let named = is_named(&group.approvers, &approval.by)
                    || (request.escalated_at.is_some()
                        && is_named(&group.escalate_to, &approval.by));
                prop_assert!(
                    named,
                    "{} is no approver of {}; after {history:?}",
                    approval.by,
                    request.group
                );
            }

            // A grant (or an extension) only with its approvals or an
            // auto-approve rule that covers the whole grant.
            let granted_events = audited(&request.id, AuditAction::Granted);
            prop_assert!(
                granted_events <= 1,
                "{} granted {granted_events} times",
                request.id
            );
            let approved = match &request.extends {
                None => granted_events == 1 || matches!(request.state, RequestState::Active { .. }),
                Some(_) => matches!(
                    request.state,
                    RequestState::Approved { .. } | RequestState::Extended { .. }
                ),
            };
            if approved {
                let enough = request.approvals.len() >= group.approvals_required.max(1) as usize;
                let auto = audited(&request.id, AuditAction::AutoApproved) > 0;
                prop_assert!(
                    enough || auto,
                    "{} granted with {} approvals; after {history:?}",
                    request.id,
                    request.approvals.len()
                );
                if auto && !enough {
                    let rule = group.auto_approve.as_ref();
                    let listed = rule
                        .and_then(|r| r.requesters.as_ref())
                        .map_or(true, |listed| is_named(listed, &request.requester));
                    // The whole grant, as long as it was when this was filed.
                    let whole = match &request.extends {
                        None => request.duration,
                        Some(grant) => by_id.get(grant).map_or(request.duration, |grant| {
                            let before = grant
                                .extensions
                                .iter()
                                .take_while(|e| e.request != request.id)
                                .fold(grant.duration, |total, e| total.saturating_add(e.duration));
                            before.saturating_add(request.duration)
                        }),
                    };
                    prop_assert!(
                        rule.is_some_and(|rule| listed && whole <= rule.max_duration),
                        "{} approved by policy, {whole} in all, under {:?}; after {history:?}",
                        request.id,
                        rule
                    );
                }
            }

            // No grant longer in all than its group allows.
            if request.extends.is_none() {
                let max = group.limits.max_duration;
                prop_assert!(
                    request.total_duration() <= max,
                    "{} lasts {} in all, past {max}; after {history:?}",
                    request.id,
                    request.total_duration()
                );
                if let RequestState::Active {
                    activated_at,
                    expires_at,
                } = request.state
                {
                    prop_assert!(
                        expires_at - activated_at <= max.as_chrono(),
                        "{} runs {activated_at}..{expires_at}, past {max}; after {history:?}",
                        request.id
                    );
                }
                // One open extension per grant.
                let open = requests
                    .iter()
                    .filter(|r| r.extends.as_ref() == Some(&request.id))
                    .filter(|r| {
                        matches!(
                            r.state,
                            RequestState::Pending | RequestState::Approved { .. }
                        )
                    })
                    .count();
                prop_assert!(
                    open <= 1,
                    "{} has {open} open extensions; after {history:?}",
                    request.id
                );
            }
        }

        // Nobody holds access past the end of every grant that explains it:
        // the grants the provider made of that principal and target, by
        // whatever name the policy gives them now.
        let held = self.provider.held.lock().unwrap().clone();
        let grants = self.provider.grants.lock().unwrap().clone();
        for (principal, target) in held {
            let explaining: Vec<&AccessRequest> = requests
                .iter()
                .filter(|r| {
                    grants
                        .iter()
                        .any(|(id, p, t)| id == r.id.as_str() && *p == principal && *t == target)
                })
                .collect();
            let covering_end = explaining
                .iter()
                .filter_map(|r| match r.state {
                    RequestState::Active { expires_at, .. } => Some(expires_at),
                    RequestState::Approved { .. } => r.approved_until(),
                    _ => None,
                })
                .max();
            // Ended grants leave access only while a revoke may be pending:
            // until their end + GRACE, or while the provider is down, or
            // within one retry pause of its recovery.
            let last_end = explaining
                .iter()
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
        let mut world = World::new().await?;
        let mut history = Vec::new();
        for op in ops {
            history.push(op.clone());
            world.apply(&op, &history).await?;
            world.check(&history).await?;
        }
        // Every revocation owed is done in the end: the provider up, and
        // time moved past every grant's end and every retry pause.
        world.apply(&Op::ProviderUp, &history).await?;
        world
            .apply(&Op::Advance { seconds: 9 * 3600 }, &history)
            .await?;
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
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        max_shrink_iters: 400,
        .. ProptestConfig::default()
    })]

    #[test]
    fn the_promises_hold_whatever_happens(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
