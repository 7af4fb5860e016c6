//! State survives restarts; grants end on time; the audit chain verifies.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{eventually, eventually_within, TestApp, BASE_POLICY};

#[tokio::test]
async fn an_approval_after_a_restart_still_works() {
    let mut app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h across a restart")
        .await;
    eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    app.restart().await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    let card = eventually("the updated card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Access is active"))
    })
    .await;
    assert_eq!(
        card["ts"].as_str(),
        app.card_ts(&id).as_deref(),
        "the original card is updated"
    );
}

#[tokio::test]
async fn a_grant_is_revoked_when_it_expires() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request quick 5m short task").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    assert_eq!(
        app.iam_actions("revoke", &id).await,
        0,
        "not before its end"
    );
    app.advance_past_end(&id).await;
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;
    let dm = app
        .wait_for_dm("U0ALICE", "the expiry DM", "has expired")
        .await;
    assert!(dm.contains(&format!("G-{}", &id[2..])), "{dm}");
    let card = eventually("the expired card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Expired at"))
    })
    .await;
    assert!(card["blocks"].to_string().contains("Approved by <@U0LEAD>"));
}

#[tokio::test]
async fn overlapping_grants_keep_access_until_the_last_one_ends() {
    let app = TestApp::spawn().await;
    let short = app.request("U0ALICE", "request quick 2m first").await;
    app.approve("U0LEAD", &short).await;
    app.until_active(&short).await;
    let long = app.request("U0ALICE", "request quick 5m second").await;
    app.approve("U0LEAD", &long).await;
    app.until_active(&long).await;
    app.advance_past_end(&short).await;
    eventually("the first grant to expire", || async {
        app.dms_to("U0ALICE")
            .await
            .into_iter()
            .find(|d| d.contains(&format!("G-{}", &short[2..])) && d.contains("has expired"))
    })
    .await;
    assert_eq!(
        app.iam_actions("revoke", &short).await,
        0,
        "access is still covered by the second grant"
    );
    assert_eq!(app.iam_actions("revoke", &long).await, 0);
    // When the last grant ends, the access goes.
    app.advance_past_end(&long).await;
    eventually("the revoke at the last end", || async {
        (app.iam_actions("revoke", &long).await == 1).then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &short).await, 0);
}

#[tokio::test]
async fn a_grant_of_another_group_with_the_same_target_keeps_the_access() {
    // `quick-oncall` grants what `quick` grants: same provider, same target.
    let policy = format!(
        "{BASE_POLICY}{}",
        r#"
[[groups]]
name = "quick-oncall"
provider = "iam"
target = "quick_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#
    );
    let app = TestApp::spawn_with(&policy).await;
    let short = app.request("U0ALICE", "request quick 2m first").await;
    app.approve("U0LEAD", &short).await;
    let long = app
        .request("U0ALICE", "request quick-oncall 5m paged")
        .await;
    app.approve("U0LEAD", &long).await;
    app.until_active(&short).await;
    app.until_active(&long).await;
    app.advance_past_end(&short).await;
    eventually("the short grant to expire", || async {
        app.dms_to("U0ALICE")
            .await
            .into_iter()
            .find(|d| d.contains(&format!("G-{}", &short[2..])) && d.contains("has expired"))
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &short).await, 0);
    let expired = app.audit_details("Expired").await;
    assert!(
        expired
            .iter()
            .any(|d| d.contains(&format!("because G-{} keeps the access", &long[2..]))),
        "{expired:?}"
    );
}

#[tokio::test]
async fn the_audit_chain_verifies_and_detects_tampering() {
    let mut app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h audited").await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    app.stop().await;

    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .args(["audit", "verify"])
            .env(app.store.env().0, app.store.env().1)
            .output()
            .unwrap()
    };
    let output = verify();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // requested, approved, granted
    assert_eq!(stdout.trim(), "audit chain OK: 3 event(s) verified");

    // Rewrite one event's detail behind jitbot's back.
    app.store.tamper_audit_detail(2, "nothing to see").await;
    let output = verify();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "audit chain BROKEN: event 2: its content does not match its hash (edited?)"
    );
}

#[tokio::test]
async fn a_failing_revoke_is_retried_alerted_and_finally_done() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .and(body_partial_json(json!({ "action": "revoke" })))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&app.iam)
        .await;
    let id = app.request("U0ALICE", "request quick 1m short task").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    app.advance_past_end(&id).await;
    let notices = |needle: &'static str| {
        let app = &app;
        async move {
            app.slack_calls("chat.postMessage")
                .await
                .into_iter()
                .filter(|m| m["channel"] == "C0APPROVALS")
                .filter_map(|m| m["text"].as_str().map(str::to_string))
                .find(|t| t.contains(needle))
        }
    };
    let alert = eventually_within(Duration::from_secs(30), "the alert", || {
        notices("has failed 3 times")
    })
    .await;
    assert!(
        alert.contains(&format!("G-{}", &id[2..])) && alert.contains("HTTP 503"),
        "{alert}"
    );
    let resolved = eventually_within(Duration::from_secs(30), "the all-clear", || {
        notices("Resolved:")
    })
    .await;
    assert!(resolved.contains("after 3 failed attempts"), "{resolved}");
    assert_eq!(
        app.iam_actions("revoke", &id).await,
        4,
        "three failures, then the revoke that worked"
    );
    let dm = app
        .wait_for_dm("U0ALICE", "the expiry DM", "has expired")
        .await;
    assert!(dm.contains(&id[2..]));
}
