//! Reading a request before anyone knows who sent it. Every chat, API and
//! approval route reads its whole body here first — at most
//! [`super::MAX_BODY_BYTES`] (else `413`), within [`BODY_READ_TIMEOUT`]
//! (else `408`) — and only then checks the signature or token and asks for
//! an admission turn ([`super::admission`]). So a client that cannot sign
//! holds nothing the signed requests need: while it stalls, it holds its
//! own connection and one of [`MAX_UNAUTHENTICATED_READS`] read places,
//! for a few seconds at most.
//!
//! The bounds, from the outside in (and why):
//! - connections: at most `JITBOT_MAX_CONNECTIONS_PER_PEER` (512) from one
//!   peer, 4096 in all (fewer if the file-descriptor limit is low), see
//!   [`super::serve`]; headers within 5 s, idle keep-alive 5 s;
//! - body reads: [`MAX_UNAUTHENTICATED_READS`] at once, each cut after
//!   [`BODY_READ_TIMEOUT`], over the limit answered busy at once;
//! - work: `JITBOT_MAX_IN_FLIGHT` turns, for authenticated requests only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::admission::{self, Family};
use super::{AppState, HttpError, MAX_BODY_BYTES};

/// A client gets this long to send a request's body once its headers are
/// in. Chat platforms send a few KiB together with the headers, and Slack
/// waits three seconds for the whole answer: a body later than this could
/// not be answered in time anyway, and a stalled one is let go quickly.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Bodies being read at once, before their senders are known. Twice what
/// one peer may have connected (512), so a single peer can never take them
/// all; each holds at most 1 MiB, so this also bounds the memory strangers
/// can make jitbot hold (1 GiB, and only while they really send that much
/// — a stalled body holds only the bytes it sent). Reads beyond it are
/// answered busy at once rather than queued.
pub const MAX_UNAUTHENTICATED_READS: usize = 1024;

/// The places for reading bodies of requests not yet authenticated.
pub struct Intake {
    reads: Semaphore,
}

impl Default for Intake {
    fn default() -> Self {
        Intake::new(MAX_UNAUTHENTICATED_READS)
    }
}

impl Intake {
    pub fn new(reads: usize) -> Intake {
        Intake {
            reads: Semaphore::new(reads.max(1)),
        }
    }
}

/// The request's body, read in full by [`read_first`] before the handler
/// runs. A handler gets its body only this way, so none can start its
/// work (or take a turn) while a client is still sending.
#[derive(Debug, Clone)]
pub(super) struct ReadBody(pub(super) Bytes);

impl<S: Send + Sync> FromRequestParts<S> for ReadBody {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.remove::<ReadBody>().ok_or_else(|| {
            HttpError::Internal(format!(
                "{} is not behind the body reader",
                parts.uri.path()
            ))
        })
    }
}

/// The middleware in front of every gated route: read the whole body
/// (bounded in size, time and number at once), then hand the request on.
pub(super) async fn read_first(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let family = Family::of(request.uri().path());
    let (mut parts, body) = request.into_parts();
    let bytes = {
        let Ok(_place) = state.intake.reads.try_acquire() else {
            tracing::warn!(
                "{MAX_UNAUTHENTICATED_READS} request bodies are being read at once; answering busy"
            );
            return admission::busy(state.engine.metrics(), family);
        };
        match read_body(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(error) => return refused(&state, family, error),
        }
    };
    parts.extensions.insert(ReadBody(bytes));
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// A body that could not be read, answered as its routes answer errors.
fn refused(state: &AppState, family: Family, error: HttpError) -> Response {
    match family {
        Family::Api => super::api::ApiError::from(error).into_response(),
        Family::Approval => super::approve::unreadable_form(state, &error),
        _ => error.into_response(),
    }
}

/// Read the whole body, refusing more than [`MAX_BODY_BYTES`] (413) — first
/// by the declared length, then by what actually arrives — and a body that
/// trickles in slower than [`BODY_READ_TIMEOUT`] (408).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_come_is_given_up_on_in_time() {
        let body =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let started = tokio::time::Instant::now();
        let refused = read_body(&HeaderMap::new(), body).await.unwrap_err();
        assert!(matches!(refused, HttpError::Timeout), "{refused:?}");
        assert_eq!(started.elapsed(), BODY_READ_TIMEOUT);
    }
}
