//! Text that people wrote, inside the messages jitbot composes.
//!
//! A message is jitbot's own words (which may use the small markup every
//! platform shares: `code`, *bold*) with people's words set into it: a
//! reason, a deny reason, a display name, a group description, a provider's
//! error. People's words must reach every reader literally — no mention,
//! link or markup of theirs may become live — and how to make them so is
//! each platform's business (entities on Slack, a plain-text run or plain
//! format on Teams, visible control characters on a terminal). So the
//! engine marks them with [`literal`] as it composes, and each platform's
//! renderer walks the [`segments`]. Readers that render nothing (the audit
//! log, the API, logs) take the [`plain`] text.
//!
//! The marks are two private-use characters, removed from the people's text
//! itself so it can never close its own mark early.

/// Opens a span of someone's words.
const OPEN: char = '\u{E000}';
/// Closes it.
const CLOSE: char = '\u{E001}';

/// `text`, marked as written by a person.
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 6);
    out.push(OPEN);
    out.extend(text.chars().filter(|c| *c != OPEN && *c != CLOSE));
    out.push(CLOSE);
    out
}

/// A piece of a composed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// jitbot's own words.
    Ours(&'a str),
    /// Someone's words: to be shown literally.
    Theirs(&'a str),
}

/// The pieces of `text`, in order. An unclosed mark runs to the end (it is
/// safer to show too much literally than too little).
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(OPEN) {
            Some(open) => {
                if open > 0 {
                    out.push(Segment::Ours(&rest[..open]));
                }
                let inside = &rest[open + OPEN.len_utf8()..];
                let (theirs, after) = match inside.find(CLOSE) {
                    Some(close) => (&inside[..close], &inside[close + CLOSE.len_utf8()..]),
                    None => (inside, ""),
                };
                if !theirs.is_empty() {
                    out.push(Segment::Theirs(theirs));
                }
                rest = after;
            }
            None => {
                // A stray closing mark is dropped.
                out.push(Segment::Ours(rest));
                break;
            }
        }
    }
    out.retain(|segment| !matches!(segment, Segment::Ours(s) if s.is_empty()));
    out
}

/// Render `text` with `ours` applied to jitbot's words and `theirs` to
/// people's.
pub fn render(
    text: &str,
    ours: impl Fn(&str) -> String,
    theirs: impl Fn(&str) -> String,
) -> String {
    segments(text)
        .into_iter()
        .map(|segment| match segment {
            Segment::Ours(s) => ours(&s.replace(CLOSE, "")),
            Segment::Theirs(s) => theirs(s),
        })
        .collect()
}

/// Whether `text` carries anyone's words.
pub fn has_theirs(text: &str) -> bool {
    text.contains(OPEN)
}

/// The text without marks, for readers that render nothing.
pub fn plain(text: &str) -> String {
    text.chars().filter(|c| *c != OPEN && *c != CLOSE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_words_come_back_as_theirs() {
        let text = format!(
            "denied by {}: {}",
            literal("bob"),
            literal("<!channel> now")
        );
        assert_eq!(
            segments(&text),
            vec![
                Segment::Ours("denied by "),
                Segment::Theirs("bob"),
                Segment::Ours(": "),
                Segment::Theirs("<!channel> now"),
            ]
        );
        assert_eq!(plain(&text), "denied by bob: <!channel> now");
    }

    #[test]
    fn people_cannot_close_their_own_mark() {
        let sneaky = format!("a{CLOSE} *live*{OPEN}b");
        let text = format!("x {}", literal(&sneaky));
        assert_eq!(
            segments(&text),
            vec![Segment::Ours("x "), Segment::Theirs("a *live*b")]
        );
    }

    #[test]
    fn an_unclosed_mark_runs_to_the_end() {
        let text = format!("x {OPEN}<@U0ADMIN>");
        assert_eq!(
            segments(&text),
            vec![Segment::Ours("x "), Segment::Theirs("<@U0ADMIN>")]
        );
        let upper = render(&text, |s| s.to_string(), |s| s.to_uppercase());
        assert_eq!(upper, "x <@U0ADMIN>".to_uppercase().replacen("X", "x", 1));
    }
}
