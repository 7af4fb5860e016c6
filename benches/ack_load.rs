//! Load tool: sends uniquely signed `/jit request` slash commands at fixed
//! rates to a real jitbot process (the release binary, on its own sled store,
//! with a fake Slack API on loopback) and reports ack latency.
//!
//! ```text
//! cargo bench --bench ack_load -- [--rates 200,1000] [--seconds 10]
//!     [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--replicas 3]
//! ```
//!
//! With `--database-url`, each rate runs on a fresh database created on
//! that server (and dropped afterwards), shared by `--replicas` processes
//! that the load is spread over evenly; otherwise on a sled store.
//!
//! The load is open-loop: every request is its own task, released at its
//! scheduled time whatever happened to the ones before, so a slow server
//! cannot slow the sender down and hide its queueing (no coordinated
//! omission). Latency runs from handing the signed request to the client to
//! the end of the response body; the timer's 1 ms granularity in releasing a
//! task is the sender's, not the server's, and is left out.
//! Answers are counted by what they say: "filed" (durably written —
//! transaction and fsync — before the ack; only these are durable acks),
//! "busy" (shed under overload, nothing written), another refusal, or no
//! answer at all. Latency is over every request that got an answer.

// The tests' own clients talk to the server under test and its fakes;
// the no-redirect constructor (clippy.toml) is for jitbot's outbound calls.
#![allow(clippy::disallowed_methods)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "load-test-signing-secret";

const POLICY: &str = r#"
[providers.noop]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]

[[groups]]
name = "prod-db"
provider = "noop"
target = "prod_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

struct Args {
    rates: Vec<u64>,
    seconds: u64,
    /// A PostgreSQL server to create a database on for each run.
    database_url: Option<String>,
    replicas: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        rates: vec![200, 1000],
        seconds: 10,
        database_url: None,
        replicas: 1,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        match raw[i].as_str() {
            "--rates" if i + 1 < raw.len() => {
                args.rates = raw[i + 1]
                    .split(',')
                    .filter_map(|r| r.trim().parse().ok())
                    .collect();
                i += 1;
            }
            "--database-url" if i + 1 < raw.len() => {
                args.database_url = Some(raw[i + 1].clone());
                i += 1;
            }
            "--replicas" if i + 1 < raw.len() => {
                args.replicas = raw[i + 1].parse().unwrap_or(1).max(1);
                i += 1;
            }
            "--seconds" if i + 1 < raw.len() => {
                args.seconds = raw[i + 1].parse().unwrap_or(10);
                i += 1;
            }
            _ => {} // `cargo bench` adds `--bench`
        }
        i += 1;
    }
    args
}

fn sign(timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(slack_url: &str, database: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let port = free_port();
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/jitbot");
    let mut child = Command::new(binary)
        .arg("serve")
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("SLACK_BOT_TOKEN", "xoxb-load")
        .env("SLACK_API_URL", format!("{slack_url}/api"))
        .env("JITBOT_CONFIG", &policy)
        .env(
            if database.is_some() {
                "JITBOT_DATABASE_URL"
            } else {
                "JITBOT_DATA_DIR"
            },
            database.map_or_else(
                || dir.path().join("data").display().to_string(),
                str::to_string,
            ),
        )
        .env("JITBOT_LISTEN", format!("127.0.0.1:{port}"))
        // Every simulated user comes from 127.0.0.1: one peer, as behind
        // a load balancer, with as many connections as the rate needs —
        // unless the run sets the limit itself (to measure a peer's
        // connections waiting their turn).
        .env(
            "JITBOT_MAX_CONNECTIONS_PER_PEER",
            std::env::var("JITBOT_MAX_CONNECTIONS_PER_PEER").unwrap_or_else(|_| "4096".into()),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary} (run `cargo build --release` first): {e}")
        });
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            return Server {
                child,
                _dir: dir,
                url,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not come up");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

struct Outcome {
    sent: usize,
    /// Answered "is filed": the request was written durably before the ack.
    filed: usize,
    /// Answered "busy, try again": nothing filed, answered at once.
    busy: usize,
    /// Answered with another text (a refusal, e.g. a per-person limit).
    refused: usize,
    /// No answer, or not a 200.
    errors: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// How one request was answered.
enum Answer {
    Filed,
    Busy,
    Refused,
    Error,
}

async fn run_rate(servers: &[Server], rate: u64, seconds: u64, run: usize) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let total = (rate * seconds) as usize;
    // Several users, each well inside the per-person limit (10 a minute).
    let users = (total / 5).max(1);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let urls: Arc<Vec<String>> = Arc::new(
        servers
            .iter()
            .map(|server| format!("{}/slack/commands", server.url))
            .collect(),
    );
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        let client = client.clone();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let url = &urls[i % urls.len()];
            tokio::time::sleep_until(scheduled.into()).await;
            let text = format!("request prod-db 1h load run {run} request {i}");
            let body = serde_urlencoded::to_string([
                ("user_id", format!("U{:08}", i % users)),
                ("user_name", "load".to_string()),
                ("channel_id", "C0LOAD".to_string()),
                ("command", "/jit".to_string()),
                ("text", text),
                ("trigger_id", format!("t{run}.{i}")),
            ])
            .unwrap();
            let timestamp = chrono::Utc::now().timestamp();
            let signature = sign(timestamp, body.as_bytes());
            let sent = Instant::now();
            let result = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", timestamp.to_string())
                .header("x-slack-signature", signature)
                .body(body)
                .send()
                .await;
            let answer = match result {
                Ok(response) if response.status().is_success() => match response.text().await {
                    Ok(text) if text.contains("is filed") => Answer::Filed,
                    Ok(text) if text.contains("busy") => Answer::Busy,
                    Ok(_) => Answer::Refused,
                    Err(_) => Answer::Error,
                },
                _ => Answer::Error,
            };
            (sent.elapsed(), answer)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let (mut filed, mut busy, mut refused, mut errors) = (0, 0, 0, 0);
    for task in tasks {
        let (latency, answer) = task.await.unwrap();
        match answer {
            Answer::Filed => filed += 1,
            Answer::Busy => busy += 1,
            Answer::Refused => refused += 1,
            Answer::Error => {
                errors += 1;
                continue;
            }
        }
        latencies.push(latency);
    }
    latencies.sort();
    Outcome {
        sent: total,
        filed,
        busy,
        refused,
        errors,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A minimal fake Slack Web API: every method answers `ok`. Kept far
/// lighter than a recording mock so it takes little CPU from the server
/// under test on a 2-core machine.
async fn start_fake_slack() -> String {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(
            serde_json::json!({ "ok": true, "channel": "C0APPROVALS", "ts": "1700000000.000100" }),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The peak resident memory of process `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A database of one run's own on the server at `server_url`.
struct BenchDatabase {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(server_url: &str, run: usize) -> BenchDatabase {
        let (admin, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
            .await
            .expect("the benchmark's PostgreSQL server answers");
        tokio::spawn(connection);
        let name = format!("jitbot_bench_{}_{run}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let mut url = url::Url::parse(server_url).unwrap();
        url.set_path(&name);
        url.query_pairs_mut().append_pair("sslmode", "disable");
        BenchDatabase {
            admin,
            name,
            url: url.to_string(),
        }
    }

    async fn drop_it(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let slack_url = start_fake_slack().await;
    let store = match &args.database_url {
        Some(_) => format!("PostgreSQL, {} replica(s)", args.replicas),
        None => "sled".to_string(),
    };
    println!("store: {store}");
    println!("| rate (req/s) | sent | filed | busy | refused | errors | p50 | p99 | max | peak RSS per replica |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (run, rate) in args.rates.iter().enumerate() {
        // A fresh store (and servers) per rate, so runs do not inherit
        // backlog.
        let database = match &args.database_url {
            Some(url) => Some(BenchDatabase::create(url, run).await),
            None => None,
        };
        let mut servers = Vec::new();
        for _ in 0..args.replicas {
            servers.push(start_server(&slack_url, database.as_ref().map(|d| d.url.as_str())).await);
        }
        let outcome = run_rate(&servers, *rate, args.seconds, run).await;
        let rss: Vec<String> = servers
            .iter()
            .map(|server| format!("{:.0} MiB", peak_rss_mib(server.child.id())))
            .collect();
        println!(
            "| {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            outcome.sent,
            outcome.filed,
            outcome.busy,
            outcome.refused,
            outcome.errors,
            ms(outcome.p50),
            ms(outcome.p99),
            ms(outcome.max),
            rss.join(", ")
        );
        drop(servers);
        if let Some(database) = database {
            database.drop_it().await;
        }
    }
}
