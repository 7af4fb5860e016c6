//! Helpers for jitbot's outbound HTTP calls (chat APIs, providers, key
//! fetches): describing a failure without reqwest's own text — it quotes
//! the URL, which may carry credentials — and reading `Retry-After`.

use std::time::Duration;

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
        let error = reqwest::Client::new()
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
