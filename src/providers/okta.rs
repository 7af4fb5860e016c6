//! The `okta` provider: membership of an Okta group (the target is the
//! group's id; the principal an Okta login, by default the user's email).
//! Grant is `PUT /api/v1/groups/{group}/users/{user}`, revoke `DELETE` on
//! the same path (404: already gone), each confirmed by reading the user's
//! groups back; holders are the group's members' logins, page by page.
//! Throttling (429) is waited out until `X-Rate-Limit-Reset`, within the
//! call's deadline.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;
use tokio::time::Instant;

use super::rest::{next_link, retry_after, Rest};
use super::{Access, Provider, ProviderError};
use crate::config::Secret;

/// What the token needs (an API token inherits its admin's rights).
const PERMISSION: &str = "a Group Membership Admin (or Group Admin) role for the group";

pub struct OktaProvider {
    rest: Rest,
    org_url: reqwest::Url,
    token: Secret,
}

#[derive(Deserialize)]
struct OktaUser {
    id: String,
    #[serde(default)]
    profile: OktaProfile,
}

#[derive(Deserialize, Default)]
struct OktaProfile {
    #[serde(default)]
    login: String,
}

#[derive(Deserialize)]
struct OktaGroup {
    id: String,
}

/// Okta says when its rate limit resets (epoch seconds).
fn rate_limit_reset(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let reset = headers
        .get("X-Rate-Limit-Reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()?;
    let wait = reset - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.clamp(0, 3600) as u64 + 1))
}

fn throttle_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    rate_limit_reset(headers).or_else(|| retry_after(headers))
}

/// An Okta id: letters and digits (`00g1abcd…`); nothing that could change
/// the path it is put in.
fn check_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

impl OktaProvider {
    pub fn new(
        name: &str,
        org_url: &str,
        token: String,
        timeout: Duration,
    ) -> Result<Self, String> {
        let org_url = reqwest::Url::parse(org_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| {
                format!(
                    "provider {name}: org_url must be an http(s) URL like https://example.okta.com"
                )
            })?;
        Ok(Self {
            rest: Rest::new(name, timeout)?,
            org_url,
            token: Secret::new(token),
        })
    }

    /// `/api/v1/<segments…>` under the org, each segment escaped.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.org_url.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        url
    }

    fn request(&self, method: reqwest::Method, url: &reqwest::Url) -> reqwest::RequestBuilder {
        self.rest
            .http
            .request(method, url.clone())
            .header(AUTHORIZATION, format!("SSWS {}", self.token.expose()))
            .header(ACCEPT, "application/json")
    }

    fn group<'a>(&self, group: &'a str) -> Result<&'a str, ProviderError> {
        if check_id(group) {
            Ok(group)
        } else {
            Err(self.rest.refused(
                "checking the target",
                format!("`{group}` is not an Okta group id (like 00g1emaKYZTWRYYRRTSK)"),
            ))
        }
    }

    /// The Okta id of the user whose login is `login`, if there is one.
    async fn user_id(
        &self,
        login: &str,
        deadline: Instant,
    ) -> Result<Option<String>, ProviderError> {
        let what = "looking up the user";
        let url = self.url(&["users", login]);
        let response = self
            .rest
            .send(what, deadline, throttle_wait, || {
                self.request(reqwest::Method::GET, &url)
            })
            .await?;
        match response.status() {
            status if status.is_success() => {
                let user: OktaUser = self.rest.json(what, response).await?;
                Ok(Some(user.id))
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status => Err(self.rest.explain(what, status, "read access to users")),
        }
    }

    /// Whether user `user` is a direct member of `group` now.
    async fn is_member(
        &self,
        user: &str,
        group: &str,
        deadline: Instant,
    ) -> Result<bool, ProviderError> {
        let what = "reading the user's groups back";
        let mut next = Some(self.url(&["users", user, "groups"]));
        while let Some(url) = next.take() {
            let response = self
                .rest
                .send(what, deadline, throttle_wait, || {
                    self.request(reqwest::Method::GET, &url)
                })
                .await?;
            if !response.status().is_success() {
                return Err(self.rest.explain(what, response.status(), PERMISSION));
            }
            next = self
                .rest
                .next_page(what, next_link(response.headers()), &self.org_url)?;
            let groups: Vec<OktaGroup> = self.rest.json(what, response).await?;
            if groups.iter().any(|g| g.id == group) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn change(&self, access: &Access, member: bool) -> Result<(), ProviderError> {
        let deadline = self.rest.deadline();
        let group = self.group(&access.target)?;
        let (what, method) = if member {
            ("adding the user to the group", reqwest::Method::PUT)
        } else {
            ("removing the user from the group", reqwest::Method::DELETE)
        };
        let Some(user) = self.user_id(&access.principal, deadline).await? else {
            return if member {
                Err(self.rest.refused(
                    what,
                    format!("Okta has no user with the login `{}`", access.principal),
                ))
            } else {
                // No such user holds nothing.
                Ok(())
            };
        };
        let url = self.url(&["groups", group, "users", &user]);
        let response = self
            .rest
            .send(what, deadline, throttle_wait, || {
                self.request(method.clone(), &url)
            })
            .await?;
        let status = response.status();
        let done = status.is_success() || (!member && status == reqwest::StatusCode::NOT_FOUND);
        if !done {
            return Err(self.rest.explain(what, status, PERMISSION));
        }
        if self.is_member(&user, group, deadline).await? != member {
            return Err(self.rest.passing(
                what,
                "Okta accepted the change but the user's groups do not show it yet",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for OktaProvider {
    async fn grant(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, true).await
    }

    async fn revoke(&self, access: &Access) -> Result<(), ProviderError> {
        self.change(access, false).await
    }

    async fn holders(&self, target: &str) -> Result<Vec<String>, ProviderError> {
        let what = "listing the group's members";
        let deadline = self.rest.deadline();
        let group = self.group(target)?;
        let mut url = self.url(&["groups", group, "users"]);
        url.query_pairs_mut().append_pair("limit", "200");
        let mut next = Some(url);
        let mut holders = Vec::new();
        while let Some(url) = next.take() {
            let response = self
                .rest
                .send(what, deadline, throttle_wait, || {
                    self.request(reqwest::Method::GET, &url)
                })
                .await?;
            if !response.status().is_success() {
                return Err(self.rest.explain(what, response.status(), PERMISSION));
            }
            next = self
                .rest
                .next_page(what, next_link(response.headers()), &self.org_url)?;
            let users: Vec<OktaUser> = self.rest.json(what, response).await?;
            holders.extend(users.into_iter().map(|u| u.profile.login));
        }
        Ok(holders)
    }
}
