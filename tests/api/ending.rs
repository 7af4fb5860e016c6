//! Ending access before its time: release by the requester, revoke by an
//! admin; and pending requests that nobody decides.

use crate::helpers::{eventually, has_buttons, TestApp};

async fn active_grant(app: &TestApp, group: &str) -> String {
    let id = app
        .request("U0ALICE", &format!("request {group} 1h some work"))
        .await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    id
}

#[tokio::test]
async fn the_requester_releases_a_grant_and_it_is_revoked_at_once() {
    let app = TestApp::spawn().await;
    let id = active_grant(&app, "prod-db").await;
    let grant = format!("G-{}", &id[2..]);

    let not_yours = app
        .command_text("U0BOB", "C0GENERAL", &format!("release {grant}"))
        .await;
    assert_eq!(
        not_yours,
        format!("Only the requester can release {grant}.")
    );
    assert_eq!(app.iam_actions("revoke", &id).await, 0);

    let answer = app
        .command_text("U0ALICE", "C0GENERAL", &format!("release {grant}"))
        .await;
    assert!(
        answer.starts_with(&format!("Releasing {grant}")),
        "{answer}"
    );
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;
    let dm = app
        .wait_for_dm("U0ALICE", "the release DM", "was released")
        .await;
    assert!(dm.contains(&grant));
    eventually("the card to show the release", || async {
        app.latest_card(&id).await.filter(|c| {
            c["blocks"]
                .to_string()
                .contains("Released by the requester")
        })
    })
    .await;
    let again = app
        .command_text("U0ALICE", "C0GENERAL", &format!("release {grant}"))
        .await;
    assert_eq!(
        again,
        format!("{grant} is released, not active; there is nothing to end.")
    );
}

#[tokio::test]
async fn release_by_group_name_ends_the_requesters_grants_of_that_group() {
    let app = TestApp::spawn().await;
    let id = active_grant(&app, "prod-db").await;
    let none = app
        .command_text("U0ALICE", "C0GENERAL", "release two-key")
        .await;
    assert_eq!(
        none,
        "You have no active grant for two-key. `/jit list` shows yours."
    );
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "release prod-db")
        .await;
    assert!(answer.contains(&format!("G-{}", &id[2..])), "{answer}");
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_admin_revokes_with_a_reason_and_the_user_is_told() {
    let app = TestApp::spawn().await;
    let id = active_grant(&app, "prod-db").await;
    let grant = format!("G-{}", &id[2..]);

    // A non-admin is refused, and nothing happens.
    let refused = app
        .command_text(
            "U0LEAD",
            "C0GENERAL",
            &format!("admin revoke {grant} not yours to revoke"),
        )
        .await;
    assert_eq!(refused, "Only jitbot admins can use `/jit admin` commands.");
    assert_eq!(app.iam_actions("revoke", &id).await, 0);

    let answer = app
        .command_text(
            "U0ADMIN",
            "C0GENERAL",
            &format!("admin revoke {grant} left the on-call rota"),
        )
        .await;
    assert!(answer.starts_with(&format!("Revoking {grant}")), "{answer}");
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;
    let dm = app
        .wait_for_dm("U0ALICE", "the user's DM", "was revoked by admin")
        .await;
    assert!(dm.ends_with(": left the on-call rota"), "{dm}");
    let card = eventually("the card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Revoked by"))
    })
    .await;
    assert!(card["blocks"].to_string().contains("left the on-call rota"));

    let actions: Vec<String> = app
        .audit_export()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.iter().any(|a| a == "admin_refused"), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "revoked").count(), 1);
}

#[tokio::test]
async fn an_undecided_request_times_out() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request hasty 1h nobody around")
        .await;
    eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    app.advance(std::time::Duration::from_secs(10 * 60 + 1));
    let dm = app
        .wait_for_dm("U0ALICE", "the time-out DM", "timed out")
        .await;
    assert!(dm.contains(&id));
    let card = eventually("the timed-out card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Timed out undecided"))
    })
    .await;
    assert!(!has_buttons(&card));
    app.approve("U0LEAD", &id).await;
    let told = eventually("the late approver to be told", || async {
        app.ephemerals_to("U0LEAD").await.pop()
    })
    .await;
    assert_eq!(told, format!("{id} is already timed out; nothing changed."));
    assert!(app.iam_calls().await.is_empty());
}

#[tokio::test]
async fn an_undecided_request_is_escalated_and_the_escalation_approver_can_decide() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request escalating 1h urgent fix")
        .await;
    // Before the escalation, the head of department is no approver.
    app.approve("U0HEAD", &id).await;
    let told = eventually("the early click to be refused", || async {
        app.ephemerals_to("U0HEAD").await.pop()
    })
    .await;
    assert!(told.contains("You are not an approver"), "{told}");

    app.advance(std::time::Duration::from_secs(10 * 60 + 1));
    let card = eventually("the escalated card", || async {
        app.slack_calls("chat.postMessage")
            .await
            .into_iter()
            .find(|m| m["channel"] == "DU0HEAD" && m["blocks"].to_string().contains(&id))
    })
    .await;
    assert!(has_buttons(&card));
    app.approve("U0HEAD", &id).await;
    app.until_granted(&id).await;
    // Both the channel card and the escalated DM card show the outcome.
    eventually("both cards updated", || async {
        let updates = app.slack_calls("chat.update").await;
        let updated_channels: Vec<String> = updates
            .iter()
            .filter(|u| u["blocks"].to_string().contains("Approved by <@U0HEAD>"))
            .filter_map(|u| u["channel"].as_str().map(str::to_string))
            .collect();
        (updated_channels.contains(&"C0APPROVALS".to_string())
            && updated_channels.contains(&"DU0HEAD".to_string()))
        .then_some(())
    })
    .await;
}
