//! What an attacker and a flood try from outside: one person filing
//! thousands of requests, a throttled channel holding back everyone's
//! messages, more traffic than the server can take, slow clients, markup
//! in what people write, and malformed input. Each test failed before the
//! fix it holds in place.

use std::time::{Duration, Instant};

use jitbot::domain::quota::FilingLimits;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{eventually, request_id_in, TestApp, ADMIN_TOKEN, BASE_POLICY, USER_TOKEN};

/// The answer to `/jit <text>` from `user`.
async fn say(app: &TestApp, user: &str, text: &str) -> String {
    app.command_text(user, "C0GENERAL", text).await
}

#[tokio::test]
async fn one_person_filing_too_fast_is_told_when_to_try_again_and_nothing_more_is_filed() {
    let app = TestApp::spawn().await;
    for n in 0..10 {
        let answer = say(&app, "U0FLOOD", &format!("request sandbox 5m batch {n}")).await;
        assert!(answer.contains("is filed"), "{answer}");
    }
    let refused = say(&app, "U0FLOOD", "request sandbox 5m one too many").await;
    assert!(
        refused.contains("10 requests in the last minute") && refused.contains("try again in"),
        "{refused}"
    );
    assert!(refused.contains("Nothing was filed"), "{refused}");
    let list = say(&app, "U0FLOOD", "list").await;
    assert_eq!(list.matches("R-").count(), 10, "{list}");

    // Thirty at once from another person: exactly ten get in.
    let answers = futures_util::future::join_all((0..30).map(|n| {
        let app = &app;
        async move { say(app, "U0BURST", &format!("request sandbox 5m burst {n}")).await }
    }))
    .await;
    let filed = answers.iter().filter(|a| a.contains("is filed")).count();
    assert_eq!(filed, 10, "{answers:#?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.contains("try again in"))
            .count(),
        20
    );

    // The API keeps the same limit, with a 429 and Retry-After.
    let url = app.url("/api/v1/requests");
    let file = || {
        app.http
            .post(&url)
            .bearer_auth(USER_TOKEN)
            .json(&json!({ "group": "sandbox", "duration": "5m", "reason": "pipeline" }))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(file().await.unwrap().status(), 201);
    }
    let limited = file().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("try again in"),
        "{body}"
    );
}

#[tokio::test]
async fn twenty_requests_waiting_are_the_most_one_person_keeps() {
    let fast = FilingLimits {
        per_minute: 100,
        pending: 20,
    };
    let app = TestApp::spawn_with_limits(BASE_POLICY, None, fast).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            app.request("U0ALICE", &format!("request prod-db 1h waiting {n}"))
                .await,
        );
    }
    let refused = say(&app, "U0ALICE", "request prod-db 1h the twenty-first").await;
    assert!(
        refused.contains("20 requests waiting for a decision"),
        "{refused}"
    );
    // A request that is decided frees its place.
    let cancelled = say(&app, "U0ALICE", &format!("cancel {}", ids[0])).await;
    assert!(cancelled.contains("is cancelled"), "{cancelled}");
    let again = say(&app, "U0ALICE", "request prod-db 1h now there is room").await;
    assert!(again.contains("is filed"), "{again}");
    // Auto-approved requests do not wait, so they do not count.
    let auto = say(&app, "U0ONCALL", "request sandbox 5m on call").await;
    assert!(auto.contains("approved automatically"), "{auto}");
}

#[tokio::test]
async fn a_throttled_channel_never_delays_a_card_for_another_channel() {
    let app = TestApp::spawn().await;
    // Slack rate-limits every post to #sandbox for a minute.
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_partial_json(json!({ "channel": "C0SANDBOX" })))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "60"))
        .with_priority(1)
        .mount(&app.slack)
        .await;
    // 270 cards owed to #sandbox, from thirty people (each inside the limit):
    // more than any one pass of the outbox reads.
    for user in 0..30 {
        let user = format!("U0FLOOD{user:02}");
        for n in 0..9 {
            app.request(&user, &format!("request sandbox 5m flood {n}"))
                .await;
        }
    }
    eventually("Slack to throttle #sandbox", || async {
        let throttled = app
            .slack_calls("chat.postMessage")
            .await
            .into_iter()
            .any(|m| m["channel"] == "C0SANDBOX");
        throttled.then_some(())
    })
    .await;

    let asked = Instant::now();
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-9")
        .await;
    eventually("the card for #approvals", || async {
        (!app.cards_for(&id).await.is_empty()).then_some(())
    })
    .await;
    eprintln!(
        "card to an unthrottled channel posted {:?} after filing, with #sandbox throttled and 270 cards waiting for it",
        asked.elapsed()
    );
    // The throttle was remembered: #sandbox was not asked 270 times.
    let sandbox_posts = app
        .slack_calls("chat.postMessage")
        .await
        .into_iter()
        .filter(|m| m["channel"] == "C0SANDBOX")
        .count();
    assert!(
        sandbox_posts <= 20,
        "#sandbox was asked {sandbox_posts} times"
    );
}

/// A group whose provider takes four seconds to list its holders: an
/// admin's dry-run sweep of it is authenticated work that holds its turn
/// that long.
pub(crate) fn slow_listing_policy() -> String {
    format!(
        r#"{BASE_POLICY}
[providers.slow_iam]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]
holders = ["/bin/sh", "-c", "sleep 4"]
timeout = "20s"

[[groups]]
name = "slow-listing"
provider = "slow_iam"
target = "audit_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#
    )
}

/// Start an admin's dry-run sweep of `slow-listing`, answered in about
/// four seconds: it holds a turn all that time.
pub(crate) fn start_slow_sweep(app: &TestApp) -> tokio::task::JoinHandle<reqwest::Response> {
    let (http, url) = (
        app.http.clone(),
        app.url("/api/v1/sweeps/slow-listing?dry_run=true"),
    );
    tokio::spawn(async move {
        http.post(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn more_traffic_than_the_server_takes_on_is_answered_busy_at_once() {
    // One request at a time, so one held open fills the server.
    let app =
        TestApp::spawn_configured(&slow_listing_policy(), None, FilingLimits::default(), 1).await;
    // Authenticated work that takes its time holds the one turn.
    let sweep = start_slow_sweep(&app);
    let busy = eventually("a busy answer", || async {
        let answer = say(&app, "U0ALICE", "request prod-db 1h while busy").await;
        answer.contains("busy").then_some(answer)
    })
    .await;
    assert!(busy.contains("nothing was filed"), "{busy}");
    // The API says the same with a 503 and Retry-After.
    let api = app
        .http
        .get(app.url("/api/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    if !sweep.is_finished() {
        assert_eq!(api.status(), 503);
        assert_eq!(api.headers()["retry-after"], "1");
    }
    // Health still answers.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Once the slow work is done, requests are taken again.
    assert_eq!(sweep.await.unwrap().status(), 200);
    let filed = eventually("a request to be taken again", || async {
        let answer = say(&app, "U0ALICE", "request prod-db 1h after the flood").await;
        answer.contains("is filed").then_some(answer)
    })
    .await;
    assert!(request_id_in(&filed).is_some());
    let list = say(&app, "U0ALICE", "list").await;
    assert_eq!(
        list.matches("R-").count(),
        1,
        "only the admitted one: {list}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("jitbot_busy_answers_total{source=\"slack\"}"),
        "{metrics}"
    );
}

/// What a stalling client sends: a slash command's headers, a body
/// promised and never sent.
const STALLED_HEAD: &[u8] = b"POST /slack/commands HTTP/1.1\r\nHost: jitbot\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n";

/// `count` clients that each send [`STALLED_HEAD`] and then nothing, and
/// connect again as soon as the server cuts them off, until stopped: the
/// slow-body attack kept up.
struct Stallers {
    stop: tokio_util::sync::CancellationToken,
    /// Connections that sent their headers, counted once each.
    stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections the server cut off with a 408.
    timed_out: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stallers {
    fn start(app: &TestApp, count: usize) -> Stallers {
        use std::sync::atomic::Ordering;
        let stop = tokio_util::sync::CancellationToken::new();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..count)
            .map(|_| {
                let (stop, stalled, timed_out, addr) =
                    (stop.clone(), stalled.clone(), timed_out.clone(), app.addr);
                tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
                            continue;
                        };
                        if socket.write_all(STALLED_HEAD).await.is_err() {
                            continue;
                        }
                        stalled.fetch_add(1, Ordering::SeqCst);
                        let mut answer = Vec::new();
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer)) => {}
                        }
                        if answer.starts_with(b"HTTP/1.1 408") {
                            timed_out.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        Stallers {
            stop,
            stalled,
            timed_out,
            tasks,
        }
    }

    /// Wait until every client has sent its headers at least once.
    async fn until_all_stalled(&self, count: usize) {
        eventually("every staller to have sent its headers", || async {
            (self.stalled.load(std::sync::atomic::Ordering::SeqCst) >= count).then_some(())
        })
        .await;
    }

    fn timed_out(&self) -> usize {
        self.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn two_hundred_stalled_bodies_keep_no_signed_command_api_call_or_approval_waiting() {
    let app = TestApp::spawn().await;
    let id = app
        .request("U0ALICE", "request prod-db 1h before the stall")
        .await;
    // Two hundred clients (more than the 64 turns) send a command's
    // headers and never its body, again and again as they are cut off.
    let stallers = Stallers::start(&app, 200);
    stallers.until_all_stalled(200).await;
    // A signed command is filed and acknowledged within Slack's three
    // seconds, every time.
    for n in 0..3 {
        let asked = Instant::now();
        let answer = say(
            &app,
            "U0BOB",
            &format!("request prod-db 1h during the stall {n}"),
        )
        .await;
        let took = asked.elapsed();
        assert!(answer.contains("is filed"), "{answer}");
        assert!(
            took < Duration::from_secs(3),
            "acknowledged after {took:?}, with 200 stalled bodies"
        );
        eprintln!("signed command acknowledged in {took:?} with 200 stalled bodies");
    }
    // The API and an approval click are taken too.
    let grants = app
        .http
        .get(app.url("/api/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(grants.status(), 200);
    let click = app.click("U0LEAD", "jit_approve", &id).await;
    assert_eq!(click.status(), 200);
    app.until_granted(&id).await;
    // The stalled bodies are cut off in time (and come back, and are cut
    // off again) — none of them got a turn or did anything.
    eventually("stalled bodies to be cut off with a 408", || async {
        (stallers.timed_out() >= 200).then_some(())
    })
    .await;
    stallers.stop().await;
    let list = say(&app, "U0BOB", "list").await;
    assert_eq!(list.matches("R-").count(), 3, "{list}");
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("jitbot_busy_answers_total{source=\"slack\"}"),
        "nobody who signs was answered busy: {metrics}"
    );
}

/// One whole answer read off a raw connection: its head and as many body
/// bytes as its `Content-Length` says.
async fn read_answer(socket: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if answer.len() >= head_end + 4 + length {
                return text;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buffer))
            .await
            .expect("an answer within 30 s")
            .expect("the connection stays readable");
        assert!(read > 0, "closed before a whole answer: {text}");
        answer.extend_from_slice(&buffer[..read]);
    }
}

fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_peer_over_its_share_waits_for_a_place_a_kept_alive_connection_hands_its_on_and_others_are_served(
) {
    let app =
        TestApp::spawn_with_env(BASE_POLICY, &[("JITBOT_MAX_CONNECTIONS_PER_PEER", "1")]).await;
    const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: jitbot\r\n\r\n";
    // 127.0.0.1's only place: a kept-alive connection.
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(HEALTH).await.unwrap();
    assert!(read_answer(&mut kept).await.starts_with("HTTP/1.1 200"));
    // Another peer (127.0.0.2: loopback too) is served meanwhile.
    let body = TestApp::command_body("U0ALICE", "C0GENERAL", "request prod-db 1h from elsewhere");
    let timestamp = chrono::Utc::now().timestamp();
    let answer: Value = client_from("127.0.0.2")
        .post(app.url("/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header(
            "x-slack-signature",
            crate::helpers::slack_signature(crate::helpers::SIGNING_SECRET, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["text"].as_str().unwrap().contains("is filed"),
        "{answer}"
    );
    // A second connection from 127.0.0.1 is not refused: it waits…
    let second = tokio::spawn({
        let url = app.url("/api/v1/grants");
        async move {
            client_from("127.0.0.1")
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    // …and the kept-alive connection, used on, is told in an answer that
    // it closes to make way (the request on it is answered all the same).
    let deadline = Instant::now() + Duration::from_secs(30);
    let handed_on = loop {
        assert!(Instant::now() < deadline, "no answer handed the place on");
        kept.write_all(HEALTH).await.unwrap();
        let answer = read_answer(&mut kept).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        if answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n")
        {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(handed_on.ends_with("ok\n"), "{handed_on}");
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(30), kept.read(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // Then the second is served.
    let status = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the waiting connection is served")
        .unwrap()
        .expect("an answer, not a broken connection");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_burst_from_one_address_beyond_its_share_is_served_not_refused() {
    let app =
        TestApp::spawn_with_env(BASE_POLICY, &[("JITBOT_MAX_CONNECTIONS_PER_PEER", "4")]).await;
    // Forty calls at once on forty connections, ten times the peer's share:
    // each waits its turn, none is refused or cut off.
    let client = client_from("127.0.0.1");
    let calls = (0..40).map(|_| {
        let client = client.clone();
        let url = app.url("/api/v1/grants");
        async move {
            let response = client.get(url).bearer_auth(ADMIN_TOKEN).send().await;
            response
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(200))).collect();
    assert!(
        failed.is_empty(),
        "{} of 40 failed: {failed:?}",
        failed.len()
    );
}

#[tokio::test]
async fn clients_that_send_their_headers_slowly_are_cut_off() {
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(b"POST /slack/commands HTTP/1.1\r\nHost: j")
        .await
        .unwrap();
    // One more header byte a second, for as long as the server listens.
    let deadline = started + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "a client sending its headers a byte a second was still connected after 30 s"
        );
        if socket.write_all(b"x").await.is_err() {
            break;
        }
        let mut buffer = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(1000), socket.read(&mut buffer)).await {
            // Closed (0 bytes), reset, or answered with an error: cut off.
            Ok(_) => break,
            Err(_) => continue,
        }
    }
    eprintln!("slow client cut off after {:?}", started.elapsed());
}

#[tokio::test]
async fn api_bodies_are_refused_when_too_large_or_not_json() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/requests");
    let huge = json!({ "group": "prod-db", "duration": "1h", "reason": "x".repeat(1024 * 1024) });
    let response = app
        .http
        .post(&url)
        .bearer_auth(USER_TOKEN)
        .json(&huge)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked("/api/v1/requests", "post", response).await;
    assert_eq!(status, 413);
    assert!(body["error"].as_str().unwrap().contains("1 MiB"), "{body}");
    let plain = app
        .http
        .post(&url)
        .bearer_auth(USER_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"group":"prod-db","duration":"1h","reason":"x"}"#)
        .send()
        .await
        .unwrap();
    let (status, _) = crate::openapi::checked("/api/v1/requests", "post", plain).await;
    assert_eq!(status, 415);
    let none = app
        .http
        .post(&url)
        .bearer_auth(USER_TOKEN)
        .body(r#"{"group":"prod-db","duration":"1h","reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 415);
    let long_reason = app
        .http
        .post(&url)
        .bearer_auth(USER_TOKEN)
        .json(&json!({ "group": "prod-db", "duration": "1h", "reason": "y".repeat(5012) }))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked("/api/v1/requests", "post", long_reason).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("500 characters"),
        "{body}"
    );
    let grants = app
        .http
        .get(app.url("/api/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(grants, json!([]));
    let list = say(&app, "U0CIBOT", "list").await;
    assert!(list.contains("no requests"), "nothing was filed: {list}");
}

#[tokio::test]
async fn signed_or_foreign_digit_durations_are_refused_not_read_as_the_reason() {
    let app = TestApp::spawn().await;
    for word in ["-1h", "+1h", "\u{0661}h", "\u{ff12}h"] {
        let answer = say(
            &app,
            "U0ALICE",
            &format!("request prod-db {word} fixing INC-5"),
        )
        .await;
        assert!(answer.contains("is not a duration"), "{word}: {answer}");
    }
    let list = say(&app, "U0ALICE", "list").await;
    assert!(list.contains("no requests"), "{list}");
}

#[tokio::test]
async fn overlong_reasons_are_refused_whatever_way_they_come() {
    let app = TestApp::spawn().await;
    // The request form, submitted with 3,000 characters (as a forged or
    // scripted submission could).
    let submission = json!({
        "type": "view_submission",
        "user": { "id": "U0ALICE", "username": "alice" },
        "view": {
            "callback_id": "jit_request_form",
            "private_metadata": "C0GENERAL",
            "state": { "values": {
                "group": { "value": { "type": "static_select", "selected_option": { "value": "prod-db" } } },
                "duration": { "value": { "type": "plain_text_input", "value": "1h" } },
                "reason": { "value": { "type": "plain_text_input", "value": "r".repeat(3000) } },
            } },
        },
    });
    let answer: Value = app.interact(submission).await.json().await.unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(
        answer["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("500 characters"),
        "{answer}"
    );
    // A denial with 3,000 characters from the deny form.
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-6")
        .await;
    let deny = json!({
        "type": "view_submission",
        "user": { "id": "U0LEAD", "username": "lead" },
        "view": {
            "callback_id": "jit_deny_form",
            "private_metadata": json!({ "request": id, "channel": "C0APPROVALS" }).to_string(),
            "state": { "values": {
                "reason": { "value": { "type": "plain_text_input", "value": "d".repeat(3000) } },
            } },
        },
    });
    let answer: Value = app.interact(deny).await.json().await.unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    let list = say(&app, "U0ALICE", "list").await;
    assert!(list.contains("pending"), "still pending: {list}");
}

#[tokio::test]
async fn a_mapping_takes_only_a_real_channel_id() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .put(app.url("/api/v1/mappings/prod-db/slack/..%2F..%2Fx"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::openapi::checked(
        "/api/v1/mappings/{group}/{platform}/{channel}",
        "put",
        response,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a Slack channel id"),
        "{body}"
    );
    for bad in ["c0lower", "U0ALICE", "19:x@thread.tacv2"] {
        let response = app
            .http
            .put(app.url(&format!("/api/v1/mappings/prod-db/slack/{bad}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    let teams = app
        .http
        .put(app.url("/api/v1/mappings/prod-db/teams/19:..%2Fx@thread.tacv2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(teams.status(), 400);
    let answer = say(&app, "U0ADMIN", "admin map ../../x prod-db").await;
    assert!(answer.contains("not a channel"), "{answer}");
    let mappings = say(&app, "U0ADMIN", "admin mappings").await;
    assert!(
        !mappings.contains("mapped by"),
        "nothing stored: {mappings}"
    );
    let stored = app
        .http
        .get(app.url("/api/v1/mappings"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!stored.contains(".."), "{stored}");
}

const MARKUP: &str = "<!channel> <@U0ADMIN> <https://evil.example|click here> [Approve now](https://evil.example) *urgent*";

/// Whether `text` carries a live Slack mention or link.
fn has_live_slack_markup(text: &str) -> bool {
    ["<!channel>", "<@U0ADMIN>", "<https://evil"]
        .iter()
        .any(|live| text.contains(live))
}

#[tokio::test]
async fn what_people_write_never_becomes_a_mention_or_a_link_in_slack() {
    let policy = BASE_POLICY.replace(
        r#"description = "Production database""#,
        r#"description = "Production <!here> database""#,
    );
    let app = TestApp::spawn_with(&policy).await;
    let id = app
        .request("U0ALICE", &format!("request prod-db 1h {MARKUP}"))
        .await;
    let card = eventually("the card", || async { app.cards_for(&id).await.pop() }).await;
    let fallback = card["text"].as_str().unwrap();
    assert!(!has_live_slack_markup(fallback), "{fallback}");
    assert!(fallback.contains("&lt;!channel&gt;"), "{fallback}");
    let blocks = card["blocks"].to_string();
    assert!(
        !has_live_slack_markup(&blocks) && !blocks.contains("<!here>"),
        "{blocks}"
    );
    assert!(blocks.contains("&lt;!here&gt;"), "{blocks}");

    // The denial: its reason in the requester's DM and on the card.
    let deny = json!({
        "type": "view_submission",
        "user": { "id": "U0LEAD", "username": "<!channel>" },
        "view": {
            "callback_id": "jit_deny_form",
            "private_metadata": json!({ "request": id, "channel": "C0APPROVALS" }).to_string(),
            "state": { "values": {
                "reason": { "value": { "type": "plain_text_input", "value": MARKUP } },
            } },
        },
    });
    assert_eq!(app.interact(deny).await.status(), 200);
    let dm = app.wait_for_dm("U0ALICE", "the denial", "was denied").await;
    assert!(!has_live_slack_markup(&dm), "{dm}");
    assert!(
        dm.contains("&lt;https://evil.example|click here&gt;"),
        "{dm}"
    );
    let card = eventually("the denied card", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Denied by"))
    })
    .await;
    assert!(!has_live_slack_markup(&card.to_string()), "{card}");
}
