//! A real SMTP server on loopback for the email tests: Python's aiosmtpd
//! (`tests/support/smtp_sink.py`; `ensure_email_tools` installs it where it is missing),
//! writing each message it accepts as JSON — envelope, headers, the decoded
//! text and HTML parts — for the test to read.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::eventually_within;

/// How long a test waits for mail: retries back off for real.
pub(crate) const MAIL_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    directory: tempfile::TempDir,
    _server: tokio::process::Child,
}

/// Install what the email tests need — `aiosmtpd` for the sink, Chromium
/// and chromedriver for the browser — if this machine lacks them, once per
/// test run, with the same script CI uses: `cargo test` passes on a fresh
/// machine with nothing installed by hand. A lock keeps two test binaries
/// from installing at once.
pub(crate) fn ensure_email_tools() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/ensure-email-tools");
        let lock = std::env::temp_dir().join("jitbot-email-tools.lock");
        let output = std::process::Command::new("flock")
            .arg(&lock)
            .arg("bash")
            .arg(script)
            .output()
            .expect("flock (util-linux) runs the email tools' installer");
        assert!(
            output.status.success(),
            "{script} could not install the email tests' tools:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

impl SmtpSink {
    /// A sink that accepts everything.
    pub(crate) async fn start() -> SmtpSink {
        Self::start_with(&[]).await
    }

    /// A sink started with `smtp_sink.py`'s options (`--fail-first 1`,
    /// `--refuse-prefix nobody`).
    pub(crate) async fn start_with(options: &[&str]) -> SmtpSink {
        ensure_email_tools();
        let directory = tempfile::tempdir().unwrap();
        let script: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "support",
            "smtp_sink.py",
        ]
        .iter()
        .collect();
        let mut server = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(directory.path())
            .args(options)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the SMTP sink (ensure_email_tools installs aiosmtpd)");
        let stdout = server.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the SMTP sink starts within a minute")
            .unwrap()
            .expect("the SMTP sink says where it listens (is aiosmtpd installed?)");
        let port = first
            .strip_prefix("listening on ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the sink: {first}"));
        SmtpSink {
            port,
            directory,
            _server: server,
        }
    }

    /// Every message accepted so far, in order.
    pub(crate) fn delivered(&self) -> Vec<Value> {
        let mut messages = Vec::new();
        for n in 1.. {
            let path = self.directory.path().join(format!("{n}.json"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                break;
            };
            messages.push(serde_json::from_str(&text).expect("the sink writes JSON"));
        }
        messages
    }

    /// Messages accepted for `address`.
    pub(crate) fn delivered_to(&self, address: &str) -> Vec<Value> {
        self.delivered()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .is_some_and(|to| to.iter().any(|t| t == address))
            })
            .collect()
    }

    /// Wait for a message to `address` whose text contains `needle`.
    pub(crate) async fn wait_for(&self, address: &str, needle: &str) -> Value {
        eventually_within(
            MAIL_PATIENCE,
            &format!("an email to {address} saying {needle:?}"),
            || async {
                self.delivered_to(address)
                    .into_iter()
                    .find(|m| m["text"].as_str().is_some_and(|t| t.contains(needle)))
            },
        )
        .await
    }

    /// What the sink did with each attempt: `accepted …`, `deferred …`,
    /// `refused …`.
    pub(crate) fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.directory.path().join("attempts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The approval link in an approval email's text.
pub(crate) fn approval_link(message: &Value) -> String {
    let text = message["text"].as_str().expect("the email has a text part");
    text.split_whitespace()
        .find(|word| word.contains("/approve/"))
        .unwrap_or_else(|| panic!("no approval link in {text}"))
        .to_string()
}
