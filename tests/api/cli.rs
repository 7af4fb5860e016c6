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

/// `"*"` among the admins and where escalations go: anyone could then run
/// the admin commands, or approve an escalated request.
const ANYONE_DECIDES: &str = r#"admins = ["U0ADMIN", "*"]

[providers.hook]
kind = "webhook"
url = "https://iam.example/jit"
secret_env = "HOOK_SECRET"

[[groups]]
name = "prod-db"
provider = "hook"
target = "prod_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
escalate_after = "15m"
escalate_to = ["U0HEAD", "*"]
"#;

#[test]
fn check_config_and_the_server_refuse_anyone_as_admin_or_escalation_approver() {
    let file = write_policy(ANYONE_DECIDES);
    let path = file.path().display();
    let expected = [
        format!("{path}:1:10: the policy: \"*\" is not allowed in `admins`; name the admins (chat user ids or Slack user groups)"),
        format!("{path}:15:15: group `prod-db`: \"*\" is not allowed in `escalate_to`; name the people or user groups who decide escalated requests"),
    ];
    let output = jitbot()
        .arg("check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in &expected {
        assert!(
            stderr.contains(line.as_str()),
            "missing {line:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("2 problem(s) found"), "{stderr}");

    let data = tempfile::tempdir().unwrap();
    let output = jitbot()
        .arg("serve")
        .env("JITBOT_CONFIG", file.path())
        .env("JITBOT_DATA_DIR", data.path())
        .env("HOOK_SECRET", "a-webhook-secret")
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in &expected {
        assert!(
            stderr.contains(line.as_str()),
            "missing {line:?} in:\n{stderr}"
        );
    }
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

#[test]
fn the_server_refuses_to_start_without_its_database_and_never_names_the_password() {
    let data = tempfile::tempdir().unwrap();
    let unused = data.path().join("never-created");
    let started = std::time::Instant::now();
    let output = jitbot()
        .arg("serve")
        .env(
            "JITBOT_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml"),
        )
        .env("JITBOT_WEBHOOK_SECRET", "a-webhook-secret-for-the-example")
        .env("JITBOT_DATA_DIR", &unused)
        // Nothing listens on port 1.
        .env(
            "JITBOT_DATABASE_URL",
            "postgres://jitbot:Sup3r-s3cret@127.0.0.1:1/jitbot?sslmode=disable",
        )
        .env("JITBOT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("Sup3r-s3cret"), "{stderr}");
    assert!(
        !unused.exists(),
        "JITBOT_DATA_DIR is not used with a database"
    );
}

mod over_the_api {
    //! The operator commands that talk to the running server's API.

    use crate::helpers::{eventually, TestApp, ADMIN_TOKEN, USER_TOKEN};

    async fn jitbot(app: &TestApp, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitbot"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JITBOT_API_URL", format!("http://{}", app.addr))
            .args(args);
        if let Some(token) = token {
            command.env("JITBOT_API_TOKEN", token);
        }
        let output = command.output().await.unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[tokio::test]
    async fn operators_list_revoke_map_and_export_from_the_command_line() {
        let app = TestApp::spawn().await;
        let id = app
            .request("U0ALICE", "request prod-db 1h nightly fix")
            .await;
        app.approve("U0LEAD", &id).await;
        app.until_active(&id).await;
        let grant = format!("G-{}", &id[2..]);

        let (code, table, _) = jitbot(&app, Some(ADMIN_TOKEN), &["grants"]).await;
        assert_eq!(code, 0);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("GRANT     GROUP    USER     EXPIRES"),
            "{table}"
        );
        assert!(
            lines[1].starts_with(&format!("{grant}  prod-db  U0ALICE  ")),
            "{table}"
        );
        assert!(lines[1].ends_with("nightly fix"), "{table}");
        let (code, json, _) = jitbot(&app, Some(ADMIN_TOKEN), &["grants", "--json"]).await;
        assert_eq!(code, 0);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["grant_id"], grant.as_str());

        let (code, _, stderr) =
            jitbot(&app, Some(USER_TOKEN), &["revoke", &grant, "offboarding"]).await;
        assert_eq!(code, 1);
        assert_eq!(
            stderr.trim(),
            "jitbot: this needs an admin token (HTTP 403)"
        );
        let (code, out, _) = jitbot(
            &app,
            Some(ADMIN_TOKEN),
            &["revoke", &grant, "offboarding", "today"],
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out,
            format!("revoking {grant} (prod-db for U0ALICE); the holder is told why\n")
        );
        eventually("the revoke", || async {
            (app.iam_actions("revoke", &id).await == 1).then_some(())
        })
        .await;

        let (code, out, _) = jitbot(
            &app,
            Some(ADMIN_TOKEN),
            &["mappings", "add", "prod-db", "C0DBA"],
        )
        .await;
        assert_eq!(
            (code, out.as_str()),
            (0, "prod-db: approval cards go to slack channel C0DBA\n")
        );
        let (code, table, _) = jitbot(&app, Some(ADMIN_TOKEN), &["mappings"]).await;
        assert_eq!(code, 0);
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()[..5]
                    == ["prod-db", "slack", "C0DBA", "runtime", "U0ADMIN"]),
            "{table}"
        );
        let (code, _, stderr) = jitbot(
            &app,
            Some(ADMIN_TOKEN),
            &["mappings", "remove", "prod-db", "C0NOPE"],
        )
        .await;
        assert_eq!(code, 1);
        assert!(
            stderr.contains("is not mapped to `prod-db`. (HTTP 404)"),
            "{stderr}"
        );

        let (code, export, _) = jitbot(
            &app,
            Some(ADMIN_TOKEN),
            &["audit", "export", "--since", "1h"],
        )
        .await;
        assert_eq!(code, 0);
        let actions: Vec<String> = export
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(&actions[..3], ["requested", "approved", "granted"]);
        assert!(
            actions.contains(&"mapping_added".to_string()),
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn unused_lists_watched_access_and_its_last_use() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, ResponseTemplate};
        let app = TestApp::spawn_with(
            r#"
admins = ["U0ADMIN"]

[providers.hook]
kind = "webhook"
url = "{IAM}/jit"
activity_url = "{IAM}/activity"
secret_env = "TEST_HOOK_SECRET"

[[groups]]
name = "watched"
provider = "hook"
target = "reader"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
activity_interval = "1m"
idle_release = "30m"
"#,
        )
        .await;
        Mock::given(method("GET"))
            .and(path("/activity"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({ "in_use": true, "last_used": null })),
            )
            .mount(&app.iam)
            .await;
        let id = app.request("U0ALICE", "request watched 1h reading").await;
        app.approve("U0LEAD", &id).await;
        app.until_active(&id).await;
        let grant = format!("G-{}", &id[2..]);
        let (code, table, _) = jitbot(&app, Some(ADMIN_TOKEN), &["unused"]).await;
        assert_eq!(code, 0);
        assert!(table.contains("never seen"), "{table}");

        app.advance(std::time::Duration::from_secs(120));
        let table = eventually("a use to be listed", || async {
            let (_, table, _) = jitbot(&app, Some(ADMIN_TOKEN), &["unused", "watched"]).await;
            (!table.contains("never seen")).then_some(table)
        })
        .await;
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("GROUP    PRINCIPAL  GRANT     LAST USED"),
            "{table}"
        );
        assert!(
            lines[1].starts_with(&format!("watched  U0ALICE    {grant}  20")),
            "{table}"
        );
        let (code, json, _) = jitbot(&app, Some(ADMIN_TOKEN), &["unused", "--json"]).await;
        assert_eq!(code, 0);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["grant_id"], grant.as_str());
        assert!(parsed[0]["last_used"].is_string(), "{parsed}");

        let (code, _, stderr) = jitbot(&app, Some(ADMIN_TOKEN), &["unused", "nosuch"]).await;
        assert_eq!(code, 1);
        assert!(stderr.contains("no group `nosuch`"), "{stderr}");
        let (code, _, stderr) = jitbot(&app, Some(USER_TOKEN), &["unused"]).await;
        assert_eq!(code, 1);
        assert!(stderr.contains("HTTP 403"), "{stderr}");
    }

    #[tokio::test]
    async fn without_a_token_or_a_server_the_cli_says_what_is_missing() {
        let app = TestApp::spawn().await;
        let (code, _, stderr) = jitbot(&app, None, &["grants"]).await;
        assert_eq!(code, 2);
        assert!(stderr.contains("JITBOT_API_TOKEN is not set"), "{stderr}");
        let (code, _, stderr) =
            jitbot(&app, Some("wrong-token-wrong-token-wrong"), &["grants"]).await;
        assert_eq!(code, 1);
        assert!(
            stderr.contains("a valid bearer token is required (HTTP 401)"),
            "{stderr}"
        );
        let mut gone = app;
        gone.stop().await;
        let (code, _, stderr) = jitbot(&gone, Some(ADMIN_TOKEN), &["grants"]).await;
        assert_eq!(code, 2);
        assert!(
            stderr.contains("cannot reach the jitbot server"),
            "{stderr}"
        );
    }
}

#[test]
fn check_config_wants_email_set_up_for_email_approvers() {
    let file = write_policy(
        r#"[providers.hook]
kind = "webhook"
url = "https://iam.example/jit"
secret_env = "HOOK_SECRET"

[[groups]]
name = "records"
provider = "hook"
target = "records_ro"
approvers = ["owner@example.com"]
"#,
    );
    let path = file.path().display().to_string();
    let bare = jitbot()
        .arg("check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains(&format!(
            "{path}:10:14: `owner@example.com` in `approvers` of group `records` is an email approver, but JITBOT_SMTP_URL is not set"
        )),
        "{stderr}"
    );
    let half = jitbot()
        .arg("check-config")
        .arg(file.path())
        .env("JITBOT_SMTP_URL", "smtp://127.0.0.1:25")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(
        stderr.contains("but JITBOT_PUBLIC_URL is not set"),
        "{stderr}"
    );
    // Set up: a group decided only by email, without a channel, is valid.
    let ready = jitbot()
        .arg("check-config")
        .arg(file.path())
        .env("JITBOT_SMTP_URL", "smtp://127.0.0.1:25")
        .env("JITBOT_PUBLIC_URL", "https://jit.example.com")
        .env("JITBOT_EMAIL_TOKEN_KEY", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(
        ready.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
}

#[test]
fn a_short_metrics_token_is_refused_at_start() {
    let output = jitbot()
        .arg("serve")
        .env("JITBOT_METRICS_TOKEN", "short")
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("JITBOT_METRICS_TOKEN must be at least 24 characters"),
        "{stderr}"
    );
}
