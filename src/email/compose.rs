//! The emails jitbot sends: the approval email (one link to the approval
//! page) and notices (what a chat user would get as a DM). Each has a plain
//! text and an HTML part saying the same; people's words are escaped in
//! the HTML and set apart in the text, never markup.

use crate::domain::email::EmailAddress;
use crate::domain::policy::GroupPolicy;
use crate::domain::request::AccessRequest;
use crate::domain::text::plain;

use super::html::{escape, escape_message};

/// An email ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Subjects are one line of at most this many characters.
const MAX_SUBJECT_CHARS: usize = 120;

fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut subject: String = flat.chars().take(MAX_SUBJECT_CHARS).collect();
    if flat.chars().count() > MAX_SUBJECT_CHARS {
        subject.push('…');
    }
    subject
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
<body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:560px;margin:0 auto;padding:16px\">{body}\
<p style=\"color:#59636e;font-size:12px;margin-top:24px\">Sent by jitbot, just-in-time access.</p></body></html>",
        escape(title)
    )
}

/// The email asking `approver` to decide `request`, with their link.
pub fn approval_email(
    request: &AccessRequest,
    group: Option<&GroupPolicy>,
    approver: &EmailAddress,
    link: &str,
) -> Email {
    let who = request.requester.name_or_id();
    let description = group.map(|g| g.description.as_str()).unwrap_or("");
    let subject = one_line(&format!(
        "Approve {} for {} ({})? {}",
        request.group, who, request.duration, request.id
    ));
    let mut text = format!(
        "{who} asks for access to {group} for {duration}.\n\n\
Request:  {id}\nGroup:    {group}{description_line}\nDuration: {duration}\nReason:   {reason}\n\n\
Approve or deny it here (the page asks before anything is decided):\n{link}\n\n\
The link is yours alone and works only while the request is pending.\n",
        group = request.group,
        duration = request.duration,
        id = request.id,
        reason = request.reason,
        description_line = if description.is_empty() {
            String::new()
        } else {
            format!(" — {description}")
        },
    );
    let together = request.in_bundle().then(|| {
        format!(
            "Asked in one request for {}, granted all together or not at all; your decision counts for every group you approve.",
            request.groups_label()
        )
    });
    if let Some(together) = &together {
        text.push_str(&format!("\n{together}\n"));
    }
    text.push_str("\n-- \njitbot, just-in-time access\n");
    let row = |label: &str, value: &str| {
        format!(
            "<tr><th style=\"text-align:left;padding:4px 12px 4px 0;color:#59636e;font-weight:normal;vertical-align:top\">{label}</th><td style=\"padding:4px 0;white-space:pre-wrap\">{}</td></tr>",
            escape(value)
        )
    };
    let mut rows = vec![row("Requester", who), row("Group", request.group.as_str())];
    if !description.is_empty() {
        rows.push(row("Description", description));
    }
    rows.extend([
        row("Duration", &request.duration.to_string()),
        row("Reason", &request.reason),
        row("Request", request.id.as_str()),
    ]);
    if let Some(together) = &together {
        rows.push(row("Together with", together));
    }
    let body = format!(
        "<h2 style=\"font-size:20px\">{} asks for access to {}</h2>\
<table style=\"border-collapse:collapse;margin:12px 0\">{}</table>\
<p><a href=\"{}\" style=\"display:inline-block;background:#1f6feb;color:#fff;padding:10px 18px;border-radius:6px;text-decoration:none\">Review the request</a></p>\
<p style=\"color:#59636e;font-size:13px\">The page asks before anything is decided. The link is yours alone and works only while the request is pending.</p>",
        escape(who),
        escape(request.group.as_str()),
        rows.join(""),
        escape(link)
    );
    Email {
        to: approver.clone(),
        subject,
        text,
        html: page(&format!("Access request {}", request.id), &body),
    }
}

/// A notice (what a chat user would get as a direct message), by email.
pub fn notice_email(to: &EmailAddress, message: &str) -> Email {
    let text = plain(message);
    let first_sentence = text
        .split_inclusive(['.', '\n'])
        .next()
        .unwrap_or(&text)
        .trim()
        .trim_end_matches('.');
    Email {
        to: to.clone(),
        subject: one_line(&format!("jitbot: {first_sentence}")),
        text: format!("{text}\n\n-- \njitbot, just-in-time access\n"),
        html: page(
            "jitbot",
            &format!(
                "<p style=\"white-space:pre-wrap;font-size:15px\">{}</p>",
                escape_message(message)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::duration::HumanDuration;
    use crate::domain::ids::{Actor, GroupName, Platform, RequestId, UserId};

    fn request(reason: &str, name: &str) -> AccessRequest {
        AccessRequest::file(
            RequestId::parse("R-7K3Q9X").unwrap(),
            Actor::new(Platform::Slack, UserId::new("U0ALICE"), name),
            GroupName::parse("prod-db").unwrap(),
            HumanDuration::parse("2h").unwrap(),
            reason.into(),
            None,
            false,
            chrono::Utc::now(),
        )
        .0
    }

    #[test]
    fn the_approval_email_says_who_what_how_long_and_why_with_one_link() {
        let to = EmailAddress::parse("lead@example.com").unwrap();
        let link = "https://jit.example.com/approve/abc.def";
        let email = approval_email(&request("fixing INC-123", "alice"), None, &to, link);
        for part in [&email.text, &email.html] {
            for needle in ["alice", "prod-db", "2h", "fixing INC-123", "R-7K3Q9X", link] {
                assert!(part.contains(needle), "{needle} missing from {part}");
            }
        }
        assert_eq!(email.html.matches("<a ").count(), 1);
        assert!(email.subject.contains("prod-db") && email.subject.contains("R-7K3Q9X"));
    }

    #[test]
    fn people_s_words_never_become_html_or_headers() {
        let to = EmailAddress::parse("lead@example.com").unwrap();
        let email = approval_email(
            &request(
                "<script>alert(1)</script><a href=\"https://evil.example\">x</a>",
                "Mallory\r\nBcc: evil@example.com",
            ),
            None,
            &to,
            "https://jit.example.com/approve/t",
        );
        assert!(!email.html.contains("<script>"));
        assert!(!email.html.contains("href=\"https://evil.example"));
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
        // The text part shows the words as written.
        assert!(email.text.contains("<script>alert(1)</script>"));
    }
}
