//! Teams routes. `/teams/messages` is the Bot Framework endpoint: every
//! activity's JWT is checked before anything else (401/403, no other
//! effect); messages are commands, `adaptiveCard/action` invokes are card
//! buttons (answered with the refreshed card), and `Action.Submit` messages
//! are the same buttons from older clients. `/teams/webhook` serves an
//! outgoing webhook: HMAC-checked, answered synchronously, no buttons.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::Digest;

use super::admission::{busy_answer, Family};
use super::intake::ReadBody;
use super::{AppState, HttpError};
use crate::chat::teams::activity::Activity;
use crate::chat::teams::auth::{AuthError, BotAuthenticator};
use crate::chat::teams::cards::{
    self, ACTION_KEY, ADAPTIVE_CARD, DURATION_INPUT, GROUP_INPUT, REASON_INPUT, REQUEST_VERB,
    VALUE_KEY,
};
use crate::chat::teams::{webhook, TeamsClient};
use crate::chat::CardActionKind;
use crate::config::Secret;
use crate::domain::command::Command;
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{
    Actor, ChannelId, Destination, GrantId, GroupName, Platform, RequestId, UserId,
};
use crate::domain::job::Decision;
use crate::domain::request::{Refusal, Verdict};
use crate::engine::{Click, ClickOutcome, Reply, TeamsSighting};
use crate::telemetry::Metrics;

/// Teams gives an outgoing webhook five seconds; answer within four.
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(4);

/// What the Teams bot routes need besides the engine.
pub struct TeamsIngress {
    pub auth: BotAuthenticator,
    pub client: Arc<TeamsClient>,
}

fn teams_actor(activity: &Activity) -> Result<Actor, HttpError> {
    let aad = activity
        .from
        .aad_object_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| HttpError::BadRequest("the activity has no from.aadObjectId".into()))?;
    Ok(Actor::new(
        Platform::Teams,
        UserId::new(aad.to_lowercase()),
        activity.from.name.clone(),
    ))
}

fn conversation_of(activity: &Activity) -> Destination {
    Destination {
        platform: Platform::Teams,
        channel: ChannelId::new(&activity.conversation.id),
    }
}

/// Keep what is needed to reach this user and conversation later.
async fn remember(state: &AppState, activity: &Activity) -> Result<(), HttpError> {
    if activity.service_url.is_empty() || activity.conversation.id.is_empty() {
        return Ok(());
    }
    state
        .engine
        .remember_teams_conversation(&activity.conversation.id, &activity.service_url)
        .await?;
    let (Some(aad), Some(tenant)) = (activity.from.aad_object_id.as_deref(), activity.tenant_id())
    else {
        return Ok(());
    };
    state
        .engine
        .remember_teams_user(TeamsSighting {
            aad_object_id: aad.to_string(),
            teams_id: activity.from.id.clone(),
            name: activity.from.name.clone(),
            tenant_id: tenant.to_string(),
            service_url: activity.service_url.clone(),
            conversation: activity.conversation.id.clone(),
            personal: activity.conversation.conversation_type.as_deref() == Some("personal"),
        })
        .await?;
    Ok(())
}

/// Refuse (403) an activity from a tenant not in `TEAMS_ALLOWED_TENANTS`:
/// a valid Bot Framework token vouches for the service, not the tenant,
/// and a bot can be installed in any tenant.
fn from_allowed_tenant(state: &AppState, activity: &Activity) -> Result<(), HttpError> {
    let named = [
        activity.channel_data.tenant.as_ref().map(|t| t.id.as_str()),
        activity.conversation.tenant_id.as_deref(),
    ];
    let named = named.into_iter().flatten().filter(|t| !t.trim().is_empty());
    if state.ingress.admits_teams_tenants(named) {
        return Ok(());
    }
    state.engine.metrics().count_auth_failure("teams");
    tracing::warn!(tenant = ?activity.tenant_id(), "a Teams activity from a tenant not allowed; refused");
    Err(HttpError::Forbidden(
        "this Microsoft Teams tenant may not use jitbot (TEAMS_ALLOWED_TENANTS)".into(),
    ))
}

/// Activities older (or newer) than this are refused, like Slack requests.
const MAX_AGE_SECS: i64 = crate::chat::slack::verify::MAX_AGE_SECS;

/// Refuse an activity delivered twice. Outgoing-webhook replays (same body
/// and signature) are errors; a Bot Framework activity id seen again is a
/// redelivery, answered without effect (`Ok(false)`).
async fn first_delivery(
    state: &AppState,
    sent_at: i64,
    fingerprint: &[u8],
) -> Result<bool, HttpError> {
    Ok(state.engine.accept_delivery(sent_at, fingerprint).await?)
}

/// What identifies one Bot Framework activity, whatever blanks surround its
/// ids: a redelivery has the same id in the same conversation from the same
/// sender.
fn activity_fingerprint(activity: &Activity) -> Vec<u8> {
    let mut digest = sha2::Sha256::new();
    for part in [
        "teams-activity",
        activity.id.trim(),
        activity.conversation.id.trim(),
        activity.from.id.trim(),
    ] {
        // Length-prefixed, so no two different triples hash alike.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().to_vec()
}

fn fresh(sent_at: i64) -> bool {
    (chrono::Utc::now().timestamp() - sent_at).abs() <= MAX_AGE_SECS
}

fn parse_activity(bytes: &[u8]) -> Result<Activity, HttpError> {
    serde_json::from_slice(bytes)
        .map_err(|e| HttpError::BadRequest(format!("malformed activity: {e}")))
}

pub(super) async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, HttpError> {
    let teams = state
        .teams
        .as_ref()
        .ok_or(HttpError::NotConfigured("Teams"))?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refused = |error: AuthError| {
        state.engine.metrics().count_auth_failure("teams");
        match error {
            AuthError::Unauthenticated(why) => HttpError::Unauthorized(why),
            AuthError::Forbidden(why) => HttpError::Forbidden(why),
        }
    };
    // The token first: an unauthenticated body is never parsed.
    let call = teams.auth.verify(authorization).await.map_err(refused)?;
    let activity = parse_activity(&bytes)?;
    call.admits(&activity.channel_id, &activity.service_url)
        .map_err(refused)?;
    from_allowed_tenant(&state, &activity)?;
    if !state
        .ingress
        .admits_teams_service_url(&activity.service_url)
    {
        // jitbot would later send its own access token there.
        state.engine.metrics().count_auth_failure("teams");
        tracing::warn!(service_url = %activity.service_url, "a Teams activity names a serviceUrl not allowed; refused");
        return Err(HttpError::Forbidden(format!(
            "the activity's serviceUrl `{}` is not a Bot Framework service jitbot talks to (TEAMS_ALLOWED_SERVICE_URLS)",
            activity.service_url
        )));
    }
    let sent_at = activity
        .sent_at()
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    if !fresh(sent_at) {
        return Err(HttpError::Unauthorized(
            "the activity is older than 5 minutes".into(),
        ));
    }
    let acts = matches!(activity.kind.as_str(), "message" | "invoke");
    if acts && activity.id.trim().is_empty() {
        // Without an id a redelivery could not be told from a new activity.
        return Err(HttpError::BadRequest("the activity has no id".into()));
    }
    let Some(_turn) = state.admit(Family::Teams).await else {
        return Ok(busy_answer(Family::Teams));
    };
    if !activity.id.trim().is_empty()
        && !first_delivery(&state, sent_at, &activity_fingerprint(&activity)).await?
    {
        tracing::info!(activity = %activity.id, "activity delivered again; ignored");
        return Ok(StatusCode::OK.into_response());
    }
    remember(&state, &activity).await?;
    match activity.kind.as_str() {
        "invoke" if activity.name == "adaptiveCard/action" => {
            let action = activity
                .value
                .as_ref()
                .map(|v| &v["action"])
                .cloned()
                .unwrap_or(Value::Null);
            let verb = action["verb"].as_str().unwrap_or_default().to_string();
            let data = action["data"].clone();
            let actor = teams_actor(&activity)?;
            let answer = card_action(&state, &activity, actor, &verb, &data).await?;
            Ok(Json(answer.invoke_response()).into_response())
        }
        "message" => {
            let actor = teams_actor(&activity)?;
            if let Some(data) = activity
                .value
                .as_ref()
                .filter(|v| v.get(ACTION_KEY).is_some())
            {
                // Action.Submit from a client without Universal Actions: the
                // card is the message `replyToId` names; the outbox updates it.
                let verb = data[ACTION_KEY].as_str().unwrap_or_default().to_string();
                let answer = card_action(&state, &activity, actor.clone(), &verb, data).await?;
                if let Some(text) = answer.text() {
                    state.engine.tell(&actor, text).await?;
                }
                return Ok(StatusCode::OK.into_response());
            }
            command(&state, &activity, actor).await?;
            Ok(StatusCode::OK.into_response())
        }
        // Installs, members joining, reactions: only the contact is kept.
        _ => Ok(StatusCode::OK.into_response()),
    }
}

/// A typed command: the answer goes back to a personal chat, and for a
/// command typed in a channel, privately to the person (Teams has no
/// message only one person sees in a channel).
async fn command(state: &AppState, activity: &Activity, actor: Actor) -> Result<(), HttpError> {
    let origin = conversation_of(activity);
    let personal = activity.conversation.conversation_type.as_deref() == Some("personal");
    match state
        .engine
        .handle_command(
            actor.clone(),
            Some(origin.clone()),
            &activity.command_text(),
        )
        .await
    {
        Reply::Text(text) => {
            if personal {
                state.engine.say_in(origin, text).await?;
            } else {
                state.engine.tell(&actor, text).await?;
            }
        }
        Reply::Home(view) => {
            send_card(state, activity, &actor, personal, cards::home_card(&view))?;
        }
        Reply::OpenRequestForm(choices) => {
            // Like Slack's modal, the form holds no state worth keeping.
            send_card(
                state,
                activity,
                &actor,
                personal,
                cards::request_form(&choices),
            )?;
        }
    }
    Ok(())
}

/// Send `card` to the personal chat it was asked in, or else to the
/// person directly; in the background (nothing durable to lose).
fn send_card(
    state: &AppState,
    activity: &Activity,
    actor: &Actor,
    personal: bool,
    card: Value,
) -> Result<(), HttpError> {
    let teams = state
        .teams
        .as_ref()
        .ok_or(HttpError::NotConfigured("Teams"))?;
    let client = teams.client.clone();
    let conversation = activity.conversation.id.clone();
    let user = actor.user.clone();
    tokio::spawn(async move {
        let sent = if personal {
            client.send_card_json(&conversation, card).await
        } else {
            client.direct_card_json(&user, card).await
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "could not send a card");
        }
    });
    Ok(())
}

/// How a card button was answered.
enum ActionAnswer {
    /// The card as it is (or is about to be) after the click.
    Card(Value),
    Message(String),
    Error(String),
}

impl ActionAnswer {
    fn invoke_response(&self) -> Value {
        match self {
            ActionAnswer::Card(card) => {
                json!({ "statusCode": 200, "type": ADAPTIVE_CARD, "value": card })
            }
            ActionAnswer::Message(text) => {
                let (text, _) = crate::chat::teams::text::message_text(text);
                json!({ "statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text })
            }
            ActionAnswer::Error(text) => json!({
                "statusCode": 400,
                "type": "application/vnd.microsoft.error",
                "value": { "code": "BadRequest", "message": crate::domain::text::plain(text) }
            }),
        }
    }

    /// What to tell the person when the answer cannot be the HTTP response.
    fn text(&self) -> Option<String> {
        match self {
            ActionAnswer::Card(_) => None,
            ActionAnswer::Message(text) | ActionAnswer::Error(text) => Some(text.clone()),
        }
    }
}

fn input(data: &Value, id: &str) -> String {
    data[id].as_str().unwrap_or_default().trim().to_string()
}

async fn card_action(
    state: &AppState,
    activity: &Activity,
    actor: Actor,
    verb: &str,
    data: &Value,
) -> Result<ActionAnswer, HttpError> {
    let engine = &state.engine;
    let origin = conversation_of(activity);
    let value = data[VALUE_KEY].as_str().unwrap_or_default();
    if verb == REQUEST_VERB {
        let Ok(group) = GroupName::parse(&input(data, GROUP_INPUT)) else {
            return Ok(ActionAnswer::Error("Choose a group.".into()));
        };
        let duration = match input(data, DURATION_INPUT) {
            text if text.is_empty() => None,
            text => match HumanDuration::parse(&text) {
                Ok(duration) => Some(duration),
                Err(error) => return Ok(ActionAnswer::Error(error.to_string())),
            },
        };
        let reason = input(data, REASON_INPUT);
        return Ok(
            match engine
                .submit(actor, Some(origin), &group, duration, &reason)
                .await
            {
                Ok(receipt) => ActionAnswer::Message(receipt.summary()),
                Err(refusal) => ActionAnswer::Message(refusal.to_string()),
            },
        );
    }
    // The home's own buttons take the commands' path.
    let home_command = match crate::chat::home::command_of(verb, value) {
        Some(Err(why)) => return Ok(ActionAnswer::Error(why)),
        other => other.and_then(Result::ok),
    };
    if let Some(command) = home_command {
        return Ok(
            match engine.handle_command(actor, Some(origin), &command).await {
                Reply::Text(text) => ActionAnswer::Message(text),
                Reply::OpenRequestForm(choices) => {
                    ActionAnswer::Card(cards::request_form(&choices))
                }
                Reply::Home(view) => ActionAnswer::Card(cards::home_card(&view)),
            },
        );
    }
    match CardActionKind::from_action_id(verb) {
        Some(kind @ (CardActionKind::Approve | CardActionKind::Deny)) => {
            let Ok(id) = RequestId::parse(value) else {
                return Ok(ActionAnswer::Error(format!(
                    "`{value}` is not a request id."
                )));
            };
            let decision = if kind == CardActionKind::Approve {
                Decision::Approve
            } else {
                Decision::Deny {
                    reason: input(data, REASON_INPUT),
                }
            };
            let click = Click {
                request: id.clone(),
                by: actor,
                decision,
                reply_in: Some(origin),
                // The invoke's answer is what the clicker sees.
                answers_inline: true,
            };
            Ok(match engine.click(click).await? {
                ClickOutcome::Missing => ActionAnswer::Error(format!("There is no request {id}.")),
                ClickOutcome::Refused(Refusal::DenyReasonMissing) => ActionAnswer::Error(
                    "A denial needs a reason: type it in the box on the card, then press Deny."
                        .into(),
                ),
                ClickOutcome::Refused(refusal) => ActionAnswer::Message(refusal.to_string()),
                ClickOutcome::Recorded(next) => {
                    // Recorded durably; the answer shows the card as it will be.
                    ActionAnswer::Card(cards::adaptive_card(&engine.card(&next).await))
                }
            })
        }
        Some(kind @ (CardActionKind::Acknowledge | CardActionKind::RevokeNow)) => {
            let Ok(id) = RequestId::parse(value) else {
                return Ok(ActionAnswer::Error(format!(
                    "`{value}` is not a request id."
                )));
            };
            let verdict = if kind == CardActionKind::Acknowledge {
                Verdict::Acknowledged
            } else {
                Verdict::Revoked
            };
            Ok(ActionAnswer::Message(
                engine.review_break_glass(&actor, &id, verdict).await?,
            ))
        }
        Some(CardActionKind::KeepIt) => {
            let Ok(grant) = GrantId::parse(value) else {
                return Ok(ActionAnswer::Error(format!("`{value}` is not a grant id.")));
            };
            Ok(ActionAnswer::Message(
                engine.keep_grant(&actor, &grant).await?.text().to_string(),
            ))
        }
        Some(CardActionKind::Extend) => {
            let Ok(grant) = GrantId::parse(value) else {
                return Ok(ActionAnswer::Error(format!("`{value}` is not a grant id.")));
            };
            let duration = match HumanDuration::parse(&input(data, DURATION_INPUT)) {
                Ok(duration) => duration,
                Err(_) => {
                    return Ok(ActionAnswer::Error(
                        "Say how much longer, like 30m or 1h, in the box on the card.".into(),
                    ))
                }
            };
            let reason = input(data, REASON_INPUT);
            Ok(
                match engine
                    .submit_extension(actor, Some(origin), &grant, duration, &reason)
                    .await
                {
                    Ok(receipt) => ActionAnswer::Message(receipt.summary()),
                    Err(refusal) => ActionAnswer::Message(refusal.to_string()),
                },
            )
        }
        None => Ok(ActionAnswer::Error(format!("Unknown action `{verb}`."))),
    }
}

/// What the outgoing webhook answers to admin commands and break-glass.
const WEBHOOK_REFUSES: &str = "This channel reaches jitbot through an outgoing webhook, which does not vouch for who you are as the jitbot app does: admin commands and break-glass are not taken here. Please use the jitbot app for this.";

/// Commands the outgoing webhook refuses: it is proven by one HMAC secret
/// per webhook, not by the Bot Framework's signed token, which is too weak
/// a proof for what changes access without an approver (break-glass) or
/// for everyone (admin commands).
fn needs_the_app(typed: &str) -> bool {
    matches!(
        crate::domain::command::parse(typed),
        Ok(Command::Admin(_) | Command::BreakGlass { .. })
    )
}

/// The outgoing webhook: verify, run the command, answer in the response.
pub(super) async fn webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ReadBody(bytes): ReadBody,
) -> Result<Response, HttpError> {
    let secret: &Secret = state
        .teams_webhook_secret
        .as_ref()
        .ok_or(HttpError::NotConfigured("the Teams outgoing webhook"))?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let signature = match webhook::verify(secret.expose(), authorization, &bytes) {
        Ok(signature) => signature,
        Err(error) => {
            Metrics::count_auth_failure(state.engine.metrics(), "teams_webhook");
            return Err(HttpError::Unauthorized(error.to_string()));
        }
    };
    let activity = parse_activity(&bytes)?;
    from_allowed_tenant(&state, &activity)?;
    // The HMAC covers the body, timestamp included: a fresh timestamp and a
    // signature never seen before make a replay useless.
    let sent_at = activity
        .sent_at()
        .ok_or_else(|| HttpError::Unauthorized("the activity has no timestamp".into()))?;
    if !fresh(sent_at) {
        return Err(HttpError::Unauthorized(
            "the activity is older than 5 minutes".into(),
        ));
    }
    let Some(_turn) = state.admit(Family::Teams).await else {
        return Ok(busy_answer(Family::Teams));
    };
    if !first_delivery(&state, sent_at, &signature).await? {
        Metrics::count_auth_failure(state.engine.metrics(), "teams_webhook");
        return Err(HttpError::Unauthorized("replayed request".into()));
    }
    // Nothing of the activity is kept (no serviceUrl, conversation or
    // contact): no Bot Framework token vouches for its serviceUrl, and a
    // contact kept from it would be where jitbot sends its own access
    // token and people's messages later.
    let actor = teams_actor(&activity)?;
    let typed = activity.command_text();
    let answer = if needs_the_app(&typed) {
        Ok(Reply::Text(WEBHOOK_REFUSES.into()))
    } else {
        tokio::time::timeout(
            WEBHOOK_DEADLINE,
            // No origin: answers go in this response, later news by the
            // jitbot app, never to the webhook's conversation.
            state.engine.handle_command(actor, None, &typed),
        )
        .await
    };
    let text = match answer {
        Ok(Reply::Text(text)) => text,
        Ok(Reply::Home(_)) => {
            "This channel reaches jitbot through an outgoing webhook, which cannot show buttons. Type `jit home` in your personal chat with jitbot.".into()
        }
        Ok(Reply::OpenRequestForm(choices)) => {
            let names: Vec<String> = choices.iter().map(|c| format!("`{}`", c.name)).collect();
            format!(
                "This channel reaches jitbot through an outgoing webhook, which cannot show a form. Type `jit request <group> <duration> <reason>`; you can request {}.",
                names.join(", ")
            )
        }
        Err(_) => {
            "That is taking longer than Teams waits for; check with `jit list` in a moment.".into()
        }
    };
    // Outgoing webhooks cannot carry buttons: a card that says what happened.
    let (shown, format) = crate::chat::teams::text::message_text(&text);
    Ok(Json(json!({
        "type": "message",
        "text": shown,
        "textFormat": format,
        "attachments": [{ "contentType": ADAPTIVE_CARD, "content": cards::text_card(&text) }],
    }))
    .into_response())
}
