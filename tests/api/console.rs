//! `jitbot console`: the real binary, its stdin and stdout as the chat —
//! request, approve by number, grant, warning, revoke; deny with a reason.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{eventually_within, HOOK_SECRET};

const POLICY: &str = r#"
[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"

[[groups]]
name = "quick"
provider = "iam"
target = "quick_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
warn_before = "2s"
break_glass = { requesters = ["U0ALICE"], max_duration = "1m" }

[[groups]]
name = "logs"
provider = "iam"
target = "logs_ro"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

/// A fake IAM webhook that grants and revokes whatever it is asked.
async fn accepting_iam() -> MockServer {
    let iam = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/jit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&iam)
        .await;
    iam
}

struct Console {
    stdin: tokio::process::ChildStdin,
    output: Arc<Mutex<String>>,
    child: tokio::process::Child,
}

impl Console {
    /// `jitbot console --as U0ALICE` on a fresh store, the policy's
    /// webhook pointing at `iam`; the directory lives as long as it must.
    async fn start(iam: &MockServer) -> (Console, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let console = Console::start_in(iam, &dir, &[]).await;
        (console, dir)
    }

    /// `jitbot console --as U0ALICE <more_args>` with `dir` holding the
    /// policy and the configured store (`JITBOT_DATA_DIR=dir/data`).
    async fn start_in(iam: &MockServer, dir: &tempfile::TempDir, more_args: &[&str]) -> Console {
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(&policy_path, POLICY.replace("{IAM}", &iam.uri())).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .args(["console", "--as", "U0ALICE"])
            .args(more_args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JITBOT_CONFIG", &policy_path)
            .env("JITBOT_DATA_DIR", dir.path().join("data"))
            .env("TEST_HOOK_SECRET", HOOK_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        Console {
            stdin: child.stdin.take().unwrap(),
            output,
            child,
        }
    }

    /// `/quit`, and the console's exit status.
    async fn quit(mut self) -> Option<i32> {
        self.type_line("/quit").await;
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the console stops")
            .unwrap()
            .code()
    }

    /// The number of the latest button labelled `label` (`[3] Acknowledge R-…`).
    fn button(&self, label: &str) -> String {
        let printed = self.printed();
        let needle = format!("] {label} ");
        let at = printed.rfind(&needle).expect("the button is shown");
        let open = printed[..at].rfind('[').unwrap();
        printed[open + 1..at].to_string()
    }

    async fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Wait until the output holds `text` after byte `from`; the position after it.
    async fn expect_after(&self, from: usize, text: &str) -> usize {
        eventually_within(
            Duration::from_secs(30),
            &format!("{text:?} on the console"),
            || async {
                let output = self.output.lock().unwrap();
                output[from..].find(text).map(|at| from + at + text.len())
            },
        )
        .await
    }

    fn printed(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_newcomer_sees_request_approval_grant_warning_and_revoke() {
    let iam = accepting_iam().await;
    let (mut console, _dir) = Console::start(&iam).await;

    let at = console.expect_after(0, "you are console:U0ALICE").await;
    console
        .type_line("/jit request quick 12s trying the console")
        .await;
    let at = console.expect_after(at, "── #C0APPROVALS ──").await;
    let at = console.expect_after(at, "[1] Approve R-").await;
    console.type_line("/as U0LEAD").await;
    console.type_line("1").await;
    let at = console
        .expect_after(at, "(U0LEAD pressed Approve on R-")
        .await;
    let at = console.expect_after(at, "── DM to U0ALICE ──").await;
    let at = console
        .expect_after(at, "Access to quick is live until")
        .await;
    // Two seconds before the end: the warning DM, with an Extend button.
    let at = console.expect_after(at, "] Extend G-").await;
    let at = console
        .expect_after(at, "has expired and was revoked")
        .await;
    let actions: Vec<String> = iam
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(actions, ["grant", "revoke"]);

    // A second request, denied with a reason typed at the prompt.
    console.type_line("/as U0ALICE").await;
    console.type_line("/jit request quick 1m again").await;
    let at = console.expect_after(at, "[4] Approve R-").await;
    console.type_line("/as U0LEAD").await;
    console.type_line("5").await;
    let at = console.expect_after(at, "Why deny R-").await;
    console.type_line("not during the freeze").await;
    console.expect_after(at, "not during the freeze").await;

    console.type_line("/quit").await;
    let status = tokio::time::timeout(Duration::from_secs(15), console.child.wait())
        .await
        .expect("the console stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", console.printed());
}

#[tokio::test]
async fn break_glass_shows_its_notice_and_review_buttons_on_the_console() {
    let iam = accepting_iam().await;
    let (mut console, _dir) = Console::start(&iam).await;
    let typed_at = console.expect_after(0, "you are console:U0ALICE").await;
    console
        .type_line("/jit breakglass quick 30s INC-1 console outage")
        .await;
    // The answer, the notice and the review card come by different paths
    // (the command's reply, the outbox): in any order.
    console
        .expect_after(typed_at, "break-glass: access to quick")
        .await;
    console.expect_after(typed_at, "🚨 break-glass").await;
    let at = console.expect_after(typed_at, "] Revoke now R-").await;
    let acknowledge = console.button("Acknowledge");
    console.type_line("/as U0LEAD").await;
    console.type_line(&acknowledge).await;
    let at = console
        .expect_after(at, "(U0LEAD pressed Acknowledge on R-")
        .await;
    console
        .expect_after(at, "You acknowledged the break-glass use")
        .await;
}

#[tokio::test]
async fn several_groups_show_on_one_console_card_and_one_approval_grants_all() {
    let iam = accepting_iam().await;
    let (mut console, _dir) = Console::start(&iam).await;
    let at = console.expect_after(0, "you are console:U0ALICE").await;
    console
        .type_line("/jit request quick,logs 10m INC-2 both at once")
        .await;
    let at = console
        .expect_after(at, "Access request for quick, logs")
        .await;
    let at = console.expect_after(at, "] Deny R-").await;
    let approve = console.button("Approve");
    console.type_line("/as U0LEAD").await;
    console.type_line(&approve).await;
    let at = console
        .expect_after(at, "(U0LEAD pressed Approve on R-")
        .await;
    let at = console.expect_after(at, "quick: Approved by").await;
    console.expect_after(at, "logs: Approved by").await;
    let grants = eventually_within(Duration::from_secs(30), "both grants", || async {
        let grants = iam
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter(|body| body["action"] == "grant")
            .map(|body| body["target"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>();
        (grants.len() == 2).then_some(grants)
    })
    .await;
    assert!(grants.contains(&"quick_rw".into()) && grants.contains(&"logs_ro".into()));
}

#[tokio::test]
async fn the_console_shows_a_home_and_approves_from_it() {
    let iam = accepting_iam().await;
    let (mut console, _dir) = Console::start(&iam).await;
    let at = console.expect_after(0, "you are console:U0ALICE").await;
    console
        .type_line("/jit request logs 10m INC-3 from home")
        .await;
    let at = console.expect_after(at, "is filed").await;
    console.type_line("/home").await;
    let at = console.expect_after(at, "── the home of U0ALICE ──").await;
    let at = console
        .expect_after(at, "Your requests waiting for approval")
        .await;
    let at = console.expect_after(at, "(Cancel: /jit cancel R-").await;
    console.type_line("/as U0LEAD").await;
    console.type_line("/home").await;
    let at = console.expect_after(at, "── the home of U0LEAD ──").await;
    let at = console.expect_after(at, "Waiting for your approval").await;
    let at = console.expect_after(at, "] Deny R-").await;
    let approve = console.button("Approve");
    console.type_line(&approve).await;
    let at = console
        .expect_after(at, "(U0LEAD pressed Approve on R-")
        .await;
    console.expect_after(at, "Access is active until").await;
}

#[tokio::test]
async fn the_console_leaves_the_configured_store_alone_unless_asked_and_acts_as_console() {
    use jitbot::domain::audit::AuditAction;
    use jitbot::domain::ids::Platform;
    use jitbot::store::AuditStore;

    let iam = accepting_iam().await;
    let dir = tempfile::tempdir().unwrap();
    let configured = dir.path().join("data");

    // By default: a scratch store; the configured one is never created.
    let mut console = Console::start_in(&iam, &dir, &[]).await;
    let at = console.expect_after(0, "you are console:U0ALICE").await;
    console.type_line("/jit request logs 1h reading").await;
    console.expect_after(at, "[1] Approve R-").await;
    assert_eq!(console.quit().await, Some(0));
    assert!(!configured.exists(), "the configured store was opened");

    // Asked to: the configured store, and what is done there is done by
    // console users, not by the Slack users of the same ids.
    let mut console = Console::start_in(&iam, &dir, &["--use-configured-store"]).await;
    let at = console.expect_after(0, "you are console:U0ALICE").await;
    console.type_line("/jit request logs 1h reading").await;
    let at = console.expect_after(at, "[1] Approve R-").await;
    console.type_line("/as U0LEAD").await;
    console.type_line("1").await;
    console
        .expect_after(at, "(U0LEAD pressed Approve on R-")
        .await;
    console
        .expect_after(at, "Access to logs is live until")
        .await;
    assert_eq!(console.quit().await, Some(0));

    let store = jitbot::store::SledStore::open(&configured).unwrap();
    let events = store.audit_events(0, 1000).await.unwrap();
    let approval = events
        .iter()
        .find(|event| event.action == AuditAction::Approved)
        .expect("the approval is in the configured store's audit");
    let by = approval.actor.as_ref().expect("someone approved");
    assert_eq!(
        (by.platform, by.user.as_str()),
        (Platform::Console, "U0LEAD")
    );
    assert!(events.iter().all(|event| event
        .actor
        .as_ref()
        .is_none_or(|actor| actor.platform != Platform::Slack)));
}
