//! Adaptive Cards (1.5) for Teams: the platform-neutral [`Card`] with
//! `Action.Execute` buttons — each with an `Action.Submit` fallback for
//! clients older than Universal Actions — and the request form.

use serde_json::{json, Value};

use super::text::run;
use crate::chat::card::FormChoice;
use crate::chat::card::{Card, CardActionKind, CardText};
use crate::chat::home::HomeView;
use crate::domain::text::plain;

pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The data key that names the action, in both Execute and Submit data.
pub const ACTION_KEY: &str = "jit_action";
pub const VALUE_KEY: &str = "jit_value";
/// Input ids: the deny reason, the extension's duration and reason, and the
/// request form's fields.
pub const REASON_INPUT: &str = "reason";
pub const DURATION_INPUT: &str = "duration";
pub const GROUP_INPUT: &str = "group";
/// The request form's submit verb.
pub const REQUEST_VERB: &str = "jit_request";

/// A time for a `TextBlock`, rendered in the reader's own time zone.
fn localized(at: &chrono::DateTime<chrono::Utc>) -> String {
    let iso = at.format("%Y-%m-%dT%H:%M:%SZ");
    format!("{{{{DATE({iso}, SHORT)}}}} {{{{TIME({iso})}}}}")
}

/// Whether a part is anyone's words (a reason, a display name): those are
/// only ever put in `TextRun`s, which render no markdown.
fn is_theirs(part: &CardText) -> bool {
    matches!(part, CardText::Literal(_) | CardText::User(_))
}

/// A part as a run of a `RichTextBlock`. Date functions are not promised
/// in runs, so times are spelled out in UTC there.
fn run_of(part: &CardText) -> Value {
    match part {
        CardText::Plain(text) | CardText::Literal(text) => run(text),
        CardText::User(actor) => run(&crate::chat::card::who(actor)),
        CardText::Time(at) => run(&at.format("%Y-%m-%d %H:%M UTC").to_string()),
    }
}

/// Parts of jitbot's own words, for a markdown `TextBlock` (times localized).
fn markdown_of(parts: &[CardText]) -> String {
    parts
        .iter()
        .map(|part| match part {
            CardText::Time(at) => localized(at),
            CardText::Plain(text) | CardText::Literal(text) => text.clone(),
            CardText::User(actor) => crate::chat::card::who(actor),
        })
        .collect()
}

/// Parts as a card element: a markdown `TextBlock` when they are all
/// jitbot's words (times then show in the reader's time zone), else a
/// `RichTextBlock` of runs, so that nobody's words become markup.
fn parts_block(parts: &[CardText], bold: bool) -> Value {
    if parts.iter().any(is_theirs) {
        let runs: Vec<Value> = parts
            .iter()
            .map(|part| {
                let mut run = run_of(part);
                if bold {
                    run["weight"] = json!("Bolder");
                }
                run
            })
            .collect();
        json!({ "type": "RichTextBlock", "inlines": runs })
    } else {
        let mut block = json!({ "type": "TextBlock", "text": markdown_of(parts), "wrap": true });
        if bold {
            block["weight"] = json!("Bolder");
        }
        block
    }
}

fn button(verb: &str, title: &str, value: &str, style: Option<&str>) -> Value {
    let data = json!({ ACTION_KEY: verb, VALUE_KEY: value });
    let mut execute = json!({
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data,
        "fallback": { "type": "Action.Submit", "title": title, "data": data },
    });
    if let Some(style) = style {
        execute["style"] = json!(style);
    }
    execute
}

/// The card as an Adaptive Card.
pub fn adaptive_card(card: &Card) -> Value {
    // The title may hold a group's description: runs, never markdown.
    let mut title = run(&plain(&card.title));
    title["weight"] = json!("Bolder");
    title["size"] = json!("Medium");
    let mut body = vec![json!({ "type": "RichTextBlock", "inlines": [title] })];
    for (label, value) in &card.fields {
        let mut label = run(&format!("{label}: "));
        label["weight"] = json!("Bolder");
        let value = match value {
            CardText::Time(at) => run(&at.format("%Y-%m-%d %H:%M UTC").to_string()),
            other => run_of(other),
        };
        body.push(json!({ "type": "RichTextBlock", "inlines": [label, value] }));
    }
    if let Some(reason) = &card.body {
        let mut reason = run(reason);
        reason["isSubtle"] = json!(true);
        body.push(json!({ "type": "RichTextBlock", "inlines": [reason] }));
    }
    if !card.status.is_empty() {
        body.push(parts_block(&card.status, true));
    }
    let mut actions = Vec::new();
    for action in &card.actions {
        match action.kind {
            CardActionKind::Approve => actions.push(button(
                action.kind.action_id(),
                &action.label,
                &action.value,
                Some("positive"),
            )),
            CardActionKind::Deny => {
                body.push(json!({
                    "type": "Input.Text", "id": REASON_INPUT, "isMultiline": true,
                    "placeholder": "Reason (needed to deny; the requester sees it)"
                }));
                actions.push(button(
                    action.kind.action_id(),
                    &action.label,
                    &action.value,
                    Some("destructive"),
                ));
            }
            CardActionKind::KeepIt | CardActionKind::Acknowledge => actions.push(button(
                action.kind.action_id(),
                &action.label,
                &action.value,
                Some("positive"),
            )),
            CardActionKind::RevokeNow => actions.push(button(
                action.kind.action_id(),
                &action.label,
                &action.value,
                Some("destructive"),
            )),
            CardActionKind::Extend => {
                body.push(json!({ "type": "Input.Text", "id": DURATION_INPUT, "placeholder": "How much longer, e.g. 30m" }));
                body.push(
                    json!({ "type": "Input.Text", "id": REASON_INPUT, "placeholder": "Why" }),
                );
                actions.push(button(
                    action.kind.action_id(),
                    &action.label,
                    &action.value,
                    None,
                ));
            }
        }
    }
    let mut card_json = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "fallbackText": plain(&card.fallback),
        "body": body,
    });
    if !actions.is_empty() {
        card_json["actions"] = json!(actions);
    }
    card_json
}

/// Someone's home as an Adaptive Card: each section, its lines and their
/// buttons (the cards' verbs, so a click takes the same path). A card has
/// one box per input, so one reason box (and, with grants to extend, one
/// duration box) at the top serves every Deny and Extend button.
pub fn home_card(view: &HomeView) -> Value {
    let offers = |action: &str| {
        view.sections
            .iter()
            .flat_map(|section| &section.rows)
            .any(|row| row.buttons.iter().any(|b| b.action == action))
    };
    let mut body = Vec::new();
    if offers("jit_extend") {
        body.push(json!({
            "type": "Input.Text", "id": DURATION_INPUT,
            "placeholder": "How much longer, to extend, e.g. 30m"
        }));
    }
    if offers("jit_deny") || offers("jit_extend") {
        body.push(json!({
            "type": "Input.Text", "id": REASON_INPUT, "isMultiline": true,
            "placeholder": "Reason, to deny (the requester sees it) or to extend"
        }));
    }
    for section in &view.sections {
        let mut title = run(&section.title);
        title["weight"] = json!("Bolder");
        body.push(json!({ "type": "RichTextBlock", "inlines": [title] }));
        if section.rows.is_empty() {
            let mut empty = run(section.empty);
            empty["isSubtle"] = json!(true);
            body.push(json!({ "type": "RichTextBlock", "inlines": [empty] }));
        }
        for row in &section.rows {
            body.push(parts_block(&row.text, false));
            if !row.buttons.is_empty() {
                let actions: Vec<Value> = row
                    .buttons
                    .iter()
                    .map(|b| {
                        let style = match (b.primary, b.confirm.is_some() || b.action == "jit_deny")
                        {
                            (_, true) => Some("destructive"),
                            (true, false) => Some("positive"),
                            _ => None,
                        };
                        button(b.action, b.label, &b.value, style)
                    })
                    .collect();
                body.push(json!({ "type": "ActionSet", "actions": actions }));
            }
        }
    }
    let actions: Vec<Value> = view
        .buttons
        .iter()
        .map(|b| button(b.action, b.label, &b.value, Some("positive")))
        .collect();
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "fallbackText": "Your jitbot home",
        "body": body,
        "actions": actions,
    })
}

/// The request form: a choice of groups (those mapped to the conversation
/// first), a duration and a reason.
pub fn request_form(choices: &[FormChoice]) -> Value {
    let options: Vec<Value> = choices
        .iter()
        .map(|c| {
            let title = if c.description.is_empty() {
                c.name.to_string()
            } else {
                format!("{} — {}", c.name, c.description)
            };
            json!({ "title": title, "value": c.name.to_string() })
        })
        .collect();
    let default_duration = choices
        .first()
        .map(|c| c.default_duration.to_string())
        .unwrap_or_default();
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "fallbackText": "Request access: type `jit request <group> <duration> <reason>`.",
        "body": [
            { "type": "TextBlock", "text": "Request access", "weight": "Bolder", "size": "Medium" },
            { "type": "Input.ChoiceSet", "id": GROUP_INPUT, "label": "Group", "isRequired": true,
              "style": "compact", "choices": options,
              "value": choices.first().map(|c| c.name.to_string()).unwrap_or_default() },
            { "type": "Input.Text", "id": DURATION_INPUT, "label": "Duration", "value": default_duration,
              "placeholder": "e.g. 2h" },
            { "type": "Input.Text", "id": REASON_INPUT, "label": "Reason", "isMultiline": true,
              "placeholder": "e.g. fixing INC-123" }
        ],
        "actions": [button(REQUEST_VERB, "Request", "", Some("positive"))],
    })
}

/// A card that only says something (answers, notices), as plain runs:
/// an answer may quote what someone typed.
pub fn text_card(text: &str) -> Value {
    let (text, _) = super::text::message_text(text);
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": [{ "type": "RichTextBlock", "inlines": [run(&text)] }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::card::CardAction;

    #[test]
    fn buttons_are_universal_actions_with_a_submit_fallback() {
        let card = Card {
            title: "Access request".into(),
            fields: vec![("Group".into(), CardText::Plain("prod-db".into()))],
            body: Some("fixing INC-1".into()),
            status: vec![],
            actions: vec![
                CardAction {
                    kind: CardActionKind::Approve,
                    label: "Approve".into(),
                    value: "R-7K3Q9X".into(),
                },
                CardAction {
                    kind: CardActionKind::Deny,
                    label: "Deny".into(),
                    value: "R-7K3Q9X".into(),
                },
            ],
            fallback: "Access request".into(),
        };
        let json = adaptive_card(&card);
        assert_eq!(json["version"], "1.5");
        let approve = &json["actions"][0];
        assert_eq!(approve["type"], "Action.Execute");
        assert_eq!(approve["verb"], "jit_approve");
        assert_eq!(approve["data"][VALUE_KEY], "R-7K3Q9X");
        assert_eq!(approve["fallback"]["type"], "Action.Submit");
        assert_eq!(approve["fallback"]["data"][ACTION_KEY], "jit_approve");
        // The reason is a run: markdown in it is never rendered.
        assert!(json["body"]
            .to_string()
            .contains(r#""text":"fixing INC-1","type":"TextRun""#));
        // Deny asks for its reason on the card itself.
        assert!(json["body"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == REASON_INPUT));
    }
}
