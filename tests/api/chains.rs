//! Approval chains (issue 18, point 4): `steps` are asked in order; a step
//! is decided only by its own approvers once the one before is met; the
//! card shows each step and who decided it; a denial at any step ends the
//! request; time-outs run per step; without a channel, a step's approvers
//! get their cards only when it is asked.

use std::time::Duration;

use crate::helpers::{eventually, has_buttons, TestApp, BASE_POLICY};

fn policy(channel: &str) -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "chain-db"
provider = "iam"
target = "chain_rw"
steps = [{{ approvers = ["U0LEAD"] }}, {{ approvers = ["U0SEC1", "U0SEC2"] }}]
pending_timeout = "10m"
{channel}
"#
    )
}

/// Wait until `user` was told, privately beside the card, something
/// containing `needle`.
async fn told(app: &TestApp, user: &str, needle: &str) {
    eventually(&format!("{user} to be told {needle:?}"), || async {
        app.ephemerals_to(user)
            .await
            .into_iter()
            .find(|text| text.contains(needle))
    })
    .await;
}

/// The card for `id` once it says `needle`.
async fn card_saying(app: &TestApp, id: &str, needle: &str) -> String {
    eventually(&format!("the card to say {needle:?}"), || async {
        app.latest_card(id)
            .await
            .map(|card| card["blocks"].to_string())
            .filter(|blocks| blocks.contains(needle))
    })
    .await
}

#[tokio::test]
async fn each_step_is_decided_by_its_own_approvers_in_order() {
    let app = TestApp::spawn_with(&policy(r#"channel = "C0APPROVALS""#)).await;
    let id = app
        .request("U0ALICE", "request chain-db 1h INC-1 migration")
        .await;
    card_saying(&app, &id, "Step 1 of 2: waiting for 1 approval").await;

    // Security cannot skip ahead of the lead.
    app.approve("U0SEC1", &id).await;
    told(&app, "U0SEC1", "not an approver").await;
    assert!(app.request_json(&id).await["approvals"]
        .as_array()
        .unwrap()
        .is_empty());

    app.approve("U0LEAD", &id).await;
    let card = card_saying(&app, &id, "Step 2 of 2: waiting").await;
    assert!(card.contains("Step 1 of 2: approved by"), "{card}");
    assert_eq!(app.state_of(&id).await, "pending");
    // Counted in step 1, the lead cannot count again in step 2.
    app.approve("U0LEAD", &id).await;
    told(&app, "U0LEAD", "already approved").await;
    assert_eq!(app.state_of(&id).await, "pending");

    app.approve("U0SEC2", &id).await;
    app.until_granted(&id).await;
    let card = card_saying(&app, &id, "Step 2 of 2: approved by").await;
    assert!(card.contains("Step 1 of 2: approved by"), "{card}");
    let steps: Vec<u64> = app.request_json(&id).await["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(steps, [0, 1]);
}

#[tokio::test]
async fn a_denial_at_a_later_step_ends_the_request() {
    let app = TestApp::spawn_with(&policy(r#"channel = "C0APPROVALS""#)).await;
    let id = app.request("U0ALICE", "request chain-db 1h INC-2").await;
    app.approve("U0LEAD", &id).await;
    card_saying(&app, &id, "Step 2 of 2: waiting").await;
    app.click("U0SEC1", "jit_deny", &id).await;
    let opened = eventually("the deny form", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    let response = app
        .interact(serde_json::json!({
            "type": "view_submission",
            "user": { "id": "U0SEC1", "username": "sec1" },
            "view": {
                "callback_id": "jit_deny_form",
                "private_metadata": opened["view"]["private_metadata"],
                "state": { "values": { "reason": { "value": { "type": "plain_text_input", "value": "not during the freeze" } } } },
            },
        }))
        .await;
    assert_eq!(response.status(), 200);
    eventually("the denial", || async {
        (app.state_of(&id).await == "denied").then_some(())
    })
    .await;
    assert_eq!(app.iam_actions("grant", &id).await, 0);
}

#[tokio::test]
async fn without_a_channel_each_step_is_asked_by_dm_only_once_the_one_before_is_met() {
    let app = TestApp::spawn_with(&policy("")).await;
    let id = app.request("U0ALICE", "request chain-db 1h INC-3").await;
    let dm_card_to = |user: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            app.slack_calls("chat.postMessage")
                .await
                .into_iter()
                .find(|m| {
                    m["channel"] == format!("D{user}") && m["blocks"].to_string().contains(&id)
                })
        }
    };
    let card = eventually("the lead's card", || dm_card_to("U0LEAD")).await;
    assert!(has_buttons(&card), "{card}");
    app.until_outbox_empty().await;
    assert!(
        dm_card_to("U0SEC1").await.is_none(),
        "step 2 is not asked yet"
    );

    app.approve("U0LEAD", &id).await;
    eventually("security's cards", || async {
        Some((dm_card_to("U0SEC1").await?, dm_card_to("U0SEC2").await?))
    })
    .await;
    app.approve("U0SEC1", &id).await;
    app.until_granted(&id).await;
}

#[tokio::test]
async fn each_step_gets_the_whole_pending_timeout() {
    let app = TestApp::spawn_with(&policy(r#"channel = "C0APPROVALS""#)).await;
    let id = app.request("U0ALICE", "request chain-db 1h INC-4").await;
    app.advance(Duration::from_secs(8 * 60));
    app.approve("U0LEAD", &id).await;
    card_saying(&app, &id, "Step 2 of 2: waiting").await;
    // Past the first step's time-out: step 2 was asked 4 minutes ago.
    app.advance(Duration::from_secs(4 * 60));
    app.until_outbox_empty().await;
    assert_eq!(app.state_of(&id).await, "pending");
    // Past step 2's own ten minutes.
    app.advance(Duration::from_secs(7 * 60));
    eventually("the time-out of step 2", || async {
        (app.state_of(&id).await == "timed_out").then_some(())
    })
    .await;
}
