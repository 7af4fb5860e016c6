//! What Slack sends us: slash commands (form fields), interactions (a JSON
//! `payload` form field) and Events API callbacks.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    pub channel_id: String,
    #[serde(default)]
    pub trigger_id: String,
    /// The workspace it was typed in.
    #[serde(default)]
    pub team_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub name: String,
}

impl User {
    pub fn display_name(&self) -> &str {
        if self.username.is_empty() {
            &self.name
        } else {
            &self.username
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interaction {
    BlockActions(BlockActions),
    ViewSubmission(ViewSubmission),
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockActions {
    pub user: User,
    #[serde(default)]
    pub trigger_id: String,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Channel {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ViewSubmission {
    pub user: User,
    pub view: View,
}

#[derive(Debug, Clone, Deserialize)]
pub struct View {
    #[serde(default)]
    pub callback_id: String,
    #[serde(default)]
    pub private_metadata: String,
    #[serde(default)]
    pub state: ViewState,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ViewState {
    #[serde(default)]
    pub values: HashMap<String, HashMap<String, InputValue>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputValue {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub selected_option: Option<SelectedOption>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SelectedOption {
    pub value: String,
}

impl ViewState {
    /// The text or selected value of input `block` (action `action`).
    pub fn input(&self, block: &str, action: &str) -> Option<String> {
        let input = self.values.get(block)?.get(action)?;
        input
            .value
            .clone()
            .or_else(|| input.selected_option.as_ref().map(|o| o.value.clone()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_actions_payload_parses() {
        let payload = r#"{"type":"block_actions","user":{"id":"U0LEAD","username":"lead","team_id":"T1"},
            "trigger_id":"123.456","channel":{"id":"C0APPROVALS","name":"approvals"},
            "actions":[{"action_id":"jit_approve","block_id":"jit_decision","value":"R-7K3Q9X","type":"button"}]}"#;
        let Interaction::BlockActions(actions) = serde_json::from_str(payload).unwrap() else {
            panic!("not block_actions");
        };
        assert_eq!(actions.user.id, "U0LEAD");
        assert_eq!(actions.actions[0].value, "R-7K3Q9X");
        assert_eq!(actions.channel.unwrap().id, "C0APPROVALS");
    }

    #[test]
    fn view_submission_inputs_are_read_by_block() {
        let payload = r#"{"type":"view_submission","user":{"id":"U0ALICE"},"view":{"callback_id":"jit_request_form",
            "private_metadata":"C1","state":{"values":{
              "group":{"value":{"type":"static_select","selected_option":{"value":"prod-db"}}},
              "duration":{"value":{"type":"plain_text_input","value":"2h"}}}}}}"#;
        let Interaction::ViewSubmission(submission) = serde_json::from_str(payload).unwrap() else {
            panic!("not view_submission");
        };
        assert_eq!(
            submission.view.state.input("group", "value").as_deref(),
            Some("prod-db")
        );
        assert_eq!(
            submission.view.state.input("duration", "value").as_deref(),
            Some("2h")
        );
        assert_eq!(submission.view.state.input("reason", "value"), None);
    }

    #[test]
    fn unknown_interaction_types_are_tolerated() {
        let parsed: Interaction =
            serde_json::from_str(r#"{"type":"shortcut","user":{"id":"U1"}}"#).unwrap();
        assert!(matches!(parsed, Interaction::Other));
    }
}
