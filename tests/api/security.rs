//! The security review's defects (issue 27), each tried as the attacker
//! did against the real server: identity from a request body, extensions
//! stacked past the group's limit, revokes that follow the policy instead
//! of the grant, a "covered" skip across principals, and self-approval
//! across identities. Each test fails on the code the review attacked.

use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::email::{csrf_of, link_for, post_form};
use crate::helpers::{eventually, TestApp, BASE_POLICY, USER_TOKEN};
use crate::mailbox::SmtpSink;
use crate::on_call::{pagerduty_answering, pagerduty_on_call, PAGERDUTY_TOKEN};

/// File through the API as the user token's user (U0CIBOT).
async fn file_by_api(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(USER_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Every request the audit log says was filed.
async fn filed_requests(app: &TestApp) -> Vec<String> {
    app.audit_export()
        .await
        .into_iter()
        .filter(|e| e["action"] == "requested" || e["action"] == "auto_approved")
        .filter_map(|e| e["request"].as_str().map(str::to_string))
        .collect()
}

// ── Defect 1: the API's `email` became the requester's identity ─────────

#[tokio::test]
async fn the_apis_email_never_makes_the_caller_the_person_on_call() {
    let pagerduty = pagerduty_answering(
        "PSCHED1",
        ResponseTemplate::new(200).set_body_json(pagerduty_on_call(&["oncall@example.com"])),
    )
    .await;
    let sink = SmtpSink::start().await;
    let policy = format!(
        r#"{BASE_POLICY}
[[groups]]
name = "oncall"
provider = "iam"
target = "oncall_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = {{ on_call = ["pagerduty:PSCHED1"], max_duration = "2h" }}
"#
    );
    let app = TestApp::spawn_full(
        &policy,
        None,
        Default::default(),
        jitbot::http::Admission::MAX_IN_FLIGHT,
        crate::helpers::email_settings(sink.port),
        vec![
            ("PAGERDUTY_API_TOKEN".into(), PAGERDUTY_TOKEN.into()),
            ("PAGERDUTY_API_URL".into(), pagerduty.uri()),
        ],
    )
    .await;
    // The attack: an ordinary token names the on-call engineer's address.
    let answer = file_by_api(
        &app,
        json!({ "group": "oncall", "duration": "1h", "reason": "INC-1", "email": "oncall@example.com" }),
    )
    .await;
    assert_eq!(answer.status(), 422, "a body never says who someone is");
    let why = answer.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!why.contains('\n'), "one line: {why}");
    assert!(filed_requests(&app).await.is_empty(), "nothing was filed");
    assert!(sink.delivered_to("oncall@example.com").is_empty());
    // Without it the token's user is who they are: not on call, so asked.
    let answer = file_by_api(
        &app,
        json!({ "group": "oncall", "duration": "1h", "reason": "INC-1" }),
    )
    .await;
    assert_eq!(answer.status(), 201);
    let filed: Value = answer.json().await.unwrap();
    assert_eq!(filed["state"], "pending", "{filed}");
    assert_eq!(
        app.iam_actions("grant", filed["id"].as_str().unwrap())
            .await,
        0
    );
}

#[tokio::test]
async fn an_email_approver_cannot_approve_her_own_request_by_filing_under_another_address() {
    let sink = SmtpSink::start().await;
    // U0CIBOT's profile address (the fake Slack's users.info) is
    // u0cibot@example.com, and that address approves the group by email.
    let policy = format!(
        r#"{BASE_POLICY}
[[groups]]
name = "ledger"
provider = "iam"
target = "ledger_rw"
approvers = ["u0cibot@example.com", "U0LEAD"]
channel = "C0APPROVALS"
"#
    );
    let app = TestApp::spawn_with_email(&policy, sink.port).await;
    let answer = file_by_api(
        &app,
        json!({ "group": "ledger", "reason": "Q4", "email": "someone.else@example.com" }),
    )
    .await;
    assert_eq!(answer.status(), 422);
    assert!(filed_requests(&app).await.is_empty());
    assert!(
        sink.delivered_to("someone.else@example.com").is_empty(),
        "no notice carrying the requester's text goes to an address they named"
    );
    // Filed as herself, her own link cannot approve it.
    let answer = file_by_api(&app, json!({ "group": "ledger", "reason": "Q4" })).await;
    assert_eq!(answer.status(), 201);
    let id = answer.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = link_for(&sink, "u0cibot@example.com", &id).await;
    let csrf = csrf_of(&app, &link).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("your own request"), "{page}");
    assert_eq!(app.state_of(&id).await, "pending");
}

// ── Defect 6: "not the requester" failed open across identities ─────────

#[tokio::test]
async fn a_requester_jitbot_cannot_tell_from_an_email_approver_cannot_approve_by_email() {
    let sink = SmtpSink::start().await;
    // The fake Slack gives users whose id starts with U0NOMAIL no address
    // (a token without users:read.email): jitbot cannot tell whether the
    // email approver is that requester.
    let policy = format!(
        r#"{BASE_POLICY}
[[groups]]
name = "ledger"
provider = "iam"
target = "ledger_rw"
approvers = ["alice@example.com", "U0LEAD"]
channel = "C0APPROVALS"
"#
    );
    let mut app = TestApp::spawn_with_email(&policy, sink.port).await;
    let id = app.request("U0NOMAILALICE", "request ledger 1h Q4").await;
    let link = link_for(&sink, "alice@example.com", &id).await;
    let csrf = csrf_of(&app, &link).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("jitbot cannot verify that you are not the requester"),
        "{page}"
    );
    assert_eq!(app.state_of(&id).await, "pending");
    let refused = app.audit_details("DecisionRefused").await;
    assert!(
        refused
            .iter()
            .any(|d| d.contains("cannot verify that you are not the requester")),
        "audited: {refused:?}"
    );
    // A chat approver is told apart by their Slack id: they may decide.
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;

    // Linking the requester's address in [identities] tells them apart.
    app.restart_with_policy(&format!(
        "{policy}\n[identities]\nU0NOMAILALICE = {{ email = \"alice.home@example.net\" }}\n"
    ))
    .await;
    let id = app
        .request("U0NOMAILALICE", "request ledger 1h Q4 again")
        .await;
    let link = link_for(&sink, "alice@example.com", &id).await;
    let csrf = csrf_of(&app, &link).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert!(status == 200 || status == 202, "{status}: {page}");
    app.until_granted(&id).await;
}

#[tokio::test]
async fn a_link_in_identities_makes_one_person_of_two_accounts() {
    let sink = SmtpSink::start().await;
    let policy = format!(
        r#"{BASE_POLICY}
[[groups]]
name = "ledger"
provider = "iam"
target = "ledger_rw"
approvers = ["alice.private@example.net", "U0LEAD"]
channel = "C0APPROVALS"

[identities]
U0ALICE = {{ email = "alice.private@example.net" }}
"#
    );
    let app = TestApp::spawn_with_email(&policy, sink.port).await;
    // Her Slack profile says u0alice@example.com; the policy links her
    // private address too: that approver is her.
    let id = app.request("U0ALICE", "request ledger 1h Q4").await;
    let link = link_for(&sink, "alice.private@example.net", &id).await;
    let csrf = csrf_of(&app, &link).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("your own request"), "{page}");
    assert_eq!(app.state_of(&id).await, "pending");
}

// ── Defect 2: auto-approved extensions stacked without limit ─────────────

const EXTENDING: &str = r#"
[[groups]]
name = "pager"
provider = "iam"
target = "pager_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
max_duration = "2h"
auto_approve = { requesters = ["U0ONCALL"], max_duration = "30m" }
"#;

#[tokio::test]
async fn a_burst_of_extensions_never_lengthens_a_grant_past_what_its_group_allows() {
    let app = TestApp::spawn_with(&format!("{BASE_POLICY}{EXTENDING}")).await;
    let id = app.request("U0ONCALL", "request pager 30m INC-9").await;
    app.until_active(&id).await;
    let ends_at = app.expires_at(&id).await;
    let grant = id.replace("R-", "G-");
    // Five extensions in a burst, as the attacker sent them.
    let text = format!("extend {grant} 30m still fixing");
    let answers = futures_util::future::join_all(
        (0..5).map(|_| app.command_text("U0ONCALL", "C0APPROVALS", &text)),
    )
    .await;
    let filed: Vec<&String> = answers.iter().filter(|a| a.contains("is filed")).collect();
    assert_eq!(
        filed.len(),
        1,
        "one extension waits at a time: {answers:#?}"
    );
    assert!(
        filed[0].contains("waiting for approval"),
        "a 1h grant is past what the policy approves by itself (30m): {answers:#?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.contains("one extension at a time"))
            .count(),
        4,
        "{answers:#?}"
    );
    app.until_outbox_empty().await;
    assert_eq!(
        app.expires_at(&id).await,
        ends_at,
        "nobody approved more time"
    );
}

async fn extend(app: &TestApp, text: &str) -> String {
    app.command_text("U0ALICE", "C0APPROVALS", text).await
}

#[tokio::test]
async fn the_whole_grant_stays_within_max_duration_however_it_is_extended() {
    let app = TestApp::spawn_with(&format!("{BASE_POLICY}{EXTENDING}")).await;
    let id = app.request("U0ALICE", "request pager 1h INC-9").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    let grant = id.replace("R-", "G-");
    let first_end = app.expires_at(&id).await;
    let answer = extend(&app, &format!("extend {grant} 45m more")).await;
    let ext = crate::helpers::request_id_in(&answer).expect("filed");
    app.approve("U0LEAD", &ext).await;
    let ends_at = eventually("the extension applied", || async {
        let ends_at = app.expires_at(&id).await;
        (ends_at == first_end + chrono::Duration::minutes(45)).then_some(ends_at)
    })
    .await;
    // 1h45m so far: 30m more would make 2h15m, past the group's 2h.
    let refused = extend(&app, &format!("extend {grant} 30m more")).await;
    assert!(refused.contains("max_duration of 2h"), "{refused}");
    let allowed = extend(&app, &format!("extend {grant} 15m the last bit")).await;
    assert!(allowed.contains("is filed"), "{allowed}");
    app.until_outbox_empty().await;
    assert_eq!(app.expires_at(&id).await, ends_at);
}

// ── Defects 3 and 4: revokes follow the grant, not today's policy ───────

/// The grant and revoke calls for `id`: (action, target, principal).
async fn provider_calls(app: &TestApp, id: &str) -> Vec<(String, String, String)> {
    app.iam_calls()
        .await
        .into_iter()
        .filter(|(body, _)| body["request_id"] == id)
        .map(|(body, _)| {
            let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
            (text("action"), text("target"), text("principal"))
        })
        .collect()
}

/// U0ALICE gives grant `id` back; the provider's revoke call is made.
async fn release_and_wait_for_its_revoke(app: &TestApp, id: &str) {
    let grant = id.replace("R-", "G-");
    app.command_text("U0ALICE", "C0APPROVALS", &format!("release {grant}"))
        .await;
    eventually("the revoke", || async {
        provider_calls(app, id)
            .await
            .into_iter()
            .find(|(action, _, _)| action == "revoke")
    })
    .await;
}

const RENAMED: &str = r#"
[[groups]]
name = "warehouse"
provider = "iam"
target = "TARGET"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

#[tokio::test]
async fn a_renamed_target_still_has_its_grants_revoked_as_they_were_granted() {
    let policy = |target: &str| format!("{BASE_POLICY}{}", RENAMED.replace("TARGET", target));
    let mut app = TestApp::spawn_with(&policy("warehouse_ro")).await;
    let id = app.request("U0ALICE", "request warehouse 1h Q4").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    // A routine rename of the role, and a restart.
    app.restart_with_policy(&policy("warehouse_reader")).await;
    let told = app
        .wait_for_dm("U0ADMIN", "the admins told of the drift", "policy changed")
        .await;
    assert!(told.contains(&id.replace("R-", "G-")), "{told}");
    assert!(told.contains("warehouse_ro"), "{told}");
    release_and_wait_for_its_revoke(&app, &id).await;
    assert_eq!(
        provider_calls(&app, &id).await,
        vec![
            ("grant".into(), "warehouse_ro".into(), "U0ALICE".into()),
            ("revoke".into(), "warehouse_ro".into(), "U0ALICE".into()),
        ],
        "the role granted is the role revoked"
    );
    // Told once: another restart says nothing new.
    app.restart().await;
    app.until_outbox_empty().await;
    let drift_dms = app
        .dms_to("U0ADMIN")
        .await
        .into_iter()
        .filter(|dm| dm.contains("policy changed"))
        .count();
    assert_eq!(drift_dms, 1);
}

#[tokio::test]
async fn a_removed_group_still_has_its_grants_revoked_at_their_end() {
    let mut app = TestApp::spawn_with(&format!(
        "{BASE_POLICY}{}",
        RENAMED.replace("TARGET", "wh_ro")
    ))
    .await;
    let id = app.request("U0ALICE", "request warehouse 1h Q4").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    app.restart_with_policy(BASE_POLICY).await;
    let told = app
        .wait_for_dm("U0ADMIN", "the admins told", "no longer in the policy")
        .await;
    assert!(told.contains(&id.replace("R-", "G-")), "{told}");
    app.advance_past_end(&id).await;
    eventually("the revoke at the end", || async {
        provider_calls(&app, &id)
            .await
            .into_iter()
            .find(|(action, target, _)| action == "revoke" && target == "wh_ro")
    })
    .await;
    eventually("the grant expired", || async {
        (app.state_of(&id).await == "expired").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_live_grant_whose_provider_is_gone_stops_the_start_and_is_named() {
    let policy = format!(
        r#"{BASE_POLICY}
[providers.legacy]
kind = "webhook"
url = "{{IAM}}/jit"
secret_env = "TEST_HOOK_SECRET"

[[groups]]
name = "old"
provider = "legacy"
target = "old_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#
    );
    let mut app = TestApp::spawn_with(&policy).await;
    let id = app.request("U0ALICE", "request old 1h Q4").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    app.stop().await;
    let refused = app
        .try_start_with_policy(BASE_POLICY)
        .await
        .expect_err("no provider can revoke that grant");
    let text = refused.to_string();
    assert!(
        text.contains(&id.replace("R-", "G-")) && text.contains("legacy"),
        "{text}"
    );
    // Put back, jitbot starts and the grant ends as it was granted.
    app.try_start_with_policy(&policy).await.expect("starts");
    app.advance_past_end(&id).await;
    eventually("the revoke", || async {
        (app.iam_actions("revoke", &id).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn another_grant_covers_an_ending_one_only_for_the_same_principal() {
    let policy = |principal: &str| {
        format!(
            "{BASE_POLICY}{}\n[identities]\nU0ALICE = {{ iam = \"{principal}\" }}\n",
            RENAMED.replace("TARGET", "wh_ro")
        )
    };
    let mut app = TestApp::spawn_with(&policy("alice")).await;
    let first = app.request("U0ALICE", "request warehouse 1h Q4").await;
    app.approve("U0LEAD", &first).await;
    app.until_active(&first).await;
    // Her principal changes (a new login); the next grant goes to it.
    app.restart_with_policy(&policy("alice.smith")).await;
    let second = app
        .request("U0ALICE", "request warehouse 2h Q4 again")
        .await;
    app.approve("U0LEAD", &second).await;
    app.until_active(&second).await;
    release_and_wait_for_its_revoke(&app, &first).await;
    assert_eq!(
        provider_calls(&app, &first).await,
        vec![
            ("grant".into(), "wh_ro".into(), "alice".into()),
            ("revoke".into(), "wh_ro".into(), "alice".into()),
        ],
        "`alice` is revoked, whatever `alice.smith` holds"
    );
    assert_eq!(app.iam_actions("revoke", &second).await, 0);
}
