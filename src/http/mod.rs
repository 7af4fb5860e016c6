//! The axum server: routes → engine. Handlers verify, parse, call the
//! engine and answer; no business logic lives here.

mod admission;
pub mod api;
mod approve;
mod error;
mod intake;
mod peers;
mod serve;
mod slack;
mod teams;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

pub use admission::{Admission, Turn, BUSY_TEXT};
pub use approve::ApprovalPages;
pub use error::HttpError;
pub use intake::{Intake, BODY_READ_TIMEOUT, MAX_UNAUTHENTICATED_READS};
pub use serve::{
    raise_open_file_limit, serve, ServeLimits, DEFAULT_MAX_CONNECTIONS_PER_PEER,
    HEADER_READ_TIMEOUT, MAX_CONNECTIONS,
};
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
    /// Sheds load on the chat and API routes: turns for authenticated work.
    pub admission: admission::Admission,
    /// Bounds the bodies read before their senders are known.
    pub intake: Intake,
    /// Which Teams tenants and services, Slack workspaces and metrics
    /// scrapers are taken.
    pub ingress: crate::config::ingress::IngressSettings,
    pub slack: Option<SlackIngress>,
    pub teams: Option<TeamsIngress>,
    pub teams_webhook_secret: Option<crate::config::Secret>,
    pub api: api::ApiAuth,
    /// The email approval pages, when `JITBOT_EMAIL_TOKEN_KEY` is set.
    pub approval_pages: Option<ApprovalPages>,
}

pub fn router(state: Arc<AppState>) -> Router {
    // Every gated route reads its body first (bounded), then authenticates,
    // then asks for a turn (each handler does, once it knows who asks).
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
            intake::read_first,
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

/// Prometheus text exposition; with `JITBOT_METRICS_TOKEN` set, only for
/// a scrape that presents it as `Authorization: Bearer`.
async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(token) = &state.ingress.metrics_token {
        if !presents_bearer(&headers, token.expose()) {
            state.engine.metrics().count_auth_failure("metrics");
            return Ok((
                axum::http::StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "the metrics need their token (Authorization: Bearer)\n",
            )
                .into_response());
        }
    }
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

/// Whether `headers` carry `Authorization: Bearer <expected>`, compared in
/// constant time (as digests, so not even the length shows).
fn presents_bearer(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let expected: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    bool::from(presented.ct_eq(&expected))
}
