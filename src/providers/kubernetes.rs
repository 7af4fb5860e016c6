//! The `kubernetes` provider: an RBAC binding per grant. A namespaced
//! target `namespace/role` gets a RoleBinding to that Role in that
//! namespace; a bare `role` a ClusterRoleBinding to that ClusterRole. The
//! binding is named after the grant (`jitbot-g-7k3q9x`), labelled
//! `app.kubernetes.io/managed-by=jitbot` and annotated with the request,
//! the requester and the expiry; revoke deletes it (404: already gone),
//! and both are confirmed by reading it back. Holders are the subjects (of
//! the configured kind, `User` or `Group`) of every binding of the role;
//! a sweep takes a standing holder out of bindings that are not jitbot's.
//!
//! jitbot talks to the API server itself (a handful of REST calls): from a
//! kubeconfig file named by `kubeconfig_env` (bearer token or client
//! certificate, the cluster's CA), or in-cluster from the pod's service
//! account.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Value};

use super::rest::{retry_after, Rest};
use super::{Access, Provider, ProviderError};
use crate::config::Secret;

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const RBAC: &str = "rbac.authorization.k8s.io";
/// What jitbot's credentials need, for messages.
const PERMISSION: &str = "get, list, create, update and delete on rolebindings/clusterrolebindings, and bind on the role";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How jitbot reaches the API server.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub server: String,
    pub token: Option<Secret>,
    /// PEM of the cluster's CA, if it is not publicly trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate and its key.
    pub identity_pem: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct KubeConfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<Named<ContextSpec>>,
    #[serde(default)]
    clusters: Vec<Named<ClusterSpec>>,
    #[serde(default)]
    users: Vec<Named<UserSpec>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Deserialize)]
struct ContextSpec {
    cluster: String,
    user: String,
}

#[derive(Deserialize)]
struct ClusterSpec {
    server: String,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
struct UserSpec {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<String>,
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(default)]
    exec: Option<Value>,
}

fn base64_pem(data: &str, what: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| format!("the kubeconfig's {what} is not base64"))
}

impl Cluster {
    /// The current context of the kubeconfig file at `path`.
    pub fn from_kubeconfig(path: &str) -> Result<Cluster, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the kubeconfig {path}: {e}"))?;
        let config: KubeConfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("the kubeconfig {path} is not valid: {e}"))?;
        let context = config
            .contexts
            .iter()
            .find(|c| c.name == config.current_context)
            .or(config.contexts.first())
            .ok_or_else(|| format!("the kubeconfig {path} has no context"))?;
        let cluster = config
            .clusters
            .iter()
            .find(|c| c.name == context.value.cluster)
            .ok_or_else(|| format!("the kubeconfig has no cluster `{}`", context.value.cluster))?;
        let user = config
            .users
            .iter()
            .find(|u| u.name == context.value.user)
            .map(|u| &u.value);
        let default_user = UserSpec::default();
        let user = user.unwrap_or(&default_user);
        if user.exec.is_some() && user.token.is_none() && user.token_file.is_none() {
            return Err("the kubeconfig's user signs in with an exec plugin, which jitbot does not run; give it a service account token".into());
        }
        let ca_pem = match (&cluster.value.ca_data, &cluster.value.ca_file) {
            (Some(data), _) => Some(base64_pem(data, "certificate-authority-data")?),
            (None, Some(file)) => Some(
                std::fs::read(file).map_err(|e| format!("cannot read the CA file {file}: {e}"))?,
            ),
            (None, None) => None,
        };
        let token = match (&user.token, &user.token_file) {
            (Some(token), _) => Some(Secret::new(token.trim())),
            (None, Some(file)) => Some(Secret::new(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read the token file {file}: {e}"))?
                    .trim(),
            )),
            (None, None) => None,
        };
        let identity_pem = match (&user.cert_data, &user.key_data) {
            (Some(cert), Some(key)) => {
                let mut pem = base64_pem(cert, "client-certificate-data")?;
                pem.push(b'\n');
                pem.extend(base64_pem(key, "client-key-data")?);
                Some(pem)
            }
            _ => None,
        };
        Ok(Cluster {
            server: cluster.value.server.trim_end_matches('/').to_string(),
            token,
            ca_pem,
            identity_pem,
        })
    }

    /// The pod's own service account, when jitbot runs in the cluster.
    pub fn in_cluster() -> Result<Cluster, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "not running in a cluster (KUBERNETES_SERVICE_HOST is unset); set kubeconfig_env"
                .to_string()
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let token = std::fs::read_to_string(format!("{SERVICE_ACCOUNT_DIR}/token"))
            .map_err(|e| format!("cannot read the service account token: {e}"))?;
        let ca = std::fs::read(format!("{SERVICE_ACCOUNT_DIR}/ca.crt"))
            .map_err(|e| format!("cannot read the service account CA: {e}"))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Cluster {
            server: format!("https://{host}:{port}"),
            token: Some(Secret::new(token.trim())),
            ca_pem: Some(ca),
            identity_pem: None,
        })
    }
}

/// Which binding a target means.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    namespace: Option<String>,
    role: String,
}

/// The keys of a grant's recorded details: the binding's name, and its
/// namespace (none for a ClusterRoleBinding).
const BINDING_DETAIL: &str = "binding";
const NAMESPACE_DETAIL: &str = "namespace";

impl Binding {
    fn parse(target: &str) -> Result<Binding, String> {
        let (namespace, role) = match target.split_once('/') {
            Some((namespace, role)) => (Some(namespace), role),
            None => (None, target),
        };
        if let Some(namespace) = namespace {
            if !is_dns_label(namespace) {
                return Err(format!("`{namespace}` is not a Kubernetes namespace name"));
            }
        }
        // Role names are path segments: no slashes, nothing odd.
        let role_ok = !role.is_empty()
            && role.len() <= 253
            && role
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
        if !role_ok {
            return Err(format!("`{role}` is not a Kubernetes role name"));
        }
        Ok(Binding {
            namespace: namespace.map(str::to_string),
            role: role.to_string(),
        })
    }

    /// The collection of bindings this kind of binding lives in.
    fn collection(&self) -> String {
        match &self.namespace {
            Some(namespace) => {
                format!("/apis/{RBAC}/v1/namespaces/{namespace}/rolebindings")
            }
            None => format!("/apis/{RBAC}/v1/clusterrolebindings"),
        }
    }

    fn kinds(&self) -> (&'static str, &'static str) {
        match self.namespace {
            Some(_) => ("RoleBinding", "Role"),
            None => ("ClusterRoleBinding", "ClusterRole"),
        }
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

pub struct KubernetesProvider {
    rest: Rest,
    server: reqwest::Url,
    token: Option<Secret>,
    /// `User` or `Group`.
    subject_kind: String,
}

impl KubernetesProvider {
    pub fn new(
        name: &str,
        cluster: Cluster,
        subject_kind: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let fail = |why: String| format!("provider {name}: {why}");
        let mut builder = crate::outbound::client_builder().timeout(timeout);
        if let Some(ca) = &cluster.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| fail(format!("the cluster's CA is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = &cluster.identity_pem {
            builder = builder.identity(
                reqwest::Identity::from_pem(identity)
                    .map_err(|e| fail(format!("the client certificate is not usable: {e}")))?,
            );
        }
        let http = builder.build().map_err(|e| fail(e.to_string()))?;
        let server = reqwest::Url::parse(&cluster.server)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| {
                fail(format!(
                    "the API server `{}` is not an http(s) URL",
                    cluster.server
                ))
            })?;
        Ok(Self {
            rest: Rest {
                provider: name.to_string(),
                http,
                timeout,
            },
            server,
            token: cluster.token,
            subject_kind: subject_kind.to_string(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.server.clone();
        url.set_path(path);
        let request = self
            .rest
            .http
            .request(method, url)
            .header(ACCEPT, "application/json");
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => request,
        }
    }

    fn binding(&self, target: &str) -> Result<Binding, ProviderError> {
        Binding::parse(target).map_err(|why| self.rest.refused("checking the target", why))
    }

    /// The binding's name for a grant: its id, in lower case.
    fn binding_name(&self, access: &Access) -> Result<String, ProviderError> {
        let grant = access.grant_id.as_deref().ok_or_else(|| {
            self.rest
                .refused("naming the binding", "a grant id is needed")
        })?;
        Ok(format!("jitbot-{}", grant.to_ascii_lowercase()))
    }

    async fn get(&self, what: &str, path: &str) -> Result<Option<Value>, ProviderError> {
        let response = self
            .rest
            .send(what, self.rest.deadline(), retry_after, || {
                self.request(reqwest::Method::GET, path)
            })
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Some(self.rest.json(what, response).await?)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status => Err(self.rest.explain(what, status, PERMISSION)),
        }
    }

    fn holds(&self, binding: &Value, principal: &str) -> bool {
        binding["subjects"].as_array().is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s["kind"] == self.subject_kind.as_str() && s["name"] == principal)
        })
    }

    fn binds(&self, binding: &Value, target: &Binding) -> bool {
        let (_, role_kind) = target.kinds();
        binding["roleRef"]["kind"] == role_kind
            && binding["roleRef"]["name"] == target.role.as_str()
    }

    async fn bindings_of(&self, what: &str, target: &Binding) -> Result<Vec<Value>, ProviderError> {
        let list = self
            .get(what, &target.collection())
            .await?
            .unwrap_or_default();
        Ok(list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|b| self.binds(b, target))
            .collect())
    }

    async fn grant_binding(&self, access: &Access) -> Result<(), ProviderError> {
        let what = "creating the binding";
        let target = self.binding(&access.target)?;
        let name = self.binding_name(access)?;
        let (kind, role_kind) = target.kinds();
        let mut metadata = json!({
            "name": name,
            "labels": { MANAGED_BY: "jitbot" },
            "annotations": {
                "jitbot.dev/request-id": access.request_id,
                "jitbot.dev/requester": access.user.as_ref().map(|u| format!("{}:{}", u.platform, u.id)),
                "jitbot.dev/expires-at": access.expires_at.map(|t| t.to_rfc3339()),
            },
        });
        if let Some(namespace) = &target.namespace {
            metadata["namespace"] = json!(namespace);
        }
        let body = json!({
            "apiVersion": format!("{RBAC}/v1"),
            "kind": kind,
            "metadata": metadata,
            "roleRef": { "apiGroup": RBAC, "kind": role_kind, "name": target.role },
            "subjects": [{ "apiGroup": RBAC, "kind": self.subject_kind, "name": access.principal }],
        });
        let response = self
            .rest
            .send(what, self.rest.deadline(), retry_after, || {
                self.request(reqwest::Method::POST, &target.collection())
                    .json(&body)
            })
            .await?;
        let status = response.status();
        // 409: it exists already (a retry); reading it back decides.
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            return Err(self.rest.explain(what, status, PERMISSION));
        }
        let path = format!("{}/{name}", target.collection());
        match self.get("reading the binding back", &path).await? {
            Some(binding)
                if self.binds(&binding, &target) && self.holds(&binding, &access.principal) =>
            {
                Ok(())
            }
            Some(_) => Err(self.rest.refused(
                what,
                format!("a binding named {name} exists but does not grant this"),
            )),
            None => Err(self.rest.passing(what, "the binding does not show yet")),
        }
    }

    async fn delete(&self, what: &str, path: &str) -> Result<(), ProviderError> {
        let response = self
            .rest
            .send(what, self.rest.deadline(), retry_after, || {
                self.request(reqwest::Method::DELETE, path)
            })
            .await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.rest.explain(what, status, PERMISSION))
        }
    }

    /// Take `principal` out of every binding of `target`: jitbot's own
    /// bindings are deleted, others lose the subject (and go when empty).
    async fn remove_everywhere(
        &self,
        target: &Binding,
        principal: &str,
    ) -> Result<(), ProviderError> {
        let what = "removing the subject from the role's bindings";
        for binding in self.bindings_of(what, target).await? {
            if !self.holds(&binding, principal) {
                continue;
            }
            let name = binding["metadata"]["name"].as_str().unwrap_or_default();
            let path = format!("{}/{name}", target.collection());
            let subjects: Vec<Value> = binding["subjects"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| !(s["kind"] == self.subject_kind.as_str() && s["name"] == principal))
                .collect();
            let ours = binding["metadata"]["labels"][MANAGED_BY] == "jitbot";
            if ours || subjects.is_empty() {
                self.delete(what, &path).await?;
                continue;
            }
            let mut updated = binding.clone();
            updated["subjects"] = json!(subjects);
            let response = self
                .rest
                .send(what, self.rest.deadline(), retry_after, || {
                    self.request(reqwest::Method::PUT, &path).json(&updated)
                })
                .await?;
            if !response.status().is_success() {
                // 409: changed meanwhile; the next attempt reads it again.
                return Err(if response.status() == reqwest::StatusCode::CONFLICT {
                    self.rest.passing(what, "the binding changed meanwhile")
                } else {
                    self.rest.explain(what, response.status(), PERMISSION)
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.grant_binding(access).await
    }

    /// The binding a grant makes: its name and, for a RoleBinding, its
    /// namespace — recorded so the revoke deletes exactly that one.
    fn grant_details(&self, access: &Access) -> BTreeMap<String, String> {
        let (Ok(target), Ok(name)) = (Binding::parse(&access.target), self.binding_name(access))
        else {
            return BTreeMap::new();
        };
        let mut details = BTreeMap::from([(BINDING_DETAIL.to_string(), name)]);
        if let Some(namespace) = target.namespace {
            details.insert(NAMESPACE_DETAIL.to_string(), namespace);
        }
        details
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        let target = self.binding(&access.target)?;
        match &access.grant_id {
            Some(_) => {
                let (collection, name) = match access.details.get(BINDING_DETAIL) {
                    // The binding recorded when it was made.
                    Some(name) => {
                        let namespace = access.details.get(NAMESPACE_DETAIL);
                        let recorded_ok = is_dns_label(name)
                            && namespace.map_or(true, |namespace| is_dns_label(namespace));
                        if !recorded_ok {
                            return Err(self.rest.refused(
                                "reading the recorded binding",
                                "it is not a binding name",
                            ));
                        }
                        let binding = Binding {
                            namespace: namespace.cloned(),
                            role: target.role.clone(),
                        };
                        (binding.collection(), name.clone())
                    }
                    None => (target.collection(), self.binding_name(access)?),
                };
                let path = format!("{collection}/{name}");
                self.delete("deleting the binding", &path).await?;
                if self.get("reading the binding back", &path).await?.is_some() {
                    return Err(self.rest.passing("deleting the binding", "it still exists"));
                }
                Ok(())
            }
            // Standing access a sweep removes: wherever it is granted.
            None => self.remove_everywhere(&target, &access.principal).await,
        }
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let target = self.binding(target)?;
        let mut holders: Vec<String> = self
            .bindings_of("listing the role's bindings", &target)
            .await?
            .iter()
            .flat_map(|b| b["subjects"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["kind"] == self.subject_kind.as_str())
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        holders.sort();
        holders.dedup();
        Ok(holders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_role_or_a_namespaced_role_and_nothing_else() {
        assert_eq!(
            Binding::parse("payments/debugger").unwrap().collection(),
            "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings"
        );
        assert_eq!(
            Binding::parse("cluster-admin").unwrap().kinds(),
            ("ClusterRoleBinding", "ClusterRole")
        );
        for bad in [
            "",
            "a/b/c",
            "../x",
            "Payments/x",
            "ns/",
            "ns/role?watch=1",
            "-ns/x",
        ] {
            assert!(Binding::parse(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn a_kubeconfig_gives_the_server_token_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            r#"apiVersion: v1
kind: Config
current-context: jit
contexts:
- name: other
  context: { cluster: c2, user: u2 }
- name: jit
  context:
    cluster: prod
    user: jitbot
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTg==
users:
- name: jitbot
  user:
    token: sa-token-123
"#,
        )
        .unwrap();
        let cluster = Cluster::from_kubeconfig(path.to_str().unwrap()).unwrap();
        assert_eq!(cluster.server, "https://10.0.0.1:6443");
        assert_eq!(cluster.token.unwrap().expose(), "sa-token-123");
        assert_eq!(cluster.ca_pem.unwrap(), b"-----BEGIN");
    }
}
