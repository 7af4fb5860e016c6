//! The two promises jitbot is bought for — no lingering access, nothing
//! acknowledged is lost — on the paths the other modules do not walk: a
//! forged click on every kind of bad signature, a release or admin revoke
//! while another grant still covers the access, cards to approvers' DMs,
//! providers that hang, and readiness that says so over HTTP.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{eventually, eventually_within, slack_signature, TestApp, BASE_POLICY};

const FORM: &str = "application/x-www-form-urlencoded";

/// The body of an Approve click on `id` by `user`, as Slack posts it.
fn approve_click(user: &str, id: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "username": user.to_lowercase() },
        "trigger_id": "trigger-forged",
        "channel": { "id": "C0APPROVALS" },
        "actions": [{ "action_id": "jit_approve", "value": id, "type": "button" }],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())])
        .unwrap()
        .into_bytes()
}

/// Request `id` is still pending, and nothing was granted.
async fn still_pending(app: &TestApp, id: &str) {
    assert_eq!(app.request_json(id).await["state"], "pending");
    assert_eq!(app.iam_actions("grant", id).await, 0);
    assert!(app.audit_details("Approved").await.is_empty());
    assert!(app.audit_details("DecisionRefused").await.is_empty());
}

#[tokio::test]
async fn a_forged_approve_click_is_refused_whatever_is_wrong_with_it() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-7")
        .await;
    let body = approve_click("U0LEAD", &id);
    let now = chrono::Utc::now().timestamp();
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request = app
            .http
            .post(app.url("/slack/interactions"))
            .header("content-type", FORM)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, u16)> = vec![
        ("no signature", vec![], 401),
        (
            "a timestamp and no signature",
            vec![("x-slack-request-timestamp", now.to_string())],
            401,
        ),
        (
            "signed with another secret",
            vec![
                ("x-slack-request-timestamp", now.to_string()),
                ("x-slack-signature", slack_signature("guessed", now, &body)),
            ],
            401,
        ),
        (
            "signed six minutes ago",
            vec![
                ("x-slack-request-timestamp", (now - 360).to_string()),
                (
                    "x-slack-signature",
                    slack_signature(crate::helpers::SIGNING_SECRET, now - 360, &body),
                ),
            ],
            401,
        ),
    ];
    for (what, headers, status) in cases {
        let response = post(headers, body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
    }
    // Over 1 MiB, even when signed.
    let mut huge = body.clone();
    huge.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 1));
    let response = app.post_signed("/slack/interactions", FORM, huge).await;
    assert_eq!(response.status(), 413);
    still_pending(&app, &id).await;

    // A genuine click counts once; its exact replay is refused.
    let response = app
        .post_signed_at("/slack/interactions", FORM, body.clone(), now)
        .await;
    assert_eq!(response.status(), 200);
    let replay = app
        .post_signed_at("/slack/interactions", FORM, body, now)
        .await;
    assert_eq!(replay.status(), 401);
    app.until_active(&id).await;
    assert_eq!(app.audit_details("Approved").await.len(), 1);
}

#[tokio::test]
async fn a_release_while_another_grant_covers_the_access_leaves_it_granted() {
    let app = TestApp::spawn().await;
    let first = app.request("U0ALICE", "request prod-db 1h first").await;
    app.approve("U0LEAD", &first).await;
    app.until_active(&first).await;
    let second = app.request("U0ALICE", "request prod-db 2h second").await;
    app.approve("U0LEAD", &second).await;
    app.until_active(&second).await;

    let answer = app
        .command_text(
            "U0ALICE",
            "C0GENERAL",
            &format!("release G-{}", &first[2..]),
        )
        .await;
    assert!(answer.starts_with("Releasing"), "{answer}");
    let released = eventually("the first grant to end", || async {
        let state = app.request_json(&first).await;
        (state["state"] == "released").then_some(state)
    })
    .await;
    assert!(released["ended_at"].is_string());
    assert_eq!(
        app.iam_actions("revoke", &first).await,
        0,
        "the second grant still covers the access"
    );
    let ended = app.audit_details("Released").await;
    assert!(
        ended[0].contains(&format!("G-{} keeps the access", &second[2..])),
        "{ended:?}"
    );

    // An admin revoke of the last grant takes the access away.
    let answer = app
        .command_text(
            "U0ADMIN",
            "C0OPS",
            &format!("admin revoke G-{} incident closed", &second[2..]),
        )
        .await;
    assert!(answer.starts_with("Revoking"), "{answer}");
    // The provider is called before the outcome is recorded: wait for both.
    eventually("the grant recorded as revoked", || async {
        (app.request_json(&second).await["state"] == "revoked").then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &second).await, 1);
}

#[tokio::test]
async fn an_admin_revoke_while_another_grant_covers_the_access_leaves_it_granted() {
    let app = TestApp::spawn().await;
    let first = app.request("U0ALICE", "request prod-db 1h first").await;
    app.approve("U0LEAD", &first).await;
    app.until_active(&first).await;
    let second = app.request("U0ALICE", "request prod-db 2h second").await;
    app.approve("U0LEAD", &second).await;
    app.until_active(&second).await;
    app.command_text(
        "U0ADMIN",
        "C0OPS",
        &format!("admin revoke G-{} wrong ticket", &first[2..]),
    )
    .await;
    eventually("the first grant to be revoked", || async {
        (app.request_json(&first).await["state"] == "revoked").then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &first).await, 0);
    assert_eq!(app.request_json(&second).await["state"], "active");
    // When the covering grant ends, the access goes.
    app.advance_past_end(&second).await;
    eventually("the revoke at the last end", || async {
        (app.iam_actions("revoke", &second).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_group_without_a_channel_sends_its_cards_to_the_approvers() {
    let policy = format!(
        "{BASE_POLICY}{}",
        r#"
[[groups]]
name = "direct"
provider = "iam"
target = "direct_rw"
approvers = ["U0LEAD", "U0DBA"]
"#
    );
    let app = TestApp::spawn_with(&policy).await;
    let id = app.request("U0ALICE", "request direct 1h no channel").await;
    for approver in ["U0LEAD", "U0DBA"] {
        let dm = format!("D{approver}");
        eventually("the card in the approver's DM", || async {
            app.slack_calls("chat.postMessage")
                .await
                .into_iter()
                .find(|m| m["channel"] == dm.as_str() && m["blocks"].to_string().contains(&id))
        })
        .await;
    }
    // A click from the DM decides it; both cards show the outcome.
    let click = json!({
        "type": "block_actions",
        "user": { "id": "U0DBA", "username": "dba" },
        "trigger_id": "trigger-dm",
        "channel": { "id": "DU0DBA" },
        "actions": [{ "action_id": "jit_approve", "value": id, "type": "button" }],
    });
    assert_eq!(app.interact(click).await.status(), 200);
    app.until_active(&id).await;
    eventually("both DM cards updated", || async {
        let updated: Vec<String> = app
            .slack_calls("chat.update")
            .await
            .into_iter()
            .filter(|u| u["blocks"].to_string().contains("Approved by <@U0DBA>"))
            .filter_map(|u| u["channel"].as_str().map(str::to_string))
            .collect();
        (updated.contains(&"DU0LEAD".to_string()) && updated.contains(&"DU0DBA".to_string()))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hung_webhook_is_cut_off_at_its_timeout_and_the_revoke_retried_until_done() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h hung IAM").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    // The IAM hangs on revokes for longer than the provider's 5 s timeout,
    // twice; then it answers.
    Mock::given(method("POST"))
        .and(path("/jit"))
        .and(body_partial_json(json!({ "action": "revoke" })))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.iam)
        .await;
    app.advance_past_end(&id).await;
    let failures = eventually_within(Duration::from_secs(40), "two timed-out revokes", || async {
        let failed = app.audit_details("RevokeFailed").await;
        (failed.len() >= 2).then_some(failed)
    })
    .await;
    assert!(
        failures
            .iter()
            .all(|f| f.contains("timed out") || f.contains("did not answer")),
        "{failures:?}"
    );
    eventually_within(
        Duration::from_secs(30),
        "the revoke that worked",
        || async { (app.request_json(&id).await["state"] == "expired").then_some(()) },
    )
    .await;
    assert_eq!(app.iam_actions("revoke", &id).await, 3);
}

#[tokio::test]
async fn a_hung_user_group_update_is_cut_off_and_retried() {
    let policy = r#"
[defaults]
min_duration = "1m"

[providers.oncall]
kind = "slack_usergroup"
timeout = "2s"

[[groups]]
name = "pager"
provider = "oncall"
target = "S0ONCALL"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = { requesters = ["U0ALICE"], max_duration = "1h" }
"#;
    let app = TestApp::spawn_with(policy).await;
    // Slack hangs on the first update of the member list.
    Mock::given(method("POST"))
        .and(path("/api/usergroups.users.update"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true }))
                .set_delay(Duration::from_secs(60)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.slack)
        .await;
    let id = app.request("U0ALICE", "request pager 30m on call").await;
    app.until_active(&id).await;
    let mut members = app.user_group("S0ONCALL");
    members.sort();
    assert_eq!(members, ["U0ALICE", "U0LEAD"]);
    let updates = app.slack_calls("usergroups.users.update").await;
    assert_eq!(
        updates.len(),
        2,
        "the hung call, then the retry: {updates:?}"
    );
}

#[tokio::test]
async fn readiness_answers_503_over_http_when_the_outbox_is_stuck_behind_a_dead_chat() {
    let app = TestApp::spawn().await;
    // Ready once the workers made their first pass (at once on sled, after
    // the first claims on PostgreSQL).
    eventually("readiness after start", || async {
        let response = app.http.get(app.url("/readyz")).send().await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
    // Slack is down for good; a card waits.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&app.slack)
        .await;
    let id = app
        .request("U0ALICE", "request prod-db 1h during the outage")
        .await;
    assert!(app.request_json(&id).await["state"] == "pending");
    // Sixteen minutes pass with the message waiting and nothing delivered.
    app.advance(Duration::from_secs(16 * 60));
    // Only the outbox is the matter: the scheduler (woken after the clock
    // moved) is fine.
    eventually("readiness to fail for the stuck outbox alone", || async {
        let response = app.http.get(app.url("/readyz")).send().await.ok()?;
        let status = response.status();
        let body = response.text().await.ok()?;
        (status == 503 && body.contains("outbox: stuck") && body.contains("scheduler: ok"))
            .then_some(body)
    })
    .await;
    let health: Value = json!(app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16());
    assert_eq!(health, 200, "alive, though not ready");
}
