//! The HTTP API under `/api/v1`, for pipelines and operators (the `jitbot`
//! CLI uses it). Every route needs a bearer token from `JITBOT_API_TOKENS`;
//! a token acts as one chat user, under the same policy rules as in chat,
//! and admin routes need an admin token. Requests filed here still go
//! through chat approval. `docs/openapi.json` describes every route and
//! answer; the tests hold the server to it.

mod auth;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub use auth::{ApiAuth, Caller, TokenHolder};

use super::intake::ReadBody;
use super::AppState;
use crate::domain::audit::AuditEvent;
use crate::domain::duration::HumanDuration;
use crate::domain::email::EmailAddress;
use crate::domain::ids::{ChannelId, Destination, GrantId, GroupName, Platform, RequestId};
use crate::domain::policy::RequestRefusal;
use crate::engine::{AdminError, EndError, OwnAddressRefusal, SubmitError};
use views::{MappingJson, RequestJson, SweepJson};

/// Audit events read from the store per chunk of the export stream.
const AUDIT_EXPORT_BATCH: usize = 500;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/requests", post(create_request))
        .route("/api/v1/breakglass", post(create_break_glass))
        .route("/api/v1/requests/{id}", get(get_request))
        .route("/api/v1/grants", get(list_grants))
        .route("/api/v1/grants/{id}/release", post(release_grant))
        .route("/api/v1/grants/{id}/revoke", post(revoke_grant))
        .route("/api/v1/mappings", get(list_mappings))
        .route(
            "/api/v1/mappings/{group}/{platform}/{channel}",
            put(put_mapping).delete(delete_mapping),
        )
        .route("/api/v1/audit", get(export_audit))
        .route("/api/v1/sweeps/{group}", post(run_sweep))
        .route("/api/v1/unused", get(list_unused))
}

/// Every API failure: a status and `{"error": "<what to do>"}`.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    TooLarge,
    UnsupportedMediaType,
    /// Over a per-person limit: 429, with `Retry-After` when known.
    TooMany {
        retry_after: Option<i64>,
        message: String,
    },
    Unprocessable(String),
    Unavailable(String),
    /// More than the server takes on: try again in a second.
    Busy,
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::TooMany { retry_after, .. } => *retry_after,
            ApiError::Busy => Some(1),
            _ => None,
        };
        let (status, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required".to_string(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 1 MiB".to_string(),
            ),
            ApiError::TooMany { message, .. } => (StatusCode::TOO_MANY_REQUESTS, message),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with `Content-Type: application/json`".to_string(),
            ),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                super::BUSY_TEXT.to_string(),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; nothing was changed".to_string(),
                )
            }
        };
        // Engine texts mark people's words for chat; JSON carries them as is.
        let message = crate::domain::text::plain(&message);
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"jitbot\""),
            );
        }
        response
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(error: crate::engine::EngineError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<super::HttpError> for ApiError {
    fn from(error: super::HttpError) -> Self {
        match error {
            super::HttpError::Internal(detail) => ApiError::Internal(detail),
            super::HttpError::TooLarge => ApiError::TooLarge,
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this needs an admin token".to_string()))
    }
}

/// Parse a JSON body (read beforehand, at most 1 MiB), with the parser's
/// reason on failure.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            let media = media.trim();
            media.eq_ignore_ascii_case("application/json")
                || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    let declared_too_large = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > super::MAX_BODY_BYTES);
    if declared_too_large {
        return Err(ApiError::TooLarge);
    }
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `group` as a name (`"a"`, or `"a,b"` as typed in chat) or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum GroupField {
    Named(String),
    Listed(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    /// One group (or several, as a list or written `a,b` as in chat)…
    #[serde(default)]
    group: Option<GroupField>,
    /// …or several, asked for as one request (granted together or not at
    /// all).
    #[serde(default)]
    groups: Option<Vec<String>>,
    duration: Option<String>,
    reason: String,
    /// Where the requester hears back, when they have no chat.
    email: Option<String>,
    /// Take access at once under the group's `break_glass` rule.
    #[serde(default)]
    break_glass: bool,
}

async fn create_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, ApiError> {
    let asked: NewRequest = json_body(&headers, &bytes)?;
    file_request(&state, &caller, asked).await
}

/// `POST /api/v1/breakglass`: the request body of `/api/v1/requests`,
/// always as break-glass.
async fn create_break_glass(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, ApiError> {
    let asked: NewRequest = json_body(&headers, &bytes)?;
    file_request(
        &state,
        &caller,
        NewRequest {
            break_glass: true,
            ..asked
        },
    )
    .await
}

async fn file_request(
    state: &AppState,
    caller: &Caller,
    asked: NewRequest,
) -> Result<Response, ApiError> {
    let groups = match (&asked.group, &asked.groups) {
        (Some(GroupField::Named(named)), None) => named.split(',').map(str::to_string).collect(),
        (Some(GroupField::Listed(several)), None) | (None, Some(several))
            if !several.is_empty() =>
        {
            several.clone()
        }
        (Some(GroupField::Listed(_)), None) | (None, Some(_)) => {
            return Err(ApiError::Unprocessable(
                "the list names no group; name at least one".into(),
            ))
        }
        _ => {
            return Err(ApiError::Unprocessable(
                "name the group in `group`, or several in `groups` (not both)".into(),
            ))
        }
    };
    let groups = groups
        .iter()
        .map(|name| GroupName::parse(name).map_err(|e| ApiError::Unprocessable(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let duration = asked
        .duration
        .as_deref()
        .map(HumanDuration::parse)
        .transpose()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let email = match asked.email.as_deref() {
        None => None,
        Some(_) if !state.engine.email_enabled() => {
            return Err(ApiError::Unprocessable(
                "`email` needs email to be set up on the server (JITBOT_SMTP_URL)".to_string(),
            ))
        }
        Some(text) => {
            Some(EmailAddress::parse(text).map_err(|e| ApiError::Unprocessable(e.to_string()))?)
        }
    };
    let requester = match email {
        None => caller.actor.clone(),
        Some(asked_for) => state
            .engine
            .requester_reached_at(&caller.actor, &asked_for)
            .await
            .map_err(|refusal| match refusal {
                OwnAddressRefusal::NotTheirs => ApiError::Unprocessable(format!(
                    "`email` may only be the address jitbot knows for this token's user ({}), from the chat directory or [identities]; leave it out to hear back in chat",
                    caller.actor.user
                )),
                OwnAddressRefusal::Unavailable(why) => ApiError::Unavailable(format!(
                    "jitbot cannot check the token user's address right now ({why}); nothing was filed"
                )),
            })?,
    };
    let filed = if asked.break_glass {
        let [group] = groups.as_slice() else {
            return Err(ApiError::Unprocessable(
                "break-glass takes one group at a time".into(),
            ));
        };
        let Some(duration) = duration else {
            return Err(ApiError::Unprocessable(
                "break-glass needs a `duration` (at most the group's break_glass max_duration)"
                    .into(),
            ));
        };
        state
            .engine
            .break_glass(requester, None, group, duration, &asked.reason)
            .await
    } else {
        state
            .engine
            .submit_groups(requester, None, &groups, duration, &asked.reason)
            .await
    };
    let receipt = filed.map_err(refusal_status)?;
    let location = format!("/api/v1/requests/{}", receipt.request.id);
    let mut response = (
        StatusCode::CREATED,
        Json(RequestJson::from(&receipt.request)),
    )
        .into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The status a refused filing answers with, and its text.
fn refusal_status(error: SubmitError) -> ApiError {
    let message = error.to_string();
    match error {
        SubmitError::InBundle(inner) => match refusal_status(*inner) {
            ApiError::Forbidden(_) => ApiError::Forbidden(message),
            ApiError::TooMany { retry_after, .. } => ApiError::TooMany {
                retry_after,
                message,
            },
            _ => ApiError::Unprocessable(message),
        },
        SubmitError::Refused(
            refusal @ (RequestRefusal::NotARequester(_)
            | RequestRefusal::NotABreakGlassRequester(_)),
        ) => ApiError::Forbidden(refusal.to_string()),
        SubmitError::Refused(refusal) => ApiError::Unprocessable(refusal.to_string()),
        refusal @ SubmitError::NoPrincipal { .. } => ApiError::Unprocessable(refusal.to_string()),
        refusal @ SubmitError::Directory(_) => ApiError::Unavailable(refusal.to_string()),
        SubmitError::Limited(
            refusal @ crate::domain::quota::QuotaRefusal::ExtensionWaiting { .. },
        ) => ApiError::Conflict(format!("{refusal} Nothing was filed.")),
        SubmitError::Limited(refusal) => ApiError::TooMany {
            retry_after: refusal.retry_in().map(|wait| wait.num_seconds().max(1)),
            message: refusal.to_string(),
        },
        SubmitError::Engine(error) => error.into(),
    }
}

async fn get_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestJson>, ApiError> {
    let not_found = || ApiError::NotFound(format!("there is no request {id}"));
    let id = RequestId::parse(&id).map_err(|_| not_found())?;
    let request = state.engine.get_request(&id).await?.ok_or_else(not_found)?;
    // Another user's request is not theirs to see; do not say it exists.
    if !caller.admin && !request.requester.is(&caller.actor) {
        return Err(not_found());
    }
    Ok(Json(RequestJson::from(&request)))
}

async fn list_grants(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<RequestJson>>, ApiError> {
    let grants = state.engine.active_grants().await?;
    Ok(Json(
        grants
            .iter()
            .filter(|g| caller.admin || g.requester.is(&caller.actor))
            .map(RequestJson::from)
            .collect(),
    ))
}

fn end_error(error: EndError) -> ApiError {
    match error {
        EndError::NoSuchGrant(grant) => ApiError::NotFound(format!("there is no grant {grant}")),
        EndError::Refused(refusal @ crate::domain::request::Refusal::NotYourGrant(_)) => {
            ApiError::Forbidden(refusal.to_string())
        }
        EndError::Refused(refusal) => ApiError::Conflict(refusal.to_string()),
        EndError::Engine(error) => error.into(),
    }
}

fn grant_id(id: &str) -> Result<GrantId, ApiError> {
    GrantId::parse(id).map_err(|_| ApiError::NotFound(format!("there is no grant {id}")))
}

async fn release_grant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RequestJson>), ApiError> {
    let grant = grant_id(&id)?;
    let request = state
        .engine
        .end_grant(&caller.actor, &grant, None)
        .await
        .map_err(end_error)?;
    Ok((StatusCode::ACCEPTED, Json(RequestJson::from(&request))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    reason: String,
}

async fn revoke_grant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<(StatusCode, Json<RequestJson>), ApiError> {
    require_admin(&caller)?;
    let grant = grant_id(&id)?;
    let revocation: Revocation = json_body(&headers, &bytes)?;
    if revocation.reason.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "a revoke needs a reason; the holder is told it".to_string(),
        ));
    }
    let request = state
        .engine
        .end_grant(&caller.actor, &grant, Some(&revocation.reason))
        .await
        .map_err(end_error)?;
    Ok((StatusCode::ACCEPTED, Json(RequestJson::from(&request))))
}

async fn list_mappings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<MappingJson>>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(
        state
            .engine
            .mapping_views()
            .await?
            .iter()
            .map(MappingJson::from)
            .collect(),
    ))
}

fn mapping_target(
    group: &str,
    platform: &str,
    channel: &str,
) -> Result<(GroupName, Destination), ApiError> {
    let group = GroupName::parse(group).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let platform = match platform {
        "slack" => Platform::Slack,
        "teams" => Platform::Teams,
        other => {
            return Err(ApiError::NotFound(format!(
                "`{other}` is not a platform (slack or teams)"
            )))
        }
    };
    let channel =
        ChannelId::parse_for(platform, channel).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((group, Destination { platform, channel }))
}

fn admin_error(error: AdminError) -> ApiError {
    match error {
        AdminError::UnknownGroup(_) | AdminError::NotMapped { .. } => {
            ApiError::NotFound(error.to_string())
        }
        AdminError::PlatformNotConnected(_) | AdminError::CannotPost { .. } => {
            ApiError::Unprocessable(error.to_string())
        }
        AdminError::CheckFailed { .. } => ApiError::Unavailable(error.to_string()),
        AdminError::BadChannel(_) => ApiError::BadRequest(error.to_string()),
        AdminError::Engine(error) => error.into(),
    }
}

async fn put_mapping(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((group, platform, channel)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<MappingJson>), ApiError> {
    require_admin(&caller)?;
    let (group, destination) = mapping_target(&group, &platform, &channel)?;
    let created = state
        .engine
        .map_channel(&caller.actor, destination.clone(), &group)
        .await
        .map_err(admin_error)?;
    let view = state
        .engine
        .mapping_views()
        .await?
        .into_iter()
        .find(|v| v.group == group && v.destination == destination && v.mapped.is_some())
        .ok_or_else(|| ApiError::Internal("the mapping just stored is missing".into()))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(MappingJson::from(&view))))
}

async fn delete_mapping(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((group, platform, channel)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let (group, destination) = mapping_target(&group, &platform, &channel)?;
    state
        .engine
        .unmap_channel(&caller.actor, &destination, &group)
        .await
        .map_err(admin_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Sweep one group now — or, with `dry_run=true`, only say what a sweep
/// would find and do — while the server keeps running.
async fn run_sweep(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(group): Path<String>,
    Query(query): Query<SweepQuery>,
) -> Result<Json<SweepJson>, ApiError> {
    require_admin(&caller)?;
    let unknown = || ApiError::NotFound(format!("there is no group `{group}` in the policy"));
    let name = GroupName::parse(&group).map_err(|_| unknown())?;
    let policy_group = state
        .engine
        .policy()
        .group(&name)
        .ok_or_else(unknown)?
        .clone();
    if policy_group.sweep == crate::domain::policy::SweepMode::Off && !query.dry_run {
        return Err(ApiError::Conflict(format!(
            "group `{group}` has sweep = \"off\"; ask for a dry run (dry_run=true) to see what a sweep would find"
        )));
    }
    let can_list = state
        .engine
        .policy()
        .provider(&policy_group.provider)
        .is_some_and(|spec| spec.kind.lists_holders());
    if !can_list {
        return Err(ApiError::Conflict(format!(
            "provider `{}` of group `{group}` cannot list holders",
            policy_group.provider
        )));
    }
    let report = state.engine.sweep(&policy_group, query.dry_run).await?;
    Ok(Json(SweepJson::from(&report)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnusedQuery {
    group: Option<String>,
}

/// Watched grants and standing holders with the last use jitbot saw.
async fn list_unused(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<UnusedQuery>,
) -> Result<Json<Vec<crate::engine::UnusedEntry>>, ApiError> {
    require_admin(&caller)?;
    if let Some(group) = &query.group {
        let known = GroupName::parse(group)
            .ok()
            .and_then(|name| state.engine.policy().group(&name).cloned());
        if known.is_none() {
            return Err(ApiError::NotFound(format!(
                "there is no group `{group}` in the policy"
            )));
        }
    }
    Ok(Json(state.engine.unused(query.group.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// RFC 3339 time, or a duration back from now (`24h`).
    since: Option<String>,
    /// Only events after this sequence number (to resume an export).
    after: Option<u64>,
    /// Only events about requests whose reason names this ticket.
    ticket: Option<String>,
    /// Only break-glass events: uses, refused attempts, reviews.
    #[serde(default)]
    break_glass: bool,
}

/// The response header of `GET /api/v1/audit` that names the chain's head
/// the export stops at, as `<seq>:<hash>` (what `jitbot audit verify
/// --head` takes). A header, so the body stays one event per line.
/// (Lower case, as HTTP/2 writes header names.)
pub const AUDIT_HEAD_HEADER: &str = "x-jitbot-audit-head";

/// The audit log as JSON lines, oldest first, streamed in chunks so a long
/// log never sits in memory whole. It stops at the head read when it
/// began, which [`AUDIT_HEAD_HEADER`] names: the next export resumes from
/// there (`after=<seq>`).
async fn export_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let since: Option<DateTime<Utc>> = match query.since.as_deref() {
        None => None,
        Some(text) => Some(parse_since(text, state.engine.now())?),
    };
    let engine = state.engine.clone();
    let head = engine.audit_head().await?;
    let end = head.seq;
    let start = query.after.unwrap_or(0);
    let ticket = query.ticket.map(|t| t.trim().to_string());
    let break_glass = query.break_glass;
    // Whether each request seen so far names the ticket.
    let about_ticket: Arc<tokio::sync::Mutex<HashMap<RequestId, bool>>> = Arc::default();
    let chunks = futures_util::stream::unfold(Some(start), move |after| {
        let engine = engine.clone();
        let ticket = ticket.clone();
        let about_ticket = about_ticket.clone();
        async move {
            let after = after.filter(|after| *after < end)?;
            let batch = match engine.audit_after(after, AUDIT_EXPORT_BATCH).await {
                Ok(mut batch) => {
                    batch.retain(|e| e.seq <= end);
                    batch
                }
                Err(error) => {
                    tracing::error!(%error, "audit export failed");
                    return Some((Err(std::io::Error::other("store read failed")), None));
                }
            };
            let last = batch.last().map(|e| e.seq)?;
            let mut text = String::new();
            let wanted = |e: &&AuditEvent| {
                since.map_or(true, |s| e.at >= s) && (!break_glass || e.action.is_break_glass())
            };
            for event in batch.iter().filter(wanted) {
                if let Some(ticket) = &ticket {
                    let Some(id) = &event.request else {
                        continue;
                    };
                    let mut known = about_ticket.lock().await;
                    let names_it = match known.get(id) {
                        Some(names_it) => *names_it,
                        None => {
                            let request = engine.get_request(id).await.ok().flatten();
                            let names_it = request
                                .and_then(|r| r.ticket)
                                .is_some_and(|t| t.eq_ignore_ascii_case(ticket));
                            known.insert(id.clone(), names_it);
                            names_it
                        }
                    };
                    if !names_it {
                        continue;
                    }
                }
                match serde_json::to_string(event) {
                    Ok(line) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Err(error) => {
                        return Some((Err(std::io::Error::other(error.to_string())), None))
                    }
                }
            }
            Some((Ok::<_, std::io::Error>(text), Some(last)))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::HeaderName::from_static(AUDIT_HEAD_HEADER),
                head.shown(),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    HumanDuration::parse(text)
        .map(|ago| now - ago.as_chrono())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "since=`{text}` is neither an RFC 3339 time (2026-11-23T10:00:00Z) nor a duration (24h)"
            ))
        })
}
