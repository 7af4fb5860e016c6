//! Ticket reasons (`reason_pattern`): a reason without a ticket id is
//! refused everywhere a reason arrives, with the pattern shown as written;
//! the ticket is kept on the request, shown on the card and in the audit,
//! and the audit export filters by it.

use serde_json::json;

use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, BASE_POLICY, USER_TOKEN};

fn policy() -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "changes"
provider = "iam"
target = "deployer"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
reason_pattern = "(INC|CHG)-[0-9]+"
"#
    )
}

#[tokio::test]
async fn a_reason_without_a_ticket_is_refused_with_the_pattern_and_nothing_is_filed() {
    let app = TestApp::spawn_with(&policy()).await;
    let answer = app
        .command_text(
            "U0ALICE",
            "C0GENERAL",
            "request changes 1h fixing the deploy",
        )
        .await;
    assert!(answer.contains("`(INC|CHG)-[0-9]+`"), "{answer}");
    let response = app
        .http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(USER_TOKEN)
        .json(&json!({ "group": "changes", "duration": "1h", "reason": "fixing the deploy" }))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked("/api/v1/requests", "post", response).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("(INC|CHG)-[0-9]+"),
        "{body}"
    );
    assert!(
        app.audit_details("Requested").await.is_empty(),
        "nothing filed"
    );
    assert!(
        app.slack_calls("chat.postMessage").await.is_empty(),
        "no card"
    );
}

#[tokio::test]
async fn the_ticket_is_kept_shown_on_the_card_audited_and_filters_the_export() {
    let app = TestApp::spawn_with(&policy()).await;
    let first = app
        .request("U0ALICE", "request changes 1h rolling out CHG-42 tonight")
        .await;
    let second = app
        .request("U0BOB", "request changes 1h paging fix for INC-7")
        .await;
    let (status, json) = crate::openapi::checked(
        "/api/v1/requests/{id}",
        "get",
        app.http
            .get(app.url(&format!("/api/v1/requests/{first}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["ticket"], "CHG-42");
    let card = eventually("the card", || async { app.latest_card(&first).await }).await;
    let blocks = card["blocks"].to_string();
    assert!(
        blocks.contains("Ticket") && blocks.contains("CHG-42"),
        "{blocks}"
    );
    let requested = app.audit_details("Requested").await;
    assert!(
        requested.iter().any(|d| d.contains("(ticket CHG-42)")),
        "{requested:?}"
    );

    app.approve("U0LEAD", &first).await;
    app.until_active(&first).await;
    // An extension needs a ticket too.
    let grant = first.replacen("R-", "G-", 1);
    let refused = app
        .command_text(
            "U0ALICE",
            "C0GENERAL",
            &format!("extend {grant} 30m a bit more"),
        )
        .await;
    assert!(refused.contains("`(INC|CHG)-[0-9]+`"), "{refused}");

    let about_chg = app.audit_export_where("?ticket=chg-42").await;
    assert!(
        about_chg.len() >= 3,
        "requested, approved, granted: {about_chg:?}"
    );
    assert!(
        about_chg.iter().all(|e| e["request"] == first.as_str()),
        "{about_chg:?}"
    );
    let about_inc = app.audit_export_where("?ticket=INC-7").await;
    assert!(!about_inc.is_empty());
    assert!(about_inc.iter().all(|e| e["request"] == second.as_str()));
    assert!(app.audit_export_where("?ticket=CHG-1").await.is_empty());
}
