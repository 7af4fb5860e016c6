//! The `postgres` provider against the real PostgreSQL server: role grants
//! through the whole approval loop, revocation at expiry (cutting open
//! sessions when asked), hostile principals, holders, and the sweep that
//! removes a role granted by hand. Every test here is named `postgres_…`
//! so CI can count them (they must run, not skip).

use std::time::Duration;

use jitbot::providers::postgres::PostgresProvider;
use jitbot::providers::{Access, Provider};

use crate::helpers::{eventually, TestApp};
use crate::pg::{self, PgFixture};

/// A policy with one group, `pgdb`, granting this test's `<prefix>rw`.
fn policy(pg: &PgFixture, terminate_sessions: bool, sweep: &str) -> String {
    format!(
        r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.pg]
kind = "postgres"
url_env = "TEST_PG_URL"
principal = "{prefix}{{email_local}}"
terminate_sessions = {terminate_sessions}
timeout = "5s"

[[groups]]
name = "pgdb"
provider = "pg"
target = "{prefix}rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "{sweep}"
sweep_interval = "1s"
standing = ["{prefix}svc"]

[identities]
U0BOB = {{ pg = "{prefix}bob" }}
"#,
        prefix = pg.name("")
    )
}

fn provider(terminate_sessions: bool) -> PostgresProvider {
    PostgresProvider::new("pg", &pg::url(), terminate_sessions, Duration::from_secs(5)).unwrap()
}

fn access(principal: &str, target: &str) -> Access {
    Access {
        principal: principal.to_string(),
        group: "pgdb".into(),
        target: target.to_string(),
        ..Access::default()
    }
}

/// A fixture with this test's target role `rw` and alice's login.
async fn target_and_alice() -> (PgFixture, String, String) {
    let pg = PgFixture::new().await;
    let (rw, alice) = (pg.name("rw"), pg.name("u0alice"));
    pg.create_role(&rw, false).await;
    pg.create_role(&alice, true).await;
    (pg, rw, alice)
}

async fn until_members(pg: &PgFixture, role: &str, wanted: &[&str]) {
    let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    eventually(&format!("members of {role} to be {wanted:?}"), || async {
        (pg.members(role).await == wanted).then_some(())
    })
    .await;
}

#[tokio::test]
async fn postgres_role_is_granted_on_approval_and_revoked_at_expiry() {
    let (pg, rw, alice) = target_and_alice().await;
    let app = TestApp::spawn_with(&policy(&pg, false, "off")).await;

    let id = app
        .request("U0ALICE", "request pgdb 5m checking replication lag")
        .await;
    assert!(pg.members(&rw).await.is_empty(), "nothing before approval");
    app.approve("U0LEAD", &id).await;
    // The principal comes from the template: the email's local part (from
    // users.info) behind this test's prefix.
    until_members(&pg, &rw, &[&alice]).await;
    app.until_active(&id).await;
    app.advance_past_end(&id).await;
    until_members(&pg, &rw, &[]).await;
    app.wait_for_dm("U0ALICE", "the expiry DM", "expired").await;
    let granted = app.audit_details("Granted").await;
    assert!(
        granted
            .iter()
            .any(|d| d.contains(&format!("granted to principal {alice} until"))),
        "{granted:?}"
    );
}

#[tokio::test]
async fn postgres_open_sessions_are_cut_at_expiry_when_asked() {
    let (pg, rw, alice) = target_and_alice().await;
    let app = TestApp::spawn_with(&policy(&pg, true, "off")).await;

    let id = app.request("U0ALICE", "request pgdb 5m hotfix").await;
    app.approve("U0LEAD", &id).await;
    until_members(&pg, &rw, &[&alice]).await;
    app.until_active(&id).await;

    // Alice opens a session and uses the role, as she would with psql.
    let session = pg::connect(&pg::url_as(&alice)).await.unwrap();
    session
        .batch_execute(&format!("SET ROLE \"{rw}\""))
        .await
        .expect("the granted role can be used");

    app.advance_past_end(&id).await;
    until_members(&pg, &rw, &[]).await;
    eventually("the open session to be ended", || async {
        session
            .simple_query("SELECT 1")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // A new session can no longer take the role.
    let again = pg::connect(&pg::url_as(&alice)).await.unwrap();
    let refused = again
        .batch_execute(&format!("SET ROLE \"{rw}\""))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied")
            || format!("{refused:?}").contains("permission denied"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn postgres_hostile_principals_grant_nothing_and_harm_nothing() {
    let pg = PgFixture::new().await;
    let (rw, victim) = (pg.name("rw"), pg.name("victim"));
    pg.create_role(&rw, false).await;
    pg.create_role(&victim, false).await;
    let hostile = format!("{}a\"; DROP ROLE \"{victim}\"; --", pg.name(""));
    let provider = provider(false);

    // No such login: refused with a clear message, nothing changed.
    let error = provider.grant(&access(&hostile, &rw)).await.unwrap_err();
    assert_eq!(error.provider, "pg");
    assert!(
        error.message.contains("there is no login"),
        "{}",
        error.message
    );
    assert!(pg.role_exists(&victim).await, "the injected DROP never ran");
    assert!(pg.members(&rw).await.is_empty());

    // A role with exactly that name gets exactly that grant, still harmless.
    pg.create_role(&hostile, true).await;
    provider.grant(&access(&hostile, &rw)).await.unwrap();
    assert_eq!(pg.members(&rw).await, vec![hostile.clone()]);
    assert!(pg.role_exists(&victim).await);
    provider.revoke(&access(&hostile, &rw)).await.unwrap();
    assert!(pg.members(&rw).await.is_empty());

    // A name PostgreSQL would truncate to another role's name is refused.
    let long = format!("{}{}", pg.name(""), "x".repeat(64));
    let error = provider.grant(&access(&long, &rw)).await.unwrap_err();
    assert!(error.message.contains("63-byte limit"), "{}", error.message);
}

#[tokio::test]
async fn postgres_holders_and_revoke_cover_grants_made_by_hand() {
    let pg = PgFixture::new().await;
    let (rw, bob, svc) = (pg.name("rw"), pg.name("bob"), pg.name("svc"));
    pg.create_role(&rw, false).await;
    pg.create_role(&bob, true).await;
    pg.create_role(&svc, true).await;
    pg.grant_by_hand(&rw, &bob).await;
    pg.grant_by_hand(&rw, &svc).await;
    let provider = provider(false);

    assert_eq!(
        provider.holders(&rw).await.unwrap(),
        vec![bob.clone(), svc.clone()]
    );
    // Revoking is idempotent: a second revoke of the same access succeeds.
    provider.revoke(&access(&bob, &rw)).await.unwrap();
    provider.revoke(&access(&bob, &rw)).await.unwrap();
    assert_eq!(provider.holders(&rw).await.unwrap(), vec![svc.clone()]);

    let error = provider.holders(&pg.name("missing")).await.unwrap_err();
    assert!(
        error.message.contains("there is no role"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn postgres_connection_errors_name_the_server_but_never_the_password() {
    // Nothing listens on port 1.
    let provider = PostgresProvider::new(
        "pg",
        "postgres://jitbot:s3cret-pw-value@127.0.0.1:1/app",
        false,
        Duration::from_secs(2),
    )
    .unwrap();
    let error = provider
        .grant(&access("alice", "prod_rw"))
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .contains("could not connect to PostgreSQL at 127.0.0.1:1"),
        "{}",
        error.message
    );
    assert!(!error.to_string().contains("s3cret-pw-value"), "{error}");
}

#[tokio::test]
async fn postgres_a_user_without_a_login_is_told_why_nothing_was_granted() {
    let pg = PgFixture::new().await;
    let rw = pg.name("rw");
    pg.create_role(&rw, false).await;
    let app = TestApp::spawn_with(&policy(&pg, false, "off")).await;

    let id = app.request("U0CAROL", "request pgdb 1m reading logs").await;
    app.approve("U0LEAD", &id).await;
    let dm = app
        .wait_for_dm("U0CAROL", "the failure DM", "there is no login")
        .await;
    assert!(dm.contains(&pg.name("u0carol")), "{dm}");
    assert!(dm.contains("provider pg"), "{dm}");
    assert!(pg.members(&rw).await.is_empty());
}

#[tokio::test]
async fn postgres_sweep_removes_a_role_granted_by_hand_and_keeps_grants_and_allowed() {
    let pg = PgFixture::new().await;
    let (rw, alice, bob, svc) = (
        pg.name("rw"),
        pg.name("u0alice"),
        pg.name("bob"),
        pg.name("svc"),
    );
    pg.create_role(&rw, false).await;
    for login in [&alice, &bob, &svc] {
        pg.create_role(login, true).await;
    }
    pg.grant_by_hand(&rw, &svc).await;
    let app = TestApp::spawn_with(&policy(&pg, false, "enforce")).await;

    let id = app.request("U0ALICE", "request pgdb 1m on call").await;
    app.approve("U0LEAD", &id).await;
    until_members(&pg, &rw, &[&svc, &alice]).await;

    // A DBA grants the role by hand, outside jitbot.
    pg.grant_by_hand(&rw, &bob).await;
    // The next sweep (every second) removes it and nothing else.
    eventually("the standing access to be removed", || async {
        let members = pg.members(&rw).await;
        (!members.contains(&bob)).then_some(())
    })
    .await;
    let mut kept = vec![alice.clone(), svc.clone()];
    kept.sort();
    assert_eq!(pg.members(&rw).await, kept);

    let notice = app
        .wait_for_notice("C0APPROVALS", "the channel notice", "Removed:")
        .await;
    assert!(notice.contains(&format!("`{bob}`")), "{notice}");
    assert!(!notice.contains(&alice), "{notice}");
    app.wait_for_dm("U0BOB", "the DM to the holder", "standing access to `pgdb`")
        .await;
    let revoked = app.audit_details("StandingRevoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].contains(&bob), "{revoked:?}");
    assert!(!app.audit_details("SweepRan").await.is_empty());
}

#[tokio::test]
async fn postgres_cli_sweep_dry_run_changes_nothing_then_enforces() {
    let pg = PgFixture::new().await;
    let (rw, bob, svc) = (pg.name("rw"), pg.name("bob"), pg.name("svc"));
    pg.create_role(&rw, false).await;
    pg.create_role(&bob, true).await;
    pg.create_role(&svc, true).await;
    pg.grant_by_hand(&rw, &bob).await;
    pg.grant_by_hand(&rw, &svc).await;
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy(&pg, false, "enforce")).unwrap();
    let sweep = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jitbot"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JITBOT_CONFIG", &policy_path)
            .env("JITBOT_DATA_DIR", dir.path().join("data"))
            .env("TEST_PG_URL", pg::url())
            .arg("sweep")
            .args(extra)
            .output()
            .unwrap()
    };

    let dry = sweep(&["--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        out.contains("pgdb (")
            && out.contains("dry run): 2 holder(s), 1 allowed standing, 1 without a grant"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{bob} (slack:U0BOB): would be revoked")),
        "{out}"
    );
    let mut both = vec![bob.clone(), svc.clone()];
    both.sort();
    assert_eq!(pg.members(&rw).await, both, "a dry run changes nothing");

    let real = sweep(&[]);
    let out = String::from_utf8_lossy(&real.stdout);
    assert_eq!(
        real.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert!(
        out.contains(&format!("{bob} (slack:U0BOB): revoked")),
        "{out}"
    );
    assert_eq!(pg.members(&rw).await, vec![svc.clone()]);

    let unknown = sweep(&["--group", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("there is no group nope"));
}

#[tokio::test]
async fn postgres_a_server_that_hangs_is_cut_off_at_the_timeout() {
    // A "server" that accepts connections and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let url = format!("postgres://jitbot:secret@{addr}/app?sslmode=disable");
    let provider = PostgresProvider::new("pg", &url, false, Duration::from_secs(1)).unwrap();
    let started = std::time::Instant::now();
    for outcome in [
        provider.grant(&access("alice", "prod_rw")).await,
        provider.revoke(&access("alice", "prod_rw")).await,
    ] {
        let error = outcome.unwrap_err();
        assert!(
            error.message.contains("did not answer") || error.message.contains("timed out"),
            "{error}"
        );
        assert!(!error.message.contains("secret"), "{error}");
    }
    let holders = provider.holders("prod_rw").await.unwrap_err();
    assert!(holders.message.contains(&addr.to_string()), "{holders}");
    // Each call gave up at its deadline instead of waiting on the silence.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the calls did reach the server"
    );
}
