//! Filing requests: the happy path end to end, every refusal, the request
//! form, listing and cancelling.

use serde_json::{json, Value};

use crate::helpers::{eventually, has_buttons, request_id_in, TestApp, BASE_POLICY, HOOK_SECRET};

#[tokio::test]
async fn request_approve_grant_and_tell_everyone() {
    let app = TestApp::spawn().await;

    // The requester is acknowledged with the request id.
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request prod-db 2h fixing INC-123")
        .await;
    let id = request_id_in(&answer).expect("request id in the answer");
    assert!(answer.contains("waiting for approval"), "{answer}");

    // A card with who/what/how long/why and both buttons reaches the approval channel.
    let card = eventually("the approval card", || async {
        app.cards_for(&id).await.pop()
    })
    .await;
    assert_eq!(card["channel"], "C0APPROVALS");
    let blocks = card["blocks"].to_string();
    for expected in [
        "<@U0ALICE>",
        "prod-db",
        "2h",
        "fixing INC-123",
        "jit_approve",
        "jit_deny",
    ] {
        assert!(blocks.contains(expected), "card lacks {expected}: {blocks}");
    }

    // An approver clicks Approve.
    app.approve("U0LEAD", &id).await;

    // The provider is asked to grant, with a signature the IAM can check.
    let (body, headers) = eventually("the grant call", || async {
        app.iam_calls()
            .await
            .into_iter()
            .find(|(b, _)| b["action"] == "grant")
    })
    .await;
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["target"], "prod_rw");
    assert_eq!(body["group"], "prod-db");
    assert_eq!(body["principal"], "U0ALICE");
    assert_eq!(body["user"]["id"], "U0ALICE");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let in_two_hours = chrono::Utc::now() + chrono::Duration::hours(2);
    assert!(
        (expires_at.to_utc() - in_two_hours).num_seconds().abs() < 60,
        "{expires_at}"
    );
    let timestamp = headers["x-jitbot-timestamp"].to_str().unwrap();
    let raw = app.iam.received_requests().await.unwrap()[0].body.clone();
    let expected = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(format!("v1:{timestamp}:").as_bytes());
        mac.update(&raw);
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    };
    assert_eq!(headers["x-jitbot-signature"].to_str().unwrap(), expected);

    // The card is updated in place for everyone: outcome, who, no buttons.
    let updated = eventually("the card to show the grant", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Access is active until"))
    })
    .await;
    assert!(!has_buttons(&updated));
    assert_eq!(
        updated["ts"].as_str(),
        app.card_ts(&id).as_deref(),
        "the posted card is updated"
    );
    assert_eq!(updated["channel"], "C0APPROVALS");
    assert!(updated["blocks"]
        .to_string()
        .contains("Approved by <@U0LEAD>"));

    // The requester hears it was approved and that access is live.
    let dms = eventually("the live DM", || async {
        let dms = app.dms_to("U0ALICE").await;
        dms.iter()
            .any(|d| d.contains("is live until"))
            .then_some(dms)
    })
    .await;
    assert!(
        dms.iter().any(|d| d.contains("was approved by u0lead")),
        "{dms:?}"
    );
    assert_eq!(app.iam_actions("grant", &id).await, 1);

    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(
        list.contains(&format!("active as G-{}", &id[2..])),
        "{list}"
    );
}

/// Each refusal says what to type instead, and nothing is filed or sent.
#[tokio::test]
async fn refusals_explain_what_to_type_and_change_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "request nope 1h because",
            "There is no group `nope`. Type `/jit groups`",
        ),
        (
            "request restricted 1h because",
            "You are not allowed to request `restricted`",
        ),
        (
            "request prod-db 5h because",
            "5h is longer than the maximum of 4h for `prod-db`. Ask for 4h or less",
        ),
        (
            "request prod-db 30s because",
            "30s is shorter than the minimum of 1m for `prod-db`",
        ),
        (
            "request prod-db 1h",
            "`prod-db` needs a reason. Try `/jit request prod-db <duration> <reason>`",
        ),
        ("request prod-db 2x because", "`2x` is not a duration"),
        ("request Prod-DB 1h because", "is not a valid group name"),
        (
            "frobnicate",
            "I don't know the command `frobnicate`. Try `/jit help`.",
        ),
        ("cancel nothing", "is not a request id"),
    ];
    for (text, expected) in cases {
        let answer = app.command_text("U0ALICE", "C0GENERAL", text).await;
        assert!(answer.contains(expected), "{text:?} answered {answer:?}");
    }
    assert!(app.slack_calls("chat.postMessage").await.is_empty());
    assert!(app.iam_calls().await.is_empty());
    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(list.contains("You have no requests"), "{list}");
}

#[tokio::test]
async fn default_duration_applies_when_none_is_given() {
    let app = TestApp::spawn().await;
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request prod-db fixing INC-9")
        .await;
    assert!(answer.contains("for prod-db (1h)"), "{answer}");
}

#[tokio::test]
async fn help_and_groups_are_answered() {
    let app = TestApp::spawn().await;
    let help = app.command_text("U0ALICE", "C0GENERAL", "help").await;
    assert!(help.contains("/jit request <group> <duration> <reason>"));
    let groups = app.command_text("U0ALICE", "C0GENERAL", "groups").await;
    assert!(
        groups.contains("prod-db — Production database (up to 4h, default 1h, 1 approval needed)"),
        "{groups}"
    );
    assert!(groups.contains("two-key"), "{groups}");
    assert!(
        !groups.contains("restricted"),
        "only groups the user may request: {groups}"
    );
    let for_ops = app.command_text("U0OPS", "C0GENERAL", "groups").await;
    assert!(for_ops.contains("restricted"), "{for_ops}");
}

#[tokio::test]
async fn the_requester_can_cancel_a_pending_request_and_nobody_else_can() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h checking").await;
    let not_yours = app
        .command_text("U0BOB", "C0GENERAL", &format!("cancel {id}"))
        .await;
    assert_eq!(not_yours, format!("Only the requester can cancel {id}."));
    let cancelled = app
        .command_text("U0ALICE", "C0GENERAL", &format!("cancel {id}"))
        .await;
    assert_eq!(cancelled, format!("Request {id} is cancelled."));
    let card = eventually("the card to show the cancellation", || async {
        app.latest_card(&id).await.filter(|c| {
            c["blocks"]
                .to_string()
                .contains("Cancelled by the requester")
        })
    })
    .await;
    assert!(!has_buttons(&card));
    // A click on the cancelled request changes nothing and says why.
    app.approve("U0LEAD", &id).await;
    let told = eventually("the late clicker to be told", || async {
        app.ephemerals_to("U0LEAD").await.pop()
    })
    .await;
    assert_eq!(told, format!("{id} is already cancelled; nothing changed."));
    assert!(app.iam_calls().await.is_empty());
}

#[tokio::test]
async fn auto_approved_requests_skip_the_card_buttons_but_are_posted_as_a_notice() {
    let app = TestApp::spawn().await;
    let answer = app
        .command_text("U0ONCALL", "C0GENERAL", "request sandbox 15m hotfix")
        .await;
    assert!(
        answer.contains("approved automatically by policy"),
        "{answer}"
    );
    let id = request_id_in(&answer).unwrap();
    app.until_granted(&id).await;
    let notice = eventually("the notice in the channel", || async {
        app.cards_for(&id).await.pop()
    })
    .await;
    assert_eq!(notice["channel"], "C0SANDBOX");
    assert!(!has_buttons(&notice));

    // Longer than the rule allows: a normal request with buttons.
    let answer = app
        .command_text("U0ONCALL", "C0GENERAL", "request sandbox 1h longer fix")
        .await;
    assert!(answer.contains("waiting for approval"), "{answer}");
    let id = request_id_in(&answer).unwrap();
    let card = eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    assert!(has_buttons(&card));
}

#[tokio::test]
async fn inside_business_hours_anyone_is_auto_approved_and_outside_them_the_card_waits() {
    use chrono::{Datelike, Timelike};
    let app = TestApp::spawn_with(&format!(
        r#"{BASE_POLICY}
[[groups]]
name = "office"
provider = "iam"
target = "office_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = {{ hours = "Mon-Fri 09:00-18:00 UTC", max_duration = "2h" }}
"#
    ))
    .await;
    // The next Monday, 10:00 UTC, then the Saturday after it.
    let now = jitbot::clock::Clock::now(&*app.clock);
    let days_to_monday = (7 - now.weekday().num_days_from_monday()) % 7 + 7;
    let monday_ten = (now + chrono::Duration::days(days_to_monday.into()))
        .with_hour(10)
        .and_then(|t| t.with_minute(0))
        .unwrap();
    app.advance_to(monday_ten);
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request office 1h quarterly report")
        .await;
    assert!(
        answer.contains("approved automatically by policy"),
        "{answer}"
    );
    let id = request_id_in(&answer).unwrap();
    app.until_granted(&id).await;
    let why = app.audit_details("AutoApproved").await;
    assert!(
        why.iter()
            .any(|d| d.contains("within Mon-Fri 09:00-18:00 UTC")),
        "{why:?}"
    );

    app.advance_to(monday_ten + chrono::Duration::days(5));
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request office 1h weekend report")
        .await;
    assert!(answer.contains("waiting for approval"), "{answer}");
    let id = request_id_in(&answer).unwrap();
    let card = eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    assert!(has_buttons(&card));
}

#[tokio::test]
async fn bare_request_opens_the_form_and_the_form_validates_fields() {
    let app = TestApp::spawn().await;
    let response = app.command("U0ALICE", "C0SANDBOX", "request").await;
    assert_eq!(response.status(), 200);
    let opened = eventually("views.open", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    assert!(opened["trigger_id"]
        .as_str()
        .unwrap()
        .starts_with("trigger-U0ALICE"));
    let view = &opened["view"];
    assert_eq!(view["callback_id"], "jit_request_form");
    // Groups mapped to the channel the form was opened in come first.
    let option_groups = &view["blocks"][0]["element"]["option_groups"];
    assert_eq!(option_groups[0]["options"][0]["value"], "sandbox");
    let offered = view["blocks"][0]["element"].to_string();
    assert!(
        offered.contains("prod-db") && !offered.contains("restricted"),
        "{offered}"
    );

    let submit = |group: &str, duration: &str, reason: &str| {
        json!({
            "type": "view_submission",
            "user": { "id": "U0ALICE", "username": "alice" },
            "view": {
                "callback_id": "jit_request_form",
                "private_metadata": "C0SANDBOX",
                "state": { "values": {
                    "group": { "value": { "type": "static_select", "selected_option": { "value": group } } },
                    "duration": { "value": { "type": "plain_text_input", "value": duration } },
                    "reason": { "value": { "type": "plain_text_input", "value": reason } },
                } },
            },
        })
    };
    let errors: Value = app
        .interact(submit("prod-db", "forever", "x"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(errors["response_action"], "errors");
    assert!(errors["errors"]["duration"]
        .as_str()
        .unwrap()
        .contains("`forever` is not a duration"));
    let errors: Value = app
        .interact(submit("prod-db", "9h", "x"))
        .await
        .json()
        .await
        .unwrap();
    assert!(errors["errors"]["duration"]
        .as_str()
        .unwrap()
        .contains("longer than the maximum of 4h"));
    let errors: Value = app
        .interact(submit("prod-db", "1h", "  "))
        .await
        .json()
        .await
        .unwrap();
    assert!(errors["errors"]["reason"]
        .as_str()
        .unwrap()
        .contains("needs a reason"));
    let errors: Value = app
        .interact(submit("restricted", "1h", "x"))
        .await
        .json()
        .await
        .unwrap();
    assert!(errors["errors"]["group"]
        .as_str()
        .unwrap()
        .contains("not allowed"));
    assert!(
        app.slack_calls("chat.postMessage").await.is_empty(),
        "nothing filed yet"
    );

    let done: Value = app
        .interact(submit("prod-db", "1h", "from the form"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["response_action"], "clear");
    let dm = eventually("the receipt DM", || async {
        app.dms_to("U0ALICE").await.pop()
    })
    .await;
    let id = request_id_in(&dm).expect("request id in the receipt");
    let card = eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    assert!(card["blocks"].to_string().contains("from the form"));
}
