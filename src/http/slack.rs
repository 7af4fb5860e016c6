//! Slack routes: `/slack/commands`, `/slack/interactions`, `/slack/events`.
//! Every request is signature-checked and replay-checked before anything
//! else happens; a failed check is a 401 with no other effect.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::admission::{busy_answer, Family};
use super::intake::ReadBody;
use super::{AppState, HttpError};
use crate::chat::slack::blocks::{
    self, GroupOption, DENY_FORM_CALLBACK, DURATION_BLOCK, EXTEND_FORM_CALLBACK, GROUP_BLOCK,
    INPUT_ACTION, REASON_BLOCK, REQUEST_FORM_CALLBACK,
};
use crate::chat::slack::payloads::{
    BlockActions, Event, Interaction, SlashCommand, ViewSubmission,
};
use crate::chat::slack::socket::{Ack, Envelope, EnvelopeHandler};
use crate::chat::slack::verify::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::chat::slack::SlackClient;
use crate::chat::CardActionKind;
use crate::config::Secret;
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{
    Actor, ChannelId, Destination, GrantId, GroupName, Platform, RequestId, UserId,
};
use crate::domain::job::Decision;
use crate::domain::policy::RequestRefusal;
use crate::domain::request::Verdict;
use crate::engine::{Click, ClickOutcome, Reply, SubmitError};
use crate::telemetry::Metrics;

/// What the Slack routes need besides the engine.
pub struct SlackIngress {
    /// `None` with Socket Mode only: the HTTP routes then answer 404.
    pub signing_secret: Option<Secret>,
    pub client: Arc<SlackClient>,
}

fn slack_of(state: &AppState) -> Result<&SlackIngress, HttpError> {
    state
        .slack
        .as_ref()
        .ok_or(HttpError::NotConfigured("Slack"))
}

/// A Slack request whose signature checked out; nothing is stored yet.
struct Signed {
    bytes: Bytes,
    timestamp: i64,
    signature: Vec<u8>,
}

/// Check a Slack request's signature (read in full beforehand, see
/// [`super::intake`]); no store is asked, no turn taken.
fn verify_signature(
    state: &AppState,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Signed, HttpError> {
    let slack = slack_of(state)?;
    let signing_secret = slack
        .signing_secret
        .as_ref()
        .ok_or(HttpError::NotConfigured(
            "Slack's HTTP routes (Socket Mode only)",
        ))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = verify::verify(
        signing_secret.expose().as_bytes(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &bytes,
        Utc::now().timestamp(),
    )
    .map_err(|e| rejected(state, e.to_string()))?;
    Ok(Signed {
        bytes,
        timestamp: verified.timestamp,
        signature: verified.signature,
    })
}

fn rejected(state: &AppState, why: String) -> HttpError {
    Metrics::count_auth_failure(state.engine.metrics(), "slack");
    HttpError::Unauthorized(why)
}

/// Refuse an exact replay of a signed request (401); remembers this one.
async fn first_delivery(state: &AppState, signed: &Signed) -> Result<(), HttpError> {
    let fresh = state
        .engine
        .accept_delivery(signed.timestamp, &signed.signature)
        .await?;
    if !fresh {
        return Err(rejected(state, "replayed request".into()));
    }
    Ok(())
}

/// The workspace ids a Slack payload names: `team_id` (commands, events),
/// `team.id` (interactions), `user.team_id` (interactions' user).
fn workspaces_named(payload: &Value) -> Vec<&str> {
    [
        payload.get("team_id"),
        payload.get("team").and_then(|team| team.get("id")),
        payload.get("user").and_then(|user| user.get("team_id")),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_str)
    .filter(|id| !id.trim().is_empty())
    .collect()
}

/// Refuse (401) a payload from a workspace not in `SLACK_TEAM_ID`, before
/// anything is stored: a signing secret is the app's, and one app may be
/// installed in workspaces jitbot is not meant to serve.
fn from_allowed_workspace<'a>(
    state: &AppState,
    named: impl IntoIterator<Item = &'a str>,
) -> Result<(), HttpError> {
    if state.ingress.admits_slack_teams(named) {
        return Ok(());
    }
    Err(rejected(
        state,
        "this Slack workspace may not use jitbot (SLACK_TEAM_ID)".into(),
    ))
}

/// An Events API URL check names no workspace and changes nothing: it is
/// answered whatever `SLACK_TEAM_ID` says, so the app can be set up.
fn is_url_verification(payload: &Value) -> bool {
    payload.get("type").and_then(Value::as_str) == Some("url_verification")
}

fn slack_actor(id: &str, name: &str) -> Actor {
    Actor::new(Platform::Slack, UserId::new(id), name)
}

fn slack_channel(id: &str) -> Option<Destination> {
    (!id.is_empty()).then(|| Destination {
        platform: Platform::Slack,
        channel: ChannelId::new(id),
    })
}

/// The answer to a command the store could not take.
const UNAVAILABLE: &str =
    "jitbot cannot reach its database right now; nothing was filed or changed. Please try again in a minute.";

fn ephemeral(text: String) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": blocks::mrkdwn(&text) })).into_response()
}

pub(super) async fn command(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, HttpError> {
    let signed = verify_signature(&state, &headers, bytes)?;
    let command: SlashCommand = serde_urlencoded::from_bytes(&signed.bytes)
        .map_err(|e| HttpError::BadRequest(format!("malformed slash command: {e}")))?;
    from_allowed_workspace(
        &state,
        Some(command.team_id.as_str()).filter(|id| !id.trim().is_empty()),
    )?;
    let Some(_turn) = state.admit(Family::SlackCommand).await else {
        return Ok(busy_answer(Family::SlackCommand));
    };
    match first_delivery(&state, &signed).await {
        Ok(()) => {}
        // Signed, but the replay check could not reach the store: Slack
        // shows a failed command as a bare error, so say what happened.
        Err(HttpError::Unavailable(detail)) => {
            tracing::error!(%detail, "slash command refused: the store is unavailable");
            return Ok(ephemeral(UNAVAILABLE.to_string()));
        }
        Err(other) => return Err(other),
    }
    answer_command(&state, command).await
}

/// A slash command, however it came (HTTP or Socket Mode): the answer is
/// shown to the person who typed it.
async fn answer_command(
    state: &Arc<AppState>,
    command: SlashCommand,
) -> Result<Response, HttpError> {
    let actor = slack_actor(&command.user_id, &command.user_name);
    let origin = slack_channel(&command.channel_id);
    match state
        .engine
        .handle_command(actor.clone(), origin, &command.text)
        .await
    {
        Reply::Text(text) => Ok(ephemeral(text)),
        Reply::OpenRequestForm(choices) => {
            open_request_form(state, &choices, &command.channel_id, &command.trigger_id)?;
            Ok(axum::http::StatusCode::OK.into_response())
        }
        // Slack has a place for it: the Home tab, published now.
        Reply::Home(_) => {
            state.engine.home_opened(&actor).await?;
            Ok(ephemeral(
                "Your home is in jitbot's *Home* tab (open jitbot under Apps): your grants, your requests and what waits for your approval, with buttons.".into(),
            ))
        }
    }
}

/// Open the request form for `trigger` (a command's or a button's).
fn open_request_form(
    state: &Arc<AppState>,
    choices: &[crate::engine::FormChoice],
    channel_id: &str,
    trigger: &str,
) -> Result<(), HttpError> {
    // The trigger id is valid for three seconds; open the form right after
    // acknowledging. There is nothing durable to lose here.
    let options: Vec<GroupOption> = choices
        .iter()
        .map(|c| GroupOption {
            name: c.name.to_string(),
            description: c.description.clone(),
            mapped_here: c.mapped_here,
        })
        .collect();
    let default_duration = choices
        .first()
        .map(|c| c.default_duration.to_string())
        .unwrap_or_default();
    let view = blocks::request_form(&options, &default_duration, channel_id);
    let client = slack_of(state)?.client.clone();
    let trigger = trigger.to_string();
    tokio::spawn(async move {
        if let Err(error) = client.open_view(&trigger, &view).await {
            tracing::warn!(%error, "could not open the request form");
        }
    });
    Ok(())
}

pub(super) async fn interaction(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, HttpError> {
    let signed = verify_signature(&state, &headers, bytes)?;
    #[derive(serde::Deserialize)]
    struct Form {
        payload: String,
    }
    let form: Form = serde_urlencoded::from_bytes(&signed.bytes)
        .map_err(|_| HttpError::BadRequest("interaction without a payload field".into()))?;
    let malformed =
        |e: serde_json::Error| HttpError::BadRequest(format!("malformed interaction payload: {e}"));
    let payload: Value = serde_json::from_str(&form.payload).map_err(malformed)?;
    from_allowed_workspace(&state, workspaces_named(&payload))?;
    let interaction: Interaction = serde_json::from_value(payload).map_err(malformed)?;
    let Some(_turn) = state.admit(Family::Slack).await else {
        return Ok(busy_answer(Family::Slack));
    };
    first_delivery(&state, &signed).await?;
    answer_interaction(&state, interaction).await
}

/// A click or a form, however it came (HTTP or Socket Mode).
async fn answer_interaction(
    state: &Arc<AppState>,
    interaction: Interaction,
) -> Result<Response, HttpError> {
    match interaction {
        Interaction::BlockActions(actions) => block_actions(state, actions).await,
        Interaction::ViewSubmission(submission) => view_submission(state, submission).await,
        Interaction::Other => Ok(axum::http::StatusCode::OK.into_response()),
    }
}

async fn block_actions(
    state: &Arc<AppState>,
    payload: BlockActions,
) -> Result<Response, HttpError> {
    let actor = slack_actor(&payload.user.id, payload.user.display_name());
    let channel = payload.channel.as_ref().and_then(|c| slack_channel(&c.id));
    for action in &payload.actions {
        if let Some(answer) = home_action(state, &actor, &payload.trigger_id, action).await? {
            state.engine.tell(&actor, answer).await?;
            continue;
        }
        let Some(kind) = CardActionKind::from_action_id(&action.action_id) else {
            continue;
        };
        match kind {
            CardActionKind::Approve => {
                // Slack shows nothing of this answer: a refusal reaches the
                // clicker as an ephemeral message in the card's channel.
                state
                    .engine
                    .click(Click {
                        request: request_id_of(&action.value)?,
                        by: actor.clone(),
                        decision: Decision::Approve,
                        reply_in: channel.clone(),
                        answers_inline: false,
                    })
                    .await?;
            }
            CardActionKind::Deny => {
                let request_id = request_id_of(&action.value)?;
                // Ask for the reason in a modal, but only if this click could
                // count; otherwise the engine explains why not.
                let engine = state.engine.clone();
                let client = slack_of(state)?.client.clone();
                let (actor, channel, trigger) =
                    (actor.clone(), channel.clone(), payload.trigger_id.clone());
                tokio::spawn(async move {
                    match engine
                        .may_decide(&request_id, &actor, channel.clone())
                        .await
                    {
                        Ok(true) => {
                            let view = blocks::deny_form(
                                request_id.as_str(),
                                channel.as_ref().map(|c| c.channel.as_str()),
                            );
                            if let Err(error) = client.open_view(&trigger, &view).await {
                                tracing::warn!(%error, "could not open the deny form");
                            }
                        }
                        Ok(false) => {}
                        Err(error) => tracing::error!(%error, "could not check a denial"),
                    }
                });
            }
            CardActionKind::Acknowledge | CardActionKind::RevokeNow => {
                let verdict = if kind == CardActionKind::Acknowledge {
                    Verdict::Acknowledged
                } else {
                    Verdict::Revoked
                };
                // Recorded before the click is answered; the outcome is DMed.
                let text = state
                    .engine
                    .review_break_glass(&actor, &request_id_of(&action.value)?, verdict)
                    .await?;
                state.engine.tell(&actor, text).await?;
            }
            CardActionKind::KeepIt => {
                let grant = GrantId::parse(&action.value)
                    .map_err(|_| HttpError::BadRequest("button value is not a grant id".into()))?;
                // Recorded before the click is answered; the outcome is DMed.
                let outcome = state.engine.keep_grant(&actor, &grant).await?;
                state
                    .engine
                    .tell(&actor, outcome.text().to_string())
                    .await?;
            }
            CardActionKind::Extend => {
                let grant = GrantId::parse(&action.value)
                    .map_err(|_| HttpError::BadRequest("button value is not a grant id".into()))?;
                let default_duration = state
                    .engine
                    .get_request(&grant.request_id())
                    .await?
                    .and_then(|r| {
                        state
                            .engine
                            .policy()
                            .group(&r.group)
                            .map(|g| g.limits.default_duration)
                    })
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                let view = blocks::extend_form(grant.as_str(), &default_duration);
                let client = slack_of(state)?.client.clone();
                let trigger = payload.trigger_id.clone();
                tokio::spawn(async move {
                    if let Err(error) = client.open_view(&trigger, &view).await {
                        tracing::warn!(%error, "could not open the extend form");
                    }
                });
            }
        }
    }
    Ok(axum::http::StatusCode::OK.into_response())
}

/// A button of the App Home tab that is not a card's: Release and Cancel
/// take the same path as `/jit release` and `/jit cancel` (the answer is
/// DMed; the home is published again when the step is written), Request
/// access opens the request form. `None` for any other action.
async fn home_action(
    state: &Arc<AppState>,
    actor: &Actor,
    trigger: &str,
    action: &crate::chat::slack::payloads::Action,
) -> Result<Option<String>, HttpError> {
    let command = match crate::chat::home::command_of(&action.action_id, &action.value) {
        None => return Ok(None),
        Some(Ok(command)) => command,
        Some(Err(why)) => return Err(HttpError::BadRequest(why)),
    };
    match state
        .engine
        .handle_command(actor.clone(), None, &command)
        .await
    {
        Reply::Text(text) => Ok(Some(text)),
        Reply::OpenRequestForm(choices) => {
            open_request_form(state, &choices, "", trigger)?;
            Ok(None)
        }
        Reply::Home(_) => Ok(None),
    }
}

fn request_id_of(value: &str) -> Result<RequestId, HttpError> {
    RequestId::parse(value)
        .map_err(|_| HttpError::BadRequest("button value is not a request id".into()))
}

fn field_errors(errors: Vec<(&str, String)>) -> Response {
    // Slack shows field errors as plain text.
    let map: serde_json::Map<String, Value> = errors
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(crate::domain::text::plain(&v))))
        .collect();
    Json(json!({ "response_action": "errors", "errors": map })).into_response()
}

async fn view_submission(
    state: &Arc<AppState>,
    submission: ViewSubmission,
) -> Result<Response, HttpError> {
    let actor = slack_actor(&submission.user.id, submission.user.display_name());
    let view = &submission.view;
    let input = |block: &str| view.state.input(block, INPUT_ACTION).unwrap_or_default();
    match view.callback_id.as_str() {
        REQUEST_FORM_CALLBACK => {
            let mut errors = Vec::new();
            let group = GroupName::parse(&input(GROUP_BLOCK));
            if group.is_err() {
                errors.push((GROUP_BLOCK, "Choose a group.".to_string()));
            }
            let duration = HumanDuration::parse(&input(DURATION_BLOCK));
            if let Err(error) = &duration {
                errors.push((DURATION_BLOCK, format!("{error}.")));
            }
            let (Ok(group), Ok(duration)) = (group, duration) else {
                return Ok(field_errors(errors));
            };
            let origin = slack_channel(&view.private_metadata);
            let reason = input(REASON_BLOCK);
            match state
                .engine
                .submit(actor.clone(), origin, &group, Some(duration), &reason)
                .await
            {
                Ok(receipt) => {
                    let text = receipt.summary();
                    state.engine.tell(&actor, text).await?;
                    Ok(Json(json!({ "response_action": "clear" })).into_response())
                }
                Err(SubmitError::Refused(refusal)) => {
                    let block = match refusal {
                        RequestRefusal::UnknownGroup(_)
                        | RequestRefusal::NamedTwice(_)
                        | RequestRefusal::NotARequester(_)
                        | RequestRefusal::NoSuchGrant(_)
                        | RequestRefusal::NotYourGrant(_)
                        | RequestRefusal::GrantNotActive(..)
                        | RequestRefusal::NoBreakGlass(_)
                        | RequestRefusal::NotABreakGlassRequester(_) => GROUP_BLOCK,
                        RequestRefusal::TooShort { .. }
                        | RequestRefusal::TooLong { .. }
                        | RequestRefusal::BreakGlassTooLong { .. }
                        | RequestRefusal::GrantTooLong { .. } => DURATION_BLOCK,
                        RequestRefusal::BreakGlassReasonMissing(_)
                        | RequestRefusal::ReasonMissing(_)
                        | RequestRefusal::ReasonTooLong { .. }
                        | RequestRefusal::TicketMissing { .. } => REASON_BLOCK,
                    };
                    Ok(field_errors(vec![(block, refusal.to_string())]))
                }
                Err(other) => Ok(field_errors(vec![(GROUP_BLOCK, other.to_string())])),
            }
        }
        EXTEND_FORM_CALLBACK => {
            let grant = GrantId::parse(&view.private_metadata)
                .map_err(|_| HttpError::BadRequest("extend form without its grant".into()))?;
            let duration = match HumanDuration::parse(&input(DURATION_BLOCK)) {
                Ok(duration) => duration,
                Err(error) => return Ok(field_errors(vec![(DURATION_BLOCK, format!("{error}."))])),
            };
            let reason = input(REASON_BLOCK);
            match state
                .engine
                .submit_extension(actor.clone(), None, &grant, duration, &reason)
                .await
            {
                Ok(receipt) => {
                    let text = receipt.summary();
                    state.engine.tell(&actor, text).await?;
                    Ok(Json(json!({ "response_action": "clear" })).into_response())
                }
                Err(SubmitError::Refused(refusal)) => {
                    let block = match refusal {
                        RequestRefusal::ReasonMissing(_)
                        | RequestRefusal::ReasonTooLong { .. }
                        | RequestRefusal::TicketMissing { .. } => REASON_BLOCK,
                        _ => DURATION_BLOCK,
                    };
                    Ok(field_errors(vec![(block, refusal.to_string())]))
                }
                Err(other) => Ok(field_errors(vec![(DURATION_BLOCK, other.to_string())])),
            }
        }
        DENY_FORM_CALLBACK => {
            #[derive(serde::Deserialize)]
            struct Metadata {
                request: String,
                channel: Option<String>,
            }
            let metadata: Metadata = serde_json::from_str(&view.private_metadata)
                .map_err(|_| HttpError::BadRequest("deny form without its request".into()))?;
            let request_id = RequestId::parse(&metadata.request)
                .map_err(|_| HttpError::BadRequest("deny form without its request".into()))?;
            let click = Click {
                request: request_id,
                by: actor,
                decision: Decision::Deny {
                    reason: input(REASON_BLOCK),
                },
                reply_in: metadata.channel.as_deref().and_then(slack_channel),
                // Whatever stops the denial is shown in the form itself.
                answers_inline: true,
            };
            match state.engine.click(click).await? {
                ClickOutcome::Recorded(_) => Ok(axum::http::StatusCode::OK.into_response()),
                ClickOutcome::Refused(refusal) => {
                    Ok(field_errors(vec![(REASON_BLOCK, refusal.to_string())]))
                }
                ClickOutcome::Missing => Ok(field_errors(vec![(
                    REASON_BLOCK,
                    format!("There is no request {}.", metadata.request),
                )])),
            }
        }
        _ => Ok(axum::http::StatusCode::OK.into_response()),
    }
}

pub(super) async fn event(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, HttpError> {
    let signed = verify_signature(&state, &headers, bytes)?;
    let malformed = |e: serde_json::Error| HttpError::BadRequest(format!("malformed event: {e}"));
    let payload: Value = serde_json::from_slice(&signed.bytes).map_err(malformed)?;
    if !is_url_verification(&payload) {
        from_allowed_workspace(&state, workspaces_named(&payload))?;
    }
    let event: Event = serde_json::from_value(payload).map_err(malformed)?;
    let Some(_turn) = state.admit(Family::Slack).await else {
        return Ok(busy_answer(Family::Slack));
    };
    first_delivery(&state, &signed).await?;
    answer_event(&state, event).await
}

/// An Events API event, however it came (HTTP or Socket Mode).
async fn answer_event(state: &Arc<AppState>, event: Event) -> Result<Response, HttpError> {
    match event {
        Event::UrlVerification { challenge } => {
            Ok(Json(json!({ "challenge": challenge })).into_response())
        }
        Event::EventCallback { event } => {
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            if kind == "app_home_opened" {
                // The Home tab (not the Messages tab) was opened: publish it.
                let on_home = event.get("tab").and_then(Value::as_str) != Some("messages");
                if let (true, Some(user)) = (on_home, event.get("user").and_then(Value::as_str)) {
                    state.engine.home_opened(&slack_actor(user, "")).await?;
                }
            } else if matches!(kind, "app_uninstalled" | "tokens_revoked") {
                tracing::error!(event = kind, "Slack reports the app lost its token: messages cannot be delivered until it is reinstalled");
            } else {
                tracing::debug!(event = kind, "ignoring Slack event");
            }
            Ok(axum::http::StatusCode::OK.into_response())
        }
        Event::Other => Ok(axum::http::StatusCode::OK.into_response()),
    }
}

/// Socket Mode's envelopes, taken by the same code as the HTTP routes: the
/// body an HTTP answer would carry is the acknowledgement's payload.
/// Slack's signature is not needed — the connection itself was opened with
/// the app token — but a delivery is still taken once: an envelope Slack
/// sends again (`retry_attempt`), here or to another replica, is only
/// acknowledged.
pub struct SocketIngress {
    state: Arc<AppState>,
}

impl SocketIngress {
    pub fn new(state: Arc<AppState>) -> SocketIngress {
        SocketIngress { state }
    }

    /// Whether this delivery is new; the key is what Slack keeps across
    /// its retries (the event id, the trigger id), else the envelope id.
    async fn first_delivery(&self, envelope: &Envelope) -> Result<bool, HttpError> {
        let payload = &envelope.payload;
        let key = ["event_id", "trigger_id"]
            .iter()
            .find_map(|field| payload.get(*field).and_then(Value::as_str))
            .or(envelope.envelope_id.as_deref())
            .unwrap_or_default();
        Ok(self
            .state
            .engine
            .accept_delivery(Utc::now().timestamp(), format!("socket:{key}").as_bytes())
            .await?)
    }

    async fn answer(&self, envelope: &Envelope) -> Result<Option<Response>, HttpError> {
        let payload = envelope.payload.clone();
        let malformed = |what: &str, e: serde_json::Error| {
            HttpError::BadRequest(format!("malformed {what} envelope: {e}"))
        };
        let response = match envelope.kind.as_str() {
            "slash_commands" => {
                let command =
                    serde_json::from_value(payload).map_err(|e| malformed("slash command", e))?;
                answer_command(&self.state, command).await?
            }
            "interactive" => {
                let interaction =
                    serde_json::from_value(payload).map_err(|e| malformed("interactive", e))?;
                answer_interaction(&self.state, interaction).await?
            }
            "events_api" => {
                let event =
                    serde_json::from_value(payload).map_err(|e| malformed("events_api", e))?;
                answer_event(&self.state, event).await?
            }
            other => {
                tracing::debug!(kind = other, "ignoring a Socket Mode envelope of this type");
                return Ok(None);
            }
        };
        Ok(Some(response))
    }
}

#[async_trait::async_trait]
impl EnvelopeHandler for SocketIngress {
    async fn handle(&self, envelope: Envelope) -> Ack {
        let takes_part = matches!(
            envelope.kind.as_str(),
            "slash_commands" | "interactive" | "events_api"
        );
        if takes_part
            && !is_url_verification(&envelope.payload)
            && !self
                .state
                .ingress
                .admits_slack_teams(workspaces_named(&envelope.payload))
        {
            // Acknowledged, so Slack does not send it again; nothing done.
            Metrics::count_auth_failure(self.state.engine.metrics(), "slack");
            tracing::warn!(kind = %envelope.kind, "a Socket Mode envelope from a Slack workspace not in SLACK_TEAM_ID; ignored");
            return Ack::Bare;
        }
        // Overloaded: a command is told so at once, like on the HTTP
        // route; anything else is left unacknowledged, so Slack delivers
        // it again in a moment instead of it being lost.
        let Some(_turn) = self.state.admit(Family::Slack).await else {
            return if envelope.kind == "slash_commands" {
                Ack::With(json!({ "response_type": "ephemeral", "text": super::BUSY_TEXT }))
            } else {
                Ack::Withheld
            };
        };
        match self.first_delivery(&envelope).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(retry = ?envelope.retry_attempt, "Socket Mode envelope delivered again; acknowledged only");
                return Ack::Bare;
            }
            Err(error) => {
                tracing::error!(%error, "cannot check a Socket Mode delivery: the store is unavailable");
                return if envelope.kind == "slash_commands" {
                    Ack::With(json!({ "response_type": "ephemeral", "text": UNAVAILABLE }))
                } else {
                    Ack::Bare
                };
            }
        }
        let response = match self.answer(&envelope).await {
            Ok(Some(response)) => response,
            Ok(None) => return Ack::Bare,
            Err(error) => {
                tracing::warn!(%error, kind = %envelope.kind, "Socket Mode envelope not taken");
                return Ack::Bare;
            }
        };
        let body = axum::body::to_bytes(response.into_body(), super::MAX_BODY_BYTES)
            .await
            .unwrap_or_default();
        serde_json::from_slice(&body).map_or(Ack::Bare, Ack::With)
    }
}
