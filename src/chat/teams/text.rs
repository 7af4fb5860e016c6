//! Messages jitbot composed, as Teams shows text. Teams renders a message's
//! `text` as markdown, where someone's `[Approve now](https://evil)` would
//! become a disguised link; so a message that carries anyone's words is
//! sent with `textFormat: plain`, which Teams documents as "raw text with no
//! formatting applied at all", and jitbot's own `code` marks are dropped from
//! it. Messages of jitbot's words alone keep their markdown.

use serde_json::{json, Value};

use crate::domain::text::{has_theirs, plain, render};

/// The `text` and `textFormat` of a message activity.
pub fn message_text(text: &str) -> (String, &'static str) {
    if has_theirs(text) {
        (
            render(text, |ours| ours.replace('`', ""), str::to_string),
            "plain",
        )
    } else {
        (plain(text), "markdown")
    }
}

/// A run of an Adaptive Card `RichTextBlock`, which never renders markdown:
/// the right home for anyone's words on a card.
pub fn run(text: &str) -> Value {
    json!({ "type": "TextRun", "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::literal;

    #[test]
    fn anyones_words_turn_the_whole_message_plain() {
        let text = format!(
            "Request `R-1` was denied: {}",
            literal("[Approve now](https://evil)")
        );
        assert_eq!(
            message_text(&text),
            (
                "Request R-1 was denied: [Approve now](https://evil)".to_string(),
                "plain"
            )
        );
        assert_eq!(
            message_text("Request `R-1` is filed."),
            ("Request `R-1` is filed.".to_string(), "markdown")
        );
    }
}
