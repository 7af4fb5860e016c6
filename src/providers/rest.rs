//! What the providers that speak to a REST API share (Okta, Microsoft
//! Graph, AWS, Kubernetes): one deadline per call, throttling waited out
//! as the server asks when the wait fits in it, 5xx, redirects (never
//! followed) and transport failures reported as passing, and every other
//! answer handed back for the provider to read.

use std::time::Duration;

use tokio::time::Instant;

use super::ProviderError;

/// A throttled call waits at most this long at a time before trying again.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(30);

pub(super) struct Rest {
    pub(super) provider: String,
    pub(super) http: reqwest::Client,
    /// How long one provider operation (with its retries) may take.
    pub(super) timeout: Duration,
}

/// How long a 429 asks to wait, read from the answer's headers.
pub(super) type ThrottleWait = fn(&reqwest::header::HeaderMap) -> Option<Duration>;

impl Rest {
    pub(super) fn new(provider: &str, timeout: Duration) -> Result<Rest, String> {
        let http =
            crate::outbound::client(timeout).map_err(|e| format!("provider {provider}: {e}"))?;
        Ok(Rest {
            provider: provider.to_string(),
            http,
            timeout,
        })
    }

    pub(super) fn passing(&self, what: &str, why: impl std::fmt::Display) -> ProviderError {
        ProviderError::new(&self.provider, format!("{what}: {why}"))
    }

    pub(super) fn refused(&self, what: &str, why: impl std::fmt::Display) -> ProviderError {
        ProviderError::permanent(&self.provider, format!("{what}: {why}"))
    }

    /// Send the request `build` makes (again for each retry) until the
    /// server answers something other than 429 or 5xx, or `deadline`.
    pub(super) async fn send(
        &self,
        what: &str,
        deadline: Instant,
        throttle_wait: ThrottleWait,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        loop {
            let response = build()
                .send()
                .await
                .map_err(|e| self.passing(what, crate::outbound::failure(&e)))?;
            let status = response.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let wait = throttle_wait(response.headers())
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_THROTTLE_WAIT);
                if Instant::now() + wait >= deadline {
                    return Err(self.passing(
                        what,
                        format!("throttled (HTTP 429; asked to wait {}s)", wait.as_secs()),
                    ));
                }
                tracing::info!(provider = %self.provider, ?wait, "throttled; waiting as asked");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status.is_server_error() {
                return Err(self.passing(what, format!("HTTP {status}")));
            }
            // Not followed (see crate::outbound::client_builder); it may
            // be a passing misconfiguration of a proxy, so tried again.
            if status.is_redirection() {
                return Err(self.passing(what, crate::outbound::redirect_refused(status)));
            }
            return Ok(response);
        }
    }

    /// The deadline of an operation starting now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// The JSON of a successful answer.
    pub(super) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        response: reqwest::Response,
    ) -> Result<T, ProviderError> {
        response.json().await.map_err(|e| {
            self.passing(
                what,
                format!("unreadable answer: {}", crate::outbound::failure(&e)),
            )
        })
    }

    /// The next page of a listing, at `link`: followed only on `origin`,
    /// where the credentials belong (a link elsewhere would carry them
    /// away).
    pub(super) fn next_page(
        &self,
        what: &str,
        link: Option<String>,
        origin: &reqwest::Url,
    ) -> Result<Option<reqwest::Url>, ProviderError> {
        let Some(link) = link else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(&link)
            .map_err(|_| self.passing(what, "a next link that is not a URL"))?;
        if url.origin() != origin.origin() {
            return Err(self.refused(
                what,
                format!(
                    "a next link to {}, off the service; not followed",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        Ok(Some(url))
    }

    /// A 4xx explained: what the status means for this call.
    pub(super) fn explain(
        &self,
        what: &str,
        status: reqwest::StatusCode,
        permission: &str,
    ) -> ProviderError {
        let why = match status.as_u16() {
            401 => "the credentials were refused (HTTP 401); check the token".to_string(),
            403 => format!("not allowed (HTTP 403): the credentials need {permission}"),
            404 => "not found (HTTP 404)".to_string(),
            _ => format!("refused (HTTP {status})"),
        };
        self.refused(what, why)
    }
}

/// `Retry-After` in seconds.
pub(super) use crate::outbound::asked_wait as retry_after;

/// The URL of the `rel="next"` link of a `Link` header, if any.
pub(super) fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            Some(part[start..end].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append(
            reqwest::header::LINK,
            "<https://x.okta.com/api/v1/groups/g/users?limit=2>; rel=\"self\""
                .parse()
                .unwrap(),
        );
        headers.append(
            reqwest::header::LINK,
            "<https://x.okta.com/api/v1/groups/g/users?after=00u2&limit=2>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://x.okta.com/api/v1/groups/g/users?after=00u2&limit=2")
        );
        assert_eq!(next_link(&reqwest::header::HeaderMap::new()), None);
    }
}
