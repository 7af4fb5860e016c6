//! Sweeps through a webhook IAM that lists holders: enforcement revokes
//! what no grant explains — signed like every provider call, with no
//! request attached — and leaves active grants and allowed holders alone.

use std::sync::{Arc, Mutex};

use jitbot::providers::webhook;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use serde_json::json;

use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, HOOK_SECRET, USER_TOKEN};

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
holders_url = "{IAM}/holders"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[[groups]]
name = "console"
provider = "iam"
target = "aws-admin"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "enforce"
sweep_interval = "1s"
standing = ["svc-backup"]
"#;

/// The IAM's answer to a holders query, changed by the test as it goes.
#[derive(Clone)]
struct Holders(Arc<Mutex<Vec<String>>>);

impl Respond for Holders {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(self.0.lock().unwrap().clone())
    }
}

fn is_revoke(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|b| b["action"] == "revoke")
}

/// The request carries a valid signature over its exact body (a POST) or
/// its path and query (a GET).
fn assert_signed(request: &Request) {
    let header = |name: &str| request.headers[name].to_str().unwrap().to_string();
    let timestamp: i64 = header(webhook::TIMESTAMP_HEADER).parse().unwrap();
    assert_eq!(
        header(webhook::SIGNATURE_HEADER),
        crate::helpers::webhook_signature(HOOK_SECRET, timestamp, request),
        "{} {} is not signed correctly",
        request.method,
        request.url
    );
}

#[tokio::test]
async fn enforcement_revokes_only_what_no_grant_or_allow_list_explains() {
    let holders = Holders(Arc::new(Mutex::new(vec!["svc-backup".to_string()])));
    let app = TestApp::spawn_with(POLICY).await;
    Mock::given(method("GET"))
        .and(path("/holders"))
        .respond_with(holders.clone())
        .mount(&app.iam)
        .await;

    let id = app
        .request("U0ALICE", "request console 1m rotating keys")
        .await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    // The IAM now shows alice (granted), the allowed service account, and
    // someone given access behind jitbot's back.
    *holders.0.lock().unwrap() = vec!["U0ALICE".into(), "svc-backup".into(), "mallory".into()];

    let revoke: Request = eventually("the sweep's revoke", || async {
        app.iam
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .into_iter()
            .find(|r| r.url.path() == "/jit" && is_revoke(&r.body))
    })
    .await;
    let body: Value = serde_json::from_slice(&revoke.body).unwrap();
    assert_eq!(body["principal"], "mallory");
    assert_eq!(body["target"], "aws-admin");
    assert_eq!(body["request_id"], Value::Null, "no request explains it");
    assert_signed(&revoke);
    // The holders query is signed too (over an empty body).
    let queries: Vec<Request> = app
        .iam
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/holders")
        .collect();
    assert_eq!(queries[0].url.query(), Some("target=aws-admin"));
    assert_signed(&queries[0]);

    let notice = app
        .wait_for_notice("C0APPROVALS", "the channel notice", "Removed:")
        .await;
    assert!(notice.contains("`mallory`"), "{notice}");
    // The IAM keeps listing mallory (it is a fake); every sweep tries again,
    // but alice's grant and the allow-listed account are never touched.
    let revoked: Vec<Value> = eventually("a second sweep's revoke", || async {
        let revoked: Vec<Value> = app
            .iam_calls()
            .await
            .into_iter()
            .filter(|(b, _)| b["action"] == "revoke")
            .map(|(b, _)| b["principal"].clone())
            .collect();
        (revoked.len() >= 2).then_some(revoked)
    })
    .await;
    assert!(revoked.iter().all(|p| p == "mallory"), "{revoked:?}");

    let removed = app.audit_details("StandingRevoked").await;
    assert!(!removed.is_empty());
    assert!(
        removed
            .iter()
            .all(|d| d.starts_with("mallory held aws-admin")),
        "{removed:?}"
    );
}

#[tokio::test]
async fn a_listing_failure_is_reported_once_and_audited_each_time() {
    let mut app = TestApp::spawn_with(POLICY).await;
    Mock::given(method("GET"))
        .and(path("/holders"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.iam)
        .await;
    eventually("two failed sweeps", || async {
        let queries = app
            .iam
            .received_requests()
            .await
            .expect("the fake records the requests it gets");
        (queries
            .iter()
            .filter(|r| r.url.path() == "/holders")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    app.stop().await;
    let warnings: Vec<String> = app
        .notices_in("C0APPROVALS")
        .await
        .into_iter()
        .filter(|n| n.contains("could not list the holders of `aws-admin`"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("HTTP 503"), "{warnings:?}");
    let failed = app.audit_details("SweepFailed").await;
    assert!(failed.len() >= 2, "{failed:?}");
    assert!(app
        .iam_calls()
        .await
        .iter()
        .all(|(b, _)| b["action"] != "revoke"));
}

/// The same group, swept hourly: the tests below sweep on demand.
fn hourly() -> String {
    POLICY.replace("sweep_interval = \"1s\"", "sweep_interval = \"1h\"")
}

/// Start swept hourly, and let the sweep at start find the IAM without a
/// holders endpoint yet (so it revokes nothing); then the tests sweep.
async fn after_the_first_sweep() -> TestApp {
    let app = TestApp::spawn_with(&hourly()).await;
    app.wait_for_notice(
        "C0APPROVALS",
        "the sweep at start",
        "could not list the holders",
    )
    .await;
    app
}

#[tokio::test]
async fn admins_dry_run_and_run_a_sweep_through_the_api_while_the_server_runs() {
    let app = after_the_first_sweep().await;
    let holders = Holders(Arc::new(Mutex::new(vec![
        "svc-backup".into(),
        "mallory".into(),
    ])));
    Mock::given(method("GET"))
        .and(path("/holders"))
        .respond_with(holders)
        .mount(&app.iam)
        .await;
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/sweeps/console?dry_run=true",
            Some(USER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, dry) = app
        .api(
            "POST",
            "/api/v1/sweeps/console?dry_run=true",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["holders"], 2);
    assert_eq!(dry["allowed"], json!(["svc-backup"]));
    assert_eq!(dry["findings"][0]["principal"], "mallory");
    assert_eq!(dry["findings"][0]["action"], "would_revoke");
    assert!(
        app.iam_calls().await.is_empty(),
        "a dry run revokes nothing"
    );

    let (status, done) = app
        .api("POST", "/api/v1/sweeps/console", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(done["findings"][0]["action"], "revoked");
    let revokes: Vec<Value> = app
        .iam_calls()
        .await
        .into_iter()
        .filter(|(b, _)| b["action"] == "revoke")
        .map(|(b, _)| b["principal"].clone())
        .collect();
    assert_eq!(revokes, [json!("mallory")]);

    let (status, _) = app
        .api("POST", "/api/v1/sweeps/nope", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_cli_sweeps_through_the_running_server() {
    let app = after_the_first_sweep().await;
    Mock::given(method("GET"))
        .and(path("/holders"))
        .respond_with(Holders(Arc::new(Mutex::new(vec!["mallory".into()]))))
        .mount(&app.iam)
        .await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["sweep", "--dry-run", "--group", "console"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JITBOT_API_URL", format!("http://{}", app.addr))
        .env("JITBOT_API_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "console (aws-admin via iam, sweep = enforce, dry run): 1 holder(s), 0 allowed standing, 1 without a grant\n  mallory: would be revoked\n"
    );
    assert!(app.iam_calls().await.is_empty());
}
