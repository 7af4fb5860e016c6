//! Unused access: grants nobody uses are released early (after a Keep it
//! warning), standing roles nobody uses are reported and removed — against
//! the real PostgreSQL server (sessions in `pg_stat_activity`) and a
//! webhook IAM over loopback. Time is moved forward on the server's clock;
//! each step waits for the sample or sweep it needs, never on a sleep.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, HOOK_SECRET, USER_TOKEN};
use crate::pg::{self, PgFixture};

const MINUTE: Duration = Duration::from_secs(60);

fn idle_policy(pg: &PgFixture) -> String {
    format!(
        r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.pg]
kind = "postgres"
url_env = "TEST_PG_URL"
principal = "{prefix}{{email_local}}"
timeout = "5s"

[[groups]]
name = "pgdb"
provider = "pg"
target = "{prefix}rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
max_duration = "2h"
activity_interval = "1m"
idle_release = "10m"
"#,
        prefix = pg.name("")
    )
}

fn standing_policy(pg: &PgFixture, sweep: &str) -> String {
    format!(
        r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"
activity_interval = "1m"

[providers.pg]
kind = "postgres"
url_env = "TEST_PG_URL"
principal = "{prefix}{{email_local}}"
timeout = "5s"

[[groups]]
name = "pgdb"
provider = "pg"
target = "{prefix}rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "{sweep}"
sweep_interval = "1m"
sweep_unused = "1h"
standing = ["{prefix}svc"]
"#,
        prefix = pg.name("")
    )
}

/// `GET /api/v1/unused` as an admin.
async fn unused(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .http
        .get(app.url(&format!("/api/v1/unused{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The last use the API shows for `principal`, once it shows one.
async fn until_seen_in_use(app: &TestApp, principal: &str) -> String {
    eventually(&format!("a use of {principal} to be recorded"), || async {
        unused(app, "")
            .await
            .into_iter()
            .find(|e| e["principal"] == principal)
            .and_then(|e| e["last_used"].as_str().map(str::to_string))
    })
    .await
}

async fn until_state(app: &TestApp, id: &str, state: &str) {
    eventually(&format!("{id} to be {state}"), || async {
        (app.request_json(id).await["state"] == state).then_some(())
    })
    .await;
}

async fn until_no_session(pg: &PgFixture, login: &str) {
    eventually(&format!("{login}'s session to be gone"), || async {
        let row = pg
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&login],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
}

async fn until_members(pg: &PgFixture, role: &str, wanted: &[&str]) {
    let mut wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    wanted.sort();
    eventually(&format!("members of {role} to be {wanted:?}"), || async {
        (pg.members(role).await == wanted).then_some(())
    })
    .await;
}

/// The DM card with a Keep it button, as posted to `user`.
async fn keep_it_dm(app: &TestApp, user: &str) -> Value {
    let channel = format!("D{user}");
    eventually("a DM with a Keep it button", || async {
        app.slack_calls("chat.postMessage")
            .await
            .into_iter()
            .find(|m| m["channel"] == channel.as_str() && m.to_string().contains("jit_keep"))
    })
    .await
}

async fn metric(app: &TestApp, line_start: &str) -> f64 {
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn postgres_a_grant_in_use_stays_and_is_released_once_idle_counted_from_its_last_use() {
    let pg = PgFixture::new().await;
    let (rw, alice) = (pg.name("rw"), pg.name("u0alice"));
    pg.create_role(&rw, false).await;
    pg.create_role(&alice, true).await;
    let mut app = TestApp::spawn_with(&idle_policy(&pg)).await;

    let id = app
        .request("U0ALICE", "request pgdb 1h replication lag")
        .await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    until_members(&pg, &rw, &[&alice]).await;

    // Alice works in a session for longer than idle_release.
    let session = pg::connect(&pg::url_as(&alice)).await.unwrap();
    app.advance(11 * MINUTE);
    let seen = until_seen_in_use(&app, &alice).await;
    let entry = unused(&app, "?group=pgdb").await;
    assert_eq!(entry.len(), 1, "{entry:?}");
    assert_eq!(entry[0]["grant_id"], format!("G-{}", &id[2..]));
    assert!(app.audit_details("IdleWarned").await.is_empty());
    assert_eq!(app.request_json(&id).await["state"], "active");

    // What jitbot saw survives a restart.
    app.restart().await;
    assert_eq!(until_seen_in_use(&app, &alice).await, seen);

    // She logs off. Six minutes later she is warned, counted from the use
    // seen before the restart.
    drop(session);
    until_no_session(&pg, &alice).await;
    app.advance(6 * MINUTE);
    let warning = app
        .wait_for_dm("U0ALICE", "the Keep it warning", "has not been used")
        .await;
    assert!(warning.contains("for 10m"), "{warning}");
    keep_it_dm(&app, "U0ALICE").await;
    assert_eq!(app.request_json(&id).await["state"], "active");

    // Unused through the warning's lead: released, revoked, told, audited.
    app.advance(6 * MINUTE);
    until_state(&app, &id, "released").await;
    until_members(&pg, &rw, &[]).await;
    app.wait_for_dm(
        "U0ALICE",
        "the idle release DM",
        "released because it was not used for 10m",
    )
    .await;
    let released = app.audit_details("Released").await;
    assert!(released.iter().any(|d| d.contains("idle")), "{released:?}");
}

#[tokio::test]
async fn postgres_keep_it_postpones_an_idle_release_and_only_the_requester_may_press_it() {
    let pg = PgFixture::new().await;
    let (rw, alice) = (pg.name("rw"), pg.name("u0alice"));
    pg.create_role(&rw, false).await;
    pg.create_role(&alice, true).await;
    let app = TestApp::spawn_with(&idle_policy(&pg)).await;

    let id = app
        .request("U0ALICE", "request pgdb 1h replication lag")
        .await;
    let grant = format!("G-{}", &id[2..]);
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;

    app.advance(6 * MINUTE);
    keep_it_dm(&app, "U0ALICE").await;
    assert_eq!(app.audit_details("IdleWarned").await.len(), 1);

    // Someone else's click changes nothing.
    assert_eq!(
        app.click("U0MALLORY", "jit_keep", &grant).await.status(),
        200
    );
    app.wait_for_dm("U0MALLORY", "the refusal", "Only the requester can keep")
        .await;
    assert!(app.audit_details("KeptInUse").await.is_empty());

    assert_eq!(app.click("U0ALICE", "jit_keep", &grant).await.status(), 200);
    app.wait_for_dm("U0ALICE", "the Keep it answer", "Kept:")
        .await;
    assert_eq!(app.audit_details("KeptInUse").await.len(), 1);

    // Past the release the first warning announced: still active, and
    // warned again for the quiet period that began at the click.
    app.advance(6 * MINUTE);
    eventually("a second Keep it warning", || async {
        (app.audit_details("IdleWarned").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(app.request_json(&id).await["state"], "active");
    assert_eq!(pg.members(&rw).await, vec![alice.clone()]);

    app.advance(6 * MINUTE);
    until_state(&app, &id, "released").await;
    until_members(&pg, &rw, &[]).await;
}

#[tokio::test]
async fn postgres_standing_roles_used_stay_and_unused_ones_are_reported_then_removed() {
    let pg = PgFixture::new().await;
    let (rw, used, idle, svc) = (
        pg.name("rw"),
        pg.name("used"),
        pg.name("idle"),
        pg.name("svc"),
    );
    pg.create_role(&rw, false).await;
    for login in [&used, &idle, &svc] {
        pg.create_role(login, true).await;
        pg.grant_by_hand(&rw, login).await;
    }
    let _session = pg::connect(&pg::url_as(&used)).await.unwrap();
    let mut app = TestApp::spawn_with(&standing_policy(&pg, "report")).await;

    // The first sweep starts watching both; nobody is reported yet.
    eventually("the first sweep", || async {
        (!app.audit_details("SweepRan").await.is_empty()).then_some(())
    })
    .await;
    let first = app.audit_details("SweepRan").await;
    assert!(
        first[0].contains("without a grant and unused for 1h: []"),
        "{first:?}"
    );

    // An hour on: the one in use stays, the unused one is reported.
    app.advance(61 * MINUTE);
    let notice = app
        .wait_for_notice("C0APPROVALS", "the unused-role report", &idle)
        .await;
    assert!(notice.contains("unused for 1h"), "{notice}");
    assert!(!notice.contains(&used), "{notice}");
    let watched = unused(&app, "?group=pgdb").await;
    let last_used = |who: &str| {
        watched
            .iter()
            .find(|e| e["principal"] == who)
            .map(|e| (e["grant_id"].clone(), e["last_used"].clone()))
    };
    assert!(
        matches!(last_used(&used), Some((Value::Null, Value::String(_)))),
        "{watched:?}"
    );
    assert_eq!(
        last_used(&idle),
        Some((Value::Null, Value::Null)),
        "{watched:?}"
    );
    assert_eq!(
        last_used(&svc),
        None,
        "allowed standing is not listed: {watched:?}"
    );
    let refused = app
        .http
        .get(app.url("/api/v1/unused"))
        .bearer_auth(USER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(pg.members(&rw).await.len(), 3, "report only");

    // Enforced: the unused role goes, the used one and the allowed stay.
    app.restart_with_policy(&standing_policy(&pg, "enforce"))
        .await;
    app.advance(2 * MINUTE);
    until_members(&pg, &rw, &[&svc, &used]).await;
    // The sweep's audit follows the provider's change.
    let revoked = eventually("the removal's audit event", || async {
        let revoked = app.audit_details("StandingRevoked").await;
        (!revoked.is_empty()).then_some(revoked)
    })
    .await;
    assert!(
        revoked
            .iter()
            .any(|d| d.contains(&idle) && d.contains("unused for 1h")),
        "{revoked:?}"
    );
}

/// Answers with whatever the test sets now.
#[derive(Clone)]
struct Switchable(Arc<Mutex<ResponseTemplate>>);

impl Respond for Switchable {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().clone()
    }
}

const HOOK_POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.hook]
kind = "webhook"
url = "{IAM}/jit"
activity_url = "{IAM}/activity"
secret_env = "TEST_HOOK_SECRET"

[[groups]]
name = "hooked"
provider = "hook"
target = "iam-admins"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
activity_interval = "1m"
idle_release = "10m"
"#;

#[tokio::test]
async fn webhook_activity_is_asked_signed_and_an_outage_or_a_bad_answer_releases_nothing() {
    let app = TestApp::spawn_with(HOOK_POLICY).await;
    let answer = Switchable(Arc::new(Mutex::new(ResponseTemplate::new(503))));
    Mock::given(method("GET"))
        .and(path("/activity"))
        .respond_with(answer.clone())
        .mount(&app.iam)
        .await;
    // Long enough to outlast the outage below.
    let id = app.request("U0ALICE", "request hooked 4h audit").await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;

    let unknown = "jitbot_activity_samples_total{outcome=\"unknown\"} ";
    // The IAM is down for an hour: nothing is warned or released.
    for _ in 0..3 {
        let before = metric(&app, unknown).await;
        app.advance(20 * MINUTE);
        eventually("a failed sample", || async {
            (metric(&app, unknown).await > before).then_some(())
        })
        .await;
    }
    // Then it answers in a shape that is not the documented one.
    *answer.0.lock().unwrap() =
        ResponseTemplate::new(200).set_body_json(serde_json::json!({ "in_use": "no" }));
    let before = metric(&app, unknown).await;
    app.advance(20 * MINUTE);
    eventually("a sample with a bad answer", || async {
        (metric(&app, unknown).await > before).then_some(())
    })
    .await;
    assert!(app.audit_details("IdleWarned").await.is_empty());
    assert_eq!(app.request_json(&id).await["state"], "active");
    assert_eq!(app.iam_actions("revoke", &id).await, 0);

    // Answered properly: unused; warned, then released through the IAM.
    *answer.0.lock().unwrap() = ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({ "in_use": false, "last_used": null }));
    app.advance(6 * MINUTE);
    keep_it_dm(&app, "U0ALICE").await;
    app.advance(6 * MINUTE);
    until_state(&app, &id, "released").await;
    eventually("the revoke call", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;

    // Every activity call: a GET naming the principal and target, signed
    // over the empty body like the holders call.
    let calls: Vec<Request> = app
        .iam
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/activity")
        .collect();
    assert!(calls.len() >= 6, "{}", calls.len());
    for call in &calls {
        let query: Vec<(String, String)> = call.url.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            [
                ("principal".to_string(), "U0ALICE".to_string()),
                ("target".to_string(), "iam-admins".to_string())
            ]
        );
        let timestamp: i64 = call.headers["x-jitbot-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            call.headers["x-jitbot-signature"].to_str().unwrap(),
            crate::helpers::webhook_signature(HOOK_SECRET, timestamp, call),
            "the signature covers the path and the query"
        );
    }
}
