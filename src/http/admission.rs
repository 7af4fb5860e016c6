//! Load shedding for the work people and pipelines wait on. Slack gives
//! a slash command three seconds; a late acknowledgement is an error the
//! person sees, while a fast "busy, try again" is an answer. So at most
//! [`Admission::MAX_IN_FLIGHT`] requests do their work at once, a request
//! waits at most [`Admission::MAX_WAIT`] for its turn, and when too many
//! already wait it is answered at once: busy, nothing done (a command gets
//! an ephemeral text, everything else `503` with `Retry-After`). What is
//! admitted keeps its promise: durable before it is acknowledged.
//!
//! A turn is asked for only once the request is authenticated — its body
//! read (see [`super::intake`]) and its signature or token checked — so
//! nobody who cannot sign a request can hold one: a client that sends
//! headers and then nothing costs a connection for a few seconds, never
//! a turn of the people who can sign.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use crate::telemetry::Metrics;

/// What a person sees when jitbot is overloaded.
pub const BUSY_TEXT: &str =
    "jitbot is busy right now and did not take this in; nothing was filed or changed. Please try again in a few seconds.";

pub struct Admission {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(Self::MAX_IN_FLIGHT)
    }
}

/// One request's right to do its work; given back when dropped.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
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
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// A turn, or `None` if there is none to be had in time.
    pub async fn enter(&self) -> Option<Turn> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(Turn { _permit: permit });
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= Self::MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let turn = tokio::time::timeout(Self::MAX_WAIT, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        turn.ok()
            .and_then(Result::ok)
            .map(|permit| Turn { _permit: permit })
    }
}

/// Which routes a busy answer is counted for
/// (`jitbot_busy_answers_total{source}`) and how it is worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// A slash command: Slack shows an answer only with a 200.
    SlackCommand,
    Slack,
    Teams,
    Api,
    /// The email approval page.
    Approval,
}

impl Family {
    pub(super) fn of(path: &str) -> Family {
        if path == "/slack/commands" {
            Family::SlackCommand
        } else if path.starts_with("/slack/") {
            Family::Slack
        } else if path.starts_with("/teams/") {
            Family::Teams
        } else if path.starts_with("/approve") {
            Family::Approval
        } else {
            Family::Api
        }
    }

    fn source(self) -> &'static str {
        match self {
            Family::SlackCommand | Family::Slack => "slack",
            Family::Teams => "teams",
            Family::Api => "api",
            Family::Approval => "approve",
        }
    }
}

impl AppState {
    /// A turn for the work of an authenticated request; `None` (counted)
    /// when there is none to be had in time: answer [`busy`].
    pub(super) async fn admit(&self, family: Family) -> Option<Turn> {
        let turn = self.admission.enter().await;
        if turn.is_none() {
            Metrics::count_busy(self.engine.metrics(), family.source());
        }
        turn
    }
}

/// "Busy, try again", worded for the routes of `family`, counted.
pub(super) fn busy(metrics: &Metrics, family: Family) -> Response {
    Metrics::count_busy(metrics, family.source());
    busy_answer(family)
}

/// "Busy, try again", worded for the routes of `family`.
pub(super) fn busy_answer(family: Family) -> Response {
    let mut response = match family {
        // Slack shows a command's answer only with a 200.
        Family::SlackCommand => {
            return Json(json!({ "response_type": "ephemeral", "text": BUSY_TEXT })).into_response()
        }
        Family::Api => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": BUSY_TEXT })),
        )
            .into_response(),
        Family::Approval => super::approve::busy_page(),
        Family::Slack | Family::Teams => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{BUSY_TEXT}\n")).into_response()
        }
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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

    #[test]
    fn busy_answers_are_worded_for_their_routes() {
        assert_eq!(Family::of("/slack/commands"), Family::SlackCommand);
        assert_eq!(Family::of("/slack/interactions"), Family::Slack);
        assert_eq!(Family::of("/teams/webhook"), Family::Teams);
        assert_eq!(Family::of("/approve/abc"), Family::Approval);
        assert_eq!(Family::of("/api/v1/grants"), Family::Api);
        assert_eq!(busy_answer(Family::SlackCommand).status(), StatusCode::OK);
        for family in [Family::Slack, Family::Api, Family::Approval] {
            let answer = busy_answer(family);
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
        }
    }
}
