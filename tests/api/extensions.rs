//! Expiry warnings with an Extend button, and extensions that move a grant's
//! end without revoking it in between.

use serde_json::{json, Value};

use crate::helpers::{eventually, request_id_in, TestApp};

#[tokio::test]
async fn a_warning_offers_extend_and_an_approved_extension_moves_the_end() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request extendable 5s long migration")
        .await;
    let grant = format!("G-{}", &id[2..]);
    app.approve("U0LEAD", &id).await;

    // Three seconds before the end: a DM with an Extend button.
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
    assert!(text.contains("Total with this*\\n1m5s"), "{text}");

    app.approve("U0LEAD", &extension).await;
    let dm = app
        .wait_for_dm("U0ALICE", "the new end", "was extended by 1m")
        .await;
    assert!(dm.contains(&grant));

    // Past the original end: still granted, never revoked in between.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(app.iam_actions("revoke", &id).await, 0);
    assert_eq!(app.iam_actions("grant", &id).await, 1);
    assert_eq!(
        app.iam_calls().await.len(),
        1,
        "the extension called no provider"
    );
    let list = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(list.contains(&format!("active as {grant}")), "{list}");
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
    eventually("the grant", || async {
        (app.iam_actions("grant", &id).await == 1).then_some(())
    })
    .await;

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
