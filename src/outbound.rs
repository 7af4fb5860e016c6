//! jitbot's outbound HTTP calls (chat APIs, providers, paging services,
//! key fetches, the CLI): the one constructor of their clients, which
//! follows no redirects; describing a failure without reqwest's own text —
//! it quotes the URL, which may carry credentials — and reading
//! `Retry-After`.

use std::time::Duration;

/// The builder of every HTTP client jitbot calls out with (`clippy.toml`
/// refuses reqwest's own constructors everywhere else). It follows no
/// redirect: a 3xx comes back as the answer, which every caller counts as
/// a failure like any other. Following one would send the call's
/// credentials — a webhook's signature headers, a token in a header reqwest
/// keeps on a same-host redirect, a client secret in the body that 307 and
/// 308 send again — to wherever `Location` points, and a signed request
/// to a URL its signature does not name.
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// A client from [`client_builder`] whose every call ends after `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// What a caller says about a 3xx answer.
pub fn redirect_refused(status: reqwest::StatusCode) -> String {
    format!("HTTP {status}: redirects are not followed")
}

/// What went wrong on the wire: the kind, and for connection problems the
/// innermost cause (an I/O error, which names no URL).
pub fn failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    if let Some(status) = error.status() {
        return format!("HTTP {status}");
    }
    if error.is_decode() {
        return "unreadable answer".to_string();
    }
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    let what = if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match innermost {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}

/// How long a 429 asks to wait (`Retry-After` in seconds), or `default`.
pub fn retry_after(headers: &reqwest::header::HeaderMap, default: Duration) -> Duration {
    asked_wait(headers).unwrap_or(default)
}

/// How long `Retry-After` (in seconds) asks to wait, if it says.
pub fn asked_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_name_the_cause_but_not_the_url() {
        // Nothing listens on port 1; the URL carries a credential.
        let error = client(Duration::from_secs(5))
            .unwrap()
            .get("http://user:secret-in-url@127.0.0.1:1/path?token=abc")
            .send()
            .await
            .unwrap_err();
        let text = failure(&error);
        assert!(text.starts_with("could not connect"), "{text}");
        assert!(
            !text.contains("secret-in-url") && !text.contains("token=abc"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_the_answer_and_is_never_followed() {
        use wiremock::matchers::any;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let elsewhere = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .mount(&elsewhere)
            .await;
        let service = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(308).insert_header("Location", elsewhere.uri().as_str()),
            )
            .mount(&service)
            .await;
        let answer = client(Duration::from_secs(5))
            .unwrap()
            .post(service.uri())
            .header("X-Jitbot-Signature", "v1=0")
            .body("secret body")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(
            retry_after(&headers, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            retry_after(&headers, Duration::from_secs(1)),
            Duration::from_secs(7)
        );
    }
}
