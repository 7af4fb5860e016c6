//! The `mysql` provider against the real MariaDB server on this machine:
//! role grants through the whole approval loop with the default role set
//! and open connections cut at expiry, hostile principals, holders that
//! leave out jitbot's own login, and the sweep that removes a role granted
//! by hand. Every test here is named `mysql_…` so CI can count them (they
//! must run, not skip).

use std::time::Duration;

use jitbot::providers::mysql::MysqlProvider;
use jitbot::providers::{Access, Provider};
use mysql_async::prelude::Queryable;

use crate::helpers::TestApp;
use crate::mariadb::{self, MariaFixture};

fn policy(db: &MariaFixture, sweep: &str) -> String {
    format!(
        r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.db]
kind = "mysql"
url_env = "TEST_MYSQL_URL"
principal = "{prefix}{{email_local}}"
default_role = true
kill_sessions = true
timeout = "5s"

[[groups]]
name = "orders-db"
provider = "db"
target = "{prefix}rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "{sweep}"
sweep_interval = "1s"
standing = ["{prefix}svc"]
"#,
        prefix = db.name("")
    )
}

fn provider(default_role: bool, kill_sessions: bool) -> MysqlProvider {
    MysqlProvider::new(
        "db",
        &mariadb::url(),
        default_role,
        kill_sessions,
        Duration::from_secs(5),
    )
    .unwrap()
}

fn access(principal: &str, target: &str) -> Access {
    Access {
        principal: principal.to_string(),
        group: "orders-db".into(),
        target: target.to_string(),
        ..Access::default()
    }
}

async fn until_members(db: &mut MariaFixture, role: &str, wanted: &[&str]) {
    let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = db.members(role).await;
        if now == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members of {role}: {now:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mysql_role_is_granted_as_default_on_approval_and_revoked_with_sessions_cut_at_expiry() {
    let mut db = MariaFixture::new().await;
    let (rw, alice) = (db.name("rw"), db.name("u0alice"));
    db.create_role(&rw).await;
    db.create_user(&alice, "%").await;
    let app = TestApp::spawn_with(&policy(&db, "off")).await;

    let id = app.request("U0ALICE", "request orders-db 5m INC-77").await;
    assert!(db.members(&rw).await.is_empty(), "nothing before approval");
    app.approve("U0LEAD", &id).await;
    until_members(&mut db, &rw, &[&format!("{alice}@%")]).await;
    app.until_active(&id).await;
    assert_eq!(
        db.default_role(&alice, "%").await,
        rw,
        "default_role = true"
    );

    // Alice connects and uses the role; expiry ends the session too.
    let (host, port) = ("127.0.0.1", 3306);
    let mut session = mariadb::connect(&format!("mysql://{alice}:pw-{alice}@{host}:{port}"))
        .await
        .unwrap();
    let current: Option<String> = session.query_first("SELECT CURRENT_ROLE()").await.unwrap();
    assert_eq!(
        current.as_deref(),
        Some(rw.as_str()),
        "the default role is active"
    );

    app.advance_past_end(&id).await;
    until_members(&mut db, &rw, &[]).await;
    assert_eq!(
        db.default_role(&alice, "%").await,
        "",
        "the default role is cleared"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while session.ping().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's session was not ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for_dm("U0ALICE", "the expiry DM", "expired").await;
}

#[tokio::test]
async fn mysql_grants_and_revokes_are_idempotent_and_holders_leave_out_jitbot() {
    let mut db = MariaFixture::new().await;
    let (rw, alice, bob) = (db.name("rw"), db.name("alice"), db.name("bob"));
    db.create_role(&rw).await;
    db.create_user(&alice, "%").await;
    db.create_user(&bob, "10.0.0.%").await;
    let provider = provider(false, false);
    let bob_principal = format!("{bob}@10.0.0.%");
    for _ in 0..2 {
        provider.grant(&access(&alice, &rw)).await.unwrap();
        provider.grant(&access(&bob_principal, &rw)).await.unwrap();
    }
    let mut holders = provider.holders(&rw).await.unwrap();
    holders.sort();
    // The role's creator (this test's root login) holds it WITH ADMIN
    // OPTION; jitbot's own login is never a holder.
    assert_eq!(holders, vec![alice.clone(), bob_principal.clone()]);
    for _ in 0..2 {
        provider.revoke(&access(&alice, &rw)).await.unwrap();
    }
    assert_eq!(db.members(&rw).await, vec![format!("{bob}@10.0.0.%")]);
    // An account that does not exist holds nothing: revoking it is done;
    // granting to it is refused, saying why.
    provider
        .revoke(&access(&db.name("ghost"), &rw))
        .await
        .unwrap();
    let error = provider
        .grant(&access(&db.name("ghost"), &rw))
        .await
        .unwrap_err();
    assert!(
        error.permanent && error.message.contains("there is no account"),
        "{error}"
    );
}

#[tokio::test]
async fn mysql_hostile_principals_and_roles_grant_nothing_and_harm_nothing() {
    let mut db = MariaFixture::new().await;
    let (rw, victim) = (db.name("rw"), db.name("victim"));
    db.create_role(&rw).await;
    db.create_user(&victim, "%").await;
    let provider = provider(false, false);
    for hostile in [
        format!("x'@'%'; DROP USER '{victim}'@'%'; --"),
        format!("{victim}\\"),
        format!("{victim}`"),
        format!("{victim}\n"),
        "x".repeat(81),
    ] {
        let error = provider.grant(&access(&hostile, &rw)).await.unwrap_err();
        assert!(error.permanent, "{error}");
        assert!(db.user_exists(&victim).await, "the injected DROP never ran");
    }
    let error = provider
        .grant(&access(
            &victim,
            &format!("{rw}`; DROP USER '{victim}'@'%'; --"),
        ))
        .await
        .unwrap_err();
    assert!(error.message.contains("quotes"), "{error}");
    assert!(db.user_exists(&victim).await);
    assert!(db.members(&rw).await.is_empty());
}

#[tokio::test]
async fn mysql_connection_errors_name_the_server_but_never_the_password() {
    let provider = MysqlProvider::new(
        "db",
        "mysql://root:hunter2-secret@127.0.0.1:1/mysql",
        false,
        false,
        Duration::from_secs(5),
    )
    .unwrap();
    let error = provider.grant(&access("alice", "rw")).await.unwrap_err();
    assert!(
        !error.permanent,
        "an unreachable server may come back: {error}"
    );
    assert!(error.message.contains("127.0.0.1:1"), "{error}");
    assert!(!error.to_string().contains("hunter2-secret"), "{error}");
}

#[tokio::test]
async fn mysql_sweep_removes_a_role_granted_by_hand_and_keeps_grants_and_allowed() {
    let mut db = MariaFixture::new().await;
    let (rw, alice, bob, svc) = (
        db.name("rw"),
        db.name("u0alice"),
        db.name("bob"),
        db.name("svc"),
    );
    db.create_role(&rw).await;
    for user in [&alice, &bob, &svc] {
        db.create_user(user, "%").await;
    }
    db.run(&format!("GRANT `{rw}` TO '{svc}'@'%'")).await;
    let app = TestApp::spawn_with(&policy(&db, "enforce")).await;
    let id = app.request("U0ALICE", "request orders-db 1m on call").await;
    app.approve("U0LEAD", &id).await;
    let mut both = [format!("{alice}@%"), format!("{svc}@%")];
    both.sort();
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    until_members(&mut db, &rw, &both).await;

    // A DBA grants the role by hand; the next sweep removes it alone.
    db.run(&format!("GRANT `{rw}` TO '{bob}'@'%'")).await;
    until_members(&mut db, &rw, &both).await;
    // The audit event follows the removal.
    let revoked = crate::helpers::eventually("the audit event of the removal", || async {
        let revoked = app.audit_details("StandingRevoked").await;
        (!revoked.is_empty()).then_some(revoked)
    })
    .await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(revoked[0].contains(&bob), "{revoked:?}");
}

#[tokio::test]
async fn mysql_activity_is_an_open_connection_of_the_account() {
    let mut db = MariaFixture::new().await;
    let (rw, alice) = (db.name("rw"), db.name("alice"));
    db.create_role(&rw).await;
    db.create_user(&alice, "%").await;
    let p = provider(false, false);
    let idle = p.activity(&alice, &rw).await.unwrap();
    assert!(!idle.in_use, "no connection yet");

    let session = mariadb::connect(&format!("mysql://{alice}:pw-{alice}@127.0.0.1:3306"))
        .await
        .unwrap();
    assert!(p.activity(&alice, &rw).await.unwrap().in_use);

    session.disconnect().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while p.activity(&alice, &rw).await.unwrap().in_use {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A hostile principal is refused, never run as SQL.
    let error = p.activity("x' OR '1'='1", &rw).await.unwrap_err();
    assert!(error.message.contains("quote"), "{error}");
}

/// The holders among this test's accounts (the fixture's own login created
/// the role, so MariaDB made it a member too).
fn this_tests(db: &MariaFixture, mut holders: Vec<String>) -> Vec<String> {
    holders.retain(|holder| holder.starts_with(&db.name("")));
    holders.sort();
    holders
}

/// jitbot's login over TCP from 127.0.0.1, allowed to hand out `role` and
/// to read the role tables; its password is `pw-<login>`.
async fn create_login(db: &mut MariaFixture, login: &str, host: &str, role: &str) {
    db.create_user(login, host).await;
    db.run(&format!(
        "GRANT `{role}` TO '{login}'@'{host}' WITH ADMIN OPTION"
    ))
    .await;
    db.run(&format!("GRANT SELECT ON mysql.* TO '{login}'@'{host}'"))
        .await;
}

#[tokio::test]
async fn mysql_connects_to_the_tcp_host_its_url_names_not_the_local_socket() {
    // MySQL tells accounts apart by where they connect from: over TCP from
    // 127.0.0.1 this login is one account, over the local socket
    // (`localhost`) the same name and password are another one that may
    // read but not hand out the role — as root@127.0.0.1 and Debian's
    // root@localhost are two accounts.
    let mut db = MariaFixture::new().await;
    let (rw, login, alice) = (db.name("rw"), db.name("tcp"), db.name("alice"));
    db.create_role(&rw).await;
    db.create_user(&alice, "%").await;
    create_login(&mut db, &login, "127.0.0.1", &rw).await;
    db.create_user(&login, "localhost").await;
    db.run(&format!("GRANT SELECT ON mysql.* TO '{login}'@'localhost'"))
        .await;

    let url = format!("mysql://{login}:pw-{login}@127.0.0.1:3306/mysql");
    let provider = MysqlProvider::new("db", &url, false, false, Duration::from_secs(5)).unwrap();
    provider.grant(&access(&alice, &rw)).await.unwrap();
    let mut expected = vec![format!("{alice}@%"), format!("{login}@127.0.0.1")];
    expected.sort();
    assert_eq!(db.members(&rw).await, expected);
    // Holders leave out jitbot's own login (CURRENT_USER()): the TCP
    // account, holding the role WITH ADMIN OPTION, is the one it is.
    assert_eq!(
        this_tests(&db, provider.holders(&rw).await.unwrap()),
        vec![alice.clone()]
    );
    provider.revoke(&access(&alice, &rw)).await.unwrap();
    assert_eq!(db.members(&rw).await, vec![format!("{login}@127.0.0.1")]);
}

#[tokio::test]
async fn mysql_uses_the_unix_socket_only_when_its_url_names_one() {
    let mut db = MariaFixture::new().await;
    let (rw, login, alice) = (db.name("rw"), db.name("sock"), db.name("alice"));
    db.create_role(&rw).await;
    db.create_user(&alice, "%").await;
    // This login exists only for the socket: over TCP it would be refused.
    create_login(&mut db, &login, "localhost", &rw).await;
    let socket: String = db
        .admin
        .query_first("SELECT @@socket")
        .await
        .unwrap()
        .expect("the server has a socket");

    let over_tcp = MysqlProvider::new(
        "db",
        &format!("mysql://{login}:pw-{login}@127.0.0.1:3306/mysql"),
        false,
        false,
        Duration::from_secs(5),
    )
    .unwrap();
    let refused = over_tcp.grant(&access(&alice, &rw)).await.unwrap_err();
    assert!(refused.message.contains("Access denied"), "{refused}");

    let url = format!("mysql://{login}:pw-{login}@localhost/mysql?socket={socket}");
    let provider = MysqlProvider::new("db", &url, false, false, Duration::from_secs(5)).unwrap();
    provider.grant(&access(&alice, &rw)).await.unwrap();
    assert_eq!(
        this_tests(&db, provider.holders(&rw).await.unwrap()),
        vec![alice.clone()]
    );
}
