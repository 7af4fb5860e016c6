//! Break-glass (issue 18, point 5): `/jit breakglass <group> <duration>
//! <reason>` and the API grant at once to the people `break_glass` lists,
//! announce it loudly (approval channel, admins by DM), and leave a review
//! card — Acknowledge or Revoke now — for the group's approvers only.

use serde_json::{json, Value};

use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, BASE_POLICY, USER_TOKEN};

fn policy() -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "core-db"
description = "Core database"
provider = "iam"
target = "core_rw"
approvers = ["U0LEAD", "U0ONCALL"]
channel = "C0APPROVALS"
max_duration = "4h"
break_glass = {{ requesters = ["U0ONCALL", "U0CIBOT"], max_duration = "1h" }}
"#
    )
}

fn has_review_buttons(card: &Value) -> bool {
    let blocks = card["blocks"].to_string();
    blocks.contains("jit_bg_ack") && blocks.contains("jit_bg_revoke")
}

/// Break the glass as U0ONCALL; the request id once access is live.
async fn break_glass(app: &TestApp) -> String {
    let answer = app
        .command_text(
            "U0ONCALL",
            "C0GENERAL",
            "breakglass core-db 30m INC-99 primary is down, <lead> unreachable",
        )
        .await;
    assert!(answer.contains("break-glass"), "{answer}");
    assert!(answer.contains("without approval"), "{answer}");
    let id = crate::helpers::request_id_in(&answer).unwrap();
    app.until_granted(&id).await;
    id
}

#[tokio::test]
async fn breaking_the_glass_grants_at_once_is_announced_and_waits_for_a_review() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = break_glass(&app).await;

    let notice = app
        .wait_for_notice("C0APPROVALS", "the break-glass notice", "break-glass")
        .await;
    assert!(
        notice.contains("core-db") && notice.contains(&id),
        "{notice}"
    );
    assert!(
        notice.contains("&lt;lead&gt; unreachable"),
        "the reason is shown literally: {notice}"
    );
    let to_admin = app
        .wait_for_dm("U0ADMIN", "the admins' DM", "break-glass")
        .await;
    assert!(to_admin.contains("core-db"), "{to_admin}");
    let used = app.audit_details("BreakGlassUsed").await;
    assert_eq!(used.len(), 1, "{used:?}");

    // The review card stays once access is live, until an approver acts.
    let card = eventually("the review card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("active until"))
    })
    .await;
    assert!(has_review_buttons(&card), "{card}");
    assert!(card["blocks"].to_string().contains("Break-glass"), "{card}");

    // Neither someone who is no approver nor the user themselves reviews it.
    app.click("U0BOB", "jit_bg_ack", &id).await;
    app.click("U0ONCALL", "jit_bg_ack", &id).await;
    app.wait_for_dm("U0BOB", "the refusal", "not an approver")
        .await;
    app.wait_for_dm("U0ONCALL", "the refusal", "your own break-glass")
        .await;
    assert!(app.audit_details("BreakGlassAcknowledged").await.is_empty());

    app.click("U0LEAD", "jit_bg_ack", &id).await;
    let card = eventually("the card to show the review", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("acknowledged by"))
    })
    .await;
    assert!(!has_review_buttons(&card), "{card}");
    assert_eq!(app.state_of(&id).await, "active", "the access runs on");
    let reviewed = app.request_json(&id).await["break_glass"].clone();
    assert_eq!(reviewed["verdict"], "acknowledged", "{reviewed}");
    assert_eq!(reviewed["reviewed_by"]["user"], "U0LEAD", "{reviewed}");

    // A second review changes nothing.
    app.click("U0ONCALL", "jit_bg_revoke", &id).await;
    app.wait_for_dm("U0ONCALL", "the answer", "already acknowledged")
        .await;
    assert_eq!(app.state_of(&id).await, "active");
}

#[tokio::test]
async fn revoke_now_takes_the_access_away_and_says_so() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = break_glass(&app).await;
    app.click("U0LEAD", "jit_bg_revoke", &id).await;
    eventually("the access to be revoked", || async {
        (app.state_of(&id).await == "revoked").then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &id).await, 1);
    app.wait_for_dm("U0ONCALL", "the user's notice", "revoked")
        .await;
    let reviews = app.audit_details("BreakGlassRevoked").await;
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let card = eventually("the card to show the review", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("revoked by"))
    })
    .await;
    assert!(!has_review_buttons(&card), "{card}");
}

#[tokio::test]
async fn break_glass_is_refused_to_anyone_not_listed_and_beyond_its_limit() {
    let app = TestApp::spawn_with(&policy()).await;
    let answer = app
        .command_text(
            "U0BOB",
            "C0GENERAL",
            "breakglass core-db 30m INC-1 let me in",
        )
        .await;
    assert!(
        answer.contains("You may not use break-glass for `core-db`"),
        "{answer}"
    );
    let answer = app
        .command_text(
            "U0ONCALL",
            "C0GENERAL",
            "breakglass core-db 2h INC-1 long one",
        )
        .await;
    assert!(
        answer.contains("longer than break-glass allows"),
        "{answer}"
    );
    assert!(answer.contains("1h"), "{answer}");
    let answer = app
        .command_text(
            "U0ONCALL",
            "C0GENERAL",
            "breakglass prod-db 30m INC-1 no rule",
        )
        .await;
    assert!(answer.contains("has no break-glass"), "{answer}");
    let answer = app
        .command_text("U0ONCALL", "C0GENERAL", "breakglass core-db 30m")
        .await;
    assert!(answer.contains("Say why"), "{answer}");

    assert!(
        app.audit_details("Requested").await.is_empty(),
        "nothing filed"
    );
    assert_eq!(app.iam_calls().await.len(), 0, "nothing granted");
    let refused = app.audit_details("BreakGlassRefused").await;
    assert_eq!(refused.len(), 1, "the attempt is audited: {refused:?}");
}

#[tokio::test]
async fn the_api_breaks_the_glass_and_the_audit_lists_every_use() {
    let app = TestApp::spawn_with(&policy()).await;
    let response = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(USER_TOKEN)
        .json(&json!({ "group": "core-db", "duration": "20m", "reason": "INC-5 deploy stuck", "break_glass": true }))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked("/api/v1/requests", "post", response).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["break_glass"].is_object(), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    app.until_granted(&id).await;

    // The same through its own route; admins are not break-glass
    // requesters here.
    let response = app
        .http
        .post(app.url("/api/v1/breakglass"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "group": "core-db", "duration": "20m", "reason": "INC-5" }))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked("/api/v1/breakglass", "post", response).await;
    assert_eq!(status, 403, "{body}");

    let other = app.request("U0ALICE", "request prod-db 1h INC-6").await;
    let events = app.audit_export_where("?break_glass=true").await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["break_glass_used", "break_glass_refused"],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["request"] != other.as_str()));

    let listing = app
        .command_text("U0ADMIN", "C0GENERAL", "admin audit break-glass")
        .await;
    assert!(listing.contains(&id), "{listing}");
    assert!(!listing.contains(&other), "{listing}");
}
