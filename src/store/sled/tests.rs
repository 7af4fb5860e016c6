//! The sled store on its own: transactions, indexes, the outbox queues,
//! quotas, upgrades of older stores, reopening.

use chrono::{DateTime, SubsecRound, TimeZone, Utc};

use super::*;
use crate::domain::audit::AuditAction;
use crate::domain::audit::AuditRecord;
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, RequestId};
use crate::domain::ids::{GroupName, Platform, UserId};
use crate::domain::job::Job;
use crate::domain::job::JobKind;
use crate::domain::message::Outgoing;
use crate::domain::quota::{FilingLimits, QuotaRefusal};
use crate::domain::request::AccessRequest;
use crate::store::prelude::*;
use crate::store::{Applied, Effects, Filed, OutboxEntry, Write};

/// What claimed work is, without its claims.
fn items<T>(claimed: Vec<crate::store::Claimed<T>>) -> Vec<T> {
    claimed.into_iter().map(|c| c.item).collect()
}

fn alice() -> Actor {
    Actor::new(Platform::Slack, UserId::new("U0ALICE"), "alice")
}

fn new_request() -> AccessRequest {
    AccessRequest::file(
        RequestId::generate(),
        alice(),
        GroupName::parse("prod-db").unwrap(),
        HumanDuration::parse("1h").unwrap(),
        "testing".into(),
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

async fn write(store: &SledStore, request: &AccessRequest) {
    store
        .apply(&request.id, None, &mut |_| {
            Some(Write {
                request: Some(request.clone()),
                effects: Effects::default(),
            })
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn live_requests_and_principal_owners_follow_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let pending = new_request();
    write(&store, &pending).await;
    assert!(
        store.live_requests().await.unwrap().is_empty(),
        "pending holds nothing"
    );

    let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
    let (approved, _) = pending.approve(&lead, true, 1, Utc::now()).unwrap();
    write(&store, &approved).await;
    assert_eq!(store.live_requests().await.unwrap(), vec![approved.clone()]);
    let (active, _) = approved
        .activate(Utc::now(), "alice_login", Default::default())
        .unwrap();
    write(&store, &active).await;
    assert_eq!(store.live_requests().await.unwrap(), vec![active.clone()]);
    assert_eq!(
        store
            .principal_owner("prod-db", "alice_login")
            .await
            .unwrap(),
        Some(alice())
    );
    assert_eq!(
        store.principal_owner("other", "alice_login").await.unwrap(),
        None
    );

    let (expired, _) = active.expire(active.expires_at().unwrap()).unwrap();
    write(&store, &expired).await;
    assert!(store.live_requests().await.unwrap().is_empty());
    assert!(store
        .principal_owner("prod-db", "alice_login")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_store_from_before_the_indexes_gets_them_built_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let active = {
        let store = SledStore::open(dir.path()).unwrap();
        let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
        let (approved, _) = new_request().approve(&lead, true, 1, Utc::now()).unwrap();
        let (active, _) = approved
            .activate(Utc::now(), "alice_login", Default::default())
            .unwrap();
        write(&store, &active).await;
        // As an older version left it: no index, no marker.
        store.live.clear().unwrap();
        store.principals.clear().unwrap();
        store.meta.remove(keys::LIVE_INDEX_BUILT).unwrap();
        store.sync().await.unwrap();
        active
    };
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.live_requests().await.unwrap(), vec![active]);
    assert_eq!(
        store
            .principal_owner("prod-db", "alice_login")
            .await
            .unwrap(),
        Some(alice())
    );
}

#[tokio::test]
async fn apply_writes_request_effects_and_index_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let request = new_request();
    let job = Job {
        id: store.next_id().await.unwrap(),
        due_at: Utc::now(),
        attempt: 0,
        lane: String::new(),
        kind: JobKind::Activate {
            request: request.id.clone(),
            by_sibling: false,
        },
    };
    let applied = store
        .apply(&request.id, None, &mut |current| {
            assert!(current.is_none());
            Some(Write {
                request: Some(request.clone()),
                effects: Effects {
                    audit: vec![audit("one"), audit("two")],
                    jobs: vec![job.clone()],
                    outbox: vec![Outgoing::RefreshCards {
                        request: request.id.clone(),
                    }],
                },
            })
        })
        .await
        .unwrap();
    assert_eq!(applied, Applied::Written);
    assert_eq!(
        store.get_request(&request.id).await.unwrap().unwrap(),
        request
    );
    assert_eq!(store.requests_of(&alice()).await.unwrap().len(), 1);
    assert_eq!(
        // A moment later: keys round due times up to the millisecond.
        items(
            store
                .due_jobs(Utc::now() + chrono::Duration::seconds(1), 10, &|_| false)
                .await
                .unwrap()
                .jobs
        ),
        vec![job.clone()]
    );
    let ready = store
        .outbox_ready(Utc::now() + chrono::Duration::seconds(1), 10, 10, &|_| {
            false
        })
        .await
        .unwrap();
    assert_eq!(ready.queues.len(), 1);
    assert_eq!(store.audit_head().await.unwrap().seq, 2);
    assert_eq!(store.verify_audit().await.unwrap(), Ok(2));

    // Consuming the job twice: the second run finds it gone and writes nothing.
    let mut calls = 0;
    let first = store
        .apply(&request.id, Some(&job), &mut |_| {
            calls += 1;
            Some(Write::default())
        })
        .await
        .unwrap();
    let second = store
        .apply(&request.id, Some(&job), &mut |_| {
            calls += 1;
            Some(Write::default())
        })
        .await
        .unwrap();
    assert_eq!(
        (first, second, calls),
        (Applied::Written, Applied::JobGone, 1)
    );
}

#[tokio::test]
async fn a_job_never_comes_up_before_its_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
    let job = Job {
        id: store.next_id().await.unwrap(),
        due_at: at("2026-11-23T10:00:00.000500Z"),
        attempt: 0,
        lane: String::new(),
        kind: JobKind::Expire {
            request: RequestId::generate(),
        },
    };
    store
        .record(&Effects {
            jobs: vec![job.clone()],
            ..Effects::default()
        })
        .await
        .unwrap();
    let early = store
        .due_jobs(at("2026-11-23T10:00:00.000Z"), 10, &|_| false)
        .await
        .unwrap();
    assert!(early.jobs.is_empty(), "half a millisecond early");
    assert_eq!(early.next_due, Some(at("2026-11-23T10:00:00.001Z")));
    let due = store
        .due_jobs(at("2026-11-23T10:00:00.001Z"), 10, &|_| false)
        .await
        .unwrap();
    assert_eq!(items(due.jobs), vec![job]);
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let request = new_request();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .apply(&request.id, None, &mut |_| {
                Some(Write {
                    request: Some(request.clone()),
                    effects: Effects {
                        audit: vec![audit("x")],
                        ..Effects::default()
                    },
                })
            })
            .await
            .unwrap();
        store.sync().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.get_request(&request.id).await.unwrap(), Some(request));
    assert_eq!(store.verify_audit().await.unwrap(), Ok(1));
}

#[tokio::test]
async fn mappings_persist_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = crate::store::Mapping {
        group: GroupName::parse("prod-db").unwrap(),
        destination: crate::domain::ids::Destination {
            platform: Platform::Slack,
            channel: crate::domain::ids::ChannelId::new("C0DBA"),
        },
        by: alice(),
        at: Utc::now(),
    };
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .put_mapping(&mapping, audit("mapped C0DBA"))
            .await
            .unwrap();
        store.sync().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.mappings().await.unwrap(), vec![mapping]);
    assert_eq!(
        store.audit_events(0, 10).await.unwrap()[0].detail,
        "mapped C0DBA"
    );
}

fn notice(channel: &str, text: &str) -> Outgoing {
    Outgoing::ChannelNotice {
        to: crate::domain::ids::Destination {
            platform: Platform::Slack,
            channel: crate::domain::ids::ChannelId::new(channel),
        },
        text: text.into(),
    }
}

async fn owe(store: &SledStore, messages: Vec<Outgoing>) {
    store
        .record(&Effects {
            outbox: messages,
            ..Effects::default()
        })
        .await
        .unwrap();
}

fn texts(queue: &[OutboxEntry]) -> Vec<String> {
    queue
        .iter()
        .map(|e| match &e.message {
            Outgoing::ChannelNotice { text, .. } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_queue_that_waits_holds_back_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    owe(&store, vec![notice("C0BUSY", "a1"), notice("C0BUSY", "a2")]).await;
    owe(&store, vec![notice("C0QUIET", "b1")]).await;
    let later = Utc::now() + chrono::Duration::seconds(1);
    let batch = store.outbox_ready(later, 10, 10, &|_| false).await.unwrap();
    assert_eq!(
        batch
            .queues
            .iter()
            .map(|q| texts(&q.item))
            .collect::<Vec<_>>(),
        vec![vec!["a1", "a2"], vec!["b1"]],
        "each queue in order, the older queue first"
    );
    // The busy channel is throttled for a minute: its head waits, and
    // with it the rest of its queue, but nothing else.
    let mut head = batch.queues[0].item[0].clone();
    head.attempts = 1;
    head.next_attempt_at = later + chrono::Duration::minutes(1);
    store.outbox_retry(&head).await.unwrap();
    let batch = store.outbox_ready(later, 10, 10, &|_| false).await.unwrap();
    assert_eq!(batch.queues.len(), 1);
    assert_eq!(texts(&batch.queues[0].item), vec!["b1"]);
    assert_eq!(
        batch.next_ready,
        Some(head.next_attempt_at.trunc_subsecs(3))
    );
    // A queue being delivered is passed over.
    let skipping = store
        .outbox_ready(later, 10, 10, &|q| q.contains("C0QUIET"))
        .await
        .unwrap();
    assert!(skipping.queues.is_empty());
    // Delivered: the quiet queue is gone; the busy one comes back in time.
    store.outbox_done(&batch.queues[0].item[0]).await.unwrap();
    store.outbox_done(&batch.queues[0].item[0]).await.unwrap();
    let then = head.next_attempt_at + chrono::Duration::milliseconds(1);
    let batch = store.outbox_ready(then, 10, 10, &|_| false).await.unwrap();
    assert_eq!(batch.queues.len(), 1);
    assert_eq!(texts(&batch.queues[0].item), vec!["a1", "a2"]);
    assert_eq!(batch.queues[0].item[0].attempts, 1);
    assert_eq!(store.outbox_stats().await.unwrap().0, 2);
}

#[tokio::test]
async fn a_message_owed_while_its_queue_empties_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    owe(&store, vec![notice("C0A", "first")]).await;
    let later = || Utc::now() + chrono::Duration::seconds(1);
    let first = store
        .outbox_ready(later(), 10, 10, &|_| false)
        .await
        .unwrap()
        .queues[0]
        .item[0]
        .clone();
    owe(&store, vec![notice("C0A", "second")]).await;
    store.outbox_done(&first).await.unwrap();
    let batch = store
        .outbox_ready(later(), 10, 10, &|_| false)
        .await
        .unwrap();
    assert_eq!(texts(&batch.queues[0].item), vec!["second"]);
    store.outbox_done(&batch.queues[0].item[0]).await.unwrap();
    assert!(store
        .outbox_ready(later(), 10, 10, &|_| false)
        .await
        .unwrap()
        .queues
        .is_empty());
    assert_eq!(store.outbox_stats().await.unwrap(), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filing_counts_against_the_persons_quota_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let limits = FilingLimits {
        per_minute: 100,
        pending: 5,
    };
    let now = Utc::now();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .file(&[new_request()], &Effects::default(), limits, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes: Vec<Filed> = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    let written = outcomes.iter().filter(|o| **o == Filed::Written).count();
    assert_eq!(written, 5, "{outcomes:?}");
    assert_eq!(store.requests_of(&alice()).await.unwrap().len(), 5);
    // One is decided: there is room for one more.
    let pending = store.requests_of(&alice()).await.unwrap().remove(0);
    let (cancelled, _) = pending.cancel(&alice(), now).unwrap();
    write(&store, &cancelled).await;
    assert_eq!(
        store
            .file(&[new_request()], &Effects::default(), limits, now)
            .await
            .unwrap(),
        Filed::Written
    );
    assert!(matches!(
        store
            .file(&[new_request()], &Effects::default(), limits, now)
            .await
            .unwrap(),
        Filed::Refused(QuotaRefusal::TooManyPending { count: 5 })
    ));
}

#[tokio::test]
async fn an_old_outbox_and_old_pending_requests_are_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let pending = new_request();
    {
        let store = SledStore::open(dir.path()).unwrap();
        owe(&store, vec![notice("C0A", "from before")]).await;
        write(&store, &pending).await;
        // As an older version left it: no queue indexes, no quotas.
        for tree in [
            &store.queue_index,
            &store.queues,
            &store.ready,
            &store.quotas,
        ] {
            tree.clear().unwrap();
        }
        store.meta.remove(keys::OUTBOX_QUEUES_BUILT).unwrap();
        store.meta.remove(keys::QUOTAS_BUILT).unwrap();
        store.sync().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let later = Utc::now() + chrono::Duration::seconds(1);
    let batch = store.outbox_ready(later, 10, 10, &|_| false).await.unwrap();
    assert_eq!(texts(&batch.queues[0].item), vec!["from before"]);
    let one_pending = FilingLimits {
        per_minute: 10,
        pending: 1,
    };
    assert!(matches!(
        store
            .file(
                &[new_request()],
                &Effects::default(),
                one_pending,
                Utc::now()
            )
            .await
            .unwrap(),
        Filed::Refused(QuotaRefusal::TooManyPending { count: 1 })
    ));
}

#[tokio::test]
async fn replays_are_detected_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert!(store.remember_delivery(1000, b"sig").await.unwrap());
    assert!(!store.remember_delivery(1000, b"sig").await.unwrap());
    assert!(store.remember_delivery(1001, b"sig").await.unwrap());
    assert_eq!(store.forget_deliveries_before(1001).await.unwrap(), 1);
    assert!(store.remember_delivery(1000, b"sig").await.unwrap());
}

#[tokio::test]
async fn home_openings_are_kept_with_their_latest_time_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 12, d, 9, 0, 0).unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .put_home_opened(&UserId::new("U0OLD"), day(1))
            .await
            .unwrap();
        store
            .put_home_opened(&UserId::new("U0NEW"), day(1))
            .await
            .unwrap();
        store
            .put_home_opened(&UserId::new("U0NEW"), day(5))
            .await
            .unwrap();
        store.sync().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.homes_opened_since(day(3)).await.unwrap(),
        vec![UserId::new("U0NEW")]
    );
    let mut all = store.homes_opened_since(day(1)).await.unwrap();
    all.sort();
    assert_eq!(all, vec![UserId::new("U0NEW"), UserId::new("U0OLD")]);
}
