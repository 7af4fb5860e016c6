//! Every Slack route checks the signature, the timestamp window, replays and
//! the body size before anything else, and a failed check changes nothing.

use serde_json::{json, Value};

use crate::helpers::{slack_signature, TestApp};

const FORM: &str = "application/x-www-form-urlencoded";

/// Nothing observable happened: no request filed, nothing sent to Slack.
async fn assert_nothing_happened(app: &TestApp) {
    assert!(app.slack_calls("chat.postMessage").await.is_empty());
    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(list.contains("You have no requests"), "{list}");
}

#[tokio::test]
async fn wrong_signature_is_rejected_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 2h fixing INC-123");
    let timestamp = chrono::Utc::now().timestamp();
    let response = app
        .http
        .post(app.url("/slack/commands"))
        .header("content-type", FORM)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header(
            "x-slack-signature",
            slack_signature("not-the-secret", timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.text().await.unwrap().trim(),
        "signature does not match"
    );
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn missing_signature_headers_are_rejected() {
    let app = TestApp::spawn().await;
    let body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 2h fixing INC-123");
    let response = app
        .http
        .post(app.url("/slack/commands"))
        .header("content-type", FORM)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app
        .http
        .post(app.url("/slack/commands"))
        .header("content-type", FORM)
        .header(
            "x-slack-request-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn stale_timestamp_is_rejected_even_when_signed() {
    let app = TestApp::spawn().await;
    let body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 2h fixing INC-123");
    let six_minutes_ago = chrono::Utc::now().timestamp() - 6 * 60;
    let response = app
        .post_signed_at("/slack/commands", FORM, body, six_minutes_ago)
        .await;
    assert_eq!(response.status(), 401);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("more than 5 minutes"));
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn exact_replay_is_rejected() {
    let app = TestApp::spawn().await;
    let body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 2h fixing INC-123");
    let timestamp = chrono::Utc::now().timestamp();
    let first = app
        .post_signed_at("/slack/commands", FORM, body.clone(), timestamp)
        .await;
    assert_eq!(first.status(), 200);
    let replay = app
        .post_signed_at("/slack/commands", FORM, body, timestamp)
        .await;
    assert_eq!(replay.status(), 401);
    assert_eq!(replay.text().await.unwrap().trim(), "replayed request");
    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert_eq!(
        list.matches("prod-db").count(),
        1,
        "exactly one request filed: {list}"
    );
}

#[tokio::test]
async fn oversize_body_is_rejected_with_413() {
    let app = TestApp::spawn().await;
    let mut body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 2h x");
    body.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 1));
    let response = app.post_signed("/slack/commands", FORM, body).await;
    assert_eq!(response.status(), 413);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn malformed_payloads_get_a_400_with_a_reason() {
    let app = TestApp::spawn().await;
    let response = app
        .post_signed("/slack/commands", FORM, b"text=request".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .starts_with("malformed slash command"));

    let bad_json = serde_urlencoded::to_string([("payload", "{not json")]).unwrap();
    let response = app
        .post_signed("/slack/interactions", FORM, bad_json.into_bytes())
        .await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .starts_with("malformed interaction payload"));

    let response = app
        .post_signed("/slack/events", "application/json", b"[1,2".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn url_verification_is_answered_with_the_challenge() {
    let app = TestApp::spawn().await;
    let body = json!({ "token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification" });
    let response = app
        .post_signed(
            "/slack/events",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[tokio::test]
async fn unsigned_url_verification_is_rejected() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url("/slack/events"))
        .json(&json!({ "type": "url_verification", "challenge": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn payloads_from_another_slack_workspace_are_refused_and_change_nothing() {
    let app =
        TestApp::spawn_with_env(crate::helpers::BASE_POLICY, &[("SLACK_TEAM_ID", "T0TEAM")]).await;
    // Signed with the app's secret, typed in another workspace.
    let foreign = String::from_utf8(TestApp::command_body(
        "U0ALICE",
        "C0GENERAL",
        "request prod-db 1h from another workspace",
    ))
    .unwrap()
    .replace("team_id=T0TEAM", "team_id=T0ELSEWHERE");
    let response = app
        .post_signed("/slack/commands", FORM, foreign.into_bytes())
        .await;
    assert_eq!(response.status(), 401);
    // A command naming no workspace is not taken either.
    let unnamed = String::from_utf8(TestApp::command_body(
        "U0ALICE",
        "C0GENERAL",
        "request prod-db 1h from nowhere",
    ))
    .unwrap()
    .replace("team_id=T0TEAM&", "");
    let response = app
        .post_signed("/slack/commands", FORM, unnamed.into_bytes())
        .await;
    assert_eq!(response.status(), 401);
    // An event from elsewhere: refused; the URL check still answered.
    let home_opened = json!({
        "type": "event_callback",
        "team_id": "T0ELSEWHERE",
        "event_id": "Ev0ELSEWHERE",
        "event": { "type": "app_home_opened", "user": "U0ALICE", "tab": "home" },
    });
    let response = app
        .post_signed(
            "/slack/events",
            "application/json",
            home_opened.to_string().into_bytes(),
        )
        .await;
    assert_eq!(response.status(), 401);
    let challenge = json!({ "type": "url_verification", "challenge": "c-1" });
    let response = app
        .post_signed(
            "/slack/events",
            "application/json",
            challenge.to_string().into_bytes(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(app.slack_calls("views.publish").await.is_empty());
    assert_nothing_happened(&app).await;

    // From the allowed workspace: filed, and a click from elsewhere on its
    // card (the user's team, or the payload's, says so) changes nothing.
    let id = app
        .request("U0ALICE", "request prod-db 1h from the allowed workspace")
        .await;
    for team in [
        json!({ "team": { "id": "T0ELSEWHERE" }, "user": { "id": "U0LEAD", "username": "lead", "team_id": "T0TEAM" } }),
        json!({ "team": { "id": "T0TEAM" }, "user": { "id": "U0LEAD", "username": "lead", "team_id": "T0ELSEWHERE" } }),
    ] {
        let mut click = json!({
            "type": "block_actions",
            "trigger_id": format!("trigger-elsewhere-{}", team),
            "channel": { "id": "C0APPROVALS" },
            "actions": [{ "action_id": "jit_approve", "value": id, "type": "button" }],
        });
        for (key, value) in team.as_object().unwrap() {
            click[key] = value.clone();
        }
        assert_eq!(app.interact(click).await.status(), 401);
    }
    assert_eq!(app.request_json(&id).await["state"], "pending");
    assert_eq!(app.audit_details("Requested").await.len(), 1);
}
