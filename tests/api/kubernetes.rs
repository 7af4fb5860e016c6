//! The `kubernetes` provider against a fake API server on loopback that
//! keeps RBAC bindings as the real one does (create, 409 on a second
//! create, get, list, update, delete, 404s) and checks the bearer token of
//! a kubeconfig: a binding per grant with its labels and annotations,
//! idempotent both ways, holders across bindings, a standing holder taken
//! out of a binding jitbot did not make, and the whole loop through the
//! server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitbot::providers::kubernetes::{Cluster, KubernetesProvider};
use jitbot::providers::{Access, Provider};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{eventually, TestApp};

const TOKEN: &str = "service-account-token-for-tests";

/// Bindings by collection path, then name.
type Bindings = Arc<Mutex<BTreeMap<String, BTreeMap<String, Value>>>>;

struct FakeApiServer {
    bindings: Bindings,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Respond for FakeApiServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path().to_string();
        self.calls
            .lock()
            .unwrap()
            .push(format!("{} {path}", request.method));
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != format!("Bearer {TOKEN}") {
            return ResponseTemplate::new(401)
                .set_body_json(json!({ "kind": "Status", "code": 401 }));
        }
        let status = |code: u16, reason: &str| {
            ResponseTemplate::new(code)
                .set_body_json(json!({ "kind": "Status", "code": code, "reason": reason }))
        };
        let is_collection =
            path.ends_with("/rolebindings") || path.ends_with("/clusterrolebindings");
        let (collection, name) = if is_collection {
            (path.clone(), None)
        } else {
            let (c, n) = path.rsplit_once('/').unwrap();
            (c.to_string(), Some(n.to_string()))
        };
        let mut all = self.bindings.lock().unwrap();
        let items = all.entry(collection).or_default();
        match (request.method.as_str(), name) {
            ("GET", None) => ResponseTemplate::new(200).set_body_json(json!({
                "kind": "List", "items": items.values().cloned().collect::<Vec<_>>()
            })),
            ("POST", None) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                let name = body["metadata"]["name"].as_str().unwrap().to_string();
                if items.contains_key(&name) {
                    return status(409, "AlreadyExists");
                }
                items.insert(name, body.clone());
                ResponseTemplate::new(201).set_body_json(body)
            }
            ("GET", Some(name)) => match items.get(&name) {
                Some(binding) => ResponseTemplate::new(200).set_body_json(binding),
                None => status(404, "NotFound"),
            },
            ("PUT", Some(name)) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                items.insert(name, body.clone());
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("DELETE", Some(name)) => match items.remove(&name) {
                Some(_) => status(200, "Success"),
                None => status(404, "NotFound"),
            },
            _ => status(405, "MethodNotAllowed"),
        }
    }
}

struct Kube {
    server: MockServer,
    bindings: Bindings,
    calls: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

const PAYMENTS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings";
const CLUSTER: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

impl Kube {
    async fn start() -> Kube {
        let server = MockServer::start().await;
        let bindings: Bindings = Arc::default();
        let calls = Arc::new(Mutex::new(Vec::new()));
        Mock::given(wiremock::matchers::any())
            .respond_with(FakeApiServer {
                bindings: bindings.clone(),
                calls: calls.clone(),
            })
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: jitbot\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: jitbot\n  user:\n    token: {TOKEN}\n",
                server.uri()
            ),
        )
        .unwrap();
        Kube {
            server,
            bindings,
            calls,
            kubeconfig: path.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    fn provider(&self, subject_kind: &str) -> KubernetesProvider {
        KubernetesProvider::new(
            "k8s",
            Cluster::from_kubeconfig(&self.kubeconfig).unwrap(),
            subject_kind,
            Duration::from_secs(10),
        )
        .unwrap()
    }

    fn binding(&self, collection: &str, name: &str) -> Option<Value> {
        self.bindings
            .lock()
            .unwrap()
            .get(collection)
            .and_then(|items| items.get(name).cloned())
    }

    fn names(&self, collection: &str) -> Vec<String> {
        self.bindings
            .lock()
            .unwrap()
            .get(collection)
            .map(|items| items.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A binding made by hand (not jitbot's).
    fn add_by_hand(
        &self,
        collection: &str,
        name: &str,
        role_kind: &str,
        role: &str,
        users: &[&str],
    ) {
        let subjects: Vec<Value> = users
            .iter()
            .map(|u| json!({ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u }))
            .collect();
        self.bindings
            .lock()
            .unwrap()
            .entry(collection.to_string())
            .or_default()
            .insert(
                name.to_string(),
                json!({
                    "metadata": { "name": name },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role },
                    "subjects": subjects,
                }),
            );
    }
}

fn access(principal: &str, target: &str, grant: Option<&str>) -> Access {
    Access {
        request_id: grant.map(|g| g.replace("G-", "R-")),
        grant_id: grant.map(str::to_string),
        principal: principal.into(),
        group: "payments-debug".into(),
        target: target.into(),
        expires_at: Some("2026-12-04T20:00:00Z".parse().unwrap()),
        ..Access::default()
    }
}

#[tokio::test]
async fn a_grant_is_a_labelled_binding_named_after_it_and_revoke_deletes_it() {
    let kube = Kube::start().await;
    let provider = kube.provider("User");
    let grant = access("alice@example.com", "payments/debugger", Some("G-7K3Q9X"));
    provider.grant(&grant).await.unwrap();
    provider.grant(&grant).await.unwrap();
    let binding = kube
        .binding(PAYMENTS, "jitbot-g-7k3q9x")
        .expect("the binding");
    assert_eq!(binding["kind"], "RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "payments");
    assert_eq!(
        binding["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "jitbot"
    );
    assert_eq!(
        binding["metadata"]["annotations"]["jitbot.dev/request-id"],
        "R-7K3Q9X"
    );
    assert_eq!(
        binding["metadata"]["annotations"]["jitbot.dev/expires-at"],
        "2026-12-04T20:00:00+00:00"
    );
    assert_eq!(
        binding["roleRef"],
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "debugger" })
    );
    assert_eq!(binding["subjects"][0]["name"], "alice@example.com");
    assert_eq!(binding["subjects"][0]["kind"], "User");
    assert_eq!(kube.names(PAYMENTS).len(), 1, "granted twice, one binding");
    assert_eq!(
        provider.holders("payments/debugger").await.unwrap(),
        ["alice@example.com"]
    );

    provider.revoke(&grant).await.unwrap();
    provider.revoke(&grant).await.unwrap();
    assert!(kube.names(PAYMENTS).is_empty());
    let calls = kube.calls.lock().unwrap().clone();
    assert!(calls.contains(&format!("POST {PAYMENTS}")));
    assert!(calls.contains(&format!("DELETE {PAYMENTS}/jitbot-g-7k3q9x")));

    // A cluster-wide role, bound for a group.
    let groups = kube.provider("Group");
    groups
        .grant(&access("sre-oncall", "view", Some("G-ABCDEF")))
        .await
        .unwrap();
    let binding = kube.binding(CLUSTER, "jitbot-g-abcdef").unwrap();
    assert_eq!(binding["kind"], "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["kind"], "Group");
}

#[tokio::test]
async fn a_standing_holder_is_taken_out_of_bindings_jitbot_did_not_make() {
    let kube = Kube::start().await;
    kube.add_by_hand(
        PAYMENTS,
        "by-hand",
        "Role",
        "debugger",
        &["bob@example.com", "svc@example.com"],
    );
    kube.add_by_hand(
        PAYMENTS,
        "bob-only",
        "Role",
        "debugger",
        &["bob@example.com"],
    );
    kube.add_by_hand(
        PAYMENTS,
        "other-role",
        "Role",
        "viewer",
        &["bob@example.com"],
    );
    let provider = kube.provider("User");
    assert_eq!(
        provider.holders("payments/debugger").await.unwrap(),
        ["bob@example.com", "svc@example.com"]
    );
    provider
        .revoke(&access("bob@example.com", "payments/debugger", None))
        .await
        .unwrap();
    let by_hand = kube.binding(PAYMENTS, "by-hand").unwrap();
    assert_eq!(by_hand["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(by_hand["subjects"][0]["name"], "svc@example.com");
    assert!(
        kube.binding(PAYMENTS, "bob-only").is_none(),
        "emptied, so deleted"
    );
    assert!(
        kube.binding(PAYMENTS, "other-role").is_some(),
        "another role is not touched"
    );
}

#[tokio::test]
async fn bad_targets_and_refused_credentials_are_explained() {
    let kube = Kube::start().await;
    let provider = kube.provider("User");
    let error = provider
        .grant(&access(
            "alice@example.com",
            "payments/../../secrets",
            Some("G-7K3Q9X"),
        ))
        .await
        .unwrap_err();
    assert!(error.permanent, "{error}");
    assert!(
        kube.calls.lock().unwrap().is_empty(),
        "nothing reached the API server"
    );
    let wrong = KubernetesProvider::new(
        "k8s",
        Cluster {
            token: Some(jitbot::config::Secret::new("not-the-token")),
            ..Cluster::from_kubeconfig(&kube.kubeconfig).unwrap()
        },
        "User",
        Duration::from_secs(10),
    )
    .unwrap();
    let error = wrong
        .grant(&access(
            "alice@example.com",
            "payments/debugger",
            Some("G-7K3Q9X"),
        ))
        .await
        .unwrap_err();
    assert!(error.permanent && error.message.contains("401"), "{error}");
    assert!(!error.to_string().contains("not-the-token"));
}

#[tokio::test]
async fn a_kubernetes_grant_goes_from_request_to_revocation_through_the_server() {
    let kube = Kube::start().await;
    let policy = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"

[providers.k8s]
kind = "kubernetes"
kubeconfig_env = "TEST_KUBECONFIG"
timeout = "10s"

[[groups]]
name = "payments-debug"
provider = "k8s"
target = "payments/debugger"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;
    let app = TestApp::spawn_with_env(policy, &[("TEST_KUBECONFIG", &kube.kubeconfig)]).await;
    let id = app
        .request("U0ALICE", "request payments-debug 1h INC-3")
        .await;
    app.approve("U0LEAD", &id).await;
    app.until_active(&id).await;
    let name = format!("jitbot-{}", id.replace("R-", "g-").to_lowercase());
    let binding = kube.binding(PAYMENTS, &name).expect("the grant's binding");
    // The principal template defaults to the email (the fake Slack's).
    assert_eq!(binding["subjects"][0]["name"], "u0alice@example.com");
    assert_eq!(
        binding["metadata"]["annotations"]["jitbot.dev/requester"],
        "slack:U0ALICE"
    );
    app.advance_past_end(&id).await;
    eventually("the binding to be deleted at expiry", || async {
        kube.binding(PAYMENTS, &name).is_none().then_some(())
    })
    .await;
    drop(kube.server);
}

#[tokio::test]
async fn a_binding_per_grant_is_deleted_when_its_grant_ends_even_while_another_holds_the_role() {
    let kube = Kube::start().await;
    let policy = r#"
admins = ["U0ADMIN"]

[providers.k8s]
kind = "kubernetes"
kubeconfig_env = "TEST_KUBECONFIG"
timeout = "10s"

[[groups]]
name = "payments-debug"
provider = "k8s"
target = "payments/debugger"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
"#;
    let app = TestApp::spawn_with_env(policy, &[("TEST_KUBECONFIG", &kube.kubeconfig)]).await;
    let binding_of = |id: &str| format!("jitbot-{}", id.replace("R-", "g-").to_lowercase());
    let mut grants = Vec::new();
    for duration in ["1h", "2h"] {
        let id = app
            .request(
                "U0ALICE",
                &format!("request payments-debug {duration} INC-3"),
            )
            .await;
        app.approve("U0LEAD", &id).await;
        app.until_active(&id).await;
        grants.push(id);
    }
    let (first, second) = (&grants[0], &grants[1]);
    app.command_text(
        "U0ALICE",
        "C0APPROVALS",
        &format!("release {}", first.replace("R-", "G-")),
    )
    .await;
    // The second grant holds the same role, but through a binding of its
    // own: the first one's must go, or it would outlive every grant.
    eventually("the released grant's binding deleted", || async {
        kube.binding(PAYMENTS, &binding_of(first))
            .is_none()
            .then_some(())
    })
    .await;
    assert!(kube.binding(PAYMENTS, &binding_of(second)).is_some());
    app.advance_past_end(second).await;
    eventually("no binding left", || async {
        kube.names(PAYMENTS).is_empty().then_some(())
    })
    .await;
    drop(kube.server);
}

#[tokio::test]
async fn an_enforcing_sweep_takes_a_standing_user_out_of_the_role_s_bindings() {
    let kube = Kube::start().await;
    kube.add_by_hand(
        PAYMENTS,
        "by-hand",
        "Role",
        "debugger",
        &["bob@example.com", "svc@example.com"],
    );
    let policy = r#"
admins = ["U0ADMIN"]

[providers.k8s]
kind = "kubernetes"
kubeconfig_env = "TEST_KUBECONFIG"

[[groups]]
name = "payments-debug"
provider = "k8s"
target = "payments/debugger"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "enforce"
sweep_interval = "1h"
standing = ["svc@example.com"]
"#;
    let app = TestApp::spawn_with_env(policy, &[("TEST_KUBECONFIG", &kube.kubeconfig)]).await;
    eventually("bob to be taken out of the binding", || async {
        let binding = kube.binding(PAYMENTS, "by-hand")?;
        (binding["subjects"].as_array()?.len() == 1).then_some(binding)
    })
    .await;
    assert_eq!(
        kube.binding(PAYMENTS, "by-hand").unwrap()["subjects"][0]["name"],
        "svc@example.com"
    );
    // The audit event follows the removal.
    eventually("the audit event of the removal", || async {
        let revoked = app.audit_details("StandingRevoked").await;
        revoked
            .iter()
            .any(|d| d.contains("bob@example.com"))
            .then_some(())
    })
    .await;
}
