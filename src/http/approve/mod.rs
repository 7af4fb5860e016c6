//! `GET /approve/<token>` and `POST /approve/<token>`: the page an email
//! approver's link opens. GET only shows (mail scanners open links); POST
//! decides, with the page's CSRF field. Every link that does not open —
//! altered, foreign, random, for a request that is gone — gets the same
//! plain 404 page.

mod page;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::admission::Family;
use super::intake::ReadBody;
use super::AppState;
use crate::domain::job::Decision;
use crate::domain::request::Refusal;
use crate::email::token::{ApprovalLink, TokenKey};
use crate::engine::{EmailApproval, EmailDecision};

/// What the approval routes need: the key that signs the links.
pub struct ApprovalPages {
    key: TokenKey,
    csp: HeaderValue,
}

impl ApprovalPages {
    pub fn new(key: TokenKey) -> Self {
        Self {
            key,
            csp: HeaderValue::from_str(&page::content_security_policy())
                .expect("the policy is ASCII"),
        }
    }
}

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/approve/{token}", get(show).post(decide))
        // An empty token is a bad token too: the same page, not the
        // router's bare 404.
        .route("/approve", get(nothing).post(nothing))
        .route("/approve/", get(nothing).post(nothing))
}

async fn nothing(State(state): State<Arc<AppState>>) -> Response {
    not_found(&state)
}

/// An HTML answer with the headers every approval page carries.
fn html(state: &AppState, status: StatusCode, body: String) -> Response {
    let csp = state.approval_pages.as_ref().map(|pages| pages.csp.clone());
    html_with(csp, status, body)
}

fn html_with(csp: Option<HeaderValue>, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Some(csp) = csp {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn not_found(state: &AppState) -> Response {
    html(state, StatusCode::NOT_FOUND, page::not_found())
}

/// The page for an approver when jitbot is overloaded: nothing decided.
pub(super) fn busy_page() -> Response {
    html_with(
        HeaderValue::from_str(&page::content_security_policy()).ok(),
        StatusCode::SERVICE_UNAVAILABLE,
        page::unavailable(super::BUSY_TEXT),
    )
}

/// The page for a form whose body could not be read (too large, too slow,
/// broken): nothing decided.
pub(super) fn unreadable_form(state: &AppState, error: &super::HttpError) -> Response {
    match error {
        super::HttpError::TooLarge => plain_error(
            state,
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large; nothing was decided.",
        ),
        _ => plain_error(
            state,
            StatusCode::BAD_REQUEST,
            "The form could not be read; nothing was decided.",
        ),
    }
}

/// The pages and what `token` names, if it opens.
fn open<'s>(state: &'s AppState, token: &str) -> Option<(&'s ApprovalPages, ApprovalLink)> {
    let pages = state.approval_pages.as_ref()?;
    let link = pages.key.open(token)?;
    Some((pages, link))
}

fn show_view(
    state: &AppState,
    pages: &ApprovalPages,
    token: &str,
    view: &EmailApproval,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let csrf = pages.key.csrf(token);
    html(
        state,
        status,
        page::approval_page(view, &csrf, token, notice),
    )
}

async fn show(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let Some((pages, link)) = open(&state, &token) else {
        return not_found(&state);
    };
    let Some(_turn) = state.admit(Family::Approval).await else {
        return busy_page();
    };
    match state.engine.email_approval(&link).await {
        Ok(Some(view)) => show_view(&state, pages, &token, &view, StatusCode::OK, None),
        Ok(None) => not_found(&state),
        Err(error) => unavailable(&state, &error),
    }
}

fn unavailable(state: &AppState, error: &crate::engine::EngineError) -> Response {
    tracing::error!(%error, "approval page failed");
    html(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        page::unavailable(&crate::engine::failure_text(error, "decided")),
    )
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

async fn decide(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    ReadBody(bytes): ReadBody,
) -> Response {
    let Some((pages, link)) = open(&state, &token) else {
        return not_found(&state);
    };
    let Ok(form) = serde_urlencoded::from_bytes::<DecisionForm>(&bytes) else {
        return plain_error(
            &state,
            StatusCode::BAD_REQUEST,
            "The form could not be read; nothing was decided.",
        );
    };
    let Some(_turn) = state.admit(Family::Approval).await else {
        return busy_page();
    };
    // A link that does not open is the same 404 whatever the form says.
    let view = match state.engine.email_approval(&link).await {
        Ok(Some(view)) => view,
        Ok(None) => return not_found(&state),
        Err(error) => return unavailable(&state, &error),
    };
    if !pages.key.csrf_matches(&token, &form.csrf) {
        return html(&state, StatusCode::FORBIDDEN, page::forbidden_form());
    }
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "deny" if form.reason.trim().is_empty() => {
            return show_view(
                &state,
                pages,
                &token,
                &view,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("To deny, give a reason: the requester sees it. Nothing was decided."),
            )
        }
        "deny" => Decision::Deny {
            reason: form.reason.trim().to_string(),
        },
        _ => {
            return plain_error(
                &state,
                StatusCode::BAD_REQUEST,
                "The form must say approve or deny; nothing was decided.",
            )
        }
    };
    match state.engine.decide_by_email(&link, decision).await {
        Ok(Some(EmailDecision::Taken(now))) => {
            show_view(&state, pages, &token, &now, StatusCode::OK, None)
        }
        Ok(Some(EmailDecision::Recorded(now))) => show_view(
            &state,
            pages,
            &token,
            &now,
            StatusCode::ACCEPTED,
            Some("Your decision is recorded and is being processed; open the link again in a moment to see the outcome."),
        ),
        Ok(Some(EmailDecision::Refused(refusal, now))) => {
            let status = match refusal {
                Refusal::NoLongerPending { .. } | Refusal::AlreadyApproved(_) => {
                    StatusCode::CONFLICT
                }
                Refusal::DenyReasonMissing | Refusal::ReasonTooLong(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::FORBIDDEN,
            };
            let text = crate::domain::text::plain(&refusal.to_string());
            show_view(&state, pages, &token, &now, status, Some(&text))
        }
        Ok(None) => not_found(&state),
        Err(error) => unavailable(&state, &error),
    }
}

fn plain_error(state: &AppState, status: StatusCode, text: &str) -> Response {
    html(state, status, page::message("Not accepted", text))
}
