//! The one error type of the HTTP layer: each variant maps to a status and a
//! short reason. Internal details are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than 1 MiB")]
    TooLarge,
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} is not configured on this server")]
    NotConfigured(&'static str),
    /// The store cannot be reached; nothing was done (or, for a write
    /// cut off mid-way, the outcome is unknown).
    #[error("jitbot cannot reach its database right now; try again in a minute")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Timeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotConfigured(_) => StatusCode::NOT_FOUND,
            HttpError::Unavailable(detail) => {
                tracing::error!(%detail, "request failed: the store is unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if let HttpError::Unauthorized(reason) | HttpError::Forbidden(reason) = &self {
            tracing::warn!(%reason, "rejected unauthenticated request");
        }
        let text = crate::domain::text::plain(&self.to_string());
        let mut response = (status, format!("{text}\n")).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

impl From<crate::engine::EngineError> for HttpError {
    fn from(error: crate::engine::EngineError) -> Self {
        if error.is_unavailable() {
            HttpError::Unavailable(error.to_string())
        } else {
            HttpError::Internal(error.to_string())
        }
    }
}
