//! The audit chain against someone who can write the store but does not
//! hold `JITBOT_AUDIT_KEY`: cutting off the end shows against a shipped
//! head, rewriting everything shows under the key, an untouched log
//! verifies with its head. Through the real binary, on the store this run
//! uses (sled, or PostgreSQL with JITBOT_TEST_STORE=postgres).

use std::path::Path;
use std::process::{Command, Stdio};

use jitbot::domain::audit::{AuditAction, AuditEvent, AuditRecord, ChainHead};

use crate::backend::TestStore;
use crate::helpers::{TestApp, ADMIN_TOKEN};

const KEY: &str = "audit-chain-test-key-0123456789abcdef";

const POLICY: &str = r#"
[providers.iam]
kind = "webhook"
url = "http://127.0.0.1:9/jit"
secret_env = "TEST_HOOK_SECRET"

# The grant the log records, as it was granted (else the start tells
# the admins of the drift, an event more).
[[groups]]
name = "prod-db"
provider = "iam"
target = "prod_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

/// `jitbot <args>` against `store`, with `key` as JITBOT_AUDIT_KEY.
fn jitbot(store: &TestStore, key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let (store_var, store_value) = store.env();
    let mut command = Command::new(env!("CARGO_BIN_EXE_jitbot"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(store_var, store_value)
        .env("RUST_LOG", "warn");
    if let Some(key) = key {
        command.env("JITBOT_AUDIT_KEY", key);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Start `jitbot serve` on `store` with `key`, wait until it listens, and
/// stop it with SIGTERM; or, if it refuses to start, its exit code and
/// stderr.
fn serve_once(dir: &Path, store: &TestStore, key: Option<&str>) -> (i32, String) {
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let (store_var, store_value) = store.env();
    let mut command = Command::new(env!("CARGO_BIN_EXE_jitbot"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JITBOT_CONFIG", dir.join("policy.toml"))
        .env(store_var, store_value)
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .env("TEST_HOOK_SECRET", "audit-chain-test-hook-secret")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    if let Some(key) = key {
        command.env("JITBOT_AUDIT_KEY", key);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let listening = {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with("jitbot listening on "))
    };
    if listening {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, std::fs::read_to_string(dir.join("stderr")).unwrap())
}

/// A log of three plain events (filed, approved, granted) written without
/// a key, then keyed by a start with [`KEY`]: four events, the last keyed.
/// The app comes back stopped (it owns the store).
async fn keyed_log(dir: &Path) -> TestApp {
    let mut app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h audited").await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    app.stop().await;
    // Sealed without the key (on PostgreSQL, records still pending would
    // otherwise be sealed keyed by the start below).
    assert!(head_of(&app.store, None).starts_with("3:"));
    let (code, stderr) = serve_once(dir, &app.store, Some(KEY));
    assert_eq!(code, 0, "{stderr}");
    app
}

/// `jitbot audit head`, parsed.
fn head_of(store: &TestStore, key: Option<&str>) -> String {
    let (code, stdout, stderr) = jitbot(store, key, &["audit", "head"]);
    assert_eq!(code, 0, "{stderr}");
    let head = stdout.trim().to_string();
    ChainHead::parse(&head).expect("audit head prints <seq>:<hash>");
    head
}

#[tokio::test]
async fn an_untouched_keyed_log_verifies_with_its_head_and_only_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = keyed_log(dir.path()).await;
    let store = &app.store;
    let head = head_of(store, Some(KEY));
    assert!(head.starts_with("4:"), "{head}");
    let events = store.audit_events().await;
    assert_eq!(events[3].action, AuditAction::ChainKeyed);

    let (code, stdout, stderr) = jitbot(store, Some(KEY), &["audit", "verify", "--head", &head]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(
        stdout,
        format!("audit chain OK: 4 event(s) verified\nit reaches the shipped head {head}\n")
    );
    // The plain part from before the key still verifies, as part of it.
    let (code, stdout, _) = jitbot(store, Some(KEY), &["audit", "verify"]);
    assert_eq!(
        (code, stdout.trim()),
        (0, "audit chain OK: 4 event(s) verified")
    );

    // Without the key a keyed link cannot be checked: refused, not passed.
    let (code, _, stderr) = jitbot(store, None, &["audit", "verify", "--head", &head]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "audit chain BROKEN: event 4 is chained under JITBOT_AUDIT_KEY; set it to verify the log"
    );
    // Under another key its link is a forgery.
    let other = "another-audit-key-0123456789abcdefgh";
    let (code, _, stderr) = jitbot(store, Some(other), &["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("event 4: its content does not match its HMAC"),
        "{stderr}"
    );
    // And a server without the key refuses to go on with a keyed chain.
    let (code, stderr) = serve_once(dir.path(), store, None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the audit chain is keyed (event 4 is HMAC-SHA256 under JITBOT_AUDIT_KEY)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn cutting_off_the_last_events_fails_against_the_shipped_head() {
    let dir = tempfile::tempdir().unwrap();
    let app = keyed_log(dir.path()).await;
    let store = &app.store;
    let head = head_of(store, Some(KEY));

    // The attacker drops the last event and moves the store's head back:
    // the chain that is left is sound in itself.
    let mut events = store.audit_events().await;
    events.truncate(3);
    store.replace_audit(&events).await;
    assert!(head_of(store, None).starts_with("3:"));

    for key in [Some(KEY), None] {
        let (code, stdout, stderr) = jitbot(store, key, &["audit", "verify", "--head", &head]);
        assert_eq!(code, 1, "{stdout}");
        assert_eq!(
            stderr.trim(),
            "audit chain BROKEN: the log ends at event 3, before the shipped head 4 (truncated?)"
        );
    }
    // With the key, even without a head: the keyed part is gone.
    let (code, _, stderr) = jitbot(store, Some(KEY), &["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no event up to 3 is chained under JITBOT_AUDIT_KEY"),
        "{stderr}"
    );
    // A head that is not one is refused as bad input.
    let (code, _, stderr) = jitbot(store, Some(KEY), &["audit", "verify", "--head", "4"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("is not a head like 42:<64 hex digits>"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_log_rewritten_with_plain_hashes_fails_under_the_key_and_against_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let app = keyed_log(dir.path()).await;
    let store = &app.store;
    let head = head_of(store, Some(KEY));

    // Everything re-chained from the start with plain SHA-256 — what one
    // without the key can compute — with the grant's detail changed.
    let mut chained = ChainHead::genesis();
    let mut rewritten = Vec::new();
    for event in store.audit_events().await {
        let record = AuditRecord {
            at: event.at,
            action: event.action,
            actor: event.actor.clone(),
            request: event.request.clone(),
            group: event.group.clone(),
            detail: format!("{} (rewritten)", event.detail),
        };
        let (event, next) = record.seal(&chained);
        rewritten.push(event);
        chained = next;
    }
    store.replace_audit(&rewritten).await;

    // Without the key and without a head, it passes: why both exist.
    let (code, _, _) = jitbot(store, None, &["audit", "verify"]);
    assert_eq!(code, 0);
    let (code, _, stderr) = jitbot(store, Some(KEY), &["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "audit chain BROKEN: no event up to 4 is chained under JITBOT_AUDIT_KEY: the log was rewritten without the key, or jitbot has not run with the key yet (start it once to chain the log)"
    );
    let (code, _, stderr) = jitbot(store, None, &["audit", "verify", "--head", &head]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "audit chain BROKEN: event 4 is not the shipped head's: its hash differs (rewritten?)"
    );
}

#[tokio::test]
async fn a_key_shorter_than_32_bytes_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = &TestStore::new().await;
    let short = "too-short-audit-key";
    let (code, stderr) = serve_once(dir.path(), store, Some(short));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("JITBOT_AUDIT_KEY is 19 bytes; it must be at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains(short), "{stderr}");
    let (code, _, stderr) = jitbot(store, Some(short), &["audit", "verify"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("it must be at least 32"), "{stderr}");
}

#[tokio::test]
async fn the_export_names_the_head_it_stops_at() {
    let mut app = TestApp::spawn().await;
    let id = app.request("U0ALICE", "request prod-db 1h audited").await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    let response = app
        .http
        .get(app.url("/api/v1/audit"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let exported = response
        .headers()
        .get("x-jitbot-audit-head")
        .expect("the export names its head")
        .to_str()
        .unwrap()
        .to_string();
    let (status, lines) = crate::openapi::checked("/api/v1/audit", "get", response).await;
    assert_eq!(status, 200);
    let last = lines.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        exported,
        format!("{}:{}", last["seq"], last["hash"].as_str().unwrap())
    );
    app.stop().await;
    assert_eq!(head_of(&app.store, None), exported);
    let (code, _, stderr) = jitbot(&app.store, None, &["audit", "verify", "--head", &exported]);
    assert_eq!(code, 0, "{stderr}");
}

/// What the attacker's tests read and write behind jitbot's back, the
/// server stopped.
impl TestStore {
    /// Every audit event, oldest first.
    async fn audit_events(&self) -> Vec<AuditEvent> {
        match self {
            TestStore::Sled(dir) => {
                let db = sled::open(dir.path()).unwrap();
                let audit = db.open_tree("audit").unwrap();
                audit
                    .iter()
                    .map(|item| serde_json::from_slice(&item.unwrap().1).unwrap())
                    .collect()
            }
            TestStore::Postgres(db) => {
                let client = crate::pg::connect(&db.url).await.unwrap();
                client
                    .query("SELECT event FROM audit ORDER BY seq", &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
                    .collect()
            }
        }
    }

    /// Make `events` the whole log, and the last of them its head.
    async fn replace_audit(&self, events: &[AuditEvent]) {
        let head = events
            .last()
            .map_or_else(ChainHead::genesis, |e| ChainHead {
                seq: e.seq,
                hash: e.hash.clone(),
            });
        let head = serde_json::to_string(&head).unwrap();
        match self {
            TestStore::Sled(dir) => {
                let db = sled::open(dir.path()).unwrap();
                let audit = db.open_tree("audit").unwrap();
                audit.clear().unwrap();
                for event in events {
                    // The sled layout's key: a version byte, then the sequence.
                    let mut key = vec![1u8];
                    key.extend_from_slice(&event.seq.to_be_bytes());
                    audit
                        .insert(key, serde_json::to_vec(event).unwrap())
                        .unwrap();
                }
                let meta = db.open_tree("meta").unwrap();
                meta.insert(b"\x01audit_head", head.as_bytes()).unwrap();
                db.flush().unwrap();
            }
            TestStore::Postgres(db) => {
                let client = crate::pg::connect(&db.url).await.unwrap();
                client.execute("DELETE FROM audit", &[]).await.unwrap();
                for event in events {
                    client
                        .execute(
                            "INSERT INTO audit (seq, event) VALUES ($1, $2)",
                            &[&(event.seq as i64), &serde_json::to_string(event).unwrap()],
                        )
                        .await
                        .unwrap();
                }
                client
                    .execute("UPDATE audit_head SET head = $1 WHERE singleton", &[&head])
                    .await
                    .unwrap();
            }
        }
    }
}
