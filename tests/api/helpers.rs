//! Shared test helpers: the real server on port 0 with a fresh sled store, a
//! fake Slack Web API and a fake IAM webhook on loopback, and requests signed
//! the way Slack signs them.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use jitbot::config::settings::{ApiTokenSpec, SlackSettings};
use jitbot::config::{EnvSource, Secret};
use jitbot::server::{self, RunningServer, ServerParts};
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const SIGNING_SECRET: &str = "test-signing-secret-8f742231b10e";
pub(crate) const BOT_TOKEN: &str = "xoxb-test-token";
pub(crate) const HOOK_SECRET: &str = "hook-secret-for-tests";
/// API tokens: one acting as the pipeline user U0CIBOT, one as the admin.
/// The Teams outgoing webhook's security token (base64, as Teams shows it).
pub(crate) const TEAMS_WEBHOOK_SECRET: &str = "dGVhbXMtb3V0Z29pbmctd2ViaG9vay1rZXk=";
pub(crate) const USER_TOKEN: &str = "user-token-for-tests-0123456789";
pub(crate) const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// Signs the links of approval emails in tests.
pub(crate) const EMAIL_TOKEN_KEY: &str = "email-token-key-for-tests-0123456789abcdef";

fn api_token(user: &str, admin: bool, token: &str) -> ApiTokenSpec {
    ApiTokenSpec {
        identity: jitbot::domain::policy::user_actor(user).unwrap(),
        admin,
        token: Secret::new(token),
    }
}

/// The policy every test starts from; `{IAM}` is the fake IAM's URL.
pub(crate) const BASE_POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"
max_duration = "8h"
default_duration = "1h"
reason_required = true

[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[providers.failing]
kind = "exec"
grant = ["/bin/sh", "-c", "echo 'role prod_rw does not exist' >&2; exit 4"]
revoke = ["/bin/true"]
timeout = "5s"

[[groups]]
name = "prod-db"
description = "Production database"
provider = "iam"
target = "prod_rw"
approvers = ["U0LEAD", "U0DBA", "S0DBAS"]
channel = "C0APPROVALS"
max_duration = "4h"

[[groups]]
name = "two-key"
provider = "iam"
target = "vault_admin"
approvers = ["U0LEAD", "U0DBA", "U0SEC"]
approvals_required = 2
channel = "C0APPROVALS"

[[groups]]
name = "restricted"
provider = "iam"
target = "billing"
approvers = ["U0LEAD"]
requesters = ["U0OPS"]
channel = "C0APPROVALS"

[[groups]]
name = "sandbox"
provider = "iam"
target = "sandbox_rw"
approvers = ["U0LEAD"]
channel = "C0SANDBOX"
auto_approve = { requesters = ["U0ONCALL"], max_duration = "30m" }

[[groups]]
name = "quick"
provider = "iam"
target = "quick_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
max_duration = "10m"
default_duration = "5m"

[[groups]]
name = "flaky"
provider = "iam"
target = "flaky_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
default_duration = "5m"

[[groups]]
name = "extendable"
provider = "iam"
target = "ext_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
min_duration = "1s"
max_duration = "10m"
default_duration = "5m"
warn_before = "3s"

[[groups]]
name = "escalating"
provider = "iam"
target = "esc_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
escalate_after = "10m"
escalate_to = ["U0HEAD"]

[[groups]]
name = "hasty"
provider = "iam"
target = "hasty_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
pending_timeout = "10m"

[[groups]]
name = "broken"
provider = "failing"
target = "prod_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

/// The test's fake Socket Mode server (`ws://…`), when Slack runs over
/// Socket Mode: `apps.connections.open` answers `<it>/<n>`, a new `n` for
/// each connection.
pub(crate) const SOCKET_URL_VAR: &str = "TEST_SOCKET_URL";

/// The app-level token the fake Slack accepts.
pub(crate) const APP_TOKEN: &str = "xapp-1-A0TEST-1-test";

/// `apps.connections.open` as Slack answers it: a fresh URL each time, for
/// the app-level token only.
struct FakeConnectionsOpen {
    base: String,
    opened: AtomicU64,
}

impl Respond for FakeConnectionsOpen {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|value| value.as_bytes() == format!("Bearer {APP_TOKEN}").as_bytes());
        let answer = if authorized {
            let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
            json!({ "ok": true, "url": format!("{}/{n}", self.base) })
        } else {
            json!({ "ok": false, "error": "invalid_auth" })
        };
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

/// Members of fake Slack user groups.
pub(crate) type UserGroups = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// How long the fake Slack takes to list a user group's members: long
/// enough that two unserialised read-modify-write updates would overlap.
const USERGROUP_LIST_DELAY: Duration = Duration::from_millis(150);

/// The fake Slack Web API: answers like Slack for the methods jitbot uses.
struct FakeSlack {
    next_ts: AtomicU64,
    user_groups: UserGroups,
    /// What each successful chat.postMessage was answered: (ts, body).
    posted: Posted,
}

type Posted = Arc<Mutex<Vec<(String, Value)>>>;

fn form_or_json(request: &Request) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(&request.body) {
        return value;
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

impl Respond for FakeSlack {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = form_or_json(request);
        let answer = match request.url.path() {
            "/api/chat.postMessage"
                if body["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("C0NOTIN")) =>
            {
                json!({ "ok": false, "error": "not_in_channel" })
            }
            "/api/chat.postMessage" => {
                let n = self.next_ts.fetch_add(1, Ordering::SeqCst);
                let ts = format!("1700000000.{n:06}");
                self.posted.lock().unwrap().push((ts.clone(), body.clone()));
                json!({ "ok": true, "channel": body["channel"], "ts": ts })
            }
            "/api/conversations.open" => {
                let user = body["users"].as_str().unwrap_or("").to_string();
                json!({ "ok": true, "channel": { "id": format!("D{user}") } })
            }
            "/api/usergroups.users.list" => {
                let group = body["usergroup"].as_str().unwrap_or("");
                let members = self.user_groups.lock().unwrap().get(group).cloned();
                let answer = match members {
                    Some(users) => json!({ "ok": true, "users": users }),
                    None => json!({ "ok": false, "error": "no_such_subteam" }),
                };
                return ResponseTemplate::new(200)
                    .set_body_json(answer)
                    .set_delay(USERGROUP_LIST_DELAY);
            }
            "/api/usergroups.users.update" => {
                let group = body["usergroup"].as_str().unwrap_or("").to_string();
                let users: Vec<String> = match body["users"].as_str().unwrap_or("") {
                    "[]" => Vec::new(),
                    list => list.split(',').map(str::to_string).collect(),
                };
                let mut groups = self.user_groups.lock().unwrap();
                match groups.get_mut(&group) {
                    Some(members) => {
                        *members = users.clone();
                        json!({ "ok": true, "usergroup": { "id": group, "users": users } })
                    }
                    None => json!({ "ok": false, "error": "no_such_subteam" }),
                }
            }
            "/api/users.lookupByEmail" => {
                // The reverse of users.info: u0lead@example.com is U0LEAD;
                // addresses elsewhere belong to nobody Slack knows.
                let email = body["email"].as_str().unwrap_or("").to_lowercase();
                match email.strip_suffix("@example.com") {
                    Some(local) if !local.is_empty() => {
                        json!({ "ok": true, "user": { "id": local.to_uppercase() } })
                    }
                    _ => json!({ "ok": false, "error": "users_not_found" }),
                }
            }
            "/api/users.info" => {
                let user = body["user"].as_str().unwrap_or("").to_lowercase();
                // Users whose id says so have no email in their profile.
                if user.starts_with("u0nomail") {
                    json!({ "ok": true, "user": { "profile": {} } })
                } else {
                    json!({ "ok": true, "user": { "profile": { "email": format!("{user}@example.com") } } })
                }
            }
            _ => json!({ "ok": true }),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) slack: MockServer,
    pub(crate) iam: MockServer,
    /// Where the server keeps its state (sled or PostgreSQL, per run).
    pub(crate) store: crate::backend::TestStore,
    /// The fake Slack's user groups, by id; tests may edit them.
    pub(crate) user_groups: UserGroups,
    /// The Teams bot's settings, when a test connects Teams.
    pub(crate) teams: Option<jitbot::config::settings::TeamsSettings>,
    posted: Posted,
    policy_text: String,
    server: Option<RunningServer>,
    /// How much one person may file (the product's defaults unless a test
    /// sets others before restarting).
    pub(crate) user_limits: jitbot::domain::quota::FilingLimits,
    max_in_flight: usize,
    /// The store, read after the server stopped (see [`TestApp::open_store`]).
    stopped_store: tokio::sync::Mutex<Option<Arc<dyn jitbot::store::Store>>>,
    /// The server's clock: the wall clock, moved forward by [`TestApp::advance`].
    pub(crate) clock: Arc<jitbot::clock::ShiftedClock>,
    /// Email settings (none unless a test sends email); the public URL is
    /// the server's own address, set when it starts.
    pub(crate) email: jitbot::config::email::EmailSettings,
    /// More environment for the providers (a kubeconfig's path, …).
    pub(crate) extra_env: Vec<(String, String)>,
}

impl TestApp {
    pub(crate) async fn spawn() -> TestApp {
        Self::spawn_with(BASE_POLICY).await
    }

    /// Start with `policy` (`{IAM}` is replaced by the fake IAM's URL).
    pub(crate) async fn spawn_with(policy: &str) -> TestApp {
        Self::spawn_with_teams(policy, None).await
    }

    /// Start with `policy` and, if given, a Teams bot.
    pub(crate) async fn spawn_with_teams(
        policy: &str,
        teams: Option<jitbot::config::settings::TeamsSettings>,
    ) -> TestApp {
        Self::spawn_with_limits(policy, teams, Default::default()).await
    }

    /// Start with `policy`, a Teams bot if given, and these per-person
    /// limits.
    pub(crate) async fn spawn_with_limits(
        policy: &str,
        teams: Option<jitbot::config::settings::TeamsSettings>,
        user_limits: jitbot::domain::quota::FilingLimits,
    ) -> TestApp {
        Self::spawn_configured(
            policy,
            teams,
            user_limits,
            jitbot::http::Admission::MAX_IN_FLIGHT,
        )
        .await
    }

    /// Start with everything a test may set: the policy, a Teams bot, the
    /// per-person limits and how many requests are worked on at once.
    pub(crate) async fn spawn_configured(
        policy: &str,
        teams: Option<jitbot::config::settings::TeamsSettings>,
        user_limits: jitbot::domain::quota::FilingLimits,
        max_in_flight: usize,
    ) -> TestApp {
        Self::spawn_full(
            policy,
            teams,
            user_limits,
            max_in_flight,
            Default::default(),
            Vec::new(),
        )
        .await
    }

    /// Start with `policy` and more environment for its providers.
    pub(crate) async fn spawn_with_env(policy: &str, env: &[(&str, &str)]) -> TestApp {
        Self::spawn_full(
            policy,
            None,
            Default::default(),
            jitbot::http::Admission::MAX_IN_FLIGHT,
            Default::default(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .await
    }

    /// Start with `policy`, sending email through the SMTP server at
    /// `smtp_port` (plain SMTP on loopback), links signed with a test key.
    pub(crate) async fn spawn_with_email(policy: &str, smtp_port: u16) -> TestApp {
        let email = email_settings(smtp_port);
        Self::spawn_full(
            policy,
            None,
            Default::default(),
            jitbot::http::Admission::MAX_IN_FLIGHT,
            email,
            Vec::new(),
        )
        .await
    }

    pub(crate) async fn spawn_full(
        policy: &str,
        teams: Option<jitbot::config::settings::TeamsSettings>,
        user_limits: jitbot::domain::quota::FilingLimits,
        max_in_flight: usize,
        email: jitbot::config::email::EmailSettings,
        extra_env: Vec<(String, String)>,
    ) -> TestApp {
        let slack = MockServer::start().await;
        let user_groups: UserGroups = Arc::new(Mutex::new(HashMap::from([
            ("S0DBAS".to_string(), vec!["U0GROUPDBA".to_string()]),
            ("S0ONCALL".to_string(), vec!["U0LEAD".to_string()]),
        ])));
        let posted: Posted = Arc::default();
        Mock::given(method("POST"))
            .respond_with(FakeSlack {
                next_ts: AtomicU64::new(1),
                user_groups: user_groups.clone(),
                posted: posted.clone(),
            })
            .with_priority(10)
            .mount(&slack)
            .await;
        let socket_base = extra_env
            .iter()
            .find(|(key, _)| key == SOCKET_URL_VAR)
            .map(|(_, url)| url.clone());
        if let Some(base) = socket_base {
            Mock::given(method("POST"))
                .and(path("/api/apps.connections.open"))
                .respond_with(FakeConnectionsOpen {
                    base,
                    opened: AtomicU64::new(0),
                })
                .with_priority(1)
                .mount(&slack)
                .await;
        }
        let iam = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/jit"))
            .respond_with(ResponseTemplate::new(200))
            .with_priority(10)
            .mount(&iam)
            .await;
        let mut app = TestApp {
            addr: "127.0.0.1:0".parse().unwrap(),
            http: reqwest::Client::new(),
            policy_text: policy.replace("{IAM}", &iam.uri()),
            slack,
            iam,
            store: crate::backend::TestStore::new().await,
            user_groups,
            teams: None,
            posted,
            server: None,
            user_limits,
            max_in_flight,
            stopped_store: tokio::sync::Mutex::new(None),
            clock: Arc::default(),
            email,
            extra_env,
        };
        app.teams = teams;
        app.start().await;
        app
    }

    async fn start(&mut self) {
        self.try_start().await.expect("server starts");
    }

    /// Start (after [`TestApp::stop`]) under `policy`; the server's
    /// refusal to start, if it refuses.
    pub(crate) async fn try_start_with_policy(
        &mut self,
        policy: &str,
    ) -> Result<(), jitbot::server::ServerError> {
        self.policy_text = policy.replace("{IAM}", &self.iam.uri());
        self.try_start().await
    }

    async fn try_start(&mut self) -> Result<(), jitbot::server::ServerError> {
        // The server opens the store itself; the test's handle goes first.
        self.stopped_store.lock().await.take();
        let policy =
            jitbot::config::policy::parse(&self.policy_text).expect("test policy is valid");
        let slack_api = format!("{}/api", self.slack.uri());
        let (pg_url, mysql_url) = (crate::pg::url(), crate::mariadb::url());
        let mut pairs: Vec<(&str, &str)> = vec![
            ("TEST_HOOK_SECRET", HOOK_SECRET),
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_API_URL", slack_api.as_str()),
            ("TEST_PG_URL", pg_url.as_str()),
            ("TEST_MYSQL_URL", mysql_url.as_str()),
            ("TEST_OKTA_TOKEN", crate::idp::OKTA_TOKEN),
            ("TEST_ENTRA_SECRET", crate::idp::ENTRA_SECRET),
        ];
        pairs.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let env = EnvSource::from_pairs(pairs);
        let providers = jitbot::providers::build(
            &policy,
            &env,
            Arc::new(jitbot::providers::exclusive::LocalExclusive::default()),
        )
        .expect("providers build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        if self.email.smtp.is_some() {
            self.email.public_url = Some(format!("http://{}", listener.local_addr().unwrap()));
        }
        let parts = ServerParts {
            store: self.store.location(),
            policy,
            providers,
            slack: Some(SlackSettings {
                signing_secret: Some(Secret::new(SIGNING_SECRET)),
                app_token: self
                    .extra_env
                    .iter()
                    .find(|(key, _)| key == "SLACK_APP_TOKEN")
                    .map(|(_, token)| Secret::new(token)),
                bot_token: Secret::new(BOT_TOKEN),
                api_url: format!("{}/api", self.slack.uri()),
            }),
            teams: self.teams.clone(),
            teams_webhook_secret: Some(Secret::new(TEAMS_WEBHOOK_SECRET)),
            api_tokens: vec![
                api_token("U0CIBOT", false, USER_TOKEN),
                api_token("U0ADMIN", true, ADMIN_TOKEN),
            ],
            user_limits: self.user_limits,
            max_in_flight: self.max_in_flight,
            max_connections_per_peer: env
                .get("JITBOT_MAX_CONNECTIONS_PER_PEER")
                .map(|n| n.parse().expect("a whole number"))
                .unwrap_or(jitbot::http::DEFAULT_MAX_CONNECTIONS_PER_PEER),
            ingress: jitbot::config::ingress::IngressSettings::from_env(&env)
                .expect("test ingress settings are valid"),
            clock: self.clock.clone(),
            email: self.email.clone(),
            paging: jitbot::config::paging::PagingSettings::from_env(&env)
                .expect("test paging settings are valid"),
            audit_key: None,
        };
        let running = server::start(parts, listener).await?;
        self.addr = running.addr;
        self.server = Some(running);
        Ok(())
    }

    /// Stop, and start again on the same store under `policy` (an admin
    /// editing the policy file and restarting jitbot).
    pub(crate) async fn restart_with_policy(&mut self, policy: &str) {
        self.stop().await;
        self.policy_text = policy.replace("{IAM}", &self.iam.uri());
        self.start().await;
    }

    /// Stop gracefully and start again on the same store.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// Make `by` pass on the server's clock at once, and have its workers
    /// look again: what falls due meanwhile happens now.
    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
        if let Some(server) = &self.server {
            server.wake_workers();
        }
    }

    pub(crate) fn url(&self, route: &str) -> String {
        format!("http://{}{route}", self.addr)
    }

    /// POST `body` to `route`, signed as Slack signs it at time `timestamp`.
    pub(crate) async fn post_signed_at(
        &self,
        route: &str,
        content_type: &str,
        body: Vec<u8>,
        timestamp: i64,
    ) -> reqwest::Response {
        let signature = slack_signature(SIGNING_SECRET, timestamp, &body);
        self.http
            .post(self.url(route))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_signed(
        &self,
        route: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.post_signed_at(route, content_type, body, chrono::Utc::now().timestamp())
            .await
    }

    /// The form body of `/jit <text>` typed by `user` in `channel`.
    pub(crate) fn command_body(user: &str, channel: &str, text: &str) -> Vec<u8> {
        serde_urlencoded::to_string([
            ("token", "legacy-token-ignored"),
            ("team_id", "T0TEAM"),
            ("channel_id", channel),
            ("channel_name", "general"),
            ("user_id", user),
            ("user_name", &user.to_lowercase()),
            ("command", "/jit"),
            ("text", text),
            ("response_url", "https://hooks.slack.invalid/commands/1"),
            ("trigger_id", &format!("trigger-{user}-{}", rand_suffix())),
        ])
        .unwrap()
        .into_bytes()
    }

    pub(crate) async fn command(&self, user: &str, channel: &str, text: &str) -> reqwest::Response {
        self.post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            Self::command_body(user, channel, text),
        )
        .await
    }

    /// The ephemeral text answering `/jit <text>`.
    pub(crate) async fn command_text(&self, user: &str, channel: &str, text: &str) -> String {
        let response = self.command(user, channel, text).await;
        assert_eq!(
            response.status(),
            200,
            "command {text:?} was not acknowledged"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["response_type"], "ephemeral");
        body["text"].as_str().unwrap().to_string()
    }

    /// File a request and return its id.
    pub(crate) async fn request(&self, user: &str, text: &str) -> String {
        let answer = self.command_text(user, "C0GENERAL", text).await;
        request_id_in(&answer).unwrap_or_else(|| panic!("no request id in {answer:?}"))
    }

    pub(crate) async fn interact(&self, payload: Value) -> reqwest::Response {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        )
        .await
    }

    /// Click a card button.
    pub(crate) async fn click(
        &self,
        user: &str,
        action_id: &str,
        request_id: &str,
    ) -> reqwest::Response {
        self.interact(json!({
            "type": "block_actions",
            "user": { "id": user, "username": user.to_lowercase(), "team_id": "T0TEAM" },
            "trigger_id": format!("trigger-{}", rand_suffix()),
            "channel": { "id": "C0APPROVALS", "name": "approvals" },
            "container": { "type": "message", "channel_id": "C0APPROVALS" },
            "actions": [{ "action_id": action_id, "block_id": "jit_decision", "value": request_id, "type": "button" }],
        }))
        .await
    }

    pub(crate) async fn approve(&self, user: &str, request_id: &str) {
        let response = self.click(user, "jit_approve", request_id).await;
        assert_eq!(response.status(), 200);
    }

    /// Calls jitbot made to the fake Slack API method `name`, oldest first.
    pub(crate) async fn slack_calls(&self, name: &str) -> Vec<Value> {
        let wanted = format!("/api/{name}");
        self.slack
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .iter()
            .filter(|r| r.url.path() == wanted)
            .map(form_or_json)
            .collect()
    }

    /// Grant and revoke calls jitbot made to the fake IAM webhook.
    pub(crate) async fn iam_calls(&self) -> Vec<(Value, reqwest::header::HeaderMap)> {
        self.iam
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .iter()
            .filter(|r| r.url.path() == "/jit")
            .map(|r| {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in r.headers.iter() {
                    headers.insert(
                        reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                        reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                    );
                }
                (serde_json::from_slice(&r.body).unwrap(), headers)
            })
            .collect()
    }

    /// Provider calls of one action ("grant"/"revoke") for one request.
    pub(crate) async fn iam_actions(&self, action: &str, request_id: &str) -> usize {
        self.iam_calls()
            .await
            .iter()
            .filter(|(body, _)| body["action"] == action && body["request_id"] == request_id)
            .count()
    }

    /// Direct messages sent to `user`.
    pub(crate) async fn dms_to(&self, user: &str) -> Vec<String> {
        let channel = format!("D{user}");
        self.slack_calls("chat.postMessage")
            .await
            .iter()
            .filter(|m| m["channel"] == channel.as_str())
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Slack answers the next `chat.postMessage` with 429, Retry-After 1 s.
    pub(crate) async fn throttle_next_slack_post(&self) {
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.slack)
            .await;
    }

    /// Wait for a DM to `user` containing `needle`; the whole DM.
    pub(crate) async fn wait_for_dm(&self, user: &str, what: &str, needle: &str) -> String {
        eventually(what, || async {
            self.dms_to(user)
                .await
                .into_iter()
                .find(|dm| dm.contains(needle))
        })
        .await
    }

    /// Wait for a notice in `channel` containing `needle`; the whole notice.
    pub(crate) async fn wait_for_notice(&self, channel: &str, what: &str, needle: &str) -> String {
        eventually(what, || async {
            self.notices_in(channel)
                .await
                .into_iter()
                .find(|n| n.contains(needle))
        })
        .await
    }

    /// Ephemeral messages shown to `user`.
    pub(crate) async fn ephemerals_to(&self, user: &str) -> Vec<String> {
        self.slack_calls("chat.postEphemeral")
            .await
            .iter()
            .filter(|m| m["user"] == user)
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Cards posted to `channel` for `request_id`.
    pub(crate) async fn cards_for(&self, request_id: &str) -> Vec<Value> {
        self.slack_calls("chat.postMessage")
            .await
            .into_iter()
            .filter(|m| m["blocks"].to_string().contains(request_id))
            .collect()
    }

    /// The `ts` Slack gave the card first posted for `request_id`.
    pub(crate) fn card_ts(&self, request_id: &str) -> Option<String> {
        self.posted
            .lock()
            .unwrap()
            .iter()
            .find(|(_, body)| body["blocks"].to_string().contains(request_id))
            .map(|(ts, _)| ts.clone())
    }

    /// The latest version of the card for `request_id` (update or post).
    pub(crate) async fn latest_card(&self, request_id: &str) -> Option<Value> {
        let updates: Vec<Value> = self
            .slack_calls("chat.update")
            .await
            .into_iter()
            .filter(|m| m["blocks"].to_string().contains(request_id))
            .collect();
        match updates.last() {
            Some(update) => Some(update.clone()),
            None => self.cards_for(request_id).await.last().cloned(),
        }
    }

    /// Wait until every message owed is delivered (the outbox is empty):
    /// from then on, what the fakes received is all that the work done so
    /// far will ever send.
    pub(crate) async fn until_outbox_empty(&self) {
        // The gauges are read from the store at most every few seconds:
        // only a reading made after this call tells what is owed now.
        let reads_before = store_gauge_reads(&self.metrics().await);
        eventually("the outbox to be delivered", || async {
            let metrics = self
                .http
                .get(self.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (store_gauge_reads(&metrics) > reads_before
                && metrics.lines().any(|line| line == "jitbot_outbox_depth 0"))
            .then_some(())
        })
        .await;
    }

    /// The server's Prometheus metrics, as scraped.
    pub(crate) async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Request `id` as the API shows it to an admin.
    pub(crate) async fn request_json(&self, id: &str) -> Value {
        self.http
            .get(self.url(&format!("/api/v1/requests/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Request `id`'s state, as the API names it ("pending", "active", …).
    pub(crate) async fn state_of(&self, id: &str) -> String {
        self.request_json(id).await["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Messages posted into `channel` (not cards' updates) saying `needle`,
    /// once there is one; the first.
    pub(crate) async fn channel_post_saying(&self, channel: &str, needle: &str) -> Value {
        eventually(
            &format!("a post in {channel} saying {needle:?}"),
            || async {
                self.slack_calls("chat.postMessage")
                    .await
                    .into_iter()
                    .find(|m| {
                        m["channel"] == channel && m["text"].as_str().unwrap_or("").contains(needle)
                    })
            },
        )
        .await
    }

    /// When request `id`'s access ends, on the server's clock.
    pub(crate) async fn expires_at(&self, id: &str) -> chrono::DateTime<chrono::Utc> {
        let request = self.request_json(id).await;
        request["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no end yet: {request}"))
            .parse()
            .unwrap()
    }

    /// Move the server's clock to `at` (if it is not there yet) and wake
    /// its workers.
    pub(crate) fn advance_to(&self, at: chrono::DateTime<chrono::Utc>) {
        let now = jitbot::clock::Clock::now(&*self.clock);
        self.advance((at - now).to_std().unwrap_or_default());
    }

    /// Move the server's clock just past the end of request `id`'s access.
    pub(crate) async fn advance_past_end(&self, id: &str) {
        let end = self.expires_at(id).await;
        self.advance_to(end + chrono::Duration::seconds(1));
    }

    /// Wait until request `id` is active (granted and recorded), asking the
    /// API as an admin.
    /// Wait until `id` is recorded as active (the provider is called
    /// before that is written), and check it was granted exactly once.
    pub(crate) async fn until_granted(&self, id: &str) {
        self.until_active(id).await;
        assert_eq!(self.iam_actions("grant", id).await, 1, "granted once");
    }

    pub(crate) async fn until_active(&self, id: &str) {
        let url = self.url(&format!("/api/v1/requests/{id}"));
        eventually(&format!("{id} to be active"), || async {
            let response = self
                .http
                .get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            (body["state"] == "active").then_some(())
        })
        .await;
    }

    /// Members of the fake Slack user group `group`.
    pub(crate) fn user_group(&self, group: &str) -> Vec<String> {
        self.user_groups
            .lock()
            .unwrap()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Messages posted to `channel` that are not cards (notices, alerts).
    pub(crate) async fn notices_in(&self, channel: &str) -> Vec<String> {
        self.slack_calls("chat.postMessage")
            .await
            .iter()
            .filter(|m| m["channel"] == channel && m["blocks"].is_null())
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The details of the audit events with this action (`"StandingRevoked"`):
    /// exported through the API while the server runs, read from the one
    /// store handle once it is stopped.
    pub(crate) async fn audit_details(&self, action: &str) -> Vec<String> {
        if self.server.is_none() {
            return jitbot::store::AuditStore::audit_events(
                &*self.open_store().await,
                0,
                usize::MAX,
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|e| format!("{:?}", e.action) == action)
            .map(|e| e.detail)
            .collect();
        }
        let wanted = snake_case(action);
        self.audit_export()
            .await
            .into_iter()
            .filter(|e| e["action"] == wanted.as_str())
            .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every audit event, oldest first, as `GET /api/v1/audit` exports it.
    pub(crate) async fn audit_export(&self) -> Vec<Value> {
        self.audit_export_where("").await
    }

    /// The audit events `GET /api/v1/audit{query}` exports (`?ticket=…`).
    pub(crate) async fn audit_export_where(&self, query: &str) -> Vec<Value> {
        let text = self
            .http
            .get(self.url(&format!("/api/v1/audit{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
            .collect()
    }

    /// The store, for what the API does not show, once the server is
    /// stopped: one handle, opened on first use and closed by the next
    /// start.
    pub(crate) async fn open_store(&self) -> Arc<dyn jitbot::store::Store> {
        assert!(
            self.server.is_none(),
            "read the store through the API while the server runs"
        );
        let mut handle = self.stopped_store.lock().await;
        if handle.is_none() {
            *handle = Some(self.store.open().await);
        }
        handle.clone().expect("opened above")
    }
}

/// Email through the SMTP server at `smtp_port` (plain SMTP on loopback),
/// links signed with the test key.
pub(crate) fn email_settings(smtp_port: u16) -> jitbot::config::email::EmailSettings {
    jitbot::config::email::EmailSettings::from_env(&EnvSource::from_pairs([
        (
            "JITBOT_SMTP_URL",
            format!("smtp://127.0.0.1:{smtp_port}").as_str(),
        ),
        ("JITBOT_EMAIL_FROM", "jitbot@jit.example.com"),
        ("JITBOT_EMAIL_TOKEN_KEY", EMAIL_TOKEN_KEY),
    ]))
    .expect("test email settings are valid")
}

/// `StandingRevoked` → `standing_revoked`, as the API names audit actions.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Slack's signing scheme, written out independently of jitbot's verifier:
/// `v0=` + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)).
pub(crate) fn slack_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhook provider's signature of `request` as the README documents
/// it, written out independently of jitbot: `v1=` + hex(HMAC-SHA256(secret,
/// text)), the text `"v1:" + timestamp + ":" + body` for a POST and
/// `"v1:" + timestamp + ":GET:" + path?query + ":"` for a GET.
pub(crate) fn webhook_signature(
    secret: &str,
    timestamp: i64,
    request: &wiremock::Request,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    if request.method == wiremock::http::Method::GET {
        let query = request
            .url
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        mac.update(format!("v1:{timestamp}:GET:{}{query}:", request.url.path()).as_bytes());
    } else {
        mac.update(format!("v1:{timestamp}:").as_bytes());
        mac.update(&request.body);
    }
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn rand_suffix() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// The first `R-XXXXXX` in `text`.
pub(crate) fn request_id_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 8 && w.starts_with("R-"))
        .map(str::to_string)
}

/// Poll `check` until it returns `Some`, for at most thirty seconds. The
/// server works in the background (scheduler, outbox); this waits for an
/// outcome, not for a fixed time. The patience is generous because a
/// loaded two-core machine is slow; it costs nothing when the outcome
/// comes, and only bounds a failure.
/// How often the server has read its store for the gauges, in a scrape.
pub(crate) fn store_gauge_reads(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("jitbot_store_gauge_reads_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

pub(crate) async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(30), what, check).await
}

/// [`eventually`] with a longer patience, for outcomes behind retries with
/// real backoff.
pub(crate) async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an approval card still offers its buttons.
pub(crate) fn has_buttons(card: &Value) -> bool {
    card["blocks"].to_string().contains("jit_approve")
}
