//! Expiry at scale: 100,000 active grants in a real store, revoked by the
//! real release binary through a webhook provider that answers at once.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench expiry_load -- [--grants 100000] [--window 60]
//!     [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--replicas 3]
//! ```
//!
//! With `--database-url`, each scenario runs on a fresh database created on
//! that server (dropped afterwards) and `--replicas` processes share it;
//! otherwise on a sled store and one process. Scenarios, each on a fresh
//! store seeded directly through the `Store` API (the servers are not
//! running while it is seeded):
//! 1. **Running:** the grants end spread evenly over `--window` seconds,
//!    starting 20 s after the server starts; reports how late each revoke
//!    arrived after its grant's end (p50/p99/max).
//! 2. **Restart:** every grant ended while the server was down; reports the
//!    time from starting the process to the first revoke, and to the last.
//!
//! 3. **Kill** (PostgreSQL only): `--kill-grants` (default 3,000) grants end
//!    together; when their revokes are under way, the replica holding the
//!    most claims is SIGKILLed; reports the time from the kill to the last
//!    revoke, and that none is missing.
//!
//! For all: each server's peak RSS (VmHWM) and the store's size (on disk,
//! or the database's size).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jitbot::domain::duration::HumanDuration;
use jitbot::domain::ids::{Actor, GroupName, Platform, RequestId, UserId};
use jitbot::domain::job::{Job, JobKind};
use jitbot::domain::request::AccessRequest;
use jitbot::store::{Effects, Store, StoreLocation, Write};

const POLICY: &str = r#"
[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "BENCH_HOOK_SECRET"
timeout = "5s"

[[groups]]
name = "bench"
provider = "iam"
target = "bench_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
max_duration = "1d"
default_duration = "1h"
warn_before = "1s"
"#;

/// Every revoke's arrival time, by request id, recorded by the fake IAM:
/// all of them, so duplicates are counted, not folded into one.
type Revokes = Arc<Mutex<HashMap<String, Vec<DateTime<Utc>>>>>;

async fn start_fake_iam(revokes: Revokes) -> String {
    let app = axum::Router::new().route(
        "/jit",
        axum::routing::post(move |body: axum::body::Bytes| {
            let revokes = revokes.clone();
            async move {
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if value["action"] == "revoke" {
                    if let Some(id) = value["request_id"].as_str() {
                        revokes
                            .lock()
                            .unwrap()
                            .entry(id.to_string())
                            .or_default()
                            .push(Utc::now());
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn start_fake_slack() -> String {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({ "ok": true, "channel": { "id": "D0" }, "ts": "1.1" }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Seed `count` active grants ending at `end_of(i)`, each with its expiry job.
async fn seed(
    store: &dyn Store,
    count: usize,
    end_of: impl Fn(usize) -> DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let group = GroupName::parse("bench").unwrap();
    let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
    let mut ends = Vec::with_capacity(count);
    let mut i = 0;
    while ends.len() < count {
        i += 1;
        let user = Actor::new(Platform::Slack, UserId::new(format!("U{i:08}")), "user");
        let expires_at = end_of(i);
        let duration = HumanDuration::from_secs(3600);
        let activated = expires_at - duration.as_chrono();
        let (request, _) = AccessRequest::file(
            RequestId::generate(),
            user,
            group.clone(),
            duration,
            "benchmark".into(),
            None,
            false,
            activated,
        );
        let (approved, _) = request.approve(&lead, true, 1, activated).unwrap();
        let (active, _) = approved
            .activate(activated, "bench-user", Default::default())
            .unwrap();
        let job = Job {
            id: store.next_id().await.unwrap(),
            due_at: expires_at,
            attempt: 0,
            lane: format!("{}:{}", active.requester, active.group),
            kind: JobKind::Expire {
                request: active.id.clone(),
            },
        };
        let write = Write {
            request: Some(active.clone()),
            effects: Effects {
                jobs: vec![job],
                ..Effects::default()
            },
        };
        // Random ids clash now and then at this scale; the loop draws again.
        let applied = store
            .apply(&active.id, None, &mut |existing| {
                existing.is_none().then(|| write.clone())
            })
            .await
            .unwrap();
        if applied != jitbot::store::Applied::Written {
            continue;
        }
        ends.push((active.id.to_string(), expires_at));
    }
    store.sync().await.unwrap();
    ends
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            total += if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path, store: &BenchStore, iam: &str, slack: &str) -> Server {
    // Written once per IAM, before any server reads it.
    let policy = dir.join(format!("policy-{}.toml", iam.replace(['/', ':'], "_")));
    if !policy.exists() {
        let partial = dir.join("policy.partial");
        std::fs::write(&partial, POLICY.replace("{IAM}", iam)).unwrap();
        std::fs::rename(&partial, &policy).unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/jitbot");
    Server(
        Command::new(binary)
            .arg("serve")
            .env("SLACK_SIGNING_SECRET", "bench")
            .env("SLACK_BOT_TOKEN", "xoxb-bench")
            .env("SLACK_API_URL", format!("{slack}/api"))
            .env("BENCH_HOOK_SECRET", "bench")
            .env("JITBOT_CONFIG", &policy)
            .env(store.env().0, store.env().1)
            .env("JITBOT_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (run `cargo build --release` first): {e}")
            }),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// What the fake IAM saw, against the grants' ends.
struct Tally {
    /// Grants revoked at least once.
    revoked: usize,
    /// Grants never revoked: access that lingers.
    missing: usize,
    /// Grants whose first revoke came before their end.
    early: usize,
    /// Revokes beyond the first, summed over the grants.
    duplicates: usize,
    /// From each grant's end to its first revoke (early ones left out).
    lags: Vec<Duration>,
}

impl Tally {
    fn of(
        ends: &[(String, DateTime<Utc>)],
        revoked: &HashMap<String, Vec<DateTime<Utc>>>,
    ) -> Tally {
        let mut tally = Tally {
            revoked: 0,
            missing: 0,
            early: 0,
            duplicates: 0,
            lags: Vec::new(),
        };
        for (id, end) in ends {
            let Some(times) = revoked.get(id).filter(|t| !t.is_empty()) else {
                tally.missing += 1;
                continue;
            };
            tally.revoked += 1;
            tally.duplicates += times.len() - 1;
            let first = *times.iter().min().unwrap();
            match (first - *end).to_std() {
                Ok(lag) => tally.lags.push(lag),
                Err(_) => tally.early += 1,
            }
        }
        tally
    }
}

/// Wait until `count` grants are revoked, or nothing happened for 30 s.
async fn wait_for_all(revokes: &Revokes, count: usize, limit: Duration) {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let done = revokes.lock().unwrap().len();
        if done >= count || started.elapsed() > limit {
            return;
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if done > 0 && last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("stalled at {done} of {count} revokes");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One scenario's store: a sled directory or a database of its own.
enum BenchStore {
    Sled(tempfile::TempDir),
    Postgres {
        admin: tokio_postgres::Client,
        name: String,
        url: String,
    },
}

impl BenchStore {
    async fn fresh(database_url: Option<&str>, scenario: &str) -> BenchStore {
        let Some(server_url) = database_url else {
            return BenchStore::Sled(tempfile::tempdir().unwrap());
        };
        let (admin, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
            .await
            .expect("the benchmark's PostgreSQL server answers");
        tokio::spawn(connection);
        let name = format!("jitbot_bench_{}_{scenario}", std::process::id());
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
        BenchStore::Postgres {
            admin,
            name,
            url: url.to_string(),
        }
    }

    fn location(&self) -> StoreLocation {
        match self {
            BenchStore::Sled(dir) => StoreLocation::Sled(dir.path().join("data")),
            BenchStore::Postgres { url, .. } => StoreLocation::Postgres {
                url: jitbot::config::Secret::new(url.clone()),
                lease: Duration::from_secs(5),
            },
        }
    }

    fn env(&self) -> (&'static str, String) {
        match self {
            BenchStore::Sled(dir) => (
                "JITBOT_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            BenchStore::Postgres { url, .. } => ("JITBOT_DATABASE_URL", url.clone()),
        }
    }

    /// Seed it through the store API, then close it.
    async fn seed(
        &self,
        count: usize,
        end_of: impl Fn(usize) -> DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>)> {
        let store = jitbot::store::open(&self.location(), Arc::new(jitbot::clock::SystemClock))
            .await
            .unwrap();
        let ends = seed(&*store, count, end_of).await;
        store.sync().await.unwrap();
        drop(store);
        if matches!(self, BenchStore::Sled(_)) {
            // sled lets go of its lock when its threads do.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ends
    }

    /// Its size: on disk, or the database's.
    async fn size_mib(&self) -> f64 {
        match self {
            BenchStore::Sled(dir) => dir_size(&dir.path().join("data")) as f64 / 1048576.0,
            BenchStore::Postgres { admin, name, .. } => {
                let row = admin
                    .query_one("SELECT pg_database_size($1)", &[name])
                    .await
                    .unwrap();
                row.get::<_, i64>(0) as f64 / 1048576.0
            }
        }
    }

    async fn drop_it(self) {
        if let BenchStore::Postgres { admin, name, .. } = self {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

fn rss_of(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|server| format!("{:.0} MiB", peak_rss_kib(server.0.id()) as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pid of the replica holding the most claims on jobs now.
async fn busiest_claimer(store: &BenchStore) -> Option<u32> {
    let BenchStore::Postgres { url, .. } = store else {
        return None;
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    let row = client
        .query_opt(
            "SELECT claimed_by FROM jobs WHERE claimed_by IS NOT NULL
             GROUP BY claimed_by ORDER BY count(*) DESC LIMIT 1",
            &[],
        )
        .await
        .ok()??;
    let holder: String = row.get(0);
    holder.split('/').nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let count = arg("--grants", 100_000);
    let window = arg("--window", 60) as i64;
    let kill_grants = arg("--kill-grants", 3_000);
    let database_url = args
        .iter()
        .position(|a| a == "--database-url")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let replicas = if database_url.is_some() {
        arg("--replicas", 1).max(1)
    } else {
        1
    };
    let slack = start_fake_slack().await;
    let config = tempfile::tempdir().unwrap();
    println!(
        "store: {}",
        if database_url.is_some() {
            format!("PostgreSQL, {replicas} replica(s)")
        } else {
            "sled".to_string()
        }
    );

    // 1. Running servers, grants ending over the window.
    {
        let revokes: Revokes = Arc::default();
        let iam = start_fake_iam(revokes.clone()).await;
        let store = BenchStore::fresh(database_url.as_deref(), "running").await;
        let empty = store.size_mib().await;
        let seeding = Instant::now();
        // The first grant ends 20 s after seeding is done (seeding takes
        // about a millisecond a grant).
        let first_end = Utc::now()
            + chrono::Duration::seconds(20)
            + chrono::Duration::milliseconds(count as i64);
        let step_us = window * 1_000_000 / count as i64;
        let ends = store
            .seed(count, |i| {
                first_end + chrono::Duration::microseconds(step_us * i as i64)
            })
            .await;
        println!(
            "seeded {count} grants in {:.1} s; store {:.1} MiB ({:.1} MiB for the grants)",
            seeding.elapsed().as_secs_f64(),
            store.size_mib().await,
            store.size_mib().await - empty
        );
        let servers: Vec<Server> = (0..replicas)
            .map(|_| start_server(config.path(), &store, &iam, &slack))
            .collect();
        wait_for_all(&revokes, count, Duration::from_secs(window as u64 + 300)).await;
        let revoked = revokes.lock().unwrap().clone();
        let tally = Tally::of(&ends, &revoked);
        let mut lags = tally.lags.clone();
        lags.sort();
        println!(
            "running: {} of {count} revoked over a {window} s window ({} missing, {} revoked early, {} duplicate revokes); lag after due p50 {} p99 {} max {}; peak RSS {}; store {:.1} MiB",
            tally.revoked,
            tally.missing,
            tally.early,
            tally.duplicates,
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99)),
            ms(lags.last().copied().unwrap_or_default()),
            rss_of(&servers),
            store.size_mib().await
        );
        drop(servers);
        store.drop_it().await;
    }

    // 2. Restart with every grant overdue.
    {
        let revokes: Revokes = Arc::default();
        let iam = start_fake_iam(revokes.clone()).await;
        let store = BenchStore::fresh(database_url.as_deref(), "restart").await;
        let past = Utc::now() - chrono::Duration::seconds(60);
        let ends = store
            .seed(count, |i| {
                past + chrono::Duration::milliseconds(i as i64 % 1000)
            })
            .await;
        let started = Instant::now();
        let servers: Vec<Server> = (0..replicas)
            .map(|_| start_server(config.path(), &store, &iam, &slack))
            .collect();
        while revokes.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = started.elapsed();
        wait_for_all(&revokes, count, Duration::from_secs(600)).await;
        let all = started.elapsed();
        let tally = Tally::of(&ends, &revokes.lock().unwrap());
        println!(
            "restart: {} of {count} overdue grants revoked ({} missing, {} revoked early, {} duplicate revokes); first revoke {} after the process started, last after {:.1} s; peak RSS {}",
            tally.revoked,
            tally.missing,
            tally.early,
            tally.duplicates,
            ms(first),
            all.as_secs_f64(),
            rss_of(&servers)
        );
        drop(servers);
        store.drop_it().await;
    }

    // 3. Kill the replica holding due work.
    if database_url.is_some() && replicas > 1 {
        let revokes: Revokes = Arc::default();
        let iam = start_fake_iam(revokes.clone()).await;
        let store = BenchStore::fresh(database_url.as_deref(), "kill").await;
        let end = Utc::now()
            + chrono::Duration::seconds(15)
            + chrono::Duration::milliseconds(kill_grants as i64);
        let ends = store.seed(kill_grants, |_| end).await;
        let mut servers: Vec<Server> = (0..replicas)
            .map(|_| start_server(config.path(), &store, &iam, &slack))
            .collect();
        // When the revokes are under way, the replica with the most claims
        // dies.
        while revokes.lock().unwrap().len() < kill_grants / 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let victim = busiest_claimer(&store)
            .await
            .expect("a replica holds claims");
        let index = servers
            .iter()
            .position(|s| s.0.id() == victim)
            .expect("the claimer is one of ours");
        let done_before = revokes.lock().unwrap().len();
        let killed = Instant::now();
        let killed_at = Utc::now();
        servers.remove(index);
        wait_for_all(&revokes, kill_grants, Duration::from_secs(120)).await;
        let last = revokes
            .lock()
            .unwrap()
            .values()
            .flat_map(|times| times.iter().copied())
            .max()
            .unwrap_or(killed_at);
        let tally = Tally::of(&ends, &revokes.lock().unwrap());
        println!(
            "kill: {kill_grants} grants ending together, {done_before} revoked when the replica with the most claims was SIGKILLed; the last revoke {} after the kill (waited {:.1} s); {} missing, {} duplicate revokes",
            ms((last - killed_at).to_std().unwrap_or_default()),
            killed.elapsed().as_secs_f64(),
            tally.missing,
            tally.duplicates
        );
        drop(servers);
        store.drop_it().await;
    }
}
