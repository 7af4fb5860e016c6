//! Identity mapping: the chat user becomes the provider's principal through
//! the provider's template (the email from `users.info`), unless the policy
//! names one in `[identities]`; a user with no principal is told so when
//! asking, and nothing is filed.

use crate::helpers::{eventually, TestApp};

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[providers.by-email]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
principal = "{email_local}"

[providers.by-aad]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
principal = "{teams_aad_id}"

[[groups]]
name = "warehouse"
provider = "by-email"
target = "analyst"
approvers = ["U0DBA"]
channel = "C0APPROVALS"

[[groups]]
name = "entra-app"
provider = "by-aad"
target = "app-admin"
approvers = ["U0DBA"]
channel = "C0APPROVALS"

[identities]
U0LEAD = { by-email = "lead_admin" }
"#;

async fn granted_principal(app: &TestApp, id: &str) -> serde_json::Value {
    eventually("the grant call", || async {
        app.iam_calls()
            .await
            .into_iter()
            .find(|(b, _)| b["action"] == "grant" && b["request_id"] == id)
            .map(|(b, _)| b)
    })
    .await
}

#[tokio::test]
async fn the_template_uses_the_users_email_and_identities_override_it() {
    let app = TestApp::spawn_with(POLICY).await;
    let alice = app
        .request("U0ALICE", "request warehouse 1h quarterly report")
        .await;
    app.approve("U0DBA", &alice).await;
    let body = granted_principal(&app, &alice).await;
    assert_eq!(body["principal"], "u0alice");
    assert_eq!(body["user"]["email"], "u0alice@example.com");

    let lead = app
        .request("U0LEAD", "request warehouse 1h audit query")
        .await;
    app.approve("U0DBA", &lead).await;
    assert_eq!(
        granted_principal(&app, &lead).await["principal"],
        "lead_admin"
    );
}

#[tokio::test]
async fn a_user_without_a_principal_is_told_when_asking_and_nothing_is_filed() {
    let app = TestApp::spawn_with(POLICY).await;
    let answer = app
        .command_text("U0NOMAIL1", "C0GENERAL", "request warehouse 1h report")
        .await;
    assert_eq!(
        answer,
        "I cannot grant you `warehouse`: your account has no email address that the `by-email` provider could use; ask an admin to add you to [identities] in the policy"
    );
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request entra-app 1h rotate secret")
        .await;
    assert!(
        answer.contains("no Teams AAD object id that the `by-aad` provider could use"),
        "{answer}"
    );
    // Nothing was filed (the store's audit holds no request), so no card
    // can ever be posted for either.
    let filed = app.audit_details("Requested").await;
    assert!(filed.is_empty(), "{filed:?}");
    assert!(app.slack_calls("chat.postMessage").await.is_empty());
}
