//! HTML for the email page and the HTML part of emails: everything that is
//! not jitbot's own markup is escaped, so no word of anyone's becomes a tag,
//! an attribute or a link.

/// `text` as HTML text or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no place in a page; show that one
            // was there.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A composed message (jitbot's words with people's words marked) as HTML
/// text: all of it escaped; the marks dropped.
pub fn escape_message(text: &str) -> String {
    escape(&crate::domain::text::plain(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_stays_text() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'q'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        assert_eq!(escape("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
    }
}
