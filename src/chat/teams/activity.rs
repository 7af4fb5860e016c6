//! Bot Framework activities as Teams sends them: only the fields jitbot
//! reads. Unknown fields are ignored; missing ones default.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// When the activity was sent (RFC 3339).
    pub timestamp: Option<String>,
    /// For invokes: `adaptiveCard/action`.
    pub name: String,
    pub service_url: String,
    /// The channel the activity came through (`msteams`).
    pub channel_id: String,
    pub from: Account,
    pub conversation: Conversation,
    pub recipient: Account,
    pub text: String,
    /// Card input: `Action.Submit` data, or the invoke's `action`.
    pub value: Option<Value>,
    /// For a message answering a card: the card's activity id.
    pub reply_to_id: Option<String>,
    pub channel_data: ChannelData,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Conversation {
    pub id: String,
    /// `personal`, `channel` or `groupChat`.
    pub conversation_type: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelData {
    pub tenant: Option<Tenant>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tenant {
    pub id: String,
}

impl Activity {
    pub fn tenant_id(&self) -> Option<&str> {
        self.channel_data
            .tenant
            .as_ref()
            .map(|t| t.id.as_str())
            .or(self.conversation.tenant_id.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// When the activity was sent, in Unix seconds, if it says.
    pub fn sent_at(&self) -> Option<i64> {
        self.timestamp
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
    }

    /// The message text without the bot's @mention (`<at>jitbot</at>`) and
    /// the markup Teams wraps around typed text.
    pub fn command_text(&self) -> String {
        strip_mentions(&self.text)
    }
}

/// Remove `<at>…</at>` mentions and other tags, and decode the entities
/// Teams uses, leaving the words typed.
pub fn strip_mentions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<at>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</at>") {
            Some(end) => rest = &rest[start + end + "</at>".len()..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let mut plain = String::new();
    let mut in_tag = false;
    for c in out.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    plain
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_markup_are_stripped() {
        assert_eq!(
            strip_mentions("<at>jitbot</at> jit request prod-db 2h fixing INC-123"),
            "jit request prod-db 2h fixing INC-123"
        );
        assert_eq!(
            strip_mentions("<p><at>JIT Bot</at>&nbsp;jit list</p>\n"),
            "jit list"
        );
        assert_eq!(strip_mentions("jit help"), "jit help");
    }

    #[test]
    fn an_activity_parses_with_the_fields_jitbot_reads() {
        let activity: Activity = serde_json::from_value(serde_json::json!({
            "type": "message",
            "id": "1",
            "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "channelId": "msteams",
            "from": { "id": "29:abc", "name": "Alice", "aadObjectId": "6f1c2e4a-0000-4000-8000-00000000a11c" },
            "conversation": { "id": "a:1", "conversationType": "personal", "tenantId": "t1" },
            "text": "jit list",
            "channelData": { "tenant": { "id": "t1" } },
            "somethingNew": true
        }))
        .unwrap();
        assert_eq!(activity.kind, "message");
        assert_eq!(activity.tenant_id(), Some("t1"));
        assert_eq!(
            activity.from.aad_object_id.as_deref(),
            Some("6f1c2e4a-0000-4000-8000-00000000a11c")
        );
    }
}
