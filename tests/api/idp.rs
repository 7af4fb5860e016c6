//! The identity-provider providers, `okta` and `entra`, against fakes of
//! the Okta and Microsoft Graph APIs on loopback that keep real group
//! memberships, check the credentials on every call, page their lists and
//! throttle when told: the exact calls, idempotence both ways, confirmation
//! by reading back, token refresh, 4xx explained, and each provider end to
//! end through the server (request, approval, grant, expiry, revoke) and in
//! a sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitbot::providers::entra::{EntraProvider, EntraSettings};
use jitbot::providers::okta::OktaProvider;
use jitbot::providers::{Access, Provider};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{eventually, TestApp};

pub(crate) const OKTA_TOKEN: &str = "okta-api-token-for-tests";
pub(crate) const ENTRA_SECRET: &str = "entra-client-secret-for-tests";
const OKTA_GROUP: &str = "00gJITPRODDB";
const ENTRA_GROUP: &str = "5e2a0c1d-0000-4000-8000-00000000beef";

/// Members of groups, by group id; the fakes' state.
type Memberships = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

/// What a fake was asked: method, path and query, auth header.
type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

struct FakeOkta {
    /// Where the fake listens, for its paging links.
    base: String,
    /// login → user id.
    users: BTreeMap<String, String>,
    groups: Memberships,
    calls: Calls,
    /// Answer this many calls with 429 first.
    throttle: Arc<Mutex<u32>>,
}

impl Respond for FakeOkta {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_string();
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let query = request
            .url
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        self.calls.lock().unwrap().push((
            request.method.to_string(),
            format!("{path}{query}"),
            auth.clone(),
        ));
        if auth != format!("SSWS {OKTA_TOKEN}") {
            return ResponseTemplate::new(401).set_body_json(json!({ "errorCode": "E0000011" }));
        }
        {
            let mut throttle = self.throttle.lock().unwrap();
            if *throttle > 0 {
                *throttle -= 1;
                let reset = chrono::Utc::now().timestamp() + 1;
                return ResponseTemplate::new(429)
                    .insert_header("X-Rate-Limit-Reset", reset.to_string().as_str());
            }
        }
        let segments: Vec<String> = path
            .trim_start_matches("/api/v1/")
            .split('/')
            .map(urlencoding_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let user_json = |id: &str| {
            let login = self
                .users
                .iter()
                .find(|(_, uid)| uid.as_str() == id)
                .map(|(login, _)| login.clone())
                .unwrap_or_default();
            json!({ "id": id, "status": "ACTIVE", "profile": { "login": login, "email": login } })
        };
        let mut groups = self.groups.lock().unwrap();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["users", login]) => match self.users.get(*login) {
                Some(id) => ResponseTemplate::new(200).set_body_json(user_json(id)),
                None => {
                    ResponseTemplate::new(404).set_body_json(json!({ "errorCode": "E0000007" }))
                }
            },
            ("GET", ["users", id, "groups"]) => {
                let mine: Vec<Value> = groups
                    .iter()
                    .filter(|(_, members)| members.contains(*id))
                    .map(|(group, _)| json!({ "id": group, "type": "OKTA_GROUP" }))
                    .collect();
                ResponseTemplate::new(200).set_body_json(mine)
            }
            ("PUT", ["groups", group, "users", id]) => match groups.get_mut(*group) {
                Some(members) => {
                    members.insert(id.to_string());
                    ResponseTemplate::new(204)
                }
                None => ResponseTemplate::new(404),
            },
            ("DELETE", ["groups", group, "users", id]) => {
                let removed = groups.get_mut(*group).is_some_and(|m| m.remove(*id));
                ResponseTemplate::new(if removed { 204 } else { 404 })
            }
            ("GET", ["groups", group, "users"]) => {
                // Two per page, with Okta's Link header, whatever `limit` says.
                let Some(members) = groups.get(*group) else {
                    return ResponseTemplate::new(404);
                };
                let after = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "after")
                    .map(|(_, v)| v.to_string());
                let all: Vec<&String> = members.iter().collect();
                let start = after
                    .and_then(|a| all.iter().position(|m| **m == a).map(|p| p + 1))
                    .unwrap_or(0);
                let page: Vec<Value> = all
                    .iter()
                    .skip(start)
                    .take(2)
                    .map(|id| user_json(id))
                    .collect();
                let mut answer = ResponseTemplate::new(200).set_body_json(page);
                if start + 2 < all.len() {
                    let next = format!(
                        "<{}/api/v1/groups/{group}/users?after={}&limit=200>; rel=\"next\"",
                        self.base,
                        all[start + 1]
                    );
                    answer = answer.insert_header("link", next.as_str());
                }
                answer
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

fn urlencoding_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

struct Okta {
    server: MockServer,
    groups: Memberships,
    calls: Calls,
    throttle: Arc<Mutex<u32>>,
}

impl Okta {
    async fn start() -> Okta {
        let server = MockServer::start().await;
        let groups: Memberships = Arc::new(Mutex::new(BTreeMap::from([(
            OKTA_GROUP.to_string(),
            BTreeSet::from(["00uSERVICE".to_string()]),
        )])));
        let calls: Calls = Arc::default();
        let throttle = Arc::new(Mutex::new(0));
        Mock::given(wiremock::matchers::any())
            .respond_with(FakeOkta {
                base: server.uri(),
                users: BTreeMap::from([
                    ("u0alice@example.com".to_string(), "00uALICE".to_string()),
                    ("u0bob@example.com".to_string(), "00uBOB".to_string()),
                    ("svc@example.com".to_string(), "00uSERVICE".to_string()),
                ]),
                groups: groups.clone(),
                calls: calls.clone(),
                throttle: throttle.clone(),
            })
            .mount(&server)
            .await;
        Okta {
            server,
            groups,
            calls,
            throttle,
        }
    }

    fn members(&self) -> BTreeSet<String> {
        self.groups.lock().unwrap()[OKTA_GROUP].clone()
    }

    fn calls(&self) -> Vec<(String, String, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn provider(&self, token: &str) -> OktaProvider {
        OktaProvider::new(
            "okta",
            &self.server.uri(),
            token.into(),
            Duration::from_secs(10),
        )
        .unwrap()
    }
}

fn access(principal: &str, target: &str) -> Access {
    Access {
        request_id: Some("R-7K3Q9X".into()),
        grant_id: Some("G-7K3Q9X".into()),
        principal: principal.into(),
        group: "prod-db".into(),
        target: target.into(),
        ..Access::default()
    }
}

#[tokio::test]
async fn okta_membership_is_granted_and_revoked_idempotently_with_the_exact_calls() {
    let okta = Okta::start().await;
    let provider = okta.provider(OKTA_TOKEN);
    let alice = access("u0alice@example.com", OKTA_GROUP);
    provider.grant(&alice).await.unwrap();
    provider.grant(&alice).await.unwrap();
    assert!(okta.members().contains("00uALICE"));
    let calls = okta.calls();
    assert_eq!(
        calls[..3]
            .iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect::<Vec<_>>(),
        [
            "GET /api/v1/users/u0alice@example.com".to_string(),
            format!("PUT /api/v1/groups/{OKTA_GROUP}/users/00uALICE"),
            "GET /api/v1/users/00uALICE/groups".to_string(),
        ]
    );
    assert!(calls
        .iter()
        .all(|(_, _, auth)| auth == &format!("SSWS {OKTA_TOKEN}")));

    // Holders page through the group (two a page here): logins, the
    // standing service account too.
    provider
        .grant(&access("u0bob@example.com", OKTA_GROUP))
        .await
        .unwrap();
    let holders = provider.holders(OKTA_GROUP).await.unwrap();
    assert_eq!(
        holders,
        [
            "u0alice@example.com",
            "u0bob@example.com",
            "svc@example.com"
        ]
    );
    assert!(
        okta.calls()
            .iter()
            .any(|(_, path, _)| path.contains("after=00uBOB")),
        "the second page was asked for"
    );

    provider.revoke(&alice).await.unwrap();
    provider.revoke(&alice).await.unwrap();
    assert!(!okta.members().contains("00uALICE"));
    // Someone Okta does not know holds nothing: revoking them is done.
    provider
        .revoke(&access("ghost@example.com", OKTA_GROUP))
        .await
        .unwrap();
}

#[tokio::test]
async fn okta_refusals_are_explained_and_throttling_is_waited_out() {
    let okta = Okta::start().await;
    // A login Okta does not have: refused for good, saying why.
    let error = okta
        .provider(OKTA_TOKEN)
        .grant(&access("ghost@example.com", OKTA_GROUP))
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
    assert!(
        error
            .message
            .contains("no user with the login `ghost@example.com`"),
        "{error}"
    );
    // A wrong token: explained, never echoed.
    let error = okta
        .provider("wrong-token-value")
        .grant(&access("u0alice@example.com", OKTA_GROUP))
        .await
        .unwrap_err();
    assert!(error.permanent && error.message.contains("401"), "{error}");
    assert!(!error.to_string().contains("wrong-token-value"));
    // A target that is not an Okta id never reaches Okta.
    let before = okta.calls().len();
    let error = okta
        .provider(OKTA_TOKEN)
        .grant(&access("u0alice@example.com", "../users/00uADMIN"))
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
    assert_eq!(okta.calls().len(), before);
    // Two 429s: waited out until X-Rate-Limit-Reset, then granted.
    *okta.throttle.lock().unwrap() = 2;
    okta.provider(OKTA_TOKEN)
        .grant(&access("u0bob@example.com", OKTA_GROUP))
        .await
        .unwrap();
    assert!(okta.members().contains("00uBOB"));
}

struct FakeGraph {
    /// Where the fake listens, for its paging links.
    base: String,
    /// UPN → object id; `mail` addresses map the same way.
    users: BTreeMap<String, String>,
    mails: BTreeMap<String, String>,
    groups: Memberships,
    calls: Calls,
    tokens_issued: Arc<Mutex<u32>>,
    /// Tokens Graph no longer takes (expired).
    expired: Arc<Mutex<BTreeSet<String>>>,
    throttle: Arc<Mutex<u32>>,
}

impl Respond for FakeGraph {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_string();
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let query = request
            .url
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        self.calls.lock().unwrap().push((
            request.method.to_string(),
            format!("{path}{query}"),
            auth.clone(),
        ));
        if path == "/tenant/oauth2/v2.0/token" {
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
            let valid = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some("app-id")
                && form.get("client_secret").map(String::as_str) == Some(ENTRA_SECRET)
                && form.get("scope").map(String::as_str)
                    == Some("https://graph.microsoft.com/.default");
            if !valid {
                return ResponseTemplate::new(401)
                    .set_body_json(json!({ "error": "invalid_client" }));
            }
            let mut issued = self.tokens_issued.lock().unwrap();
            *issued += 1;
            return ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": format!("graph-token-{issued}")
            }));
        }
        let token = auth.strip_prefix("Bearer ").unwrap_or("");
        if !token.starts_with("graph-token-") || self.expired.lock().unwrap().contains(token) {
            return ResponseTemplate::new(401)
                .set_body_json(json!({ "error": { "code": "InvalidAuthenticationToken" } }));
        }
        {
            let mut throttle = self.throttle.lock().unwrap();
            if *throttle > 0 {
                *throttle -= 1;
                return ResponseTemplate::new(429).insert_header("Retry-After", "1");
            }
        }
        let segments: Vec<String> = path
            .trim_start_matches("/v1.0/")
            .split('/')
            .map(urlencoding_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let upn_of = |id: &str| {
            self.users
                .iter()
                .find(|(_, uid)| uid.as_str() == id)
                .map(|(upn, _)| upn.clone())
        };
        let mut groups = self.groups.lock().unwrap();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["users"]) => {
                let filter = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "$filter")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                let mail = filter
                    .strip_prefix("mail eq '")
                    .and_then(|m| m.strip_suffix('\''))
                    .unwrap_or("");
                let found: Vec<Value> = self
                    .mails
                    .get(mail)
                    .map(|id| json!({ "id": id }))
                    .into_iter()
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({ "value": found }))
            }
            ("GET", ["users", upn]) => match self.users.get(*upn) {
                Some(id) => ResponseTemplate::new(200).set_body_json(json!({ "id": id })),
                None => ResponseTemplate::new(404)
                    .set_body_json(json!({ "error": { "code": "Request_ResourceNotFound" } })),
            },
            ("GET", ["users", id, "memberOf"]) => {
                let mine: Vec<Value> = groups
                    .iter()
                    .filter(|(_, members)| members.contains(*id))
                    .map(|(group, _)| json!({ "@odata.type": "#microsoft.graph.group", "id": group }))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({ "value": mine }))
            }
            ("POST", ["groups", group, "members", "$ref"]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let reference = body["@odata.id"].as_str().unwrap_or("");
                let Some(id) = reference
                    .rsplit('/')
                    .next()
                    .filter(|_| reference.contains("/v1.0/directoryObjects/"))
                else {
                    return ResponseTemplate::new(400);
                };
                match groups.get_mut(*group) {
                    Some(members) if members.contains(id) => ResponseTemplate::new(400).set_body_json(json!({
                        "error": { "code": "Request_BadRequest", "message": "One or more added object references already exist for the following modified properties: 'members'." }
                    })),
                    Some(members) => {
                        members.insert(id.to_string());
                        ResponseTemplate::new(204)
                    }
                    None => ResponseTemplate::new(404),
                }
            }
            ("DELETE", ["groups", group, "members", id, "$ref"]) => {
                let removed = groups.get_mut(*group).is_some_and(|m| m.remove(*id));
                ResponseTemplate::new(if removed { 204 } else { 404 })
            }
            ("GET", ["groups", group, "members"]) => {
                let Some(members) = groups.get(*group) else {
                    return ResponseTemplate::new(404);
                };
                // One member per page, with Graph's @odata.nextLink.
                let skip: usize = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "$skiptoken")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let all: Vec<&String> = members.iter().collect();
                let page: Vec<Value> = all
                    .iter()
                    .skip(skip)
                    .take(1)
                    .map(|id| json!({ "id": id, "userPrincipalName": upn_of(id) }))
                    .collect();
                let mut answer = json!({ "value": page });
                if skip + 1 < all.len() {
                    answer["@odata.nextLink"] = json!(format!(
                        "{}/v1.0/groups/{group}/members?$skiptoken={}",
                        self.base,
                        skip + 1
                    ));
                }
                ResponseTemplate::new(200).set_body_json(answer)
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

struct Graph {
    server: MockServer,
    groups: Memberships,
    calls: Calls,
    tokens_issued: Arc<Mutex<u32>>,
    expired: Arc<Mutex<BTreeSet<String>>>,
    throttle: Arc<Mutex<u32>>,
}

impl Graph {
    async fn start() -> Graph {
        let server = MockServer::start().await;
        let groups: Memberships = Arc::new(Mutex::new(BTreeMap::from([(
            ENTRA_GROUP.to_string(),
            BTreeSet::from(["aaaaaaaa-0000-4000-8000-000000000005".to_string()]),
        )])));
        let calls: Calls = Arc::default();
        let tokens_issued = Arc::new(Mutex::new(0));
        let expired = Arc::new(Mutex::new(BTreeSet::new()));
        let throttle = Arc::new(Mutex::new(0));
        Mock::given(wiremock::matchers::any())
            .respond_with(FakeGraph {
                base: server.uri(),
                users: BTreeMap::from([
                    (
                        "u0alice@example.com".to_string(),
                        "a11ce000-0000-4000-8000-000000000001".to_string(),
                    ),
                    (
                        "svc@example.com".to_string(),
                        "aaaaaaaa-0000-4000-8000-000000000005".to_string(),
                    ),
                ]),
                mails: BTreeMap::from([(
                    "bob@example.com".to_string(),
                    "b0b00000-0000-4000-8000-000000000002".to_string(),
                )]),
                groups: groups.clone(),
                calls: calls.clone(),
                tokens_issued: tokens_issued.clone(),
                expired: expired.clone(),
                throttle: throttle.clone(),
            })
            .mount(&server)
            .await;
        Graph {
            server,
            groups,
            calls,
            tokens_issued,
            expired,
            throttle,
        }
    }

    fn members(&self) -> BTreeSet<String> {
        self.groups.lock().unwrap()[ENTRA_GROUP].clone()
    }

    fn provider(&self, secret: &str) -> EntraProvider {
        let graph_url = format!("{}/v1.0", self.server.uri());
        let token_url = format!("{}/tenant/oauth2/v2.0/token", self.server.uri());
        EntraProvider::new(
            "entra",
            EntraSettings {
                graph_url: &graph_url,
                token_url: &token_url,
                client_id: "app-id",
                client_secret: secret.into(),
            },
            Duration::from_secs(10),
        )
        .unwrap()
    }
}

const ALICE_ID: &str = "a11ce000-0000-4000-8000-000000000001";

#[tokio::test]
async fn entra_membership_is_granted_and_revoked_idempotently_through_graph() {
    let graph = Graph::start().await;
    let provider = graph.provider(ENTRA_SECRET);
    let alice = access("u0alice@example.com", ENTRA_GROUP);
    provider.grant(&alice).await.unwrap();
    provider.grant(&alice).await.unwrap();
    assert!(graph.members().contains(ALICE_ID));
    let calls = graph.calls.lock().unwrap().clone();
    let shown: Vec<String> = calls.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert_eq!(shown[0], "POST /tenant/oauth2/v2.0/token");
    assert_eq!(shown[1], "GET /v1.0/users/u0alice@example.com?%24select=id");
    assert_eq!(
        shown[2],
        format!("POST /v1.0/groups/{ENTRA_GROUP}/members/$ref")
    );
    assert!(calls[1..]
        .iter()
        .all(|(_, _, auth)| auth == "Bearer graph-token-1"));
    assert_eq!(*graph.tokens_issued.lock().unwrap(), 1, "the token is kept");

    // By mail when the address is not a UPN; by object id as it is.
    provider
        .grant(&access("bob@example.com", ENTRA_GROUP))
        .await
        .unwrap();
    assert!(graph
        .members()
        .contains("b0b00000-0000-4000-8000-000000000002"));
    let holders = provider.holders(ENTRA_GROUP).await.unwrap();
    assert_eq!(holders.len(), 3, "paged through every member: {holders:?}");
    assert!(holders.contains(&"u0alice@example.com".to_string()));
    assert!(holders.contains(&"svc@example.com".to_string()));

    provider.revoke(&alice).await.unwrap();
    provider.revoke(&alice).await.unwrap();
    provider
        .revoke(&access(ALICE_ID, ENTRA_GROUP))
        .await
        .unwrap();
    assert!(!graph.members().contains(ALICE_ID));
}

#[tokio::test]
async fn entra_renews_an_expired_token_waits_out_throttling_and_explains_refusals() {
    let graph = Graph::start().await;
    let provider = graph.provider(ENTRA_SECRET);
    provider
        .grant(&access("u0alice@example.com", ENTRA_GROUP))
        .await
        .unwrap();
    // Graph stops taking the token: a new one is fetched, once.
    graph.expired.lock().unwrap().insert("graph-token-1".into());
    *graph.throttle.lock().unwrap() = 1;
    provider
        .revoke(&access("u0alice@example.com", ENTRA_GROUP))
        .await
        .unwrap();
    assert_eq!(*graph.tokens_issued.lock().unwrap(), 2);
    assert!(!graph.members().contains(ALICE_ID));

    let error = provider
        .grant(&access("nobody@example.com", ENTRA_GROUP))
        .await
        .unwrap_err();
    assert!(
        error.permanent && error.message.contains("no user `nobody@example.com`"),
        "{error}"
    );
    let error = graph
        .provider("wrong-secret-value")
        .grant(&access("u0alice@example.com", ENTRA_GROUP))
        .await
        .unwrap_err();
    assert!(
        error.permanent && error.message.contains("client credentials were refused"),
        "{error}"
    );
    assert!(!error.to_string().contains("wrong-secret-value"));
    let error = provider
        .grant(&access("u0alice@example.com", "not-a-group"))
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
}

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"

[providers.okta]
kind = "okta"
org_url = "{OKTA}"
api_token_env = "TEST_OKTA_TOKEN"
timeout = "10s"

[providers.entra]
kind = "entra"
tenant_id = "tenant"
client_id = "app-id"
client_secret_env = "TEST_ENTRA_SECRET"
graph_url = "{GRAPH}/v1.0"
token_url = "{GRAPH}/tenant/oauth2/v2.0/token"
timeout = "10s"

[[groups]]
name = "okta-admins"
provider = "okta"
target = "00gJITPRODDB"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "{SWEEP}"
sweep_interval = "1h"
standing = ["svc@example.com"]

[[groups]]
name = "entra-admins"
provider = "entra"
target = "5e2a0c1d-0000-4000-8000-00000000beef"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;

#[tokio::test]
async fn okta_and_entra_grants_go_from_request_to_revocation_through_the_server() {
    let (okta, graph) = (Okta::start().await, Graph::start().await);
    let policy = POLICY
        .replace("{OKTA}", &okta.server.uri())
        .replace("{GRAPH}", &graph.server.uri())
        .replace("{SWEEP}", "off");
    let app = TestApp::spawn_with(&policy).await;
    // The fake Slack gives U0ALICE the address u0alice@example.com.
    let in_okta = app.request("U0ALICE", "request okta-admins 1h INC-1").await;
    let in_entra = app
        .request("U0ALICE", "request entra-admins 1h INC-2")
        .await;
    app.approve("U0LEAD", &in_okta).await;
    app.approve("U0LEAD", &in_entra).await;
    app.until_active(&in_okta).await;
    app.until_active(&in_entra).await;
    assert!(okta.members().contains("00uALICE"));
    assert!(graph.members().contains(ALICE_ID));

    app.advance_past_end(&in_okta).await;
    app.advance_past_end(&in_entra).await;
    eventually("both memberships to end at expiry", || async {
        (!okta.members().contains("00uALICE") && !graph.members().contains(ALICE_ID)).then_some(())
    })
    .await;
    eventually("both requests to be expired", || async {
        let states = (
            app.request_json(&in_okta).await["state"].clone(),
            app.request_json(&in_entra).await["state"].clone(),
        );
        (states == (json!("expired"), json!("expired"))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_enforcing_sweep_removes_okta_members_without_a_grant_and_keeps_the_standing() {
    let (okta, graph) = (Okta::start().await, Graph::start().await);
    okta.groups
        .lock()
        .unwrap()
        .get_mut(OKTA_GROUP)
        .unwrap()
        .insert("00uBOB".into());
    let policy = POLICY
        .replace("{OKTA}", &okta.server.uri())
        .replace("{GRAPH}", &graph.server.uri())
        .replace("{SWEEP}", "enforce");
    let app = TestApp::spawn_with(&policy).await;
    eventually("the sweep to remove u0bob", || async {
        (!okta.members().contains("00uBOB")).then_some(())
    })
    .await;
    assert!(okta.members().contains("00uSERVICE"), "allow-listed");
    // The sweep's own record follows the removal.
    eventually("the sweep's audit event naming u0bob", || async {
        let ran = app.audit_details("SweepRan").await;
        ran.iter()
            .any(|d| d.contains("u0bob@example.com"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_sweep_reports_entra_members_without_a_grant() {
    let (okta, graph) = (Okta::start().await, Graph::start().await);
    let policy = POLICY
        .replace("{OKTA}", &okta.server.uri())
        .replace("{GRAPH}", &graph.server.uri())
        .replace("{SWEEP}", "off")
        .replace(
            "target = \"5e2a0c1d-0000-4000-8000-00000000beef\"",
            "target = \"5e2a0c1d-0000-4000-8000-00000000beef\"\nsweep = \"report\"\nsweep_interval = \"1h\"",
        );
    let app = TestApp::spawn_with(&policy).await;
    let notice = app
        .wait_for_notice(
            "C0APPROVALS",
            "the sweep report",
            "Standing access to `entra-admins`",
        )
        .await;
    assert!(notice.contains("`svc@example.com`"), "{notice}");
    assert_eq!(graph.members().len(), 1, "report only");
}
