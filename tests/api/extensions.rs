//! Expiry warnings with an Extend button, and extensions that move a grant's
//! end without revoking it in between.

use serde_json::{json, Value};

use crate::helpers::{eventually, request_id_in, TestApp};

#[tokio::test]
async fn a_warning_offers_extend_and_an_approved_extension_moves_the_end() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request extendable 5m long migration")
        .await;
    let grant = format!("G-{}", &id[2..]);
    // The end is fixed by the approval; time stands still for the grant
    // from here on unless this test moves the server's clock.
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    let original_end = app.expires_at(&id).await;

    // Three seconds before the end: a DM with an Extend button.
    app.advance_to(original_end - chrono::Duration::seconds(3));
    let warning = eventually("the expiry warning", || async {
        app.slack_calls("chat.postMessage")
            .await
            .into_iter()
            .find(|m| m["channel"] == "DU0ALICE" && m["blocks"].to_string().contains("jit_extend"))
    })
    .await;
    let blocks = warning["blocks"].to_string();
    assert!(
        blocks.contains(&grant) && blocks.contains("ends soon"),
        "{blocks}"
    );

    // The button opens the extension form; submitting it files the extension.
    let click = json!({
        "type": "block_actions",
        "user": { "id": "U0ALICE", "username": "u0alice" },
        "trigger_id": "trigger-extend",
        "channel": { "id": "DU0ALICE" },
        "actions": [{ "action_id": "jit_extend", "value": grant }],
    });
    assert_eq!(app.interact(click).await.status(), 200);
    let opened = eventually("the extend form", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    assert_eq!(opened["view"]["callback_id"], "jit_extend_form");
    let submit = json!({
        "type": "view_submission",
        "user": { "id": "U0ALICE", "username": "u0alice" },
        "view": {
            "callback_id": "jit_extend_form",
            "private_metadata": opened["view"]["private_metadata"],
            "state": { "values": {
                "duration": { "value": { "type": "plain_text_input", "value": "1m" } },
                "reason": { "value": { "type": "plain_text_input", "value": "migration is slow" } },
            } },
        },
    });
    let answer: Value = app.interact(submit).await.json().await.unwrap();
    assert_eq!(answer["response_action"], "clear");
    let receipt = eventually("the extension receipt", || async {
        app.dms_to("U0ALICE")
            .await
            .into_iter()
            .find(|d| d.starts_with("Extension"))
    })
    .await;
    let extension = request_id_in(&receipt).unwrap();

    // Approvers see an extension card with the total so far.
    let card = eventually("the extension card", || async {
        app.cards_for(&extension).await.pop()
    })
    .await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("Extension request for extendable") && text.contains(&grant),
        "{text}"
    );
    assert!(text.contains("Total with this*\\n6m"), "{text}");

    app.approve("U0LEAD", &extension).await;
    let dm = app
        .wait_for_dm("U0ALICE", "the new end", "was extended by 1m")
        .await;
    assert!(dm.contains(&grant));

    let new_end = app.expires_at(&id).await;
    assert_eq!(new_end - original_end, chrono::Duration::minutes(1));

    // Past the original end, then to the new one: the only revoke comes at
    // the new end, so none happened in between.
    app.advance_to(original_end + chrono::Duration::seconds(5));
    app.advance_past_end(&id).await;
    // The provider is called before the expiry is recorded: wait for the
    // record, then count the calls.
    let expired = eventually("the expiry audited at the new end", || async {
        app.audit_export()
            .await
            .into_iter()
            .find(|e| e["action"] == "expired" && e["request"] == id.as_str())
    })
    .await;
    assert_eq!(app.iam_actions("revoke", &id).await, 1);
    let expired_at: chrono::DateTime<chrono::Utc> =
        expired["at"].as_str().unwrap().parse().unwrap();
    assert!(
        expired_at >= new_end,
        "revoked at {expired_at}, before {new_end}"
    );
    assert_eq!(app.iam_actions("grant", &id).await, 1);
    assert_eq!(
        app.iam_calls().await.len(),
        2,
        "the extension called no provider: one grant, one revoke"
    );
    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(
        list.contains(&format!("{id} extendable (5m) — expired")),
        "{list}"
    );
    assert!(
        list.contains(&format!("{extension} extendable (1m) — extended")),
        "{list}"
    );
}

#[tokio::test]
async fn extensions_follow_the_rules_of_requests() {
    let app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request extendable 5m work").await;
    let grant = format!("G-{}", &id[2..]);
    let not_active = app
        .command_text("U0ALICE", "C0GENERAL", &format!("extend {grant} 1m more"))
        .await;
    assert_eq!(
        not_active,
        format!("{grant} is pending, not active; request access again with `/jit request`.")
    );
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;

    let not_yours = app
        .command_text("U0BOB", "C0GENERAL", &format!("extend {grant} 1m mine now"))
        .await;
    assert_eq!(
        not_yours,
        format!("{grant} is not your grant; only its holder can extend it.")
    );
    let too_long = app
        .command_text("U0ALICE", "C0GENERAL", &format!("extend {grant} 11m more"))
        .await;
    assert!(
        too_long.starts_with("11m is longer than the maximum of 10m for `extendable`"),
        "{too_long}"
    );
    let no_reason = app
        .command_text("U0ALICE", "C0GENERAL", &format!("extend {grant} 1m"))
        .await;
    assert!(no_reason.contains("needs a reason"), "{no_reason}");
    let filed = app
        .command_text(
            "U0ALICE",
            "C0GENERAL",
            &format!("extend {grant} 2m a bit more"),
        )
        .await;
    assert!(
        filed.contains("is filed and waiting for approval"),
        "{filed}"
    );
}
