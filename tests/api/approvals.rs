//! Approval rules: approvers only, never one's own request, each approver
//! once, N of M, idempotent double clicks, user groups, denial with a reason.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{eventually, eventually_within, has_buttons, TestApp};

#[tokio::test]
async fn the_requester_cannot_approve_their_own_request() {
    let app = TestApp::spawn().await;
    // U0LEAD is an approver of prod-db but asks for it themself.
    let id = app.request("U0LEAD", "request prod-db 1h migration").await;
    app.approve("U0LEAD", &id).await;
    let told = eventually("the refusal", || async {
        app.ephemerals_to("U0LEAD").await.pop()
    })
    .await;
    assert_eq!(told, format!("You cannot approve your own request {id}."));
    let list = app.command_text("U0LEAD", "C0GENERAL", "list").await;
    assert!(list.contains("pending"), "{list}");
    assert!(app.iam_calls().await.is_empty());
}

#[tokio::test]
async fn a_non_approver_click_changes_nothing_and_is_explained() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h migration").await;
    app.approve("U0MALLORY", &id).await;
    let told = eventually("the refusal", || async {
        app.ephemerals_to("U0MALLORY").await.pop()
    })
    .await;
    assert_eq!(
        told,
        format!("You are not an approver for `prod-db`, so your decision on {id} was not counted.")
    );
    assert!(app.iam_calls().await.is_empty());
    assert!(
        app.slack_calls("chat.update").await.is_empty(),
        "the card is unchanged"
    );
    // A real approver still can.
    app.approve("U0DBA", &id).await;
    app.until_granted(&id).await;
}

#[tokio::test]
async fn a_double_click_grants_once() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h migration").await;
    let (first, second) = tokio::join!(
        app.click("U0LEAD", "jit_approve", &id),
        app.click("U0LEAD", "jit_approve", &id)
    );
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    app.approve("U0DBA", &id).await;
    let told = eventually("the late clickers to be told", || async {
        let lead = app.ephemerals_to("U0LEAD").await;
        let dba = app.ephemerals_to("U0DBA").await;
        (lead.len() + dba.len() == 2).then(|| [lead, dba].concat())
    })
    .await;
    // Depending on timing the grant may already be live when they are told.
    for message in told {
        assert!(
            message == format!("{id} is already approved; nothing changed.")
                || message == format!("{id} is already active; nothing changed."),
            "{message}"
        );
    }
    eventually("the grant", || async {
        (app.iam_actions("grant", &id).await >= 1).then_some(())
    })
    .await;
    // Give any duplicate a chance to show up before counting.
    eventually("the live DM", || async {
        app.dms_to("U0ALICE")
            .await
            .iter()
            .any(|d| d.contains("is live"))
            .then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("grant", &id).await, 1);
    // One grant, so one end: past it, one expiry and one revoke, and no
    // duplicate job left to run later.
    app.advance_past_end(&id).await;
    eventually("the revoke at the end", || async {
        (app.iam_actions("revoke", &id).await >= 1).then_some(())
    })
    .await;
    app.until_outbox_empty().await;
    app.advance(std::time::Duration::from_secs(3600));
    app.until_outbox_empty().await;
    let events = app.audit_export().await;
    let of_this = |action: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action && e["request"] == id.as_str())
            .count()
    };
    assert_eq!((of_this("granted"), of_this("expired")), (1, 1));
    assert_eq!(app.iam_actions("revoke", &id).await, 1);
    assert_eq!(app.iam_actions("grant", &id).await, 1);
}

#[tokio::test]
async fn two_of_m_needs_two_different_approvers() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request two-key 1h rotate keys")
        .await;
    app.approve("U0LEAD", &id).await;
    let partial = eventually("the card to count one approval", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("1 of 2"))
    })
    .await;
    assert!(has_buttons(&partial), "still open for the second approver");
    assert!(app.iam_calls().await.is_empty());

    // The same approver again does not count twice.
    app.approve("U0LEAD", &id).await;
    let told = eventually("the repeat to be refused", || async {
        app.ephemerals_to("U0LEAD").await.pop()
    })
    .await;
    assert_eq!(
        told,
        format!("You already approved {id}; it needs another approver.")
    );
    assert!(app.iam_calls().await.is_empty());

    app.approve("U0SEC", &id).await;
    app.until_granted(&id).await;
    let card = eventually("the approved card", || async {
        app.latest_card(&id).await.filter(|c| !has_buttons(c))
    })
    .await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("<@U0LEAD>") && text.contains("<@U0SEC>"),
        "{text}"
    );
}

#[tokio::test]
async fn members_of_an_approver_user_group_can_approve() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h via the DBA group")
        .await;
    app.approve("U0GROUPDBA", &id).await;
    app.until_granted(&id).await;
    let lookups = app.slack_calls("usergroups.users.list").await;
    assert_eq!(lookups[0]["usergroup"], "S0DBAS");

    // Someone who left the group a moment ago can no longer approve: the
    // membership is asked of Slack when the click is decided, not taken
    // from what was seen a minute ago.
    app.user_groups
        .lock()
        .unwrap()
        .insert("S0DBAS".into(), vec!["U0NEWDBA".into()]);
    let other = app.request("U0ALICE", "request prod-db 1h second").await;
    app.approve("U0GROUPDBA", &other).await;
    let told = eventually("the refusal", || async {
        app.ephemerals_to("U0GROUPDBA").await.pop()
    })
    .await;
    assert!(told.contains("You are not an approver"), "{told}");
    let refused = app.audit_details("DecisionRefused").await;
    assert!(
        refused.iter().any(|d| d.contains("not an approver")),
        "{refused:?}"
    );
    assert_eq!(app.iam_actions("grant", &other).await, 0);
    // The one who joined may.
    app.approve("U0NEWDBA", &other).await;
    app.until_granted(&other).await;
}

#[tokio::test]
async fn deny_asks_for_a_reason_and_tells_the_requester() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h poking around")
        .await;
    let response = app.click("U0LEAD", "jit_deny", &id).await;
    assert_eq!(response.status(), 200);
    let opened = eventually("the deny form", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    assert_eq!(opened["view"]["callback_id"], "jit_deny_form");
    let metadata = opened["view"]["private_metadata"]
        .as_str()
        .unwrap()
        .to_string();

    let submit = |reason: &str| {
        json!({
            "type": "view_submission",
            "user": { "id": "U0LEAD", "username": "lead" },
            "view": {
                "callback_id": "jit_deny_form",
                "private_metadata": metadata,
                "state": { "values": { "reason": { "value": { "type": "plain_text_input", "value": reason } } } },
            },
        })
    };
    let empty: serde_json::Value = app.interact(submit(" ")).await.json().await.unwrap();
    assert_eq!(empty["errors"]["reason"], "A denial needs a reason.");

    let response = app.interact(submit("use the read replica")).await;
    assert_eq!(response.status(), 200);
    let card = eventually("the denied card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Denied by"))
    })
    .await;
    assert!(!has_buttons(&card));
    assert!(card["blocks"].to_string().contains("use the read replica"));
    let dm = app.wait_for_dm("U0ALICE", "the denial DM", "denied").await;
    assert_eq!(
        dm,
        format!("Your request {id} for prod-db was denied by lead: use the read replica")
    );
    assert!(app.iam_calls().await.is_empty());
}

#[tokio::test]
async fn a_non_approver_clicking_deny_gets_no_form() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h poking around")
        .await;
    app.click("U0MALLORY", "jit_deny", &id).await;
    let told = eventually("the refusal", || async {
        app.ephemerals_to("U0MALLORY").await.pop()
    })
    .await;
    assert!(told.contains("You are not an approver"), "{told}");
    assert!(app.slack_calls("views.open").await.is_empty());
}

#[tokio::test]
async fn a_failed_grant_is_reported_to_the_requester_and_the_channel() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request broken 1h needs the role")
        .await;
    app.approve("U0LEAD", &id).await;
    let dm = app.wait_for_dm("U0ALICE", "the failure DM", "failed").await;
    assert!(dm.contains("role prod_rw does not exist"), "{dm}");
    let notice = app.channel_post_saying("C0APPROVALS", "failed").await;
    assert!(notice["text"].as_str().unwrap().contains(&id));
    let card = eventually("the card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("The grant failed"))
    })
    .await;
    assert!(!has_buttons(&card));
}

#[tokio::test]
async fn after_a_grant_fails_for_good_access_is_revoked_as_a_precaution() {
    let app = TestApp::spawn().await;
    // The IAM answers every grant of flaky_rw with a 500 (it may still have
    // applied it); revokes succeed.
    Mock::given(method("POST"))
        .and(path("/jit"))
        .and(body_partial_json(
            json!({ "action": "grant", "target": "flaky_rw" }),
        ))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&app.iam)
        .await;
    let id = app.request("U0ALICE", "request flaky 1h flaky iam").await;
    app.approve("U0LEAD", &id).await;
    eventually_within(
        Duration::from_secs(20),
        "the precautionary revoke",
        || async { (app.iam_actions("revoke", &id).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        app.iam_actions("grant", &id).await,
        3,
        "three attempts before giving up"
    );
    let dm = app.wait_for_dm("U0ALICE", "the failure DM", "failed").await;
    assert!(dm.contains("HTTP 500"), "{dm}");
}

#[tokio::test]
async fn a_card_that_cannot_be_posted_is_reported_to_the_requester() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_partial_json(json!({ "channel": "C0APPROVALS" })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "not_in_channel" })),
        )
        .with_priority(1)
        .mount(&app.slack)
        .await;
    let id = app
        .request("U0ALICE", "request prod-db 1h nobody sees this")
        .await;
    let dm = eventually("the report", || async { app.dms_to("U0ALICE").await.pop() }).await;
    assert_eq!(
        dm,
        format!("I could not send the approval card for your request {id} (prod-db) to channel C0APPROVALS: chat.postMessage: not_in_channel. Ask an admin to invite jitbot to the approval channel; your request stays pending meanwhile.")
    );
}
