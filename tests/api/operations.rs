//! What operators watch: /healthz, /readyz and the Prometheus metrics, fed
//! by a real lifecycle.

use crate::helpers::{eventually, TestApp};

async fn get(app: &TestApp, route: &str) -> (u16, String) {
    let response = app.http.get(app.url(route)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of one sample line of the exposition, if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn health_and_readiness_report_each_part() {
    let app = TestApp::spawn().await;
    assert_eq!(get(&app, "/healthz").await, (200, "ok\n".to_string()));
    let (status, body) = eventually("both workers to have run", || async {
        let (status, body) = get(&app, "/readyz").await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "store: ok");
    assert!(lines[1].starts_with("scheduler: ok (last pass "), "{body}");
    assert_eq!(lines[2], "outbox: ok (0 waiting, oldest 0s)");
}

#[tokio::test]
async fn metrics_follow_requests_decisions_revocations_and_failures() {
    let app = TestApp::spawn().await;
    // Slack throttles the first card once.
    app.throttle_next_slack_post().await;
    let id = app.request("U0ALICE", "request quick 10m metrics").await;
    app.approve("U0BOB", &id).await; // not an approver: refused
    app.approve("U0LEAD", &id).await;
    let refused = app
        .command_text("U0ALICE", "C0GENERAL", "request quick 1h too long")
        .await;
    assert!(refused.contains("longer than the maximum"));
    let forged = app
        .http
        .post(app.url("/slack/commands"))
        .header(
            "x-slack-request-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("x-slack-signature", "v0=00")
        .body("text=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let during = eventually("the grant to show as active", || async {
        let (_, text) = get(&app, "/metrics").await;
        (sample(&text, "jitbot_active_grants") == Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(sample(&during, "jitbot_grants_expiring_soon"), Some(1.0));
    app.advance_past_end(&id).await;

    let (status, text) = eventually("the expiry to be counted", || async {
        let (status, text) = get(&app, "/metrics").await;
        // Counted when the provider answers, recorded just after: wait
        // for both.
        (sample(&text, "jitbot_revocations_total{outcome=\"ok\"}") == Some(1.0)
            && sample(&text, "jitbot_active_grants") == Some(0.0))
        .then_some((status, text))
    })
    .await;
    assert_eq!(status, 200);
    let expect = [
        ("jitbot_requests_total{outcome=\"filed\"}", 1.0),
        ("jitbot_requests_total{outcome=\"refused\"}", 1.0),
        ("jitbot_decisions_total{outcome=\"refused\"}", 1.0),
        ("jitbot_decisions_total{outcome=\"approved\"}", 1.0),
        ("jitbot_revocation_lag_seconds_count", 1.0),
        ("jitbot_active_grants", 0.0),
        (
            "jitbot_chat_api_errors_total{platform=\"slack\",kind=\"rate_limited\"}",
            1.0,
        ),
        ("jitbot_auth_failures_total{source=\"slack\"}", 1.0),
    ];
    for (name, value) in expect {
        assert_eq!(sample(&text, name), Some(value), "{name} in:\n{text}");
    }
    assert!(text.contains("# TYPE jitbot_outbox_depth gauge"), "{text}");
    assert!(
        text.contains("# TYPE jitbot_outbox_oldest_seconds gauge"),
        "{text}"
    );
}

const METRICS_TOKEN: &str = "scrape-token-0123456789abcdef";

#[tokio::test]
async fn the_metrics_need_their_token_when_one_is_set() {
    let app = TestApp::spawn_with_env(
        crate::helpers::BASE_POLICY,
        &[("JITBOT_METRICS_TOKEN", METRICS_TOKEN)],
    )
    .await;
    let scrape = |token: Option<&'static str>| {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, text) = scrape(None).await;
    assert_eq!(status, 401);
    assert!(!text.contains("jitbot_"), "{text}");
    let (status, text) = scrape(Some("scrape-token-0123456789abcdeX")).await;
    assert_eq!(status, 401);
    assert!(!text.contains("jitbot_"), "{text}");
    let (status, text) = scrape(Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&text, "jitbot_auth_failures_total{source=\"metrics\"}"),
        Some(2.0),
        "{text}"
    );
    // Liveness and readiness stay open to the orchestrator's probes.
    assert_eq!(get(&app, "/healthz").await.0, 200);
    eventually("readiness", || async {
        (get(&app, "/readyz").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn scrapes_and_probes_do_not_read_the_store_each_time() {
    let app = TestApp::spawn().await;
    let started = std::time::Instant::now();
    // A hundred scrapes and probes at once, as a flood of them would come.
    let calls = (0..100).map(|n| {
        let route = if n % 2 == 0 { "/metrics" } else { "/readyz" };
        let app = &app;
        async move { get(app, route).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    let (_, text) = get(&app, "/metrics").await;
    let elapsed = started.elapsed().as_secs_f64();
    let reads = sample(&text, "jitbot_store_gauge_reads_total").expect("the reads are counted");
    // One read per two seconds at most, whatever the number of callers.
    let allowed = (elapsed / 2.0).ceil() + 1.0;
    assert!(
        reads >= 1.0 && reads <= allowed,
        "{reads} store reads for 101 scrapes and probes in {elapsed:.1}s"
    );
}
