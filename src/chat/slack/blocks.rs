//! Rendering for Slack: cards as Block Kit, and the two modals (request
//! form, deny reason).

use serde_json::{json, Value};

use crate::chat::home::{HomeButton, HomeView};
use crate::chat::{Card, CardActionKind, CardText};
use crate::domain::ids::Platform;

pub const REQUEST_FORM_CALLBACK: &str = "jit_request_form";
pub const DENY_FORM_CALLBACK: &str = "jit_deny_form";
pub const EXTEND_FORM_CALLBACK: &str = "jit_extend_form";

/// Block and action ids of the form inputs, read back on submission.
pub const GROUP_BLOCK: &str = "group";
pub const DURATION_BLOCK: &str = "duration";
pub const REASON_BLOCK: &str = "reason";
pub const INPUT_ACTION: &str = "value";

/// Slack caps option labels at 75 characters.
const OPTION_TEXT_MAX: usize = 75;

/// Escape text for mrkdwn: Slack treats `&`, `<` and `>` as control
/// characters, so escaped text can hold no mention (`<!channel>`,
/// `<@U…>`) and no link (`<https://…|label>`).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A message jitbot composed, as Slack `mrkdwn`: jitbot's words as written
/// (they may mention a channel, `<#C…>`), everyone else's escaped.
pub fn mrkdwn(text: &str) -> String {
    crate::domain::text::render(text, str::to_string, escape)
}

/// Text that is all words to show as they are (a title around a group's
/// description): everything escaped, the marks dropped.
fn escaped(text: &str) -> String {
    escape(&crate::domain::text::plain(text))
}

fn render_text(parts: &[CardText]) -> String {
    parts
        .iter()
        .map(|part| match part {
            CardText::Plain(text) | CardText::Literal(text) => escape(text),
            CardText::User(actor) if actor.platform == Platform::Slack => {
                format!("<@{}>", actor.user)
            }
            // Someone outside Slack (an email approver): named, never
            // mentioned.
            CardText::User(actor) => escape(&crate::chat::card::who(actor)),
            CardText::Time(at) => format!(
                "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
                at.timestamp(),
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        })
        .collect()
}

pub fn card_blocks(card: &Card) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": format!("*{}*", escaped(&card.title)) },
    })];
    if !card.fields.is_empty() {
        // Slack allows at most 10 fields per section.
        let fields: Vec<Value> = card
            .fields
            .iter()
            .take(10)
            .map(|(label, value)| {
                json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", escape(label), render_text(std::slice::from_ref(value))) })
            })
            .collect();
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    if let Some(body) = &card.body {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!(">{}", escape(body).replace('\n', "\n>")) },
        }));
    }
    if !card.status.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": render_text(&card.status) }],
        }));
    }
    if !card.actions.is_empty() {
        let buttons: Vec<Value> = card
            .actions
            .iter()
            .map(|action| {
                let style = match action.kind {
                    CardActionKind::Approve
                    | CardActionKind::Extend
                    | CardActionKind::KeepIt
                    | CardActionKind::Acknowledge => "primary",
                    CardActionKind::Deny | CardActionKind::RevokeNow => "danger",
                };
                json!({
                    "type": "button",
                    "action_id": action.kind.action_id(),
                    "text": { "type": "plain_text", "text": action.label },
                    "value": action.value,
                    "style": style,
                })
            })
            .collect();
        blocks.push(json!({ "type": "actions", "block_id": "jit_decision", "elements": buttons }));
    }
    Value::Array(blocks)
}

/// One choice in the request form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOption {
    pub name: String,
    pub description: String,
    /// Mapped to the channel the form was opened in: listed first.
    pub mapped_here: bool,
}

fn option(group: &GroupOption) -> Value {
    let mut label = if group.description.is_empty() {
        group.name.clone()
    } else {
        format!("{} — {}", group.name, group.description)
    };
    if label.chars().count() > OPTION_TEXT_MAX {
        label = label.chars().take(OPTION_TEXT_MAX - 1).collect::<String>() + "…";
    }
    json!({ "text": { "type": "plain_text", "text": label }, "value": group.name })
}

fn plain(text: &str) -> Value {
    json!({ "type": "plain_text", "text": text })
}

/// The modal opened by `/jit request` alone. `private_metadata` carries the
/// channel it was opened in, so the submission knows its origin.
pub fn request_form(groups: &[GroupOption], default_duration: &str, channel: &str) -> Value {
    let (here, elsewhere): (Vec<&GroupOption>, Vec<&GroupOption>) =
        groups.iter().partition(|g| g.mapped_here);
    let mut select = json!({ "type": "static_select", "action_id": INPUT_ACTION, "placeholder": plain("Choose a group") });
    if here.is_empty() || elsewhere.is_empty() {
        select["options"] = Value::Array(groups.iter().map(option).collect());
    } else {
        select["option_groups"] = json!([
            { "label": plain("This channel"), "options": here.iter().map(|g| option(g)).collect::<Vec<_>>() },
            { "label": plain("Other groups"), "options": elsewhere.iter().map(|g| option(g)).collect::<Vec<_>>() },
        ]);
    }
    if let [only] = groups {
        select["initial_option"] = option(only);
    }
    json!({
        "type": "modal",
        "callback_id": REQUEST_FORM_CALLBACK,
        "private_metadata": channel,
        "title": plain("Request access"),
        "submit": plain("Request"),
        "close": plain("Cancel"),
        "blocks": [
            { "type": "input", "block_id": GROUP_BLOCK, "label": plain("Group"), "element": select },
            {
                "type": "input", "block_id": DURATION_BLOCK, "label": plain("Duration"),
                "hint": plain("Like 30m, 2h or 1h30m"),
                "element": { "type": "plain_text_input", "action_id": INPUT_ACTION, "initial_value": default_duration },
            },
            {
                "type": "input", "block_id": REASON_BLOCK, "label": plain("Reason"),
                "element": { "type": "plain_text_input", "action_id": INPUT_ACTION, "multiline": true, "max_length": crate::domain::command::MAX_REASON_CHARS },
            },
        ],
    })
}

/// The modal an approver fills in to deny, carrying the request and the
/// card's channel in `private_metadata`.
pub fn deny_form(request_id: &str, channel: Option<&str>) -> Value {
    let metadata = json!({ "request": request_id, "channel": channel }).to_string();
    json!({
        "type": "modal",
        "callback_id": DENY_FORM_CALLBACK,
        "private_metadata": metadata,
        "title": plain("Deny request"),
        "submit": plain("Deny"),
        "close": plain("Back"),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("Deny *{}*? The requester sees your reason.", escape(request_id)) } },
            {
                "type": "input", "block_id": REASON_BLOCK, "label": plain("Reason"),
                "element": { "type": "plain_text_input", "action_id": INPUT_ACTION, "multiline": true, "max_length": crate::domain::command::MAX_REASON_CHARS },
            },
        ],
    })
}

/// The modal behind a warning's Extend button; `private_metadata` carries
/// the grant id.
pub fn extend_form(grant_id: &str, default_duration: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": EXTEND_FORM_CALLBACK,
        "private_metadata": grant_id,
        "title": plain("Extend access"),
        "submit": plain("Ask"),
        "close": plain("Cancel"),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("More time on *{}*; approvers decide as for a request.", escape(grant_id)) } },
            {
                "type": "input", "block_id": DURATION_BLOCK, "label": plain("Extra time"),
                "hint": plain("Like 30m, 2h or 1h30m"),
                "element": { "type": "plain_text_input", "action_id": INPUT_ACTION, "initial_value": default_duration },
            },
            {
                "type": "input", "block_id": REASON_BLOCK, "label": plain("Reason"),
                "element": { "type": "plain_text_input", "action_id": INPUT_ACTION, "multiline": true, "max_length": crate::domain::command::MAX_REASON_CHARS },
            },
        ],
    })
}

/// A button of a home as Block Kit.
fn home_button(button: &HomeButton) -> Value {
    let mut element = json!({
        "type": "button",
        "text": { "type": "plain_text", "text": button.label },
        "action_id": button.action,
        "value": button.value,
    });
    if button.primary {
        element["style"] = json!("primary");
    }
    if let Some(question) = &button.confirm {
        element["style"] = json!("danger");
        element["confirm"] = json!({
            "title": { "type": "plain_text", "text": "Are you sure?" },
            "text": { "type": "plain_text", "text": crate::domain::text::plain(question) },
            "confirm": { "type": "plain_text", "text": button.label },
            "deny": { "type": "plain_text", "text": "Keep it" },
        });
    }
    element
}

/// A home as the App Home tab's view (`views.publish`): a header per
/// section, a line per row — its one button beside it, or its buttons
/// under it — and the Request access button at the end.
pub fn home_view(view: &HomeView) -> Value {
    let mut blocks = Vec::new();
    for section in &view.sections {
        blocks.push(json!({
            "type": "header",
            "text": { "type": "plain_text", "text": section.title },
        }));
        if section.rows.is_empty() {
            blocks.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn", "text": escape(section.empty) }],
            }));
        }
        for row in &section.rows {
            let mut block = json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": render_text(&row.text) },
            });
            match row.buttons.as_slice() {
                [] => blocks.push(block),
                [one] => {
                    block["accessory"] = home_button(one);
                    blocks.push(block);
                }
                several => {
                    blocks.push(block);
                    blocks.push(json!({
                        "type": "actions",
                        "elements": several.iter().map(home_button).collect::<Vec<_>>(),
                    }));
                }
            }
        }
        blocks.push(json!({ "type": "divider" }));
    }
    blocks.push(json!({
        "type": "actions",
        "elements": view.buttons.iter().map(home_button).collect::<Vec<_>>(),
    }));
    json!({ "type": "home", "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::CardAction;

    #[test]
    fn user_text_is_escaped_and_buttons_carry_the_request() {
        let card = Card {
            title: "Access request for prod-db".into(),
            fields: vec![("Group".into(), CardText::Plain("prod-db".into()))],
            body: Some("<!channel> & friends".into()),
            status: vec![],
            actions: vec![CardAction {
                kind: CardActionKind::Approve,
                label: "Approve".into(),
                value: "R-7K3Q9X".into(),
            }],
            fallback: "x".into(),
        };
        let blocks = card_blocks(&card);
        let text = blocks.to_string();
        assert!(text.contains("&lt;!channel&gt; &amp; friends"), "{text}");
        assert_eq!(blocks[3]["elements"][0]["action_id"], "jit_approve");
        assert_eq!(blocks[3]["elements"][0]["value"], "R-7K3Q9X");
    }

    #[test]
    fn mapped_groups_come_first_in_their_own_section() {
        let groups = vec![
            GroupOption {
                name: "dev".into(),
                description: String::new(),
                mapped_here: false,
            },
            GroupOption {
                name: "prod-db".into(),
                description: "Prod".into(),
                mapped_here: true,
            },
        ];
        let view = request_form(&groups, "1h", "C1");
        let option_groups = &view["blocks"][0]["element"]["option_groups"];
        assert_eq!(option_groups[0]["options"][0]["value"], "prod-db");
        assert_eq!(option_groups[1]["options"][0]["value"], "dev");
        assert_eq!(view["private_metadata"], "C1");
    }
}
