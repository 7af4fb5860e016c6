//! The `entra` provider: membership of a Microsoft Entra ID group through
//! Microsoft Graph (the target is the group's object id; the principal a
//! user's UPN or email, or their object id — a Teams user's AAD id — used
//! as it is). Grant is `POST /groups/{group}/members/$ref` (already a
//! member: done), revoke `DELETE /groups/{group}/members/{user}/$ref` (404:
//! already gone), each confirmed by reading the user's direct memberships
//! back; holders are the group's members, following `@odata.nextLink`.
//! The app signs in with client credentials; its token is kept until
//! shortly before it expires, and fetched again when Graph refuses it.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::rest::{retry_after, Rest};
use super::{Access, Provider, ProviderError};
use crate::config::Secret;
use crate::domain::policy::is_guid;

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The application permissions the app registration needs.
const PERMISSION: &str =
    "the Graph application permissions GroupMember.ReadWrite.All and User.ReadBasic.All";
/// A token is renewed this long before Entra says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

pub struct EntraProvider {
    rest: Rest,
    graph_url: reqwest::Url,
    token_url: reqwest::Url,
    client_id: String,
    client_secret: Secret,
    token: Mutex<Option<(Secret, Instant)>>,
}

/// How the app signs in.
pub struct EntraSettings<'a> {
    pub graph_url: &'a str,
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryObject {
    id: String,
    #[serde(rename = "userPrincipalName", default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    mail: Option<String>,
}

impl EntraProvider {
    pub fn new(name: &str, settings: EntraSettings<'_>, timeout: Duration) -> Result<Self, String> {
        let url = |key: &str, text: &str| {
            reqwest::Url::parse(text.trim_end_matches('/'))
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
                .ok_or_else(|| format!("provider {name}: {key} must be an http(s) URL"))
        };
        Ok(Self {
            rest: Rest::new(name, timeout)?,
            graph_url: url("graph_url", settings.graph_url)?,
            token_url: url("token_url", settings.token_url)?,
            client_id: settings.client_id.to_string(),
            client_secret: Secret::new(settings.client_secret),
            token: Mutex::new(None),
        })
    }

    /// A Graph URL: the configured base (with its version) and `segments`.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.graph_url.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The app's token: the kept one, or a new one (`renew`: Graph refused
    /// the kept one).
    async fn token(&self, renew: bool, deadline: Instant) -> Result<Secret, ProviderError> {
        let mut kept = self.token.lock().await;
        if let Some((token, until)) = kept.as_ref() {
            if !renew && Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let what = "signing in to Microsoft Entra ID";
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", GRAPH_SCOPE),
        ];
        let response = self
            .rest
            .send(what, deadline, retry_after, || {
                self.rest.http.post(self.token_url.clone()).form(&form)
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.rest.refused(
                what,
                format!(
                    "the client credentials were refused (HTTP {}); check client_id and the secret",
                    response.status()
                ),
            ));
        }
        let answer: TokenAnswer = self.rest.json(what, response).await?;
        let lifetime = Duration::from_secs(answer.expires_in.max(60));
        let token = Secret::new(answer.access_token);
        *kept = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        ));
        Ok(token)
    }

    /// A Graph call with the app's token; a refused token is renewed once.
    async fn graph(
        &self,
        what: &str,
        deadline: Instant,
        build: impl Fn(&Secret) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut renew = false;
        loop {
            let token = self.token(renew, deadline).await?;
            let response = self
                .rest
                .send(what, deadline, retry_after, || {
                    build(&token).header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                })
                .await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn group<'a>(&self, target: &'a str) -> Result<&'a str, ProviderError> {
        if is_guid(target) {
            Ok(target)
        } else {
            Err(self.rest.refused(
                "checking the target",
                format!("`{target}` is not an Entra group object id (a GUID)"),
            ))
        }
    }

    /// The object id of the user `principal` names, if there is one.
    async fn user_id(
        &self,
        principal: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ProviderError> {
        if is_guid(principal) {
            return Ok(Some(principal.to_ascii_lowercase()));
        }
        let what = "looking up the user";
        let mut by_upn = self.url(&["users", principal]);
        by_upn.query_pairs_mut().append_pair("$select", "id");
        let response = self
            .graph(what, deadline, |_| self.rest.http.get(by_upn.clone()))
            .await?;
        match response.status() {
            status if status.is_success() => {
                let user: DirectoryObject = self.rest.json(what, response).await?;
                return Ok(Some(user.id));
            }
            reqwest::StatusCode::NOT_FOUND => {}
            status => return Err(self.rest.explain(what, status, PERMISSION)),
        }
        // Not a UPN: perhaps the address in `mail`.
        let mut by_mail = self.url(&["users"]);
        by_mail
            .query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("mail eq '{}'", principal.replace('\'', "''")),
            )
            .append_pair("$select", "id");
        let response = self
            .graph(what, deadline, |_| self.rest.http.get(by_mail.clone()))
            .await?;
        if !response.status().is_success() {
            return Err(self.rest.explain(what, response.status(), PERMISSION));
        }
        let page: Page<DirectoryObject> = self.rest.json(what, response).await?;
        Ok(page.value.into_iter().next().map(|u| u.id))
    }

    /// Every object of a paged collection at `first`.
    async fn all(
        &self,
        what: &str,
        first: reqwest::Url,
        deadline: Instant,
    ) -> Result<Vec<DirectoryObject>, ProviderError> {
        let mut objects = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let response = self
                .graph(what, deadline, |_| self.rest.http.get(url.clone()))
                .await?;
            if !response.status().is_success() {
                return Err(self.rest.explain(what, response.status(), PERMISSION));
            }
            let page: Page<DirectoryObject> = self.rest.json(what, response).await?;
            objects.extend(page.value);
            next = self.rest.next_page(what, page.next, &self.graph_url)?;
        }
        Ok(objects)
    }

    /// Whether `user` is a direct member of `group` now.
    async fn is_member(
        &self,
        user: &str,
        group: &str,
        deadline: Instant,
    ) -> Result<bool, ProviderError> {
        let mut url = self.url(&["users", user, "memberOf"]);
        url.query_pairs_mut().append_pair("$select", "id");
        let groups = self
            .all("reading the user's groups back", url, deadline)
            .await?;
        Ok(groups.iter().any(|g| g.id.eq_ignore_ascii_case(group)))
    }

    async fn change(&self, access: &Access, member: bool) -> Result<(), ProviderError> {
        let deadline = self.rest.deadline();
        let group = self.group(&access.target)?;
        let what = if member {
            "adding the user to the group"
        } else {
            "removing the user from the group"
        };
        let Some(user) = self.user_id(&access.principal, deadline).await? else {
            return if member {
                Err(self
                    .rest
                    .refused(what, format!("Entra ID has no user `{}`", access.principal)))
            } else {
                Ok(())
            };
        };
        let response = if member {
            let reference = json!({
                "@odata.id": self.url(&["directoryObjects", &user]).to_string()
            });
            let url = self.url(&["groups", group, "members", "$ref"]);
            self.graph(what, deadline, |_| {
                self.rest.http.post(url.clone()).json(&reference)
            })
            .await?
        } else {
            let url = self.url(&["groups", group, "members", &user, "$ref"]);
            self.graph(what, deadline, |_| self.rest.http.delete(url.clone()))
                .await?
        };
        let status = response.status();
        let done = if status.is_success() {
            true
        } else if member && status == reqwest::StatusCode::BAD_REQUEST {
            // Graph answers 400 for a member added twice.
            let body = response.text().await.unwrap_or_default();
            body.contains("already exist")
        } else {
            !member && status == reqwest::StatusCode::NOT_FOUND
        };
        if !done {
            return Err(self.rest.explain(what, status, PERMISSION));
        }
        if self.is_member(&user, group, deadline).await? != member {
            return Err(self.rest.passing(
                what,
                "Graph accepted the change but the user's groups do not show it yet",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for EntraProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, true).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, false).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let deadline = self.rest.deadline();
        let group = self.group(target)?;
        let mut url = self.url(&["groups", group, "members"]);
        url.query_pairs_mut()
            .append_pair("$select", "id,userPrincipalName,mail");
        let members = self
            .all("listing the group's members", url, deadline)
            .await?;
        Ok(members
            .into_iter()
            .map(|m| {
                m.user_principal_name
                    .or(m.mail)
                    .map_or(m.id, |name| name.to_ascii_lowercase())
            })
            .collect())
    }
}
