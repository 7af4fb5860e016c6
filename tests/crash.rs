//! The crash test: the real binary, SIGKILLed again and again in the middle
//! of request, approval and expiry traffic, restarted at once. Afterwards:
//!
//! - every request acknowledged as filed is in the store;
//! - every approval click acknowledged counted (the request left `pending`);
//! - no grant outlived its end: each revoke came by its grant's end, or — if
//!   jitbot was down then — within seconds of the next start;
//! - nothing is held at the end, and the audit chain verifies;
//! - duplicate cards and DMs caused by the crashes are counted and printed
//!   (delivery is at least once: a message sent just before a kill, but not
//!   yet recorded as sent, is sent again).
//!
//! `JITBOT_CRASH_SECONDS` sets how long the traffic runs (default 20;
//! `.ci/run` runs it for two minutes).

// The tests' own clients talk to the server under test and its fakes;
// the no-redirect constructor (clippy.toml) is for jitbot's outbound calls.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "crash-test-signing-secret";
const API_TOKEN: &str = "crash-test-api-token-0123456789";
const HOOK_SECRET: &str = "crash-test-webhook-secret";

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"
max_duration = "1h"

[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[[groups]]
name = "crash"
provider = "iam"
target = "crash_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = { requesters = ["*"], max_duration = "6s" }
"#;

/// A call to the fake IAM, with when it arrived.
type IamCall = (DateTime<Utc>, Value);

/// Every call to the fake IAM.
#[derive(Clone, Default)]
struct IamLog(Arc<Mutex<Vec<IamCall>>>);

impl Respond for IamLog {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.0.lock().unwrap().push((Utc::now(), body));
        ResponseTemplate::new(200)
    }
}

/// Every message posted to the fake Slack.
#[derive(Clone, Default)]
struct SlackLog(Arc<Mutex<Vec<Value>>>);

impl Respond for SlackLog {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request.url.path().to_string();
        if path.ends_with("conversations.open") {
            let user = body["users"].as_str().unwrap_or_default();
            return ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": { "id": format!("D{user}") } }));
        }
        if path.ends_with("chat.postMessage") {
            self.0.lock().unwrap().push(body.clone());
        }
        let channel = body["channel"]
            .as_str()
            .unwrap_or("C0APPROVALS")
            .to_string();
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": channel, "ts": format!("{}.000100", rand::thread_rng().gen::<u32>()),
        }))
    }
}

struct Bot {
    child: Child,
    url: String,
}

/// A test that fails midway leaves no server running behind it.
impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bot {
    fn start(dir: &Path, slack: &str) -> Bot {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("SLACK_BOT_TOKEN", "xoxb-crash")
            .env("SLACK_API_URL", format!("{slack}/api"))
            .env("JITBOT_CONFIG", dir.join("policy.toml"))
            .env("JITBOT_DATA_DIR", dir.join("data"))
            .env("JITBOT_LISTEN", "127.0.0.1:0")
            .env("JITBOT_API_TOKENS", format!("U0ADMIN:admin:{API_TOKEN}"))
            .env("JITBOT_USER_RATE", "1000")
            .env("TEST_HOOK_SECRET", HOOK_SECRET)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the jitbot binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("jitbot listening on ")
                    .map(str::to_string)
            })
            .expect("the bot says where it listens");
        std::thread::spawn(move || lines.for_each(drop));
        Bot {
            child,
            url: format!("http://{addr}"),
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn sign(timestamp: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(http: &reqwest::Client, bot: &Bot, route: &str, body: String) -> Option<Value> {
    let timestamp = Utc::now().timestamp();
    let response = http
        .post(format!("{}{route}", bot.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", sign(timestamp, body.as_bytes()))
        .body(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn request_id_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 8 && w.starts_with("R-"))
        .map(str::to_string)
}

async fn state_of(http: &reqwest::Client, bot: &Bot, id: &str) -> Value {
    http.get(format!("{}/api/v1/requests/{id}", bot.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_and_no_grant_outlives_its_end_across_kills() {
    let seconds: u64 = std::env::var("JITBOT_CRASH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let slack = MockServer::start().await;
    let slack_log = SlackLog::default();
    Mock::given(method("POST"))
        .respond_with(slack_log.clone())
        .mount(&slack)
        .await;
    let iam = MockServer::start().await;
    let iam_log = IamLog::default();
    Mock::given(method("POST"))
        .respond_with(iam_log.clone())
        .mount(&iam)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("{IAM}", &iam.uri()),
    )
    .unwrap();
    let http = reqwest::Client::new();

    // (start, end) of every run of the bot; the last one is still open.
    let mut runs: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    let mut filed: Vec<String> = Vec::new();
    let mut approved: Vec<String> = Vec::new();
    let mut kills = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut user = 0u32;
    while tokio::time::Instant::now() < deadline {
        runs.push((Utc::now(), None));
        let bot = Bot::start(dir.path(), &slack.uri());
        let traffic_for = Duration::from_millis(rand::thread_rng().gen_range(300..2500));
        let until = tokio::time::Instant::now() + traffic_for;
        let mut pending: Vec<String> = Vec::new();
        while tokio::time::Instant::now() < until {
            user += 1;
            // Short grants (auto-approved up to 6 s) and longer ones that
            // need a click, so expiries and approvals cross the kills.
            let seconds = rand::thread_rng().gen_range(2..12);
            let command = serde_urlencoded::to_string([
                ("user_id", format!("U{user:08}")),
                ("user_name", format!("user{user}")),
                ("channel_id", "C0GENERAL".to_string()),
                ("text", format!("request crash {seconds}s crash traffic")),
            ])
            .unwrap();
            if let Some(answer) = post(&http, &bot, "/slack/commands", command).await {
                let text = answer["text"].as_str().unwrap_or_default();
                if let Some(id) = request_id_in(text).filter(|_| text.contains("is filed")) {
                    pending.push(id.clone());
                    filed.push(id);
                } else if let Some(id) = request_id_in(text) {
                    filed.push(id);
                }
            }
            if let Some(id) = pending.pop() {
                let click = json!({
                    "type": "block_actions",
                    "user": { "id": "U0LEAD", "username": "lead" },
                    "channel": { "id": "C0APPROVALS" },
                    "actions": [{ "action_id": "jit_approve", "value": id }],
                });
                let body = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
                if post(&http, &bot, "/slack/interactions", body)
                    .await
                    .is_some()
                {
                    approved.push(id);
                }
            }
        }
        bot.kill();
        kills += 1;
        runs.last_mut().unwrap().1 = Some(Utc::now());
        // Down for a moment, sometimes past a grant's end.
        let down = Duration::from_millis(rand::thread_rng().gen_range(0..3000));
        tokio::time::sleep(down).await;
    }

    // The last start: everything owed is done, then a clean stop.
    runs.push((Utc::now(), None));
    let bot = Bot::start(dir.path(), &slack.uri());
    let mut ends: HashMap<String, DateTime<Utc>> = HashMap::new();
    for id in &filed {
        let state = state_of(&http, &bot, id).await;
        assert!(
            state["id"] == id.as_str(),
            "acknowledged {id} was lost: {state}"
        );
        if let Some(end) = state["expires_at"].as_str() {
            ends.insert(id.clone(), end.parse().unwrap());
        }
    }
    for id in &approved {
        let state = state_of(&http, &bot, id).await;
        assert_ne!(
            state["state"], "pending",
            "the acknowledged click on {id} was lost"
        );
    }
    let last_end = ends.values().max().copied().unwrap_or_else(Utc::now);
    let wait = (last_end - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(3);
    tokio::time::sleep(wait).await;
    let settle = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<Value> =
            futures_util::future::join_all(filed.iter().map(|id| state_of(&http, &bot, id))).await;
        let open = states
            .iter()
            .filter(|s| matches!(s["state"].as_str(), Some("approved" | "active")))
            .count();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < settle,
            "{open} grants still open long after their end"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everything owed is delivered before the counts (as read after this
    // point: the gauges are read from the store every few seconds).
    let gauge_reads = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("jitbot_store_gauge_reads_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut reads_before = None;
    loop {
        let metrics = http
            .get(format!("{}/metrics", bot.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let reads = gauge_reads(&metrics);
        let fresh = reads_before.is_some_and(|before| reads > before);
        reads_before.get_or_insert(reads);
        if fresh && metrics.lines().any(|line| line == "jitbot_outbox_depth 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < settle + Duration::from_secs(30),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = http
        .get(format!("{}/api/v1/audit", bot.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    bot.stop();
    runs.last_mut().unwrap().1 = Some(Utc::now());

    // No grant outlived its end: each principal's access (grant to revoke,
    // at the IAM) ended by its grant's end, or within seconds of the first
    // start after it if jitbot was down then.
    let log = iam_log.0.lock().unwrap().clone();
    let mut held: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut late = Vec::new();
    for (at, call) in &log {
        let principal = call["principal"].as_str().unwrap_or_default().to_string();
        match call["action"].as_str() {
            Some("grant") => {
                held.entry(principal).or_insert(*at);
            }
            Some("revoke") => {
                held.remove(&principal);
                let Some(id) = call["request_id"].as_str() else {
                    continue;
                };
                let Some(end) = ends.get(id) else { continue };
                // Up for the five seconds after the end: revoked by then.
                // Killed or down meanwhile: within ten seconds of the next
                // start.
                let grace = chrono::Duration::seconds(5);
                let up_throughout = runs.iter().any(|(start, stop)| {
                    *start <= *end && stop.map_or(true, |stop| stop >= *end + grace)
                });
                let allowed = if up_throughout {
                    *end + grace
                } else {
                    let next_start = runs
                        .iter()
                        .map(|(start, _)| *start)
                        .filter(|start| *start >= *end)
                        .min()
                        .unwrap_or(*end);
                    next_start + chrono::Duration::seconds(10)
                };
                if *at > allowed {
                    late.push(format!("{id}: revoked {at}, end {end}, allowed {allowed}"));
                }
            }
            _ => {}
        }
    }
    assert!(held.is_empty(), "still held at the end: {held:?}");
    assert!(
        late.is_empty(),
        "grants that outlived their end:\n{}",
        late.join("\n")
    );
    // One audit chain across every kill.
    assert!(
        audit.lines().count() > filed.len(),
        "the audit holds the traffic"
    );
    let verified = Command::new(env!("CARGO_BIN_EXE_jitbot"))
        .args(["audit", "verify"])
        .env("JITBOT_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // What the kills cost in repeated messages.
    let posts = slack_log.0.lock().unwrap().clone();
    let mut cards: HashMap<String, usize> = HashMap::new();
    let mut dms: HashMap<(String, String), usize> = HashMap::new();
    for post in &posts {
        let channel = post["channel"].as_str().unwrap_or_default().to_string();
        let text = post["text"].as_str().unwrap_or_default().to_string();
        if post["blocks"].is_array() && channel == "C0APPROVALS" {
            // The card's buttons, or its "Request" field, name the request.
            let id = post["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|block| block["fields"].as_array().cloned().unwrap_or_default())
                .filter_map(|field| field["text"].as_str().map(str::to_string))
                .find_map(|text| text.strip_prefix("*Request*\n").map(str::to_string));
            *cards.entry(id.unwrap_or_default()).or_default() += 1;
        } else if channel.starts_with('D') {
            *dms.entry((channel, text)).or_default() += 1;
        }
    }
    let duplicate_cards: usize = cards.values().map(|n| n - 1).sum();
    let duplicate_dms: usize = dms.values().map(|n| n - 1).sum();
    eprintln!(
        "crash test: {seconds}s, {kills} kills, {} requests acknowledged, {} clicks acknowledged, {} grants, {} revokes; duplicates after crashes: {duplicate_cards} cards of {}, {duplicate_dms} DMs of {}",
        filed.len(),
        approved.len(),
        log.iter().filter(|(_, c)| c["action"] == "grant").count(),
        log.iter().filter(|(_, c)| c["action"] == "revoke").count(),
        cards.len(),
        dms.len(),
    );
    assert!(kills >= 2 && !filed.is_empty(), "the test did some work");
}
