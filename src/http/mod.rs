//! The axum server: routes → engine. Handlers verify, parse, call the
//! engine and answer; no business logic lives here.

mod admission;
pub mod api;
mod approve;
mod error;
mod serve;
mod slack;
mod teams;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

pub use admission::{Admission, BUSY_TEXT};
pub use approve::ApprovalPages;
pub use error::HttpError;
pub use serve::{serve, HEADER_READ_TIMEOUT};
pub use slack::{SlackIngress, SocketIngress};
pub use teams::TeamsIngress;

use crate::engine::Engine;

/// Chat platforms never send more than a few KiB; the cap stops memory abuse
/// by an unauthenticated client before the signature is even checked.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// No handler does slow work, so anything this slow is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppState {
    pub engine: Arc<Engine>,
    /// Sheds load on the chat and API routes.
    pub admission: admission::Admission,
    pub slack: Option<SlackIngress>,
    pub teams: Option<TeamsIngress>,
    pub teams_webhook_secret: Option<crate::config::Secret>,
    pub api: api::ApiAuth,
    /// The email approval pages, when `JITBOT_EMAIL_TOKEN_KEY` is set.
    pub approval_pages: Option<ApprovalPages>,
}

pub fn router(state: Arc<AppState>) -> Router {
    // Health and metrics stay outside the admission gate: an overloaded
    // server must still say so.
    let gated = Router::new()
        .route("/slack/commands", post(slack::command))
        .route("/slack/interactions", post(slack::interaction))
        .route("/slack/events", post(slack::event))
        .route("/teams/messages", post(teams::messages))
        .route("/teams/webhook", post(teams::webhook))
        .merge(api::routes())
        .merge(approve::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admission::admit,
        ));
    Router::new()
        .merge(gated)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers, the scheduler is running and the outbox is
/// not stuck; each check is one line of the answer.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let readiness = state.engine.readiness().await;
    let status = if readiness.ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, readiness.lines.join("\n") + "\n").into_response()
}

/// Prometheus text exposition.
async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, HttpError> {
    let text = state.engine.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// A client gets this long to send a request's body; chat platforms send
/// a few KiB at once.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Read the whole body, refusing more than [`MAX_BODY_BYTES`] (413) — first
/// by the declared length, then by what actually arrives — and a body that
/// trickles in slower than [`BODY_READ_TIMEOUT`] (408).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(HttpError::TooLarge);
    }
    tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| HttpError::Timeout)?
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
