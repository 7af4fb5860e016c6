//! Several groups in one request (issue 18, point 7): `request a,b …`
//! files one request per group, shown on one card in each approval channel
//! involved; each group's approvers decide it (one click counts for every
//! group the clicker may decide); access to all is granted together, each
//! through its own provider; a grant that fails for good undoes the
//! others; release, extension and expiry cover the whole request; a bundle
//! that names a group the requester may not have is refused as a whole.

use serde_json::{json, Value};

use crate::helpers::{eventually, has_buttons, TestApp, BASE_POLICY, USER_TOKEN};

/// The base policy and a group of another approver set in another channel.
fn policy() -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "audit-logs"
provider = "iam"
target = "audit_ro"
approvers = ["U0SEC"]
channel = "C0SECURITY"
"#
    )
}

/// The ids of the members of the bundle `id` names, in order.
async fn members(app: &TestApp, id: &str) -> Vec<String> {
    let request = app.request_json(id).await;
    request["bundle"]
        .as_array()
        .unwrap_or_else(|| panic!("{id} is not a bundle: {request}"))
        .iter()
        .map(|member| member["id"].as_str().unwrap().to_string())
        .collect()
}

async fn until_state(app: &TestApp, id: &str, state: &str) {
    eventually(&format!("{id} to be {state}"), || async {
        (app.state_of(id).await == state).then_some(())
    })
    .await;
}

/// Cards posted into `channel` that show request `id`.
async fn cards_in(app: &TestApp, channel: &str, id: &str) -> Vec<Value> {
    app.cards_for(id)
        .await
        .into_iter()
        .filter(|card| card["channel"] == channel)
        .collect()
}

#[tokio::test]
async fn groups_with_one_approver_set_share_one_card_and_one_click() {
    let app = TestApp::spawn_with(&policy()).await;
    let answer = app
        .command_text(
            "U0ALICE",
            "C0GENERAL",
            "request prod-db,hasty 2h INC-9 failover",
        )
        .await;
    assert!(answer.contains("prod-db, hasty"), "{answer}");
    let id = crate::helpers::request_id_in(&answer).unwrap();
    let [db, hasty] = members(&app, &id).await.try_into().unwrap();
    assert_eq!(db, id, "the first group's request names the bundle");

    // One card, in the one channel both groups use, naming both groups.
    let card = eventually("the card", || async {
        cards_in(&app, "C0APPROVALS", &id).await.pop()
    })
    .await;
    let blocks = card["blocks"].to_string();
    assert!(
        blocks.contains("prod-db") && blocks.contains("hasty"),
        "{blocks}"
    );
    assert!(has_buttons(&card), "{card}");
    app.until_outbox_empty().await;
    assert_eq!(cards_in(&app, "C0APPROVALS", &id).await.len(), 1);
    assert!(cards_in(&app, "C0APPROVALS", &hasty).await.len() <= 1);

    // One approver of both decides both with one click.
    app.approve("U0LEAD", &id).await;
    app.until_granted(&db).await;
    app.until_granted(&hasty).await;
    let (db_json, hasty_json) = (app.request_json(&db).await, app.request_json(&hasty).await);
    assert_eq!(db_json["approvals"][0]["by"]["user"], "U0LEAD");
    assert_eq!(hasty_json["approvals"][0]["by"]["user"], "U0LEAD");
    // Granted together, they end together.
    assert_eq!(db_json["expires_at"], hasty_json["expires_at"]);
    let grants = app
        .iam_calls()
        .await
        .into_iter()
        .filter(|(body, _)| body["action"] == "grant")
        .map(|(body, _)| body["target"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(grants.contains(&"prod_rw".to_string()) && grants.contains(&"hasty_rw".to_string()));

    // Releasing the request gives back every group's access.
    let grant = db_json["grant_id"].as_str().unwrap().to_string();
    let released = app
        .command_text("U0ALICE", "C0GENERAL", &format!("release {grant}"))
        .await;
    assert!(released.contains("Releasing"), "{released}");
    until_state(&app, &db, "released").await;
    until_state(&app, &hasty, "released").await;
    assert_eq!(app.iam_actions("revoke", &db).await, 1);
    assert_eq!(app.iam_actions("revoke", &hasty).await, 1);
}

#[tokio::test]
async fn each_group_is_decided_by_its_own_approvers_and_granted_only_when_all_are() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = app
        .request(
            "U0ALICE",
            "request prod-db,audit-logs 1h INC-10 breach review",
        )
        .await;
    let [db, logs] = members(&app, &id).await.try_into().unwrap();
    // A card in each channel involved.
    for channel in ["C0APPROVALS", "C0SECURITY"] {
        eventually(&format!("the card in {channel}"), || async {
            cards_in(&app, channel, &id).await.pop()
        })
        .await;
    }

    // The requester never counts; someone who approves neither group is
    // told so, and nothing changes.
    app.approve("U0ALICE", &id).await;
    app.approve("U0NOBODY", &id).await;
    eventually("the refusal", || async {
        app.ephemerals_to("U0NOBODY")
            .await
            .into_iter()
            .find(|text| text.contains("not an approver"))
    })
    .await;

    // The database's approver approves the database only; nothing is
    // granted while the security team has not decided.
    app.approve("U0LEAD", &id).await;
    until_state(&app, &db, "approved").await;
    assert_eq!(app.state_of(&logs).await, "pending");
    eventually("the card to say who waits", || async {
        app.latest_card(&id)
            .await
            .map(|card| card["blocks"].to_string())
            .filter(|blocks| blocks.contains("Waiting for the other groups"))
    })
    .await;
    app.until_outbox_empty().await;
    assert_eq!(
        app.iam_actions("grant", &db).await,
        0,
        "held for the others"
    );

    app.approve("U0SEC", &id).await;
    app.until_granted(&db).await;
    app.until_granted(&logs).await;
    assert_eq!(
        app.request_json(&logs).await["approvals"][0]["by"]["user"],
        "U0SEC"
    );
    // Counted from the last approval, both end at the same moment.
    assert_eq!(app.expires_at(&db).await, app.expires_at(&logs).await);
}

#[tokio::test]
async fn a_grant_that_fails_for_good_undoes_the_others() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = app
        .request("U0ALICE", "request prod-db,broken 1h INC-11")
        .await;
    let [db, broken] = members(&app, &id).await.try_into().unwrap();
    app.approve("U0LEAD", &id).await;
    until_state(&app, &broken, "failed").await;
    until_state(&app, &db, "failed").await;
    // Whatever the database's grant had reached, it was revoked.
    eventually("the database's revoke", || async {
        (app.iam_actions("revoke", &db).await >= 1).then_some(())
    })
    .await;
    let told = app
        .wait_for_dm("U0ALICE", "the undo DM", "all together or not at all")
        .await;
    assert!(told.contains("broken"), "{told}");
    app.wait_for_dm("U0ALICE", "the failure DM", "role prod_rw does not exist")
        .await;
    let notice = app.channel_post_saying("C0APPROVALS", "failed").await;
    // Each group's channel hears of its part.
    let undone = app
        .channel_post_saying("C0APPROVALS", "revoked with the rest of the request")
        .await;
    assert!(undone["text"].as_str().unwrap().contains(&db), "{undone}");
    assert!(
        notice["text"].as_str().unwrap().contains(&broken),
        "{notice}"
    );
}

#[tokio::test]
async fn a_denial_of_one_group_withdraws_the_others() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = app
        .request("U0ALICE", "request prod-db,audit-logs 1h INC-12")
        .await;
    let [db, logs] = members(&app, &id).await.try_into().unwrap();
    app.approve("U0LEAD", &id).await;
    until_state(&app, &db, "approved").await;
    let denied = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(denied.contains(&logs), "{denied}");
    deny(&app, "U0SEC", &id, "not for this incident").await;
    until_state(&app, &logs, "denied").await;
    until_state(&app, &db, "cancelled").await;
    let told = app
        .wait_for_dm("U0ALICE", "the withdrawal", "was withdrawn")
        .await;
    assert!(told.contains("not for this incident"), "{told}");
    app.until_outbox_empty().await;
    assert_eq!(app.iam_actions("grant", &db).await, 0);
    assert_eq!(app.iam_actions("grant", &logs).await, 0);
    let card = app.latest_card(&id).await.unwrap();
    assert!(!has_buttons(&card), "{card}");
}

/// `user` denies `id` through the card's Deny form.
async fn deny(app: &TestApp, user: &str, id: &str, reason: &str) {
    app.click(user, "jit_deny", id).await;
    let opened = eventually("the deny form", || async {
        app.slack_calls("views.open")
            .await
            .into_iter()
            .find(|call| call["view"]["private_metadata"].to_string().contains(id))
    })
    .await;
    let response = app
        .interact(json!({
            "type": "view_submission",
            "user": { "id": user, "username": user.to_lowercase() },
            "view": {
                "callback_id": "jit_deny_form",
                "private_metadata": opened["view"]["private_metadata"],
                "state": { "values": { "reason": { "value": { "type": "plain_text_input", "value": reason } } } },
            },
        }))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_bundle_is_refused_as_a_whole_and_nothing_is_filed() {
    let app = TestApp::spawn_with(&policy()).await;
    for (typed, says) in [
        (
            "request prod-db,no-such 1h INC-13",
            "There is no group `no-such`",
        ),
        (
            "request prod-db,restricted 1h INC-13",
            "not allowed to request `restricted`",
        ),
        (
            "request prod-db,quick 1h INC-13",
            "longer than the maximum of 10m for `quick`",
        ),
        ("request prod-db,prod-db 1h INC-13", "named twice"),
    ] {
        let answer = app.command_text("U0ALICE", "C0GENERAL", typed).await;
        assert!(answer.contains(says), "{typed}: {answer}");
        assert!(
            answer.contains("Nothing was filed for any of the groups") || says == "named twice",
            "{typed}: {answer}"
        );
    }
    let listed = app.command_text("U0ALICE", "C0GENERAL", "list").await;
    assert!(!listed.contains("R-"), "{listed}");
    app.until_outbox_empty().await;
    assert!(app.cards_for("R-").await.is_empty());
}

#[tokio::test]
async fn the_api_files_a_list_of_groups_as_one_request() {
    let app = TestApp::spawn_with(&policy()).await;
    let (status, filed) = app
        .api(
            "POST",
            "/api/v1/requests",
            Some(USER_TOKEN),
            Some(json!({ "groups": ["prod-db", "audit-logs"], "duration": "30m", "reason": "INC-14 deploy" })),
        )
        .await;
    assert_eq!(status, 201, "{filed}");
    let groups: Vec<&str> = filed["bundle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["prod-db", "audit-logs"]);
    assert_eq!(filed["group"], "prod-db");
    assert_eq!(filed["duration"], "30m");
    let logs = filed["bundle"][1]["id"].as_str().unwrap().to_string();
    let (status, member) = app
        .api(
            "GET",
            &format!("/api/v1/requests/{logs}"),
            Some(USER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member["group"], "audit-logs");
    assert_eq!(member["state"], "pending");

    // The chat spelling and a list in `group` are the same request.
    for group in [json!("hasty,prod-db"), json!(["hasty", "prod-db"])] {
        let (status, filed) = app
            .api(
                "POST",
                "/api/v1/requests",
                Some(USER_TOKEN),
                Some(json!({ "group": group, "reason": "INC-14 rollback" })),
            )
            .await;
        assert_eq!(status, 201, "{filed}");
        assert_eq!(filed["bundle"][1]["group"], "prod-db", "{filed}");
    }
    for (body, status) in [
        (
            json!({ "groups": ["prod-db", "no-such"], "reason": "x" }),
            422,
        ),
        (
            json!({ "groups": ["prod-db", "restricted"], "reason": "x" }),
            403,
        ),
        (json!({ "groups": [], "reason": "x" }), 422),
        (
            json!({ "group": "prod-db", "groups": ["hasty"], "reason": "x" }),
            422,
        ),
        (
            json!({ "groups": ["prod-db", "hasty"], "duration": "10m", "reason": "x", "break_glass": true }),
            422,
        ),
    ] {
        let (got, answer) = app
            .api(
                "POST",
                "/api/v1/requests",
                Some(USER_TOKEN),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    // Only the bundles above were filed.
    let listed = app.command_text("U0CIBOT", "C0GENERAL", "list").await;
    let ids: std::collections::HashSet<String> = listed
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() == 8 && w.starts_with("R-"))
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 6, "{listed}");
}

#[tokio::test]
async fn an_extension_moves_every_end_and_expiry_ends_them_together() {
    let app = TestApp::spawn_with(&policy()).await;
    let id = app
        .request("U0ALICE", "request extendable,quick 2m INC-15")
        .await;
    let [ext, quick] = members(&app, &id).await.try_into().unwrap();
    app.approve("U0LEAD", &id).await;
    app.until_granted(&ext).await;
    app.until_granted(&quick).await;
    let before = app.expires_at(&ext).await;

    let grant = app.request_json(&quick).await["grant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", &format!("extend {grant} 1m more"))
        .await;
    let extension = crate::helpers::request_id_in(&answer).unwrap();
    assert_eq!(members(&app, &extension).await.len(), 2, "{answer}");
    app.approve("U0LEAD", &extension).await;
    let after = before + chrono::Duration::minutes(1);
    eventually("both ends to move", || async {
        (app.expires_at(&ext).await == after && app.expires_at(&quick).await == after).then_some(())
    })
    .await;

    app.advance_past_end(&ext).await;
    until_state(&app, &ext, "expired").await;
    until_state(&app, &quick, "expired").await;
    assert_eq!(app.iam_actions("revoke", &ext).await, 1);
    assert_eq!(app.iam_actions("revoke", &quick).await, 1);
}
