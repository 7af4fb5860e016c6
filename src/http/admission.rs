//! Load shedding for the routes people and pipelines wait on. Slack gives
//! a slash command three seconds; a late acknowledgement is an error the
//! person sees, while a fast "busy, try again" is an answer. So at most
//! [`Admission::MAX_IN_FLIGHT`] requests do their work at once, a request
//! waits at most [`Admission::MAX_WAIT`] for its turn, and when too many
//! already wait it is answered at once: busy, nothing done (a command gets
//! an ephemeral text, everything else `503` with `Retry-After`). What is
//! admitted keeps its promise: durable before it is acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::Semaphore;

use super::AppState;
use crate::telemetry::Metrics;

/// What a person sees when jitbot is overloaded.
pub const BUSY_TEXT: &str =
    "jitbot is busy right now and did not take this in; nothing was filed or changed. Please try again in a few seconds.";

pub struct Admission {
    permits: Semaphore,
    waiting: AtomicUsize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(Self::MAX_IN_FLIGHT)
    }
}

impl Admission {
    /// Requests doing their work at once: enough to share each fsync among
    /// many (group commit) and to keep both cores busy, few enough that the
    /// work of each finishes promptly.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// Waiting longer than this would eat into Slack's three seconds.
    pub const MAX_WAIT: Duration = Duration::from_millis(1000);
    /// With this many already waiting, the newcomer would not get its turn
    /// in time anyway: answer it at once.
    const MAX_WAITING: usize = 2048;

    pub fn new(in_flight: usize) -> Admission {
        Admission {
            permits: Semaphore::new(in_flight.max(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A turn, or `None` if there is none to be had in time.
    pub(super) async fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= Self::MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let turn = tokio::time::timeout(Self::MAX_WAIT, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        turn.ok().and_then(Result::ok)
    }
}

/// The middleware: admit the request, or answer busy.
pub(super) async fn admit(
    State(state): State<Arc<AppState>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let Some(_turn) = state.admission.enter().await else {
        return busy(&state, request.uri().path());
    };
    next.run(request).await
}

fn busy(state: &AppState, path: &str) -> Response {
    let family = if path.starts_with("/slack/") {
        "slack"
    } else if path.starts_with("/teams/") {
        "teams"
    } else {
        "api"
    };
    Metrics::count_busy(state.engine.metrics(), family);
    if path == "/slack/commands" {
        // Slack shows a command's answer only with a 200.
        return Json(json!({ "response_type": "ephemeral", "text": BUSY_TEXT })).into_response();
    }
    let mut response = if family == "api" {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": BUSY_TEXT })),
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{BUSY_TEXT}\n")).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_its_turn_briefly_then_is_turned_away() {
        let admission = Admission::new(1);
        let held = admission.enter().await.expect("the first gets in");
        let started = tokio::time::Instant::now();
        assert!(admission.enter().await.is_none(), "no turn in time");
        assert_eq!(started.elapsed(), Admission::MAX_WAIT);
        drop(held);
        assert!(admission.enter().await.is_some(), "a turn once one is free");
    }
}
