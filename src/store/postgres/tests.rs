//! The PostgreSQL store against the real server (`JITBOT_TEST_PG_URL`, or
//! the local one): each test in a database of its own, dropped afterwards.
//! Two stores on one database stand for two replicas.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::clock::SystemClock;
use crate::domain::audit::{AuditAction, AuditRecord, ChainBreak, Link};
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, Destination, GroupName, Platform, RequestId, UserId};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::quota::{FilingLimits, QuotaRefusal};
use crate::domain::request::AccessRequest;
use crate::store::prelude::*;
use crate::store::{Applied, Effects, Filed, OutboxEntry, Write};

fn server_url() -> String {
    std::env::var("JITBOT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of the test's own, dropped when this goes.
struct Database {
    name: String,
    url: String,
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {} ({e})", server_url()));
    tokio::spawn(connection);
    client
}

impl Database {
    async fn create() -> Database {
        let name = format!(
            "jitbot_unit_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let mut url = url::Url::parse(&server_url()).unwrap();
        url.set_path(&name);
        url.query_pairs_mut().append_pair("sslmode", "disable");
        Database {
            name,
            url: url.to_string(),
        }
    }

    async fn replica(&self, lease: Duration) -> PgStore {
        PgStore::open(&self.url, lease, Arc::new(SystemClock))
            .await
            .expect("the store opens")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let _ = admin()
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                })
        })
        .join();
    }
}

fn alice() -> Actor {
    Actor::new(Platform::Slack, UserId::new("U0ALICE"), "alice")
}

fn request() -> AccessRequest {
    AccessRequest::file(
        RequestId::generate(),
        alice(),
        GroupName::parse("prod-db").unwrap(),
        HumanDuration::from_secs(3600),
        "INC-1".into(),
        None,
        false,
        Utc::now(),
    )
    .0
}

fn audit(detail: &str) -> AuditRecord {
    AuditRecord {
        at: Utc::now(),
        action: AuditAction::Requested,
        actor: None,
        request: None,
        group: None,
        detail: detail.into(),
    }
}

fn job(id: u64, lane: &str, due: DateTime<Utc>) -> Job {
    Job {
        id,
        due_at: due,
        attempt: 0,
        lane: lane.into(),
        kind: JobKind::Expire {
            request: RequestId::generate(),
        },
    }
}

fn dm(text: &str) -> Outgoing {
    Outgoing::Direct {
        to: alice(),
        text: text.into(),
        about: None,
    }
}

const LIMITS: FilingLimits = FilingLimits {
    per_minute: 10,
    pending: 20,
};

async fn record_jobs(store: &PgStore, jobs: Vec<Job>) {
    store
        .record(&Effects {
            jobs,
            ..Effects::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_request_its_effects_and_its_changes_round_trip() {
    let db = Database::create().await;
    let store = db.replica(Duration::from_secs(5)).await;
    let filed = request();
    let effects = Effects {
        audit: vec![audit("filed")],
        jobs: vec![job(store.next_id().await.unwrap(), "", Utc::now())],
        outbox: vec![dm("one"), dm("two")],
    };
    assert_eq!(
        store
            .file(std::slice::from_ref(&filed), &effects, LIMITS, Utc::now())
            .await
            .unwrap(),
        Filed::Written
    );
    assert_eq!(
        store
            .file(std::slice::from_ref(&filed), &effects, LIMITS, Utc::now())
            .await
            .unwrap(),
        Filed::IdTaken
    );
    assert_eq!(
        store.get_request(&filed.id).await.unwrap(),
        Some(filed.clone())
    );
    assert_eq!(
        store.requests_of(&alice()).await.unwrap(),
        vec![filed.clone()]
    );
    let batch = store
        .outbox_ready(Utc::now() + chrono::Duration::seconds(1), 10, 10, &|_| {
            false
        })
        .await
        .unwrap();
    let texts: Vec<Vec<String>> = batch
        .queues
        .iter()
        .map(|q| q.item.iter().map(|e| format!("{:?}", e.message)).collect())
        .collect();
    assert_eq!(texts.len(), 1, "one queue: alice's DMs");
    assert!(
        texts[0][0].contains("one") && texts[0][1].contains("two"),
        "{texts:?}"
    );
    // A change that writes nothing writes nothing.
    let mut skip = |_: Option<&AccessRequest>| None;
    assert_eq!(
        store.apply(&filed.id, None, &mut skip).await.unwrap(),
        Applied::Skipped
    );
    assert_eq!(store.verify_audit().await.unwrap(), Ok(1));
}

#[tokio::test]
async fn the_quota_refuses_what_is_over_it_and_writes_nothing() {
    let db = Database::create().await;
    let store = db.replica(Duration::from_secs(5)).await;
    let limits = FilingLimits {
        per_minute: 10,
        pending: 1,
    };
    let first = request();
    assert_eq!(
        store
            .file(
                std::slice::from_ref(&first),
                &Effects::default(),
                limits,
                Utc::now()
            )
            .await
            .unwrap(),
        Filed::Written
    );
    let second = request();
    assert!(matches!(
        store
            .file(
                std::slice::from_ref(&second),
                &Effects::default(),
                limits,
                Utc::now()
            )
            .await
            .unwrap(),
        Filed::Refused(QuotaRefusal::TooManyPending { .. })
    ));
    assert_eq!(store.get_request(&second.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_due_job_is_claimed_by_one_replica_and_taken_over_when_its_lease_lapses() {
    let db = Database::create().await;
    let lease = Duration::from_secs(1);
    let first = db.replica(lease).await;
    let second = db.replica(lease).await;
    // Due a moment ago (due times round up to the millisecond).
    let now = Utc::now();
    let due = now - chrono::Duration::seconds(1);
    let id = first.next_id().await.unwrap();
    record_jobs(&first, vec![job(id, "", due)]).await;

    let claimed = first.due_jobs(now, 10, &|_| false).await.unwrap();
    assert_eq!(claimed.jobs.len(), 1);
    assert!(
        second
            .due_jobs(now, 10, &|_| false)
            .await
            .unwrap()
            .jobs
            .is_empty(),
        "claimed by the first replica"
    );
    // The first replica "dies": its claim is neither renewed nor released.
    first.stop_keeper.cancel();
    std::mem::forget(claimed);
    let taken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let due = second.due_jobs(now, 10, &|_| false).await.unwrap();
            if !due.jobs.is_empty() {
                return due;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second replica takes the job over once the lease lapses");
    assert_eq!(taken.jobs[0].item.id, id);
    // Only the claim's holder consumes it.
    let mut write = |_: Option<&AccessRequest>| Some(Write::default());
    let request_id = RequestId::generate();
    assert_eq!(
        first
            .apply(&request_id, Some(&taken.jobs[0].item), &mut write)
            .await
            .unwrap(),
        Applied::JobGone,
        "the first replica no longer owns it"
    );
    assert_eq!(
        second
            .apply(&request_id, Some(&taken.jobs[0].item), &mut write)
            .await
            .unwrap(),
        Applied::Written
    );
}

#[tokio::test]
async fn a_claim_is_renewed_while_the_work_runs_and_released_when_dropped() {
    let db = Database::create().await;
    let lease = Duration::from_secs(1);
    let first = db.replica(lease).await;
    let second = db.replica(lease).await;
    // Due a moment ago (due times round up to the millisecond).
    let now = Utc::now();
    let due = now - chrono::Duration::seconds(1);
    let id = first.next_id().await.unwrap();
    record_jobs(&first, vec![job(id, "", due)]).await;
    let claimed = first.due_jobs(now, 10, &|_| false).await.unwrap();
    assert_eq!(claimed.jobs.len(), 1);
    // Three leases later, still held: the keeper renews it.
    tokio::time::sleep(3 * lease).await;
    assert!(second
        .due_jobs(now, 10, &|_| false)
        .await
        .unwrap()
        .jobs
        .is_empty());
    assert!(!claimed.jobs[0].lease.is_lost());
    drop(claimed);
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let due = second.due_jobs(now, 10, &|_| false).await.unwrap();
            if !due.jobs.is_empty() {
                return due;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("released for others");
    assert_eq!(released.jobs[0].item.id, id);
}

#[tokio::test]
async fn one_job_of_a_lane_is_claimed_at_a_time_across_replicas() {
    let db = Database::create().await;
    let first = db.replica(Duration::from_secs(5)).await;
    let second = db.replica(Duration::from_secs(5)).await;
    let now = Utc::now();
    let due = now - chrono::Duration::seconds(1);
    let (a, b, c) = (
        first.next_id().await.unwrap(),
        first.next_id().await.unwrap(),
        first.next_id().await.unwrap(),
    );
    record_jobs(
        &first,
        vec![
            job(a, "alice/prod-db", due),
            job(b, "alice/prod-db", due),
            job(c, "", due),
        ],
    )
    .await;
    let mine = first.due_jobs(now, 10, &|_| false).await.unwrap();
    let ids: Vec<u64> = mine.jobs.iter().map(|j| j.item.id).collect();
    assert_eq!(
        ids,
        vec![a, c],
        "the lane's first job, and the laneless one"
    );
    let theirs = second.due_jobs(now, 10, &|_| false).await.unwrap();
    assert!(theirs.jobs.is_empty(), "the lane is busy elsewhere");
}

#[tokio::test]
async fn an_outbox_queue_is_delivered_by_one_replica_at_a_time() {
    let db = Database::create().await;
    let first = db.replica(Duration::from_secs(5)).await;
    let second = db.replica(Duration::from_secs(5)).await;
    first
        .record(&Effects {
            outbox: vec![dm("a"), dm("b")],
            ..Effects::default()
        })
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::seconds(1);
    let batch = first.outbox_ready(later, 10, 10, &|_| false).await.unwrap();
    assert_eq!(batch.queues.len(), 1);
    assert!(second
        .outbox_ready(later, 10, 10, &|_| false)
        .await
        .unwrap()
        .queues
        .is_empty());
    let entries: Vec<OutboxEntry> = batch.queues[0].item.clone();
    for entry in &entries {
        first.outbox_done(entry).await.unwrap();
    }
    assert_eq!(first.outbox_stats().await.unwrap().0, 0);
}

/// Messages added to one queue while its deliverer keeps emptying it (the
/// race between adding to a queue and dropping it when empty): every one
/// is delivered once, and the queue is gone at the end.
#[tokio::test]
async fn messages_added_while_their_queue_is_emptied_are_all_delivered() {
    const MESSAGES: usize = 150;
    let db = Database::create().await;
    let writer = Arc::new(db.replica(Duration::from_secs(5)).await);
    let deliverer = db.replica(Duration::from_secs(5)).await;
    let writing = {
        let writer = writer.clone();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                // Writers in parallel, as requests are.
                let batch: Vec<_> = (0..3)
                    .map(|_| {
                        let writer = writer.clone();
                        let text = format!("{i}");
                        tokio::spawn(async move {
                            writer
                                .record(&Effects {
                                    outbox: vec![dm(&text)],
                                    ..Effects::default()
                                })
                                .await
                                .unwrap();
                        })
                    })
                    .collect();
                for task in batch {
                    task.await.unwrap();
                }
            }
        })
    };
    let mut delivered: Vec<u64> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while delivered.len() < MESSAGES * 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} delivered; the rest are stranded",
            delivered.len(),
            MESSAGES * 3
        );
        let later = Utc::now() + chrono::Duration::seconds(1);
        let batch = deliverer
            .outbox_ready(later, 10, 4, &|_| false)
            .await
            .unwrap();
        if batch.queues.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for claimed in batch.queues {
            for entry in &claimed.item {
                deliverer.outbox_done(entry).await.unwrap();
                delivered.push(entry.seq);
            }
        }
    }
    writing.await.unwrap();
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), MESSAGES * 3, "a message was delivered twice");
    assert_eq!(deliverer.outbox_stats().await.unwrap().0, 0);
    let client = raw_client(&db).await;
    let queues: i64 = client
        .query_one("SELECT count(*) FROM outbox_queues", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queues, 0, "an empty queue was left behind");
}

async fn raw_client(db: &Database) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The race itself, held open: a writer adding to a queue that looks empty
/// to its deliverer. Dropping the queue must wait for the writer, and then
/// keep the queue.
#[tokio::test]
async fn an_empty_looking_queue_is_kept_for_a_message_being_added() {
    let db = Database::create().await;
    let _store = db.replica(Duration::from_secs(5)).await;
    let writer = raw_client(&db).await;
    let deliverer = raw_client(&db).await;
    let watcher = raw_client(&db).await;
    writer
        .batch_execute("INSERT INTO outbox_queues (queue, ready_ms) VALUES ('q', 0)")
        .await
        .unwrap();
    writer
        .batch_execute(
            "BEGIN;
             SELECT jitbot_hold_queues(ARRAY['q'], 0);
             INSERT INTO outbox (queue, message, next_attempt_ms, created_ms)
                 VALUES ('q', '{}', 0, 0);",
        )
        .await
        .unwrap();
    let deliverer_pid: i32 = deliverer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let settling = tokio::spawn(async move {
        deliverer
            .batch_execute("SELECT jitbot_settle_queue('q')")
            .await
            .unwrap();
    });
    // Either the deliverer waits for the writer's lock, or it finished
    // (and dropped the queue under the message).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = watcher
            .query_opt(
                "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
                &[&deliverer_pid],
            )
            .await
            .unwrap()
            .is_some_and(|row| row.get(0));
        if waiting {
            break;
        }
        assert!(
            !settling.is_finished(),
            "the queue was settled without waiting for the message being added"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the deliverer neither waited nor finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.batch_execute("COMMIT").await.unwrap();
    settling.await.unwrap();
    let queued: i64 = watcher
        .query_one(
            "SELECT count(*) FROM outbox_queues q JOIN outbox o USING (queue) WHERE q.queue = 'q'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1, "the message lost its queue");
}

#[tokio::test]
async fn concurrent_writers_on_two_replicas_keep_one_audit_chain() {
    let db = Database::create().await;
    let first = Arc::new(db.replica(Duration::from_secs(5)).await);
    let second = Arc::new(db.replica(Duration::from_secs(5)).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .record(&Effects {
                    audit: vec![audit(&format!("event {i}"))],
                    ..Effects::default()
                })
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(first.verify_audit().await.unwrap(), Ok(40));
    assert_eq!(second.audit_head().await.unwrap().seq, 40);
}

#[tokio::test]
async fn a_named_lease_has_one_holder() {
    let db = Database::create().await;
    let first = db.replica(Duration::from_secs(5)).await;
    let second = db.replica(Duration::from_secs(5)).await;
    let held = first.try_lease("sweep:prod-db").await.unwrap();
    assert!(held.is_some());
    assert!(second.try_lease("sweep:prod-db").await.unwrap().is_none());
    drop(held);
    let taken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(lease) = second.try_lease("sweep:prod-db").await.unwrap() {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(taken.is_ok(), "released to the other replica");
}

#[tokio::test]
async fn mappings_contacts_sweeps_and_replays_are_shared() {
    let db = Database::create().await;
    let first = db.replica(Duration::from_secs(5)).await;
    let second = db.replica(Duration::from_secs(5)).await;
    assert!(first.remember_delivery(100, b"sig").await.unwrap());
    assert!(
        !second.remember_delivery(100, b"sig").await.unwrap(),
        "a replay"
    );
    assert_eq!(second.forget_deliveries_before(101).await.unwrap(), 1);
    let mapping = crate::store::Mapping {
        group: GroupName::parse("prod-db").unwrap(),
        destination: Destination {
            platform: Platform::Slack,
            channel: crate::domain::ids::ChannelId::new("C0DBA"),
        },
        by: alice(),
        at: Utc::now(),
    };
    first.put_mapping(&mapping, audit("mapped")).await.unwrap();
    assert_eq!(second.mappings().await.unwrap(), vec![mapping.clone()]);
    assert!(second
        .remove_mapping(&mapping.group, &mapping.destination, audit("unmapped"))
        .await
        .unwrap());
    assert!(!first
        .remove_mapping(&mapping.group, &mapping.destination, audit("again"))
        .await
        .unwrap());
    first
        .put_teams_conversation("a:1", "https://one")
        .await
        .unwrap();
    assert_eq!(
        second.teams_service_url("other").await.unwrap().as_deref(),
        Some("https://one")
    );
    let run = crate::store::SweepRun {
        at: Utc::now(),
        listed: true,
        next_at: None,
    };
    first.put_last_sweep("prod-db", &run).await.unwrap();
    assert_eq!(second.last_sweep("prod-db").await.unwrap(), Some(run));
    // What one replica saw of access being used, the other reads.
    let mut usage = crate::domain::usage::Usage::new("alice", Utc::now());
    usage.keep(Utc::now());
    first.put_usage("prod-db", &usage).await.unwrap();
    assert_eq!(
        second.usage("prod-db", "alice").await.unwrap(),
        Some(usage.clone())
    );
    assert_eq!(second.usages("prod-db").await.unwrap(), vec![usage]);
    second.forget_usage("prod-db", "alice").await.unwrap();
    assert!(first.usages("prod-db").await.unwrap().is_empty());
    assert_eq!(first.verify_audit().await.unwrap(), Ok(2));
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let started = std::time::Instant::now();
    let error = PgStore::open(
        "postgres://jitbot:s3cret-pass@127.0.0.1:1/jitbot?sslmode=disable",
        Duration::from_secs(5),
        Arc::new(SystemClock),
    )
    .await
    .err()
    .expect("nothing listens on port 1");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret-pass"), "{text}");
    assert!(error.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn concurrent_filings_of_one_person_stop_at_the_limit() {
    let db = Database::create().await;
    let first = Arc::new(db.replica(Duration::from_secs(5)).await);
    let second = Arc::new(db.replica(Duration::from_secs(5)).await);
    let limits = FilingLimits {
        per_minute: 10,
        pending: 20,
    };
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .file(&[request()], &Effects::default(), limits, Utc::now())
                .await
                .unwrap()
        }));
    }
    let mut written = 0;
    for task in tasks {
        if task.await.unwrap() == Filed::Written {
            written += 1;
        }
    }
    assert_eq!(written, 10);
}

#[tokio::test]
async fn a_home_opened_on_one_replica_is_seen_by_the_other_with_its_latest_time() {
    let db = Database::create().await;
    let one = db.replica(Duration::from_secs(5)).await;
    let other = db.replica(Duration::from_secs(5)).await;
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 12, d, 9, 0, 0).unwrap();
    one.put_home_opened(&UserId::new("U0OLD"), day(1))
        .await
        .unwrap();
    one.put_home_opened(&UserId::new("U0NEW"), day(5))
        .await
        .unwrap();
    // An opening written late with an earlier time does not move it back.
    other
        .put_home_opened(&UserId::new("U0NEW"), day(2))
        .await
        .unwrap();
    assert_eq!(
        other.homes_opened_since(day(3)).await.unwrap(),
        vec![UserId::new("U0NEW")]
    );
    let mut all = other.homes_opened_since(day(1)).await.unwrap();
    all.sort();
    assert_eq!(all, vec![UserId::new("U0NEW"), UserId::new("U0OLD")]);
}

fn audit_key(byte: u8) -> crate::domain::audit::AuditKey {
    crate::domain::audit::AuditKey::new(&[byte; 32]).unwrap()
}

#[tokio::test]
async fn a_keyed_sled_log_is_carried_over_and_verified_under_its_key() {
    use crate::store::SledStore;
    let dir = tempfile::tempdir().unwrap();
    let two = |detail: &str| Effects {
        audit: vec![audit(&format!("{detail} 1")), audit(&format!("{detail} 2"))],
        ..Effects::default()
    };
    {
        let plain = SledStore::open(dir.path()).unwrap();
        plain.record(&two("plain")).await.unwrap();
    }
    let keyed = SledStore::open(dir.path())
        .unwrap()
        .with_audit_key(Some(audit_key(1)));
    keyed.record(&two("keyed")).await.unwrap();
    assert_eq!(keyed.verify_audit().await.unwrap(), Ok(4));
    let export = keyed.export().unwrap();
    drop(keyed);

    let db = Database::create().await;
    let target = PgStore::open_keyed(
        &db.url,
        Duration::from_secs(5),
        Arc::new(SystemClock),
        Some(audit_key(1)),
    )
    .await
    .unwrap();
    assert_eq!(target.import(&export).await.unwrap().audit_events, 4);
    let events = target.audit_events(0, 10).await.unwrap();
    let links: Vec<Link> = events.iter().map(|e| e.chain).collect();
    assert_eq!(links, [Link::Plain, Link::Plain, Link::Keyed, Link::Keyed]);
    // The chain goes on keyed after the copy.
    target.record(&two("after")).await.unwrap();
    assert_eq!(target.verify_audit().await.unwrap(), Ok(6));

    // Copied without the key, the keyed part cannot be checked: refused.
    let other = Database::create().await;
    let keyless = other.replica(Duration::from_secs(5)).await;
    match keyless.import(&export).await {
        Err(crate::store::ImportError::Broken(ChainBreak::KeyNeeded { seq: 3 })) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plain_sled_log_is_carried_over_when_the_key_is_first_set() {
    use crate::store::SledStore;
    let dir = tempfile::tempdir().unwrap();
    let plain = SledStore::open(dir.path()).unwrap();
    plain
        .record(&Effects {
            audit: vec![audit("plain 1"), audit("plain 2")],
            ..Effects::default()
        })
        .await
        .unwrap();
    let export = plain.export().unwrap();
    drop(plain);
    let db = Database::create().await;
    let target = PgStore::open_keyed(
        &db.url,
        Duration::from_secs(5),
        Arc::new(SystemClock),
        Some(audit_key(3)),
    )
    .await
    .unwrap();
    assert_eq!(target.import(&export).await.unwrap().audit_events, 2);
    target
        .record(&Effects {
            audit: vec![audit("keyed from here")],
            ..Effects::default()
        })
        .await
        .unwrap();
    let links: Vec<Link> = target
        .audit_events(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.chain)
        .collect();
    assert_eq!(links, [Link::Plain, Link::Plain, Link::Keyed]);
    assert_eq!(target.verify_audit().await.unwrap(), Ok(3));
}

#[tokio::test]
async fn a_replica_without_the_key_leaves_a_keyed_chain_to_one_with_it() {
    let db = Database::create().await;
    let keyed = PgStore::open_keyed(
        &db.url,
        Duration::from_secs(5),
        Arc::new(SystemClock),
        Some(audit_key(2)),
    )
    .await
    .unwrap();
    let keyless = db.replica(Duration::from_secs(5)).await;
    keyed
        .record(&Effects {
            audit: vec![audit("keyed")],
            ..Effects::default()
        })
        .await
        .unwrap();
    assert_eq!(keyed.audit_head().await.unwrap().seq, 1);
    keyless
        .record(&Effects {
            audit: vec![audit("written without the key")],
            ..Effects::default()
        })
        .await
        .unwrap();
    // The keyless replica's reads seal nothing plain after the keyed
    // event; the keyed replica seals it.
    assert!(keyless.audit_head().await.unwrap().seq <= 2);
    assert_eq!(keyed.audit_head().await.unwrap().seq, 2);
    let events = keyed.audit_events(0, 10).await.unwrap();
    assert!(events.iter().all(|e| e.chain == Link::Keyed), "{events:?}");
    assert_eq!(keyed.verify_audit().await.unwrap(), Ok(2));
    assert_eq!(
        keyless.verify_audit().await.unwrap(),
        Err(ChainBreak::KeyNeeded { seq: 1 })
    );
}
