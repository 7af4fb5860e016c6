//! The axum server: routes → engine. Handlers verify, parse, call the
//! engine and answer; no business logic lives here.

pub mod api;
mod error;
mod slack;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

pub use error::HttpError;
pub use slack::SlackIngress;

use crate::engine::Engine;

/// Chat platforms never send more than a few KiB; the cap stops memory abuse
/// by an unauthenticated client before the signature is even checked.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// No handler does slow work, so anything this slow is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppState {
    pub engine: Arc<Engine>,
    pub slack: Option<SlackIngress>,
    pub api: api::ApiAuth,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/slack/commands", post(slack::command))
        .route("/slack/interactions", post(slack::interaction))
        .route("/slack/events", post(slack::event))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api::routes())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, HttpError> {
    state.engine.store().audit_head()?;
    Ok("ready\n")
}

/// Read the whole body, refusing more than [`MAX_BODY_BYTES`] (413) — first
/// by the declared length, then by what actually arrives.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(HttpError::TooLarge);
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let too_large =
                std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
                    .any(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                HttpError::TooLarge
            } else {
                HttpError::BadRequest("could not read the request body".into())
            }
        })
}
