//! Microsoft Teams over the real server: Bot Framework JWTs made with an RSA
//! key generated here and published by a fake OpenID/JWKS endpoint, a fake
//! Bot Connector and token endpoint on loopback, and the outgoing webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jitbot::config::settings::TeamsSettings;
use jitbot::config::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{eventually, TestApp, BASE_POLICY, TEAMS_WEBHOOK_SECRET};

const APP_ID: &str = "2f1c5d6e-0000-4000-8000-00000000b07a";
const APP_PASSWORD: &str = "teams-app-password-for-tests";
const BOT_ACCESS_TOKEN: &str = "bot-access-token-from-the-fake-aad";
const KID: &str = "test-key-1";
const SKYPE_KID: &str = "skype-only-key";
const WEBCHAT_KID: &str = "webchat-only-key";
const TENANT: &str = "72f988bf-0000-4000-8000-0000000000aa";
const ALICE: &str = "6f1c2e4a-0000-4000-8000-00000000a11c";
const LEAD: &str = "6f1c2e4a-0000-4000-8000-00000000a11d";
const BOB: &str = "6f1c2e4a-0000-4000-8000-00000000a11e";
const APPROVALS: &str = "19:approvals@thread.tacv2";

/// A group approved on Teams, granted to the user's AAD object id.
fn policy() -> String {
    format!(
        r#"{BASE_POLICY}
[providers.aad]
kind = "webhook"
url = "{{IAM}}/jit"
activity_url = "{{IAM}}/activity"
secret_env = "TEST_HOOK_SECRET"
principal = "{{teams_aad_id}}"

[[groups]]
name = "cloud-admin"
provider = "aad"
target = "subscription-owner"
approvers = ["{LEAD}"]
teams_channel = "{APPROVALS}"

[[groups]]
name = "brief"
provider = "aad"
target = "break-glass"
approvers = ["{LEAD}"]
teams_channel = "{APPROVALS}"
min_duration = "1s"
max_duration = "10m"
default_duration = "5m"
warn_before = "3s"
auto_approve = {{ requesters = ["{ALICE}"], max_duration = "10m" }}

[[groups]]
name = "quiet"
provider = "aad"
target = "reader"
approvers = ["{LEAD}"]
teams_channel = "{APPROVALS}"
min_duration = "1s"
activity_interval = "1m"
idle_release = "10m"
auto_approve = {{ requesters = ["{ALICE}"], max_duration = "1h" }}

[[groups]]
name = "glass"
provider = "aad"
target = "incident-owner"
approvers = ["{LEAD}"]
teams_channel = "{APPROVALS}"
break_glass = {{ requesters = ["{ALICE}"], max_duration = "1h" }}

[[groups]]
name = "dual"
description = "Approved from Slack or Teams"
provider = "aad"
target = "billing-reader"
approvers = ["{LEAD}", "U0LEAD"]
channel = "C0DUAL"
teams_channel = "{APPROVALS}"
"#
    )
}

struct Keys {
    signing: EncodingKey,
    /// A second key, published only for the `skype` channel.
    skype: EncodingKey,
    /// A third, published only for Web Chat.
    webchat: EncodingKey,
    /// A key nobody published.
    stranger: EncodingKey,
    jwks: Value,
}

fn rsa_key() -> (EncodingKey, Value) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let public = json!({
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    (EncodingKey::from_rsa_der(der.as_bytes()), public)
}

/// Keys generated once per test run (2048-bit generation takes a moment).
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (signing, public) = rsa_key();
        let (skype, skype_public) = rsa_key();
        let (webchat, webchat_public) = rsa_key();
        let (stranger, _) = rsa_key();
        let jwk = |kid: &str, public: &Value, endorsements: &[&str]| {
            json!({ "kty": "RSA", "use": "sig", "kid": kid, "n": public["n"], "e": public["e"], "endorsements": endorsements })
        };
        Keys {
            signing,
            skype,
            webchat,
            stranger,
            jwks: json!({ "keys": [
                jwk(KID, &public, &["msteams", "webchat"]),
                jwk(SKYPE_KID, &skype_public, &["skype"]),
                jwk(WEBCHAT_KID, &webchat_public, &["webchat"]),
            ] }),
        }
    })
}

/// The fake Bot Connector: creates conversations, takes activities, and
/// answers member look-ups; users in `blocked` cannot be reached (403).
struct Connector {
    next: AtomicU64,
    blocked: Vec<String>,
    /// Members whose directory entry carries no address.
    without_email: Vec<String>,
}

impl Respond for Connector {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        if path.ends_with("/v3/conversations") {
            let member = body["members"][0]["id"].as_str().unwrap_or_default();
            if self.blocked.iter().any(|b| b == member) {
                return ResponseTemplate::new(403)
                    .set_body_json(json!({ "error": { "code": "Forbidden" } }));
            }
            return ResponseTemplate::new(201)
                .set_body_json(json!({ "id": format!("a:dm-{member}") }));
        }
        if path.contains("/members/") {
            let member = path.rsplit('/').next().unwrap_or_default();
            if self.without_email.iter().any(|m| m == member) {
                return ResponseTemplate::new(200).set_body_json(json!({ "id": member }));
            }
            return ResponseTemplate::new(200)
                .set_body_json(json!({ "id": member, "email": "someone@contoso.com" }));
        }
        if request.method.as_str() == "PUT" {
            let id = path.rsplit('/').next().unwrap_or_default();
            return ResponseTemplate::new(200).set_body_json(json!({ "id": id }));
        }
        ResponseTemplate::new(201).set_body_json(json!({ "id": format!("activity-{n}") }))
    }
}

struct Teams {
    app: TestApp,
    microsoft: MockServer,
    service_url: String,
}

impl Teams {
    async fn start(blocked: &[&str]) -> Teams {
        Teams::start_with(blocked, "", &[], &[]).await
    }

    /// With `env` added to jitbot's environment.
    async fn start_with_env(blocked: &[&str], env: &[(&str, &str)]) -> Teams {
        Teams::start_with(blocked, "", &[], env).await
    }

    /// With `more_policy` after the usual policy, the members in
    /// `without_email` known to the directory without an address, and
    /// `env` added to jitbot's environment. The fake Bot Connector lives on
    /// loopback, so it is allowed as a service URL.
    async fn start_with(
        blocked: &[&str],
        more_policy: &str,
        without_email: &[&str],
        env: &[(&str, &str)],
    ) -> Teams {
        let microsoft = MockServer::start().await;
        let uri = microsoft.uri();
        Mock::given(method("GET"))
            .and(path("/openid"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": "https://api.botframework.com",
                "jwks_uri": format!("{uri}/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
            })))
            .mount(&microsoft)
            .await;
        Mock::given(method("GET"))
            .and(path("/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(keys().jwks.clone()))
            .mount(&microsoft)
            .await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "token_type": "Bearer", "expires_in": 3600, "access_token": BOT_ACCESS_TOKEN }),
            ))
            .mount(&microsoft)
            .await;
        Mock::given(wiremock::matchers::path_regex("^/teams/"))
            .respond_with(Connector {
                next: AtomicU64::new(1),
                blocked: blocked.iter().map(|b| format!("29:{b}")).collect(),
                without_email: without_email.iter().map(|m| format!("29:{m}")).collect(),
            })
            .with_priority(10)
            .mount(&microsoft)
            .await;
        let settings = TeamsSettings {
            app_id: APP_ID.into(),
            app_password: Secret::new(APP_PASSWORD),
            openid_metadata_url: format!("{uri}/openid"),
            token_url: format!("{uri}/token"),
        };
        let service_url = format!("{uri}/teams/");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        env.push(("TEAMS_ALLOWED_SERVICE_URLS".into(), service_url.clone()));
        let app = TestApp::spawn_full(
            &format!("{}{more_policy}", policy()),
            Some(settings),
            Default::default(),
            jitbot::http::Admission::MAX_IN_FLIGHT,
            Default::default(),
            env,
        )
        .await;
        Teams {
            app,
            service_url,
            microsoft,
        }
    }

    fn token(&self, overrides: Value, kid: &str, key: &EncodingKey) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            "exp": now + 600,
            "nbf": now - 10,
            "serviceurl": self.service_url,
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn good_token(&self) -> String {
        self.token(json!({}), KID, &keys().signing)
    }

    /// An activity from `user` in `conversation` (personal or channel).
    fn activity(&self, user: &str, conversation: &str, personal: bool, extra: Value) -> Value {
        let mut activity = json!({
            "type": "message",
            "id": format!("msg-{}", rand_id()),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "channelId": "msteams",
            "serviceUrl": self.service_url,
            "from": { "id": format!("29:{user}"), "name": format!("user {}", &user[user.len() - 4..]), "aadObjectId": user },
            "recipient": { "id": format!("28:{APP_ID}"), "name": "jitbot" },
            "conversation": {
                "id": conversation,
                "conversationType": if personal { "personal" } else { "channel" },
                "tenantId": TENANT
            },
            "channelData": { "tenant": { "id": TENANT } },
        });
        for (k, v) in extra.as_object().unwrap() {
            activity[k] = v.clone();
        }
        activity
    }

    async fn send(&self, activity: &Value, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .app
            .http
            .post(self.app.url("/teams/messages"))
            .json(activity);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Post `activity` to the outgoing-webhook route, signed as Teams signs
    /// it: base64 HMAC-SHA256 of the body under the base64-decoded token.
    async fn post_to_webhook(&self, activity: &Value) -> reqwest::Response {
        let body = activity.to_string();
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&STANDARD.decode(TEAMS_WEBHOOK_SECRET).unwrap())
                .unwrap();
        mac.update(body.as_bytes());
        self.app
            .http
            .post(self.app.url("/teams/webhook"))
            .header(
                "authorization",
                format!("HMAC {}", STANDARD.encode(mac.finalize().into_bytes())),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Say `text` to the bot in a personal chat.
    async fn say(&self, user: &str, text: &str) {
        let activity = self.activity(
            user,
            &format!("a:personal-{user}"),
            true,
            json!({ "text": text }),
        );
        let response = self.send(&activity, Some(&self.good_token())).await;
        assert_eq!(response.status(), 200);
    }

    /// Say `text` to the bot in a channel conversation (an @mention).
    async fn say_in_channel(&self, user: &str, conversation: &str, text: &str) {
        let activity = self.activity(user, conversation, false, json!({ "text": text }));
        let response = self.send(&activity, Some(&self.good_token())).await;
        assert_eq!(response.status(), 200);
    }

    /// Press a card button the way Teams does for Action.Execute.
    async fn execute(&self, user: &str, verb: &str, data: Value) -> Value {
        let activity = self.activity(
            user,
            APPROVALS,
            false,
            json!({
                "type": "invoke",
                "name": "adaptiveCard/action",
                "value": { "action": { "type": "Action.Execute", "verb": verb, "data": data }, "trigger": "manual" },
            }),
        );
        let response = self.send(&activity, Some(&self.good_token())).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Wait for a message posted to `conversation` containing `needle`.
    async fn wait_for_post(&self, conversation: &str, what: &str, needle: &str) -> String {
        eventually(what, || async {
            self.posted_to(conversation)
                .await
                .into_iter()
                .find(|m| m.contains(needle))
        })
        .await
    }

    /// Connector calls: (method, path, body), oldest first.
    async fn connector_calls(&self) -> Vec<(String, String, Value)> {
        self.microsoft
            .received_requests()
            .await
            .expect("the fake records the requests it gets")
            .iter()
            .filter(|r| r.url.path().starts_with("/teams/"))
            .map(|r| {
                (
                    r.method.to_string(),
                    r.url.path().to_string(),
                    serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    /// Messages posted to `conversation` (text and card JSON as text).
    async fn posted_to(&self, conversation: &str) -> Vec<String> {
        let wanted = format!("/teams/v3/conversations/{conversation}/activities");
        self.connector_calls()
            .await
            .into_iter()
            .filter(|(m, p, _)| m == "POST" && *p == wanted)
            .map(|(_, _, body)| body.to_string())
            .collect()
    }
}

fn rand_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

fn request_id(text: &str) -> String {
    crate::helpers::request_id_in(text).unwrap_or_else(|| panic!("no request id in {text}"))
}

#[tokio::test]
async fn tokens_are_checked_as_the_bot_framework_issues_them() {
    let teams = Teams::start(&[]).await;
    let activity = teams.activity(
        ALICE,
        &format!("a:personal-{ALICE}"),
        true,
        json!({ "text": "jit list" }),
    );
    let now = chrono::Utc::now().timestamp();
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        (
            "wrong issuer",
            Some(teams.token(
                json!({ "iss": "https://evil.example" }),
                KID,
                &keys().signing,
            )),
            401,
        ),
        (
            "wrong audience",
            Some(teams.token(json!({ "aud": "another-bot" }), KID, &keys().signing)),
            401,
        ),
        (
            "expired beyond the skew",
            Some(teams.token(json!({ "exp": now - 400 }), KID, &keys().signing)),
            401,
        ),
        (
            "not yet valid",
            Some(teams.token(json!({ "nbf": now + 400 }), KID, &keys().signing)),
            401,
        ),
        (
            "unknown key",
            Some(teams.token(json!({}), "no-such-kid", &keys().signing)),
            401,
        ),
        (
            "another unknown key",
            Some(teams.token(json!({}), "another-kid", &keys().signing)),
            401,
        ),
        (
            "signed by another key",
            Some(teams.token(json!({}), KID, &keys().stranger)),
            401,
        ),
        (
            "key not endorsed for msteams",
            Some(teams.token(json!({}), SKYPE_KID, &keys().skype)),
            403,
        ),
        (
            "another service URL",
            Some(teams.token(
                json!({ "serviceurl": "https://smba.example/evil/" }),
                KID,
                &keys().signing,
            )),
            403,
        ),
    ];
    for (what, token, status) in cases {
        let response = teams.send(&activity, token.as_deref()).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
    }
    // A Bot Framework redelivery of the same activity has no second effect.
    let token = teams.good_token();
    let request = teams.activity(
        ALICE,
        &format!("a:personal-{ALICE}"),
        true,
        json!({ "text": "jit request cloud-admin 1h once" }),
    );
    assert_eq!(teams.send(&request, Some(&token)).await.status(), 200);
    assert_eq!(teams.send(&request, Some(&token)).await.status(), 200);
    // Within the five minutes of skew, an expired token still passes.
    let slightly_expired = teams.token(json!({ "exp": now - 120 }), KID, &keys().signing);
    assert_eq!(
        teams
            .send(&activity, Some(&slightly_expired))
            .await
            .status(),
        200
    );
    // Every activity is answered; once all owed messages are out, the
    // answers are all there will ever be.
    teams.app.until_outbox_empty().await;
    let answers = teams.posted_to(&format!("a:personal-{ALICE}")).await;
    assert_eq!(
        answers.len(),
        2,
        "the rejected activities had no effect: {answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| a.contains("is filed")).count(),
        1,
        "the redelivered request was filed once"
    );
    // Keys were fetched at the first token, and once more for the unknown
    // kids — not once per token: refreshes for unknown kids are hourly at most.
    let key_fetches = teams
        .microsoft
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/keys")
        .count();
    assert_eq!(key_fetches, 2, "keys fetched, then cached");
}

#[tokio::test]
async fn a_request_is_approved_with_a_real_button_and_granted() {
    let teams = Teams::start(&[]).await;
    teams
        .say(
            ALICE,
            "<at>jitbot</at> jit request cloud-admin 1h fixing INC-77",
        )
        .await;
    let personal = format!("a:personal-{ALICE}");
    let receipt = teams
        .wait_for_post(&personal, "the receipt in alice's chat", "is filed")
        .await;
    let id = request_id(&receipt);

    // The approval card in the Teams channel: Adaptive Card 1.5 with
    // Action.Execute buttons and Action.Submit fallbacks.
    let card = teams
        .wait_for_post(APPROVALS, "the approval card", &id)
        .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let content = &card["attachments"][0]["content"];
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(content["version"], "1.5");
    assert_eq!(content["actions"][0]["type"], "Action.Execute");
    assert_eq!(content["actions"][0]["fallback"]["type"], "Action.Submit");
    // The connector was called with the bot's own token.
    let authorized = teams
        .microsoft
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with("/teams/"))
        .all(|r| r.headers["authorization"] == format!("Bearer {BOT_ACCESS_TOKEN}").as_str());
    assert!(authorized);

    // Alice cannot approve her own request; the answer says so at once.
    let own = teams
        .execute(
            ALICE,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert_eq!(own["type"], "application/vnd.microsoft.activity.message");
    assert_eq!(
        own["value"],
        format!("You cannot approve your own request {id}.")
    );
    // Deny without a reason is an error on the card.
    let no_reason = teams
        .execute(
            LEAD,
            "jit_deny",
            json!({ "jit_action": "jit_deny", "jit_value": id }),
        )
        .await;
    assert_eq!(no_reason["statusCode"], 400);
    assert_eq!(no_reason["type"], "application/vnd.microsoft.error");

    // The lead approves: the answer is the refreshed card, without buttons.
    let approved = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert_eq!(approved["statusCode"], 200);
    assert_eq!(approved["type"], "application/vnd.microsoft.card.adaptive");
    assert!(
        approved["value"].to_string().contains("Approved by"),
        "{approved}"
    );
    assert!(approved["value"]["actions"].is_null(), "{approved}");

    // Granted to the AAD object id; the card updated for everyone in place;
    // alice told in her chat.
    let grant = eventually("the grant", || async {
        teams
            .app
            .iam_calls()
            .await
            .into_iter()
            .find(|(b, _)| b["action"] == "grant" && b["request_id"] == id.as_str())
    })
    .await;
    assert_eq!(grant.0["principal"], ALICE);
    assert_eq!(grant.0["user"]["platform"], "teams");
    // The update goes to the activity the card was posted as: the fake
    // connector numbers its answers in call order.
    let calls = teams.connector_calls().await;
    let card_post = calls
        .iter()
        .position(|(m, p, b)| {
            m == "POST"
                && *p == format!("/teams/v3/conversations/{APPROVALS}/activities")
                && b.to_string().contains(&id)
        })
        .unwrap();
    let card_activity = format!("activity-{}", card_post + 1);
    eventually("the card updated in place", || async {
        teams.connector_calls().await.into_iter().find(|(m, p, b)| {
            m == "PUT"
                && *p == format!("/teams/v3/conversations/{APPROVALS}/activities/{card_activity}")
                && b.to_string().contains("Access is active until")
        })
    })
    .await;
    teams
        .wait_for_post(&personal, "the 'live' message to alice", "is live until")
        .await;

    // A second click changes nothing and says why.
    let again = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert!(
        again["value"].as_str().unwrap().contains("already"),
        "{again}"
    );
    assert_eq!(
        teams
            .app
            .iam_calls()
            .await
            .iter()
            .filter(|(b, _)| b["action"] == "grant")
            .count(),
        1
    );
    let app = teams.app;
    let refused = app.audit_details("DecisionRefused").await;
    assert_eq!(
        refused,
        [format!("You cannot approve your own request {id}.")]
    );
}

#[tokio::test]
async fn older_clients_deny_with_action_submit_and_unreachable_people_are_reported() {
    // Bob only ever talked to the bot in a channel, and the app is not
    // installed for him: a 1:1 chat cannot be created.
    let teams = Teams::start(&[BOB]).await;
    teams
        .say_in_channel(
            BOB,
            "19:ops@thread.tacv2",
            "<at>jitbot</at> jit request cloud-admin 2h deploy",
        )
        .await;
    let card = teams
        .wait_for_post(APPROVALS, "the approval card", "deploy")
        .await;
    let id = request_id(&card);

    // Action.Submit: a message whose value carries the button's data.
    let submit = teams.activity(
        LEAD,
        APPROVALS,
        false,
        json!({
            "replyToId": "activity-1",
            "value": { "jit_action": "jit_deny", "jit_value": id, "reason": "not during the freeze" },
        }),
    );
    assert_eq!(
        teams
            .send(&submit, Some(&teams.good_token()))
            .await
            .status(),
        200
    );
    eventually("the card to show the denial", || async {
        teams
            .connector_calls()
            .await
            .into_iter()
            .find(|(m, _, b)| m == "PUT" && b.to_string().contains("Denied by"))
    })
    .await;
    // Bob cannot be told in a DM: the approval channel is told instead.
    let notice = teams
        .wait_for_post(
            APPROVALS,
            "the report in the approval channel",
            "I cannot reach",
        )
        .await;
    assert!(notice.contains("not during the freeze"), "{notice}");
    assert!(notice.contains("HTTP 403"), "{notice}");
}

#[tokio::test]
async fn the_outgoing_webhook_answers_commands_in_its_response() {
    let teams = Teams::start(&[]).await;
    // The bot is installed and has heard from the team (the webhook keeps
    // no service URL of its own), so it can post the approval card.
    teams.say(LEAD, "jit help").await;
    let body = teams
        .activity(
            ALICE,
            "19:general@thread.tacv2",
            false,
            json!({ "text": "<at>jitbot</at> jit request cloud-admin 30m via webhook" }),
        )
        .to_string();
    // The signature, computed here as Teams does: base64 HMAC-SHA256 of the
    // body under the base64-decoded security token.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&STANDARD.decode(TEAMS_WEBHOOK_SECRET).unwrap()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("HMAC {}", STANDARD.encode(mac.finalize().into_bytes()));
    let post = |authorization: String, body: String| {
        teams
            .app
            .http
            .post(teams.app.url("/teams/webhook"))
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let forged = post(
        "HMAC AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    let response = post(signature.clone(), body.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("is filed and waiting for approval"), "{text}");
    assert_eq!(
        answer["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(
        answer["attachments"][0]["content"]["actions"].is_null(),
        "no buttons in a webhook answer"
    );
    let id = request_id(text);
    // The same signed message again is a replay: refused, nothing filed.
    let replay = post(signature, body).await.unwrap();
    assert_eq!(replay.status(), 401);
    // A correctly signed message from ten minutes ago is refused too.
    let stale = teams
        .activity(
            ALICE,
            "19:general@thread.tacv2",
            false,
            json!({
                "text": "<at>jitbot</at> jit request cloud-admin 30m old",
                "timestamp": (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339(),
            }),
        )
        .to_string();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&STANDARD.decode(TEAMS_WEBHOOK_SECRET).unwrap()).unwrap();
    mac.update(stale.as_bytes());
    let stale_signature = format!("HMAC {}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(post(stale_signature, stale).await.unwrap().status(), 401);
    // Only the first signed request was filed: its card, and no other.
    teams
        .wait_for_post(APPROVALS, "the approval card", &id)
        .await;
    teams.app.until_outbox_empty().await;
    assert_eq!(teams.posted_to(APPROVALS).await.len(), 1);
    assert_eq!(teams.app.audit_details("Requested").await.len(), 1);
}

#[tokio::test]
async fn proactive_messages_open_a_chat_reuse_the_token_and_honour_throttling() {
    let teams = Teams::start(&[]).await;
    // Teams throttles the first post to the approval channel.
    Mock::given(method("POST"))
        .and(path(format!(
            "/teams/v3/conversations/{APPROVALS}/activities"
        )))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&teams.microsoft)
        .await;
    // Alice asks in a channel: the answer reaches her privately, in a 1:1
    // chat jitbot opens with the tenant and user ids it stored.
    teams
        .say_in_channel(
            ALICE,
            "19:ops@thread.tacv2",
            "<at>jitbot</at> jit request cloud-admin 1h rotate keys",
        )
        .await;
    let dm = format!("a:dm-29:{ALICE}");
    let receipt = teams
        .wait_for_post(&dm, "the receipt in the new 1:1 chat", "is filed")
        .await;
    let id = request_id(&receipt);
    let created: Vec<Value> = teams
        .connector_calls()
        .await
        .into_iter()
        .filter(|(m, p, _)| m == "POST" && p == "/teams/v3/conversations")
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["members"][0]["id"], format!("29:{ALICE}"));
    assert_eq!(created[0]["channelData"]["tenant"]["id"], TENANT);
    assert_eq!(created[0]["bot"]["id"], format!("28:{APP_ID}"));

    // The card arrives after the throttle: one refused post, one delivered.
    eventually("the card after the 429", || async {
        let posts = teams.posted_to(APPROVALS).await;
        (posts.iter().filter(|m| m.contains(&id)).count() == 2).then_some(())
    })
    .await;
    // A second message reuses the 1:1 chat and the bot's token.
    teams.say(ALICE, "jit list").await;
    eventually("the list", || async {
        teams
            .posted_to(&format!("a:personal-{ALICE}"))
            .await
            .into_iter()
            .find(|m| m.contains(&id))
    })
    .await;
    let token_calls: Vec<String> = teams
        .microsoft
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/token")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(token_calls.len(), 1, "the bot token is cached");
    assert!(token_calls[0].contains("grant_type=client_credentials"));
    assert!(token_calls[0].contains(&format!("client_id={APP_ID}")));
    assert!(token_calls[0].contains("scope=https%3A%2F%2Fapi.botframework.com%2F.default"));
}

#[tokio::test]
async fn a_bare_request_gets_a_form_card_whose_answer_files_the_request() {
    let teams = Teams::start(&[]).await;
    teams.say(ALICE, "jit request").await;
    let personal = format!("a:personal-{ALICE}");
    let form = teams
        .wait_for_post(&personal, "the form card", "Input.ChoiceSet")
        .await;
    let form: Value = serde_json::from_str(&form).unwrap();
    let content = &form["attachments"][0]["content"];
    let groups = content["body"][1]["choices"].to_string();
    assert!(
        groups.contains("cloud-admin") && groups.contains("dual"),
        "{groups}"
    );
    assert_eq!(content["actions"][0]["verb"], "jit_request");

    let answer = teams
        .execute(
            ALICE,
            "jit_request",
            json!({ "jit_action": "jit_request", "jit_value": "", "group": "cloud-admin", "duration": "45m", "reason": "from the form" }),
        )
        .await;
    assert_eq!(answer["type"], "application/vnd.microsoft.activity.message");
    let text = answer["value"].as_str().unwrap();
    assert!(text.contains("for cloud-admin (45m) is filed"), "{text}");
    let bad = teams
        .execute(
            ALICE,
            "jit_request",
            json!({ "jit_action": "jit_request", "jit_value": "", "group": "cloud-admin", "duration": "forever", "reason": "x" }),
        )
        .await;
    assert_eq!(bad["statusCode"], 400, "{bad}");
}

#[tokio::test]
async fn a_group_with_slack_and_teams_channels_is_decided_from_either() {
    let teams = Teams::start(&[]).await;
    teams
        .say(ALICE, "jit request dual 1h month-end close")
        .await;
    let personal = format!("a:personal-{ALICE}");
    let receipt = teams
        .wait_for_post(&personal, "the receipt", "is filed")
        .await;
    let id = request_id(&receipt);
    // One card in each place.
    teams.wait_for_post(APPROVALS, "the Teams card", &id).await;
    let slack_card = eventually("the Slack card", || async {
        teams.app.cards_for(&id).await.into_iter().next()
    })
    .await;
    assert_eq!(slack_card["channel"], "C0DUAL");
    // Approved from Slack: both cards are updated, the grant made once.
    teams.app.approve("U0LEAD", &id).await;
    eventually("the Slack card updated", || async {
        teams
            .app
            .latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Approved by"))
    })
    .await;
    eventually("the Teams card updated", || async {
        teams.connector_calls().await.into_iter().find(|(m, _, b)| {
            m == "PUT" && b.to_string().contains(&id) && b.to_string().contains("Approved by")
        })
    })
    .await;
    eventually("the grant", || async {
        (teams.app.iam_actions("grant", &id).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_admin_maps_a_teams_channel_by_its_conversation_id() {
    let teams = Teams::start(&[]).await;
    // Teams has talked to the bot, so jitbot knows its service URL.
    teams.say(ALICE, "jit help").await;
    let answer = teams
        .app
        .command_text(
            "U0ADMIN",
            "C0OPS",
            "admin map 19:secops@thread.tacv2 cloud-admin",
        )
        .await;
    assert!(
        answer.starts_with("Mapped 19:secops@thread.tacv2 to `cloud-admin`"),
        "{answer}"
    );
    teams
        .wait_for_post(
            "19:secops@thread.tacv2",
            "the notice in the Teams channel",
            "will be posted here",
        )
        .await;
    teams.say(ALICE, "jit request cloud-admin 1h audit").await;
    let card = teams
        .wait_for_post(
            "19:secops@thread.tacv2",
            "the card in the mapped channel",
            "Action.Execute",
        )
        .await;
    assert!(card.contains("audit"), "{card}");
}

#[tokio::test]
async fn the_expiry_warning_card_extends_a_grant_from_teams() {
    let teams = Teams::start(&[]).await;
    teams.say(ALICE, "jit request brief 5m quick fix").await;
    let personal = format!("a:personal-{ALICE}");
    // Auto-approved and granted; three seconds before the end, the warning
    // card with an Extend button and its inputs.
    let live = teams
        .wait_for_post(&personal, "the access to be live", "is live until")
        .await;
    let id = request_id(&live.replace("G-", "R-"));
    let end = teams.app.expires_at(&id).await;
    teams.app.advance_to(end - chrono::Duration::seconds(2));
    let warning = teams
        .wait_for_post(&personal, "the warning card", "jit_extend")
        .await;
    let warning: Value = serde_json::from_str(&warning).unwrap();
    let extend = &warning["attachments"][0]["content"]["actions"][0];
    assert_eq!(extend["type"], "Action.Execute");
    let grant = extend["data"]["jit_value"].as_str().unwrap().to_string();
    assert!(grant.starts_with("G-"), "{grant}");
    let answer = teams
        .execute(
            ALICE,
            "jit_extend",
            json!({ "jit_action": "jit_extend", "jit_value": grant, "duration": "1m", "reason": "tests still running" }),
        )
        .await;
    assert_eq!(answer["type"], "application/vnd.microsoft.activity.message");
    let text = answer["value"].as_str().unwrap();
    assert!(
        text.starts_with("Extension R-") && text.contains(&grant),
        "{text}"
    );
    let missing = teams
        .execute(
            ALICE,
            "jit_extend",
            json!({ "jit_action": "jit_extend", "jit_value": grant }),
        )
        .await;
    assert_eq!(missing["statusCode"], 400, "{missing}");
}

#[tokio::test]
async fn keep_it_on_the_idle_warning_card_works_from_teams() {
    let teams = Teams::start(&[]).await;
    Mock::given(method("GET"))
        .and(path("/activity"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "in_use": false, "last_used": null })),
        )
        .mount(&teams.app.iam)
        .await;
    teams.say(ALICE, "jit request quiet 1h reading logs").await;
    let personal = format!("a:personal-{ALICE}");
    let live = teams
        .wait_for_post(&personal, "the access to be live", "is live until")
        .await;
    let id = request_id(&live.replace("G-", "R-"));
    teams.app.until_active(&id).await;

    // Unused for six minutes: the warning card, with Keep it.
    teams.app.advance(std::time::Duration::from_secs(6 * 60));
    let warning = teams
        .wait_for_post(&personal, "the idle warning card", "jit_keep")
        .await;
    let warning: Value = serde_json::from_str(&warning).unwrap();
    let keep = &warning["attachments"][0]["content"]["actions"][0];
    assert_eq!(keep["title"], "Keep it");
    let grant = keep["data"]["jit_value"].as_str().unwrap().to_string();

    let refused = teams
        .execute(
            BOB,
            "jit_keep",
            json!({ "jit_action": "jit_keep", "jit_value": grant }),
        )
        .await;
    assert!(
        refused["value"]
            .as_str()
            .unwrap()
            .contains("Only the requester"),
        "{refused}"
    );
    let kept = teams
        .execute(
            ALICE,
            "jit_keep",
            json!({ "jit_action": "jit_keep", "jit_value": grant }),
        )
        .await;
    let text = kept["value"].as_str().unwrap();
    assert!(text.starts_with(&format!("Kept: {grant}")), "{text}");
    assert_eq!(teams.app.audit_details("KeptInUse").await.len(), 1);
    assert_eq!(teams.app.request_json(&id).await["state"], "active");
}

#[tokio::test]
async fn break_glass_is_announced_and_reviewed_from_teams() {
    let teams = Teams::start(&[]).await;
    teams
        .say(ALICE, "jit breakglass glass 30m INC-7 the portal is down")
        .await;
    let notice = teams
        .wait_for_post(APPROVALS, "the break-glass notice", "break-glass:")
        .await;
    assert!(notice.contains("glass"), "{notice}");
    let card = teams
        .wait_for_post(APPROVALS, "the review card", "jit_bg_ack")
        .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let actions = &card["attachments"][0]["content"]["actions"];
    assert_eq!(actions[0]["title"], "Acknowledge", "{actions}");
    assert_eq!(actions[1]["title"], "Revoke now", "{actions}");
    let id = actions[0]["data"]["jit_value"]
        .as_str()
        .unwrap()
        .to_string();
    teams.app.until_active(&id).await;

    let press = |user: &'static str| {
        let teams = &teams;
        let id = id.clone();
        async move {
            teams
                .execute(
                    user,
                    "jit_bg_ack",
                    json!({ "jit_action": "jit_bg_ack", "jit_value": id }),
                )
                .await["value"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    let refused = press(BOB).await;
    assert!(refused.contains("not an approver"), "{refused}");
    let own = press(ALICE).await;
    assert!(own.contains("your own break-glass"), "{own}");
    let acknowledged = press(LEAD).await;
    assert!(acknowledged.contains("You acknowledged"), "{acknowledged}");
    assert_eq!(
        teams
            .app
            .audit_details("BreakGlassAcknowledged")
            .await
            .len(),
        1
    );
    assert_eq!(teams.app.request_json(&id).await["state"], "active");
}

#[tokio::test]
async fn only_teams_activities_act_and_junk_is_refused_before_it_is_read() {
    let teams = Teams::start(&[]).await;
    let request = |channel: &str| {
        teams.activity(
            ALICE,
            &format!("a:personal-{ALICE}"),
            true,
            json!({ "text": "jit request cloud-admin 1h from web chat", "channelId": channel }),
        )
    };
    // Web Chat, with a key endorsed only for Web Chat: not a Teams user.
    let webchat_token = teams.token(json!({}), WEBCHAT_KID, &keys().webchat);
    let response = teams.send(&request("webchat"), Some(&webchat_token)).await;
    assert_eq!(response.status(), 403);
    // Web Chat, even with a key also endorsed for Teams.
    let response = teams
        .send(&request("webchat"), Some(&teams.good_token()))
        .await;
    assert_eq!(response.status(), 403);
    // Teams' channel id with the Web Chat key.
    let response = teams.send(&request("msteams"), Some(&webchat_token)).await;
    assert_eq!(response.status(), 403);
    // Junk without a token: 401, not a parse error.
    let junk = teams
        .app
        .http
        .post(teams.app.url("/teams/messages"))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 401);
    // A message without an id cannot be told from its redelivery.
    let mut anonymous = request("msteams");
    anonymous["id"] = json!("");
    let response = teams.send(&anonymous, Some(&teams.good_token())).await;
    assert_eq!(response.status(), 400);
    assert!(
        teams.posted_to(APPROVALS).await.is_empty(),
        "nothing was filed"
    );
}

#[tokio::test]
async fn a_webhook_replay_respelled_is_still_a_replay() {
    let teams = Teams::start(&[]).await;
    let body = teams
        .activity(
            ALICE,
            "19:general@thread.tacv2",
            false,
            json!({ "text": "<at>jitbot</at> jit request cloud-admin 30m captured" }),
        )
        .to_string();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&STANDARD.decode(TEAMS_WEBHOOK_SECRET).unwrap()).unwrap();
    mac.update(body.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let post = |authorization: String| {
        teams
            .app
            .http
            .post(teams.app.url("/teams/webhook"))
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    assert_eq!(
        post(format!("HMAC {signature}")).await.unwrap().status(),
        200
    );
    for respelled in [
        format!("HMAC  {signature}"),
        format!("HMAC {signature} "),
        format!("HMAC \t{signature}"),
    ] {
        let replay = post(respelled.clone()).await.unwrap();
        assert_eq!(replay.status(), 401, "{respelled:?}");
    }
    // Every answer is in, so the store holds all there is: one request.
    let audit = teams
        .app
        .http
        .get(teams.app.url("/api/v1/audit"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let filed = audit
        .lines()
        .filter(|line| line.contains("\"requested\"") && line.contains("captured"))
        .count();
    assert_eq!(filed, 1, "{audit}");
}

#[tokio::test]
async fn markdown_people_write_is_never_rendered_in_teams() {
    let teams = Teams::start(&[]).await;
    let markup = "[Approve now](https://evil.example) **urgent** <at>everyone</at>";
    teams
        .say(ALICE, &format!("jit request cloud-admin 1h {markup}"))
        .await;
    let card = teams
        .wait_for_post(APPROVALS, "the card", "https://evil.example")
        .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let content = &card["attachments"][0]["content"];
    // Every place the reason appears is a run of a RichTextBlock, which
    // renders no markdown; no TextBlock carries it.
    let mut carriers = Vec::new();
    fn walk(value: &Value, parent: Option<&str>, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str);
                if let Some(text) = map.get("text").and_then(Value::as_str) {
                    if text.contains("evil.example") {
                        out.push(kind.unwrap_or(parent.unwrap_or("?")).to_string());
                    }
                }
                for v in map.values() {
                    walk(v, kind.or(parent), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, parent, out)),
            _ => {}
        }
    }
    walk(content, None, &mut carriers);
    assert!(!carriers.is_empty());
    assert!(
        carriers.iter().all(|k| k == "TextRun"),
        "{carriers:?} in {content:#}"
    );
    // The card's message text is plain text: no markdown link either.
    assert_eq!(card["textFormat"], "plain", "{card:#}");

    // A denial's reason in the requester's chat: plain text.
    let id = request_id(&card["attachments"][0]["content"].to_string());
    let answer = teams
        .execute(
            LEAD,
            "jit_deny",
            json!({ "jit_action": "jit_deny", "jit_value": id, "reason": markup }),
        )
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let dm = teams
        .wait_for_post(&format!("a:personal-{ALICE}"), "the denial", "was denied")
        .await;
    let dm: Value = serde_json::from_str(&dm).unwrap();
    assert_eq!(dm["textFormat"], "plain", "{dm}");
    assert!(
        dm["text"].as_str().unwrap().contains(markup),
        "shown as written: {dm}"
    );
}

#[tokio::test]
async fn a_stale_activity_is_refused_even_with_a_good_token() {
    let teams = Teams::start(&[]).await;
    let stale = teams.activity(
        ALICE,
        &format!("a:personal-{ALICE}"),
        true,
        json!({
            "text": "jit request cloud-admin 1h stale",
            "timestamp": (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339(),
        }),
    );
    let response = teams.send(&stale, Some(&teams.good_token())).await;
    assert_eq!(response.status(), 401);
    assert!(teams.app.audit_details("Requested").await.is_empty());
    let fresh = teams.activity(
        ALICE,
        &format!("a:personal-{ALICE}"),
        true,
        json!({ "text": "jit request cloud-admin 1h fresh" }),
    );
    assert_eq!(
        teams.send(&fresh, Some(&teams.good_token())).await.status(),
        200
    );
    assert_eq!(teams.app.audit_details("Requested").await.len(), 1);
}

#[tokio::test]
async fn several_groups_are_asked_for_and_approved_on_one_teams_card() {
    let teams = Teams::start(&[]).await;
    teams
        .say(
            ALICE,
            "jit request cloud-admin,glass 1h INC-8 tenant migration",
        )
        .await;
    let card = teams
        .wait_for_post(APPROVALS, "the one card", "cloud-admin, glass")
        .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let id = card["attachments"][0]["content"]["actions"][0]["data"]["jit_value"]
        .as_str()
        .unwrap()
        .to_string();
    let members: Vec<String> = teams.app.request_json(&id).await["bundle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members.len(), 2);

    let approved = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert_eq!(approved["statusCode"], 200);
    let shown = approved["value"].to_string();
    assert!(
        shown.contains("cloud-admin") && shown.contains("glass"),
        "{shown}"
    );
    for member in &members {
        teams.app.until_active(member).await;
    }
    teams.app.until_outbox_empty().await;
    let cards_posted = teams
        .posted_to(APPROVALS)
        .await
        .into_iter()
        .filter(|post| post.contains("jit_approve") && post.contains(&id))
        .count();
    assert_eq!(cards_posted, 1);
}

#[tokio::test]
async fn jit_home_answers_with_a_card_whose_buttons_act() {
    let teams = Teams::start(&[]).await;
    teams
        .say(ALICE, "jit request cloud-admin 1h INC-9 from the home card")
        .await;
    let card = teams
        .wait_for_post(APPROVALS, "the approval card", "cloud-admin")
        .await;
    let card: Value = serde_json::from_str(&card).unwrap();
    let id = card["attachments"][0]["content"]["actions"][0]["data"]["jit_value"]
        .as_str()
        .unwrap()
        .to_string();

    teams.say(LEAD, "jit home").await;
    let home = teams
        .wait_for_post(
            &format!("a:personal-{LEAD}"),
            "the lead's home",
            "Waiting for your approval",
        )
        .await;
    let home: Value = serde_json::from_str(&home).unwrap();
    let content = home["attachments"][0]["content"].to_string();
    assert!(
        content.contains(&id) && content.contains("jit_deny"),
        "{content}"
    );
    assert!(content.contains("Request access"), "{content}");
    // Approve from the home: the cards' own path.
    let approved = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert_eq!(approved["statusCode"], 200, "{approved}");
    teams.app.until_active(&id).await;

    // Alice's home shows the grant with Release; Release ends it.
    teams.say(ALICE, "jit home").await;
    let grant = format!("G-{}", &id[2..]);
    let home = teams
        .wait_for_post(
            &format!("a:personal-{ALICE}"),
            "Alice's home",
            "jit_release",
        )
        .await;
    assert!(home.contains(&grant), "{home}");
    // One duration box and one reason box serve the grant's Extend.
    let home: Value = serde_json::from_str(&home).unwrap();
    let inputs: Vec<&str> = home["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|element| element["type"] == "Input.Text")
        .map(|element| element["id"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["duration", "reason"]);
    let released = teams
        .execute(
            ALICE,
            "jit_release",
            json!({ "jit_action": "jit_release", "jit_value": grant }),
        )
        .await;
    assert!(released.to_string().contains("Releasing"), "{released}");
    eventually("the release", || async {
        (teams.app.state_of(&id).await == "released").then_some(())
    })
    .await;
}

// ── Nobody decides their own request from another account ───────────────

/// A group decided from Slack and Teams whose break-glass the Slack lead
/// may use: the lead has an account on each.
const LEAD_ON_BOTH: &str = r#"
[[groups]]
name = "shared-glass"
provider = "iam"
target = "incident-owner"
approvers = ["U0LEAD", "LEAD"]
channel = "C0DUAL"
teams_channel = "APPROVALS"
break_glass = { requesters = ["U0LEAD"], max_duration = "1h" }
"#;

fn lead_on_both(identities: &str) -> String {
    format!(
        "{}{identities}",
        LEAD_ON_BOTH
            .replace("\"LEAD\"", &format!("\"{LEAD}\""))
            .replace("APPROVALS", APPROVALS)
    )
}

#[tokio::test]
async fn a_slack_requester_cannot_approve_her_own_request_from_her_linked_teams_account() {
    let linked = format!("\n[identities]\nU0LEAD = {{ teams = \"{LEAD}\" }}\n");
    let teams = Teams::start_with(&[], &lead_on_both(&linked), &[], &[]).await;
    // Teams has talked to jitbot from the approval channel, so its cards
    // can be posted there.
    teams.say_in_channel(LEAD, APPROVALS, "jit help").await;
    let id = teams
        .app
        .request("U0LEAD", "request shared-glass 1h month-end close")
        .await;
    teams.wait_for_post(APPROVALS, "the Teams card", &id).await;
    let own = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    assert_eq!(
        own["value"],
        format!("You cannot approve your own request {id}."),
        "{own}"
    );
    teams.app.until_outbox_empty().await;
    assert_eq!(teams.app.state_of(&id).await, "pending");
    assert_eq!(teams.app.iam_actions("grant", &id).await, 0);
}

#[tokio::test]
async fn a_teams_approver_jitbot_cannot_tell_from_the_slack_requester_is_refused_and_audited() {
    // No link, and the Teams directory gives the lead no address: the
    // Teams account may be the requester's own.
    let teams = Teams::start_with(&[], &lead_on_both(""), &[LEAD], &[]).await;
    teams.say_in_channel(LEAD, APPROVALS, "jit help").await;
    let id = teams
        .app
        .request("U0LEAD", "request shared-glass 1h month-end close")
        .await;
    teams.wait_for_post(APPROVALS, "the Teams card", &id).await;
    let refused = teams
        .execute(
            LEAD,
            "jit_approve",
            json!({ "jit_action": "jit_approve", "jit_value": id }),
        )
        .await;
    let text = refused["value"].as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("jitbot cannot verify that you are not the requester"),
        "{refused}"
    );
    teams.app.until_outbox_empty().await;
    assert_eq!(teams.app.state_of(&id).await, "pending");
    assert_eq!(teams.app.iam_actions("grant", &id).await, 0);
    let audited = teams.app.audit_details("DecisionRefused").await;
    assert!(
        audited.iter().any(|d| d.contains("cannot verify")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn break_glass_cannot_be_acknowledged_from_the_users_other_account() {
    let linked = format!("\n[identities]\nU0LEAD = {{ teams = \"{LEAD}\" }}\n");
    let teams = Teams::start_with(&[], &lead_on_both(&linked), &[], &[]).await;
    // Teams has talked to jitbot from the approval channel, so its cards
    // can be posted there.
    teams.say_in_channel(LEAD, APPROVALS, "jit help").await;
    let answer = teams
        .app
        .command_text(
            "U0LEAD",
            "C0DUAL",
            "breakglass shared-glass 30m INC-7 portal down",
        )
        .await;
    let id = request_id(&answer);
    teams.app.until_active(&id).await;
    teams
        .wait_for_post(APPROVALS, "the review card", "jit_bg_ack")
        .await;
    let own = teams
        .execute(
            LEAD,
            "jit_bg_ack",
            json!({ "jit_action": "jit_bg_ack", "jit_value": id }),
        )
        .await;
    assert!(
        own["value"]
            .as_str()
            .unwrap_or_default()
            .contains("your own break-glass"),
        "{own}"
    );
    teams.app.until_outbox_empty().await;
    assert!(teams
        .app
        .audit_details("BreakGlassAcknowledged")
        .await
        .is_empty());
}

/// Someone in a tenant that has not been let in.
const INTRUDER: &str = "0bad0bad-0000-4000-8000-00000000f00d";
const OTHER_TENANT: &str = "0badc0de-0000-4000-8000-0000000000bb";

#[tokio::test]
async fn activities_from_a_tenant_not_allowed_are_refused_and_change_nothing() {
    let mut teams = Teams::start_with_env(&[], &[("TEAMS_ALLOWED_TENANTS", TENANT)]).await;
    let from_intruder = |tenant_in_channel_data: &str, tenant_in_conversation: &str| {
        teams.activity(
            INTRUDER,
            &format!("a:personal-{INTRUDER}"),
            true,
            json!({
                "text": "jit request cloud-admin 1h from another tenant",
                "channelData": { "tenant": { "id": tenant_in_channel_data } },
                "conversation": {
                    "id": format!("a:personal-{INTRUDER}"),
                    "conversationType": "personal",
                    "tenantId": tenant_in_conversation,
                },
            }),
        )
    };
    // A valid Bot Framework token, from another tenant: refused.
    let foreign = teams
        .send(
            &from_intruder(OTHER_TENANT, OTHER_TENANT),
            Some(&teams.good_token()),
        )
        .await;
    assert_eq!(foreign.status(), 403);
    assert!(foreign.text().await.unwrap().contains("tenant"));
    // One field naming the allowed tenant does not vouch for the other.
    for (channel_data, conversation) in [(TENANT, OTHER_TENANT), (OTHER_TENANT, TENANT)] {
        let mixed = teams
            .send(
                &from_intruder(channel_data, conversation),
                Some(&teams.good_token()),
            )
            .await;
        assert_eq!(mixed.status(), 403, "{channel_data} / {conversation}");
    }
    // Nor does the outgoing webhook let it in.
    let by_webhook = teams
        .post_to_webhook(&from_intruder(OTHER_TENANT, OTHER_TENANT))
        .await;
    assert_eq!(by_webhook.status(), 403);
    // The allowed tenant is served.
    teams
        .say(ALICE, "jit request cloud-admin 1h from the allowed tenant")
        .await;
    teams
        .wait_for_post(
            APPROVALS,
            "Alice's approval card",
            "from the allowed tenant",
        )
        .await;
    teams.app.stop().await;
    let store = teams.app.open_store().await;
    assert_eq!(store.teams_contact(INTRUDER).await.unwrap(), None);
    assert!(store.teams_contact(ALICE).await.unwrap().is_some());
    let pending = store.pending_requests().await.unwrap();
    assert_eq!(pending.len(), 1, "only Alice's request: {pending:?}");
}

#[tokio::test]
async fn a_service_url_off_the_allowed_hosts_is_refused_and_never_stored() {
    let mut teams = Teams::start(&[]).await;
    let lookalike_path = format!("{}x/", teams.service_url.trim_end_matches('/'));
    for evil in [
        "https://smba.trafficmanager.net.attacker.com/",
        "https://attacker.example/teams/",
        lookalike_path.as_str(),
    ] {
        // The token vouches for the same URL, so only the allowlist stands
        // between jitbot and a service that would get its access token.
        let token = teams.token(json!({ "serviceurl": evil }), KID, &keys().signing);
        let activity = teams.activity(
            INTRUDER,
            "a:evil-conversation",
            true,
            json!({ "text": "jit request cloud-admin 1h reply to me there", "serviceUrl": evil }),
        );
        let response = teams.send(&activity, Some(&token)).await;
        assert_eq!(response.status(), 403, "{evil}");
        assert!(
            response.text().await.unwrap().contains("serviceUrl"),
            "{evil}: the refusal says why"
        );
    }
    assert!(
        teams.connector_calls().await.is_empty(),
        "nothing was sent anywhere"
    );
    teams.app.stop().await;
    let store = teams.app.open_store().await;
    assert_eq!(store.teams_contact(INTRUDER).await.unwrap(), None);
    assert_eq!(
        store
            .teams_service_url("a:evil-conversation")
            .await
            .unwrap(),
        None,
        "no service URL was kept at all"
    );
    assert!(store.pending_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_outgoing_webhook_keeps_nothing_and_sends_admin_and_break_glass_to_the_app() {
    let mut teams = Teams::start(&[]).await;
    let conversation = "19:webhook-only@thread.tacv2";
    let say = |text: &str| {
        teams.activity(
            ALICE,
            conversation,
            false,
            json!({
                "text": format!("<at>jitbot</at> {text}"),
                "serviceUrl": "https://attacker.example/teams/",
            }),
        )
    };
    for text in [
        "jit breakglass glass 30m INC-9 the portal is down",
        "jit admin map 19:other@thread.tacv2 cloud-admin",
        "jit admin mappings",
    ] {
        let response = teams.post_to_webhook(&say(text)).await;
        assert_eq!(response.status(), 200, "{text}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["text"]
                .as_str()
                .unwrap()
                .contains("use the jitbot app for this"),
            "{text}: {answer}"
        );
    }
    // An ordinary request is still taken.
    let filed: Value = teams
        .post_to_webhook(&say("jit request cloud-admin 30m through the webhook"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        filed["text"].as_str().unwrap().contains("is filed"),
        "{filed}"
    );
    assert!(teams.app.audit_details("BreakGlassUsed").await.is_empty());
    assert!(teams.app.audit_details("MappingAdded").await.is_empty());
    assert_eq!(teams.app.audit_details("Requested").await.len(), 1);
    teams.app.stop().await;
    let store = teams.app.open_store().await;
    assert_eq!(store.teams_contact(ALICE).await.unwrap(), None);
    assert_eq!(
        store.teams_service_url(conversation).await.unwrap(),
        None,
        "no service URL was kept at all"
    );
}
