//! `jitbot check-config` and the server's refusal to start on a bad policy.

use std::io::Write;
use std::process::Command;

const BAD_POLICY: &str = r#"admins = ["U0ADMIN"]
colour = "blue"

[providers.hook]
kind = "webhook"
url = "https://iam.example/jit"
secret_env = "HOOK_SECRET"

[[groups]]
name = "prod-db"
provider = "missing"
target = "prod_rw"
approvers = ["U0LEAD"]
approvals_required = 2
channel = "C0APPROVALS"
min_duration = "2h"
max_duration = "1h"
"#;

fn write_policy(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn jitbot() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jitbot"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn check_config_reports_every_problem_with_line_and_column() {
    let file = write_policy(BAD_POLICY);
    let output = jitbot()
        .arg("check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = file.path().display();
    let expected = [
        format!("{path}:2:1: unknown key `colour` in the policy"),
        format!("{path}:11:12: group `prod-db` uses unknown provider `missing` (declared: hook)"),
        format!("{path}:14:22: group `prod-db`: approvals_required is 2 but only 1 approver(s) are listed"),
        format!("{path}:17:16: group `prod-db`: max_duration (1h) is below min_duration (2h)"),
    ];
    for line in &expected {
        assert!(
            stderr.contains(line.as_str()),
            "missing {line:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problem(s) found"), "{stderr}");
}

#[test]
fn check_config_accepts_the_example_policy() {
    let output = jitbot()
        .arg("check-config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml"))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK (2 group(s), 2 provider(s))"));
}

#[test]
fn the_server_refuses_to_start_on_an_invalid_policy() {
    let file = write_policy(BAD_POLICY);
    let data = tempfile::tempdir().unwrap();
    let output = jitbot()
        .arg("serve")
        .env("JITBOT_CONFIG", file.path())
        .env("JITBOT_DATA_DIR", data.path())
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":11:12: group `prod-db` uses unknown provider `missing`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refusing to start with an invalid policy"),
        "{stderr}"
    );
}

#[test]
fn the_server_refuses_to_start_without_a_provider_secret() {
    let data = tempfile::tempdir().unwrap();
    let output = jitbot()
        .arg("serve")
        .env(
            "JITBOT_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml"),
        )
        .env("JITBOT_DATA_DIR", data.path())
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "provider iam: environment variable JITBOT_WEBHOOK_SECRET (its secret_env) is not set"
        ),
        "{stderr}"
    );
}
