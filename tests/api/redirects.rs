//! Outbound calls follow no redirect (issue 27, point 12): every provider
//! that speaks HTTP, and the on-call look-ups, take a 3xx as a failure that
//! may pass, and nothing — no signature, token, secret or body — reaches
//! the URL it points to.

use std::sync::Arc;

use jitbot::config::EnvSource;
use jitbot::providers::{Access, Providers};
use serde_json::json;
use wiremock::matchers::{any, body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, HOOK_SECRET};

/// A service that answers everything with `status`, pointing elsewhere,
/// and the elsewhere, which answers everything as a success would look.
async fn redirecting(status: u16) -> (MockServer, MockServer) {
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&elsewhere)
        .await;
    let service = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(status)
                .insert_header("Location", format!("{}/caught", elsewhere.uri()).as_str()),
        )
        .mount(&service)
        .await;
    (service, elsewhere)
}

/// Every provider kind that speaks HTTP, pointed at `service`.
fn every_http_provider(service: &str, kubeconfig: &str) -> (String, Vec<(&'static str, String)>) {
    let policy = format!(
        r#"
admins = ["U0ADMIN"]

[providers.hook]
kind = "webhook"
url = "{service}/jit"
secret_env = "HOOK_SECRET"
holders_url = "{service}/holders"
activity_url = "{service}/activity"
timeout = "5s"

[providers.okta]
kind = "okta"
org_url = "{service}"
api_token_env = "OKTA_TOKEN"
timeout = "5s"

[providers.entra]
kind = "entra"
tenant_id = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_env = "ENTRA_SECRET"
graph_url = "{service}/v1.0"
token_url = "{service}/token"
timeout = "5s"

[providers.aws]
kind = "aws_identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-1111111111111111"
identity_store_id = "d-1234567890"
endpoint_url = "{service}"
timeout = "5s"

[providers.k8s]
kind = "kubernetes"
kubeconfig_env = "KUBECONFIG_PATH"
subject_kind = "User"
timeout = "5s"

[providers.usergroup]
kind = "slack_usergroup"
token_env = "USERGROUP_TOKEN"
timeout = "5s"
"#
    );
    let env = vec![
        ("HOOK_SECRET", HOOK_SECRET.to_string()),
        ("OKTA_TOKEN", "okta-token-that-must-not-travel".to_string()),
        (
            "ENTRA_SECRET",
            "entra-secret-that-must-not-travel".to_string(),
        ),
        ("AWS_REGION", "eu-west-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIAREDIRECTTEST".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "aws-secret-that-must-not-travel".to_string(),
        ),
        ("KUBECONFIG_PATH", kubeconfig.to_string()),
        (
            "USERGROUP_TOKEN",
            "xoxb-token-that-must-not-travel".to_string(),
        ),
        ("SLACK_API_URL", format!("{service}/api")),
    ];
    (policy, env)
}

/// A target each provider takes as well formed, so that it calls out.
fn well_formed_target(provider: &str) -> &'static str {
    match provider {
        "aws" => {
            "123456789012/arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-2222222222222222"
        }
        "okta" => "00g1emaKYZTWRYYRRTSK",
        "entra" => "6f1c2e4a-0000-4000-8000-00000000a11d",
        "usergroup" => "S0ONCALL",
        "k8s" => "payments/debugger",
        _ => "prod_rw",
    }
}

fn build(policy: &str, env: &[(&'static str, String)]) -> Providers {
    let policy = jitbot::config::policy::parse(policy).expect("the test policy is valid");
    let env = EnvSource::from_pairs(env.iter().map(|(k, v)| (*k, v.as_str())));
    jitbot::providers::build(
        &policy,
        &env,
        Arc::new(jitbot::providers::exclusive::LocalExclusive::default()),
    )
    .expect("the providers build")
}

#[tokio::test]
async fn no_provider_follows_a_redirect_and_each_takes_it_as_a_passing_failure() {
    for status in [301, 302, 303, 307, 308] {
        let (service, elsewhere) = redirecting(status).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  context:\n    cluster: redirecting\n    user: jitbot\nclusters:\n- name: redirecting\n  cluster:\n    server: {}\nusers:\n- name: jitbot\n  user:\n    token: k8s-token-that-must-not-travel\n",
                service.uri()
            ),
        )
        .unwrap();
        let (policy, env) = every_http_provider(&service.uri(), kubeconfig.to_str().unwrap());
        let providers = build(&policy, &env);
        assert_eq!(providers.len(), 6);
        let mut names: Vec<&String> = providers.keys().collect();
        names.sort();
        for name in names {
            let provider = &providers[name];
            let target = well_formed_target(name);
            let access = Access {
                request_id: Some("R-7K3Q9X".into()),
                grant_id: Some("G-7K3Q9X".into()),
                principal: "alice@example.com".into(),
                group: "g".into(),
                target: target.to_string(),
                ..Access::default()
            };
            let granted = provider.grant(&access).await;
            let error = granted.expect_err(&format!("{name}: a {status} is not a success"));
            assert!(
                !error.permanent,
                "{name}: a {status} may pass, so it is retried: {error}"
            );
            assert!(provider.holders(target).await.is_err(), "{name} holders");
        }
        let hook = &providers["hook"];
        assert!(hook.activity("alice", "prod_rw").await.is_err());
        assert!(
            !service.received_requests().await.unwrap().is_empty(),
            "the providers asked the service"
        );
        let caught = elsewhere.received_requests().await.unwrap();
        assert!(
            caught.is_empty(),
            "a {status} was followed: {:?}",
            caught
                .iter()
                .map(|r| format!("{} {}", r.method, r.url))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn on_call_look_ups_follow_no_redirect_and_count_nobody_on_call() {
    let (service, elsewhere) = redirecting(307).await;
    let env = EnvSource::from_pairs([
        ("PAGERDUTY_API_TOKEN", "pd-token-that-must-not-travel"),
        ("PAGERDUTY_API_URL", service.uri().as_str()),
        ("OPSGENIE_API_KEY", "og-key-that-must-not-travel"),
        ("OPSGENIE_API_URL", service.uri().as_str()),
    ]);
    let settings = jitbot::config::paging::PagingSettings::from_env(&env).unwrap();
    let on_call =
        jitbot::on_call::OnCall::new(settings, Arc::new(jitbot::telemetry::Metrics::new()));
    for schedule in ["pagerduty:PABC123", "opsgenie:Platform"] {
        let schedule = jitbot::domain::on_call::Schedule::parse(schedule).unwrap();
        let answer = on_call.people(&schedule).await;
        assert!(
            matches!(&answer, Err(jitbot::on_call::LookupError::Failed(why)) if why.contains("redirects are not followed")),
            "{schedule}: {answer:?}"
        );
    }
    assert_eq!(service.received_requests().await.unwrap().len(), 2);
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_signed_grant_answered_with_a_redirect_is_retried_where_it_was_sent() {
    let app = TestApp::spawn().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    // A 307 tells a client to send the same body, with its headers, to the
    // new place: the signature would go with it.
    Mock::given(method("POST"))
        .and(path("/jit"))
        .and(body_partial_json(json!({ "action": "grant" })))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("Location", format!("{}/jit", elsewhere.uri()).as_str()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.iam)
        .await;
    let id = app.request("U0ALICE", "request flaky 1h redirected").await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    assert_eq!(
        app.iam_actions("grant", &id).await,
        2,
        "the redirect failed the first attempt; the retry went to the IAM again"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}
