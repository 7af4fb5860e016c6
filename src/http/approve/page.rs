//! The approval page's HTML: small, readable on a phone, no script, no
//! external resources. Everything that is not jitbot's own markup is
//! escaped.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::request::RequestState;
use crate::email::html::escape;
use crate::engine::EmailApproval;

/// The page's only style; the CSP allows exactly this text by its hash.
const STYLE: &str = "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;background:#f6f8fa;margin:0;padding:16px;line-height:1.45}\
main{max-width:560px;margin:0 auto;background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:20px}\
h1{font-size:1.3rem;margin:0 0 12px}dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 14px;margin:0 0 16px}\
dt{color:#59636e}dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}\
.state{padding:10px 12px;border-radius:6px;background:#ddf4ff;margin:0 0 16px}.state.bad{background:#ffebe9}.state.good{background:#dafbe1}\
form{margin:12px 0}button{font-size:1rem;padding:10px 18px;border-radius:6px;border:1px solid #d1d9e0;cursor:pointer}\
.approve{background:#1f883d;color:#fff;border-color:#1a7f37}.deny{background:#cf222e;color:#fff;border-color:#a40e26}\
textarea{width:100%;box-sizing:border-box;font:inherit;padding:8px;border:1px solid #d1d9e0;border-radius:6px;min-height:4.5em}\
label{display:block;margin:0 0 6px;color:#59636e}small{color:#59636e}";

/// `Content-Security-Policy`: nothing may load or run; the one style
/// block is allowed by its hash; forms post only back here; no framing.
pub(super) fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn document(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
<body><main>{main}</main></body></html>",
        escape(title)
    )
}

/// The one page for every link that does not open: it says nothing of why.
pub(super) fn not_found() -> String {
    document(
        "Not found",
        "<h1>Not found</h1><p>This link is not valid. Open the link from your email again, or ask the requester to file the request again.</p>",
    )
}

/// A short page saying `text`.
pub(super) fn message(title: &str, text: &str) -> String {
    document(
        title,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
    )
}

/// jitbot cannot answer right now (its database is away).
pub(super) fn unavailable(text: &str) -> String {
    message("Try again shortly", &crate::domain::text::plain(text))
}

/// A form that cannot be taken (stale or foreign CSRF field).
pub(super) fn forbidden_form() -> String {
    document(
        "Not accepted",
        "<h1>Not accepted</h1><p>This form did not come from jitbot's page, so nothing was decided. Open the link from your email again.</p>",
    )
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn details(view: &EmailApproval) -> String {
    let request = &view.request;
    let mut rows = vec![
        ("Requester", request.requester.name_or_id().to_string()),
        ("Group", request.group.to_string()),
    ];
    if !view.description.is_empty() {
        rows.push(("Description", view.description.clone()));
    }
    rows.extend([
        ("Duration", request.duration.to_string()),
        ("Reason", request.reason.clone()),
        ("Requested", time(request.created_at)),
        ("Request", request.id.to_string()),
    ]);
    if request.in_bundle() {
        rows.push((
            "Asked together",
            format!(
                "{} (one request, granted all together or not at all; your decision counts for every group you approve)",
                request.groups_label()
            ),
        ));
    }
    let approvals: Vec<String> = request
        .approvals
        .iter()
        .map(|a| format!("{} ({})", crate::chat::card::who(&a.by), time(a.at)))
        .collect();
    rows.push((
        "Approvals",
        format!(
            "{} of {}{}",
            request.approvals.len(),
            view.approvals_required,
            if approvals.is_empty() {
                String::new()
            } else {
                format!(": {}", approvals.join(", "))
            }
        ),
    ));
    let rows: String = rows
        .iter()
        .map(|(label, value)| format!("<dt>{label}</dt><dd>{}</dd>", escape(value)))
        .collect();
    format!("<dl>{rows}</dl>")
}

/// Where the request stands, in words, and whether that is good news.
fn standing(view: &EmailApproval) -> (String, &'static str) {
    let request = &view.request;
    let more = (view.approvals_required as usize).saturating_sub(request.approvals.len());
    match &request.state {
        RequestState::Pending if view.approved_by_them() => (
            format!("You approved this request. It is pending: {more} more approval(s) needed."),
            "good",
        ),
        RequestState::Pending => (
            format!("This request is pending: {more} more approval(s) needed."),
            "",
        ),
        RequestState::Approved { .. } => (
            "This request was approved; access is being granted.".to_string(),
            "good",
        ),
        RequestState::Active { expires_at, .. } => (
            format!(
                "This request was approved and access is granted: active until {}.",
                time(*expires_at)
            ),
            "good",
        ),
        RequestState::Denied { by, reason, .. } => (
            format!(
                "This request was denied by {}: {reason}",
                crate::chat::card::who(by)
            ),
            "bad",
        ),
        RequestState::Cancelled { .. } => (
            "This request was cancelled by the requester.".to_string(),
            "bad",
        ),
        RequestState::TimedOut { .. } => (
            "This request timed out: nobody decided it in time.".to_string(),
            "bad",
        ),
        RequestState::Failed { error, .. } => (
            format!("This request was approved, but granting the access failed: {error}"),
            "bad",
        ),
        RequestState::Expired { .. } => (
            "This request was approved and granted; the access has expired.".to_string(),
            "",
        ),
        RequestState::Released { .. } => (
            "This request was approved and granted; the requester has released the access."
                .to_string(),
            "",
        ),
        RequestState::Revoked { .. } => (
            "This request was approved and granted; an admin has revoked the access.".to_string(),
            "",
        ),
        RequestState::Extended { until, .. } => (
            format!(
                "This extension was approved: the grant is extended until {}.",
                time(*until)
            ),
            "good",
        ),
    }
}

/// The page for `view`: the request, where it stands, and — while the
/// approver can still decide — the Approve and Deny forms. `notice` is what
/// happened to something they just posted, if anything.
pub(super) fn approval_page(
    view: &EmailApproval,
    csrf: &str,
    token: &str,
    notice: Option<&str>,
) -> String {
    let (state, tone) = standing(view);
    let mut main = format!(
        "<h1>Access request {}</h1>",
        escape(view.request.id.as_str())
    );
    if let Some(notice) = notice {
        main.push_str(&format!(
            "<p class=\"state bad\" role=\"alert\">{}</p>",
            escape(notice)
        ));
    }
    main.push_str(&format!(
        "<p class=\"state {tone}\" id=\"state\">{}</p>",
        escape(&state)
    ));
    main.push_str(&details(view));
    let can_decide = view.request.state == RequestState::Pending && !view.approved_by_them();
    if can_decide {
        let token = escape(token);
        let csrf = escape(csrf);
        main.push_str(&format!(
            "<form method=\"post\" action=\"{token}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"decision\" value=\"approve\">\
<button class=\"approve\" id=\"approve\" type=\"submit\">Approve</button></form>\
<form method=\"post\" action=\"{token}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"decision\" value=\"deny\">\
<label for=\"reason\">Reason for denying (required, the requester sees it)</label>\
<textarea id=\"reason\" name=\"reason\" required maxlength=\"{max}\"></textarea>\
<p><button class=\"deny\" id=\"deny\" type=\"submit\">Deny</button></p></form>\
<p><small>You are deciding as {}. Nothing is decided until you press a button.</small></p>",
            escape(view.approver.name_or_id()),
            max = crate::domain::command::MAX_REASON_CHARS,
        ));
    }
    document(&format!("Access request {}", view.request.id), &main)
}
