//! Approving by email, end to end: jitbot sends through a real SMTP server
//! on loopback, the test reads the delivered message (both parts, the
//! headers, the link), a real headless Chromium opens the link and presses
//! the buttons, and the grant, the Slack card and the audit show the
//! outcome. Then every way a link or a form can be wrong.

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::Browser;
use crate::helpers::{eventually_within, has_buttons, TestApp, EMAIL_TOKEN_KEY, USER_TOKEN};
use crate::mailbox::{approval_link, SmtpSink, MAIL_PATIENCE};

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"
max_duration = "8h"
default_duration = "1h"
reason_required = true

[providers.iam]
kind = "webhook"
url = "{IAM}/jit"
secret_env = "TEST_HOOK_SECRET"
timeout = "5s"

[[groups]]
name = "prod-db"
description = "Production <b>database</b>"
provider = "iam"
target = "prod_rw"
approvers = ["U0LEAD", "lead@example.com"]
channel = "C0APPROVALS"

[[groups]]
name = "two-key"
provider = "iam"
target = "vault_admin"
approvers = ["U0LEAD", "u0lead@example.com", "U0DBA", "u0alice@example.com"]
approvals_required = 2
channel = "C0APPROVALS"

[[groups]]
name = "records"
description = "Finance records, read-only"
provider = "iam"
target = "records_ro"
approvers = ["owner@example.com"]

[[groups]]
name = "unreachable"
provider = "iam"
target = "nowhere"
approvers = ["U0LEAD", "nobody@example.com"]
channel = "C0APPROVALS"
"#;

/// Patience for what the server does in the background on a busy machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Wait until the page's state says `needle` (the answer to a click, or
/// — on a busy machine — the page opened again once the decision is
/// taken); the state's text.
async fn until_page_says(browser: &Browser, link: &str, needle: &str) -> String {
    let mut looks = 0;
    eventually_within(PATIENCE, &format!("the page to say {needle:?}"), || {
        looks += 1;
        let again = looks % 20 == 0;
        async move {
            if again {
                browser.open(link).await;
            }
            let state = browser.text_now("#state").await?;
            state.contains(needle).then_some(state)
        }
    })
    .await
}

/// The CSRF field of the page at `link`.
pub(crate) async fn csrf_of(app: &TestApp, link: &str) -> String {
    let page = app
        .http
        .get(link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"))
        + "name=\"csrf\" value=\"".len();
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

/// The CSRF value the page of `link` carries, made with the test key.
fn csrf_for(link: &str) -> String {
    jitbot::email::token::TokenKey::new(jitbot::config::Secret::new(EMAIL_TOKEN_KEY))
        .csrf(link.rsplit('/').next().unwrap())
}

pub(crate) async fn post_form(app: &TestApp, link: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = app.http.post(link).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The approval email to `to` for request `id`, and its link.
pub(crate) async fn link_for(sink: &SmtpSink, to: &str, id: &str) -> String {
    approval_link(&sink.wait_for(to, id).await)
}

#[tokio::test]
async fn an_email_approver_gets_one_email_and_approves_in_a_real_browser() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request(
            "U0ALICE",
            "request prod-db 1h fixing INC-123 <script>alert(1)</script>",
        )
        .await;

    let message = sink.wait_for("lead@example.com", &id).await;
    let headers = &message["headers"];
    assert!(headers["From"]
        .as_str()
        .unwrap()
        .contains("jitbot@jit.example.com"));
    assert_eq!(headers["To"], "lead@example.com");
    assert!(headers["Subject"].as_str().unwrap().contains(&id));
    assert!(headers["Subject"].as_str().unwrap().contains("prod-db"));
    let message_id = headers["Message-ID"].as_str().unwrap();
    assert!(message_id.starts_with('<') && message_id.ends_with("@jit.example.com>"));
    assert_eq!(message["content_type"], "multipart/alternative");
    let text = message["text"].as_str().unwrap();
    let html = message["html"].as_str().unwrap();
    for needle in [
        "prod-db",
        "1h",
        &id,
        "fixing INC-123 <script>alert(1)</script>",
    ] {
        assert!(
            text.contains(needle),
            "{needle} not in the text part:\n{text}"
        );
    }
    // People's words are text in the HTML part, never markup.
    assert!(html.contains("fixing INC-123 &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("Production &lt;b&gt;database&lt;/b&gt;"));
    assert!(!html.contains("<script>") && !html.contains("<b>database"));
    let link = approval_link(&message);
    assert!(link.starts_with(&app.url("/approve/")), "{link}");
    assert_eq!(html.matches(&format!("href=\"{link}\"")).count(), 1);

    let browser = Browser::start().await;
    browser.open(&link).await;
    let page = browser.text("main").await;
    for needle in [
        &id,
        "prod-db",
        "Production <b>database</b>",
        "1h",
        "<script>alert(1)</script>",
        "0 of 1",
    ] {
        assert!(page.contains(needle), "{needle} not on the page:\n{page}");
    }
    assert!(browser.text("#state").await.contains("pending"));
    assert!(browser.has("#approve").await && browser.has("#deny").await);
    assert!(!browser.has("script").await);
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a screenshot of the page");
    if let Ok(path) = std::env::var("JITBOT_SCREENSHOT_TO") {
        std::fs::write(path, &png).unwrap();
    }
    // Opening the page decided nothing.
    assert_eq!(app.state_of(&id).await, "pending");

    browser.click("#approve").await;
    let state = until_page_says(&browser, &link, "approved").await;
    assert!(!state.contains("pending"), "{state}");
    app.until_granted(&id).await;
    browser.open(&link).await;
    let state = browser.text("#state").await;
    assert!(
        state.contains("granted") && state.contains("active until"),
        "{state}"
    );
    assert!(!browser.has("#approve").await, "no buttons once decided");
    browser.close().await;

    let card = eventually_within(
        PATIENCE,
        "the Slack card to show the email approval",
        || async {
            app.latest_card(&id)
                .await
                .filter(|card| card.to_string().contains("lead@example.com (by email)"))
                .filter(|card| !has_buttons(card))
        },
    )
    .await;
    assert!(
        !card.to_string().contains("<@lead"),
        "named, not mentioned: {card}"
    );
    let approved = app.audit_details("Approved").await;
    assert!(
        approved
            .iter()
            .any(|d| d.contains("by email, lead@example.com")),
        "{approved:?}"
    );
    app.until_outbox_empty().await;
    assert_eq!(
        sink.delivered_to("lead@example.com").len(),
        1,
        "one email per request"
    );
}

#[tokio::test]
async fn an_email_approver_denies_with_a_reason_in_a_real_browser() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-9")
        .await;
    let link = link_for(&sink, "lead@example.com", &id).await;

    let browser = Browser::start().await;
    browser.open(&link).await;
    let reason = "<img src=x onerror=alert(1)> not during the freeze";
    browser.type_into("#reason", reason).await;
    browser.click("#deny").await;
    let state = until_page_says(&browser, &link, "denied").await;
    assert!(
        state.contains(&format!("denied by lead@example.com (by email): {reason}")),
        "{state}"
    );
    assert!(!browser.has("img").await, "the reason stayed text");
    browser.close().await;

    assert_eq!(app.state_of(&id).await, "denied");
    let dm = app
        .wait_for_dm("U0ALICE", "the denial DM", "was denied by lead@example.com")
        .await;
    assert!(dm.contains("not during the freeze"), "{dm}");
    eventually_within(PATIENCE, "the Slack card to show the denial", || async {
        app.latest_card(&id)
            .await
            .filter(|card| card.to_string().contains("Denied by"))
            .filter(|card| !has_buttons(card))
    })
    .await;
    let denied = app.audit_details("Denied").await;
    assert!(
        denied
            .iter()
            .any(|d| d.contains("by email, lead@example.com")),
        "{denied:?}"
    );
    assert_eq!(app.iam_actions("grant", &id).await, 0);
}

#[tokio::test]
async fn the_page_never_decides_by_itself_and_every_bad_link_or_form_changes_nothing() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-7")
        .await;
    let link = link_for(&sink, "lead@example.com", &id).await;

    // A mail scanner opens the link, twice: it shows, with the headers a
    // page that decides access must carry.
    for _ in 0..2 {
        let response = app.http.get(&link).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            !csp.contains("script-src") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store"));
        assert!(!response.text().await.unwrap().contains("<script"));
    }
    app.until_outbox_empty().await;
    assert_eq!(app.state_of(&id).await, "pending");

    // Every link that is not ours gets the same plain 404.
    let token = link.rsplit('/').next().unwrap().to_string();
    let (payload, signature) = token.split_once('.').unwrap();
    let mut altered = signature.to_string().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    let altered = format!("{payload}.{}", String::from_utf8(altered).unwrap());
    let key = jitbot::email::token::TokenKey::new(jitbot::config::Secret::new(EMAIL_TOKEN_KEY));
    let not_an_approver = key.token(&jitbot::email::token::ApprovalLink {
        request: jitbot::domain::ids::RequestId::parse(&id).unwrap(),
        approver: jitbot::domain::email::EmailAddress::parse("mallory@example.com").unwrap(),
    });
    let foreign_key = jitbot::email::token::TokenKey::new(jitbot::config::Secret::new(
        "another-key-entirely-0123456789abcdef",
    ))
    .token(&jitbot::email::token::ApprovalLink {
        request: jitbot::domain::ids::RequestId::parse(&id).unwrap(),
        approver: jitbot::domain::email::EmailAddress::parse("lead@example.com").unwrap(),
    });
    let mut bodies = Vec::new();
    for bad in [
        altered.as_str(),
        not_an_approver.as_str(),
        foreign_key.as_str(),
        "x",
        &token[..12],
        "bm90LWEtdG9rZW4.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let response = app
            .http
            .get(app.url(&format!("/approve/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
        bodies.push(response.text().await.unwrap());
        let (status, _) = post_form(
            &app,
            &app.url(&format!("/approve/{bad}")),
            &[("decision", "approve")],
        )
        .await;
        assert_eq!(status, 404, "POST {bad}");
    }
    for empty in ["/approve/", "/approve"] {
        let response = app.http.get(app.url(empty)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{empty}");
        bodies.push(response.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "the 404 says nothing of why"
    );

    // Forms that did not come from the page, or say nothing usable.
    let csrf = csrf_of(&app, &link).await;
    let (status, _) = post_form(&app, &link, &[("decision", "approve")]).await;
    assert_eq!(status, 403, "no CSRF field");
    let (status, _) = post_form(&app, &link, &[("decision", "approve"), ("csrf", "AAAA")]).await;
    assert_eq!(status, 403, "a made-up CSRF field");
    let mut tampered = csrf.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (status, _) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &tampered)]).await;
    assert_eq!(status, 403, "an altered CSRF field");
    let (status, page) = post_form(
        &app,
        &link,
        &[("decision", "deny"), ("reason", "   "), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 422, "a denial without a reason");
    assert!(page.contains("give a reason"), "{page}");
    let (status, _) = post_form(&app, &link, &[("decision", "maybe"), ("csrf", &csrf)]).await;
    assert_eq!(status, 400);
    app.until_outbox_empty().await;
    assert_eq!(app.state_of(&id).await, "pending");
    assert_eq!(app.iam_actions("grant", &id).await, 0);

    // The real form, submitted twice: decided once. (202: recorded, and
    // not yet taken when the page answered, on a busy machine.)
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert!(status == 200 || status == 202, "{status}: {page}");
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert!([200, 202, 409].contains(&status), "{status}: {page}");
    app.until_granted(&id).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("granted"), "{page}");
    app.until_outbox_empty().await;
    assert_eq!(app.audit_details("Approved").await.len(), 1);
}

#[tokio::test]
async fn a_link_is_dead_once_its_request_is_no_longer_pending() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;

    let cancelled = app
        .request("U0ALICE", "request prod-db 1h not needed after all")
        .await;
    let link = link_for(&sink, "lead@example.com", &cancelled).await;
    let csrf = csrf_of(&app, &link).await;
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", &format!("cancel {cancelled}"))
        .await;
    assert!(answer.contains("ancel"), "{answer}");
    let page = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("cancelled by the requester"), "{page}");
    assert!(
        !page.contains("name=\"csrf\""),
        "no buttons on a cancelled request"
    );
    let (status, _) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 409);
    assert_eq!(app.state_of(&cancelled).await, "cancelled");

    // Decided in Slack first: the link says so and decides nothing.
    let decided = app
        .request("U0ALICE", "request prod-db 1h fixing INC-8")
        .await;
    let link = link_for(&sink, "lead@example.com", &decided).await;
    let csrf = csrf_of(&app, &link).await;
    app.approve("U0LEAD", &decided).await;
    app.until_granted(&decided).await;
    let (status, page) = post_form(
        &app,
        &link,
        &[
            ("decision", "deny"),
            ("reason", "too late"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("granted"), "{page}");
    assert_eq!(app.state_of(&decided).await, "active");
    assert_eq!(app.iam_actions("grant", &cancelled).await, 0);
}

#[tokio::test]
async fn one_person_by_chat_and_by_email_counts_once_and_never_approves_their_own_request() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    // The fake Slack gives U0LEAD the profile address u0lead@example.com.
    let id = app
        .request("U0ALICE", "request two-key 1h rotating keys")
        .await;
    let lead_link = link_for(&sink, "u0lead@example.com", &id).await;
    let own_link = link_for(&sink, "u0alice@example.com", &id).await;

    app.approve("U0LEAD", &id).await;
    eventually_within(PATIENCE, "U0LEAD's approval to count", || async {
        (app.request_json(&id).await["approvals"].as_array()?.len() == 1).then_some(())
    })
    .await;
    // Their page knows them: it says they approved, and offers nothing.
    let page = app
        .http
        .get(&lead_link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("You approved this request"), "{page}");
    assert!(!page.contains("name=\"csrf\""), "{page}");
    // A form posted anyway (made with the page's own CSRF value) counts
    // for nothing.
    let csrf = csrf_for(&lead_link);
    let (status, page) = post_form(
        &app,
        &lead_link,
        &[("decision", "approve"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("already approved"), "{page}");

    let csrf = csrf_of(&app, &own_link).await;
    let (status, page) =
        post_form(&app, &own_link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("your own request"), "{page}");
    let (status, _) = post_form(
        &app,
        &own_link,
        &[
            ("decision", "deny"),
            ("reason", "changed my mind"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(status, 403);
    app.until_outbox_empty().await;
    let request = app.request_json(&id).await;
    assert_eq!(request["state"], "pending");
    assert_eq!(request["approvals"].as_array().unwrap().len(), 1);

    // A second, different person completes it.
    app.approve("U0DBA", &id).await;
    app.until_granted(&id).await;
}

#[tokio::test]
async fn an_email_only_group_works_and_api_requesters_hear_back_by_email() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let create = |body: Value| {
        app.http
            .post(app.url("/api/v1/requests"))
            .bearer_auth(USER_TOKEN)
            .json(&body)
            .send()
    };
    let refused = create(json!({ "group": "records", "reason": "Q4 audit", "email": "lead@" }))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    // Someone else's address is not the token user's to give: a body never
    // says who the requester is, nor where their request's news goes.
    let not_theirs = create(json!({
        "group": "records", "duration": "30m", "reason": "Q4 audit", "email": "owner@example.com"
    }))
    .await
    .unwrap();
    assert_eq!(not_theirs.status(), 422);
    let why = not_theirs.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("only be the address jitbot knows"), "{why}");
    // The token user's own address (their Slack profile's) is theirs.
    let created = create(json!({
        "group": "records", "duration": "30m", "reason": "Q4 audit", "email": "U0CIBOT@example.com"
    }))
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let link = link_for(&sink, "owner@example.com", &id).await;
    let csrf = csrf_of(&app, &link).await;
    let (status, page) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert!(status == 200 || status == 202, "{status}: {page}");
    app.until_granted(&id).await;

    let approved = sink
        .wait_for("u0cibot@example.com", "was approved by owner@example.com")
        .await;
    assert!(approved["headers"]["Subject"]
        .as_str()
        .unwrap()
        .starts_with("jitbot: "));
    sink.wait_for("u0cibot@example.com", "is live until").await;
    app.until_outbox_empty().await;
    assert!(
        app.dms_to("U0CIBOT").await.is_empty(),
        "the requester has no chat"
    );
}

#[tokio::test]
async fn a_mail_server_that_answers_421_gets_the_email_again_and_it_arrives_once() {
    let sink = SmtpSink::start_with(&["--fail-first", "1"]).await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request("U0ALICE", "request prod-db 1h fixing INC-4")
        .await;
    sink.wait_for("lead@example.com", &id).await;
    app.until_outbox_empty().await;
    let attempts = sink.attempts();
    assert_eq!(
        attempts,
        vec!["deferred lead@example.com", "accepted lead@example.com"],
        "deferred once, then delivered once"
    );
    assert_eq!(sink.delivered_to("lead@example.com").len(), 1);
}

#[tokio::test]
async fn a_recipient_the_mail_server_refuses_is_reported_not_retried_forever() {
    let sink = SmtpSink::start_with(&["--refuse-prefix", "nobody"]).await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request("U0ALICE", "request unreachable 1h fixing INC-5")
        .await;
    let dm = eventually_within(
        MAIL_PATIENCE,
        "the requester to hear of the refused email",
        || async {
            app.dms_to("U0ALICE")
                .await
                .into_iter()
                .find(|dm| dm.contains("could not send the approval email"))
        },
    )
    .await;
    assert!(
        dm.contains(&id) && dm.contains("nobody@example.com"),
        "{dm}"
    );
    app.until_outbox_empty().await;
    let refused = sink
        .attempts()
        .iter()
        .filter(|a| a.as_str() == "refused nobody@example.com")
        .count();
    assert_eq!(refused, 3, "tried a few times, then reported");
    // The Slack approver is unaffected.
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
}

#[tokio::test]
async fn someone_chat_cannot_reach_gets_their_messages_by_email_too() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    // Slack cannot open a DM with U0GONE (the app is not installed for
    // them); their profile says u0gone@example.com.
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/api/conversations.open"))
        .and(wiremock::matchers::body_string_contains("U0GONE"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "user_not_found" })),
        )
        .with_priority(1)
        .mount(&app.slack)
        .await;
    let id = app
        .request("U0GONE", "request prod-db 1h fixing INC-6")
        .await;
    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;

    let email = sink.wait_for("u0gone@example.com", "was approved by").await;
    assert!(email["text"].as_str().unwrap().contains(&id));
    sink.wait_for("u0gone@example.com", "is live until").await;
    // The approval channel is still told.
    app.wait_for_notice("C0APPROVALS", "the unreachable notice", "I cannot reach")
        .await;
}

#[tokio::test]
async fn in_a_request_for_several_groups_each_email_approver_decides_their_own_group() {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_email(POLICY, sink.port).await;
    let id = app
        .request("U0ALICE", "request prod-db,records 1h INC-5 quarter close")
        .await;
    let bundle = app.request_json(&id).await["bundle"].clone();
    let records = bundle[1]["id"].as_str().unwrap().to_string();
    assert_eq!(bundle[1]["group"], "records");

    // The owner of the records is asked about the records, and told what
    // else the request asks for.
    let message = sink.wait_for("owner@example.com", &records).await;
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("Group:    records"), "{text}");
    assert!(text.contains("prod-db, records"), "{text}");
    let link = approval_link(&message);
    let page = app
        .http
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("records") && page.contains(&records),
        "{page}"
    );

    let csrf = csrf_of(&app, &link).await;
    let (status, _) = post_form(&app, &link, &[("decision", "approve"), ("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    eventually_within(PATIENCE, "the records approved", || async {
        (app.state_of(&records).await == "approved").then_some(())
    })
    .await;
    // Their click did not count for the database, which they do not approve.
    assert_eq!(app.state_of(&id).await, "pending");
    app.until_outbox_empty().await;
    assert_eq!(app.iam_actions("grant", &records).await, 0);

    app.approve("U0LEAD", &id).await;
    app.until_granted(&id).await;
    app.until_granted(&records).await;
}
