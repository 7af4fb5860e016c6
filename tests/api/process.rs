//! The real binary, killed and restarted: a revocation owed while the bot
//! was down is done within seconds of its start, exactly once; SIGTERM
//! stops it cleanly.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::backend::TestStore;
use crate::helpers::{eventually, eventually_within, request_id_in, slack_signature};

const SECRET: &str = "process-test-signing-secret";

const POLICY: &str = r#"
[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[[groups]]
name = "quick"
provider = "iam"
target = "quick_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
default_duration = "5m"
"#;

struct Bot {
    child: Child,
    url: String,
}

const BOT_TOKEN: &str = "xoxb-process-test-bot-token";
const HOOK_SECRET: &str = "process-test-webhook-secret";
const API_TOKEN: &str = "process-test-api-token-0123456789";

impl Bot {
    /// The binary, told to listen on a port the system chooses (it prints
    /// which on stdout), so no test races another for a free port.
    fn command(dir: &Path, store: &TestStore, slack: &str) -> Command {
        let (store_var, store_value) = store.env();
        let mut command = Command::new(env!("CARGO_BIN_EXE_jitbot"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("SLACK_API_URL", format!("{slack}/api"))
            .env("JITBOT_CONFIG", dir.join("policy.toml"))
            .env(store_var, store_value)
            .env("JITBOT_LISTEN", "127.0.0.1:0")
            .env("JITBOT_API_TOKENS", format!("U0ADMIN:admin:{API_TOKEN}"))
            .env("TEST_HOOK_SECRET", HOOK_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command
    }

    async fn start(dir: &Path, store: &TestStore, slack: &str) -> Bot {
        Self::started(Self::command(dir, store, slack)).await
    }

    /// Started with JSON logs at debug level written to `log`.
    async fn start_logging_json(dir: &Path, store: &TestStore, slack: &str, log: &Path) -> Bot {
        let mut command = Self::command(dir, store, slack);
        command
            .env("JITBOT_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stderr(std::fs::File::create(log).unwrap());
        Self::started(command).await
    }

    async fn started(mut command: Command) -> Bot {
        let mut child = command.spawn().expect("the jitbot binary starts");
        let stdout = child.stdout.take().unwrap();
        let addr = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let addr = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix("jitbot listening on ")
                    .map(str::to_string)
            });
            // Keep reading, so the process never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            addr
        })
        .await
        .unwrap()
        .expect("the bot says where it listens");
        let bot = Bot {
            child,
            url: format!("http://{addr}"),
        };
        let client = reqwest::Client::new();
        let health = format!("{}/healthz", bot.url);
        eventually("the bot to listen", || async {
            client.get(&health).send().await.ok()
        })
        .await;
        bot
    }

    async fn post(&self, route: &str, body: String) -> reqwest::Response {
        let timestamp = chrono::Utc::now().timestamp();
        reqwest::Client::new()
            .post(format!("{}{route}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header(
                "x-slack-signature",
                slack_signature(SECRET, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake Slack that opens Alice's DM and accepts every post.
async fn fake_slack() -> MockServer {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.open"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": { "id": "D0ALICE" } })),
        )
        .with_priority(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": "C0APPROVALS", "ts": "1.1" })),
        )
        .mount(&slack)
        .await;
    slack
}

impl Bot {
    /// Alice files `text` (a `request …` command) and the lead approves it;
    /// the request id.
    async fn request_and_approve(&self, text: &str) -> String {
        let command = serde_urlencoded::to_string([
            ("user_id", "U0ALICE"),
            ("user_name", "alice"),
            ("channel_id", "C0GENERAL"),
            ("text", text),
        ])
        .unwrap();
        let answer: serde_json::Value = self
            .post("/slack/commands", command)
            .await
            .json()
            .await
            .unwrap();
        let id = request_id_in(answer["text"].as_str().unwrap()).unwrap();
        let click = json!({
            "type": "block_actions",
            "user": { "id": "U0LEAD", "username": "lead" },
            "channel": { "id": "C0APPROVALS" },
            "actions": [{ "action_id": "jit_approve", "value": id }],
        });
        let body = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
        assert_eq!(self.post("/slack/interactions", body).await.status(), 200);
        id
    }
}

async fn revokes(iam: &MockServer) -> usize {
    iam.received_requests()
        .await
        .expect("the fake records the requests it gets")
        .iter()
        .filter(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["action"] == "revoke"
        })
        .count()
}

#[tokio::test]
async fn a_revocation_owed_across_a_kill_is_done_right_after_restart() {
    let slack = fake_slack().await;
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&iam)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new().await;
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("{IAM}", &iam.uri()),
    )
    .unwrap();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    let id = bot
        .request_and_approve("request quick 10s crash test")
        .await;
    // The "access is live" DM goes out only once the activation is durable.
    eventually("the access to be live", || async {
        slack
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("is live until"))
            .then_some(())
    })
    .await;

    // SIGKILL before the grant ends, and stay down past its end (as the
    // store recorded it) — by however long that takes on this machine.
    let end: chrono::DateTime<chrono::Utc> = request_state(&bot, &id).await["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    drop(bot);
    assert!(chrono::Utc::now() < end, "killed while the grant was live");
    let past_end = (end + chrono::Duration::seconds(1) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(past_end).await;
    assert_eq!(
        revokes(&iam).await,
        0,
        "nobody revoked while the bot was down"
    );

    let started = Instant::now();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    eventually("the overdue revoke", || async {
        (revokes(&iam).await >= 1).then_some(())
    })
    .await;
    let lag = started.elapsed();
    eprintln!("overdue revoke done {lag:?} after the restart began");
    // Overdue work runs at start, not at the next look at the due-index
    // (30 s); the bound is generous, the benchmark measures the real lag.
    assert!(
        lag < Duration::from_secs(15),
        "revoked {lag:?} after the restart"
    );

    // SIGTERM: a clean exit with status 0.
    bot.signal("TERM");
    let mut bot = bot;
    let status = eventually("the bot to exit", || {
        let status = bot.child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert_eq!(status.code(), Some(0));

    assert_eq!(revokes(&iam).await, 1, "revoked exactly once");
    // The process has exited: its store can be opened here.
    let store = store.open().await;
    let events = jitbot::store::AuditStore::audit_events(&*store, 0, 1000)
        .await
        .unwrap();
    let expired = events
        .iter()
        .filter(|e| e.action == jitbot::domain::audit::AuditAction::Expired)
        .count();
    assert_eq!(expired, 1);
    // requested, approved, granted, expired: the chain holds every one.
    let verified = jitbot::store::AuditStore::verify_audit(&*store)
        .await
        .unwrap();
    assert_eq!(verified, Ok(events.len() as u64));
    assert!(events.len() >= 4, "{events:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_never_carry_secrets() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": "C0APPROVALS", "ts": "1.1" })),
        )
        .mount(&slack)
        .await;
    // The IAM refuses the first grant, so its signed call, the failure and
    // the retry all go through the log.
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&iam)
        .await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&iam)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new().await;
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("{IAM}", &iam.uri()),
    )
    .unwrap();
    let log = dir.path().join("jitbot.log");
    let mut bot = Bot::start_logging_json(dir.path(), &store, &slack.uri(), &log).await;

    let command = serde_urlencoded::to_string([
        ("user_id", "U0ALICE"),
        ("user_name", "alice"),
        ("channel_id", "C0GENERAL"),
        ("text", "request quick 1m logging test"),
    ])
    .unwrap();
    let answer: serde_json::Value = bot
        .post("/slack/commands", command)
        .await
        .json()
        .await
        .unwrap();
    let id = request_id_in(answer["text"].as_str().unwrap()).unwrap();
    let click = json!({
        "type": "block_actions",
        "user": { "id": "U0LEAD", "username": "lead" },
        "channel": { "id": "C0APPROVALS" },
        "actions": [{ "action_id": "jit_approve", "value": id }],
    });
    let body = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    assert_eq!(bot.post("/slack/interactions", body).await.status(), 200);
    // Signed with the webhook secret, refused once, then granted.
    eventually("the signed grant, retried", || async {
        let calls = iam
            .received_requests()
            .await
            .expect("the fake records the requests it gets");
        (calls.len() >= 2).then_some(())
    })
    .await;
    // A forged request and API calls with and without the right token.
    let forged = reqwest::Client::new()
        .post(format!("{}/slack/commands", bot.url))
        .header(
            "x-slack-request-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("x-slack-signature", "v0=deadbeef")
        .body("text=hello")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let client = reqwest::Client::new();
    let api = format!("{}/api/v1/grants", bot.url);
    assert_eq!(
        client
            .get(&api)
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(&api)
            .bearer_auth("guessed-token-guessed-token-x")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    eventually("the approval card", || async {
        (!slack
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .is_empty())
        .then_some(())
    })
    .await;
    bot.signal("TERM");
    eventually("the bot to exit", || {
        let status = bot.child.try_wait().unwrap();
        async move { status }
    })
    .await;

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5, "{text}");
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
    }
    for secret in [SECRET, BOT_TOKEN, HOOK_SECRET, API_TOKEN] {
        assert!(!text.contains(secret), "a secret is in the log:\n{text}");
    }
    assert!(text.contains("rejected unauthenticated request"), "{text}");
    assert!(
        text.contains("API request with a missing or unknown token"),
        "{text}"
    );
}

/// The API's view of request `id`.
async fn request_state(bot: &Bot, id: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/api/v1/requests/{id}", bot.url))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_between_the_grant_and_its_record_never_lengthens_the_access() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": "C0APPROVALS", "ts": "1.1" })),
        )
        .mount(&slack)
        .await;
    // The IAM grants at once but answers only after a long while: jitbot is
    // killed after the grant happened and before it could record it.
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&iam)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new().await;
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("{IAM}", &iam.uri()),
    )
    .unwrap();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    let command = serde_urlencoded::to_string([
        ("user_id", "U0ALICE"),
        ("user_name", "alice"),
        ("channel_id", "C0GENERAL"),
        ("text", "request quick 20s crash between grant and record"),
    ])
    .unwrap();
    let answer: serde_json::Value = bot
        .post("/slack/commands", command)
        .await
        .json()
        .await
        .unwrap();
    let id = request_id_in(answer["text"].as_str().unwrap()).unwrap();
    let click = json!({
        "type": "block_actions",
        "user": { "id": "U0LEAD", "username": "lead" },
        "channel": { "id": "C0APPROVALS" },
        "actions": [{ "action_id": "jit_approve", "value": id }],
    });
    let body = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    assert_eq!(bot.post("/slack/interactions", body).await.status(), 200);
    eventually("the grant call", || async {
        (!iam
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .is_empty())
        .then_some(())
    })
    .await;
    let approved = request_state(&bot, &id).await;
    assert_eq!(approved["state"], "approved", "{approved}");
    let approved_at: chrono::DateTime<chrono::Utc> =
        approved["approved_at"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> =
        approved["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        end - approved_at,
        chrono::Duration::seconds(20),
        "{approved}"
    );

    // SIGKILL mid-call; down for eight seconds; the IAM answers at once now.
    drop(bot);
    tokio::time::sleep(Duration::from_secs(8)).await;
    iam.reset().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&iam)
        .await;
    let restarted_at = chrono::Utc::now();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    let active = eventually("the grant to be recorded", || async {
        let state = request_state(&bot, &id).await;
        (state["state"] == "active").then_some(state)
    })
    .await;
    let expires_at: chrono::DateTime<chrono::Utc> =
        active["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expires_at, end,
        "the end stays where the approval put it, not 20 s after the restart at {restarted_at}"
    );
    // And the revoke comes at that end (restart + 12 s), well before the
    // restart + 20 s a grant timed from its record would end.
    eventually_within(Duration::from_secs(40), "the revoke", || async {
        (revokes(&iam).await >= 1).then_some(())
    })
    .await;
    let revoked_at = chrono::Utc::now();
    eprintln!(
        "approved {approved_at}, killed mid-grant, restarted {restarted_at}, revoked {revoked_at} (end {end})"
    );
    assert!(
        revoked_at < restarted_at + chrono::Duration::seconds(16),
        "revoked at {revoked_at}: the downtime lengthened the access"
    );
}

#[tokio::test]
async fn a_request_acknowledged_just_before_a_kill_is_there_after_the_restart() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "channel": "C0APPROVALS", "ts": "1.1" })),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new().await;
    std::fs::write(
        dir.path().join("policy.toml"),
        POLICY.replace("{IAM}", "http://127.0.0.1:9"),
    )
    .unwrap();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    // Ten requests acknowledged as filed, then SIGKILL at once: no
    // shutdown, no flush but the one each acknowledgement waited for.
    let mut acked = Vec::new();
    for n in 0..10 {
        let command = serde_urlencoded::to_string([
            ("user_id", format!("U0USER{n}")),
            ("user_name", format!("user{n}")),
            ("channel_id", "C0GENERAL".to_string()),
            ("text", format!("request quick 5m acked {n}")),
        ])
        .unwrap();
        let answer: serde_json::Value = bot
            .post("/slack/commands", command)
            .await
            .json()
            .await
            .unwrap();
        let text = answer["text"].as_str().unwrap();
        assert!(text.contains("is filed"), "{text}");
        acked.push(request_id_in(text).unwrap());
    }
    drop(bot);

    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    for id in &acked {
        let state = request_state(&bot, id).await;
        assert_eq!(state["state"], "pending", "{id}: {state}");
    }
    // And what was owed for them is delivered after the restart.
    eventually("every card", || async {
        let posted: Vec<String> = slack
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        acked
            .iter()
            .all(|id| posted.iter().any(|body| body.contains(id.as_str())))
            .then_some(())
    })
    .await;
}

/// Answers the activity calls with whether the principal is in use now,
/// noting when it last said so.
#[derive(Clone, Default)]
struct Activity {
    in_use: std::sync::Arc<std::sync::atomic::AtomicBool>,
    last_in_use: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl wiremock::Respond for Activity {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let in_use = self.in_use.load(std::sync::atomic::Ordering::SeqCst);
        if in_use {
            *self.last_in_use.lock().unwrap() = Some(Instant::now());
        }
        ResponseTemplate::new(200).set_body_json(json!({ "in_use": in_use, "last_used": null }))
    }
}

#[tokio::test]
async fn an_idle_grant_is_released_counted_from_its_last_use_across_a_kill() {
    let slack = fake_slack().await;
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&iam)
        .await;
    let activity = Activity::default();
    activity
        .in_use
        .store(true, std::sync::atomic::Ordering::SeqCst);
    Mock::given(method("GET"))
        .and(path("/activity"))
        .respond_with(activity.clone())
        .mount(&iam)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new().await;
    let policy = POLICY
        .replace(
            "timeout = \"5s\"",
            "timeout = \"5s\"\nactivity_url = \"{IAM}/activity\"",
        )
        .replace(
            "default_duration = \"5m\"",
            "default_duration = \"5m\"\nactivity_interval = \"1s\"\nidle_release = \"20s\"",
        )
        .replace("{IAM}", &iam.uri());
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;
    let id = bot.request_and_approve("request quick 5m idle test").await;
    let calls = |wanted: &'static str| {
        let iam = &iam;
        async move {
            iam.received_requests()
                .await
                .expect("the fake records the requests it gets")
                .into_iter()
                .filter(|r| match wanted {
                    "activity" => r.url.path() == "/activity",
                    action => {
                        r.url.path() == "/jit"
                            && serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
                                ["action"]
                                == action
                    }
                })
                .count()
        }
    };
    // In use for a few samples, then no longer; killed soon after, and
    // down for ten seconds.
    eventually("a few samples in use", || async {
        (calls("activity").await >= 3).then_some(())
    })
    .await;
    activity
        .in_use
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Sampling rounds run one after another, each recorded before the
    // next begins: two more calls after the flip mean the last "in use"
    // answer (even one in flight at the flip) is durably recorded. Only
    // then is it a use jitbot must remember across the kill.
    let flipped_at = calls("activity").await;
    eventually("the last use to be recorded", || async {
        (calls("activity").await >= flipped_at + 2).then_some(())
    })
    .await;
    let last_use = activity.last_in_use.lock().unwrap().expect("seen in use");
    drop(bot);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restarted = Instant::now();
    let bot = Bot::start(dir.path(), &store, &slack.uri()).await;

    eventually_within(Duration::from_secs(60), "the idle release", || async {
        (calls("revoke").await == 1).then_some(())
    })
    .await;
    let released = Instant::now();
    // Counted from the last use seen before the kill, not from the restart;
    // and never before idle_release has passed since that use.
    assert!(
        released >= last_use + Duration::from_secs(20),
        "released {:?} after the last use",
        released - last_use
    );
    assert!(
        released < restarted + Duration::from_secs(18),
        "released {:?} after the restart: counted from the restart",
        released - restarted
    );
    // The Keep it warning came first.
    let warned = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains("jit_keep"));
    assert!(warned, "no Keep it DM before the release");
    eventually("the request to be released", || async {
        (request_state(&bot, &id).await["state"] == "released").then_some(())
    })
    .await;
}
