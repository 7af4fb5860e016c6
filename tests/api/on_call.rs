//! On call (issue 18, points 1 and 2): `auto_approve.on_call` approves the
//! engineer PagerDuty or Opsgenie says is on call now, matched by email;
//! `approvers` naming a schedule ask whoever is on call by DM, and only
//! them. PagerDuty and Opsgenie are faked on loopback with their
//! documented answers; a slow, failing or unknown schedule means "not on
//! call" and the card is posted.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{eventually, has_buttons, TestApp, BASE_POLICY};

pub(crate) const PAGERDUTY_TOKEN: &str = "pd-test-token";
const OPSGENIE_KEY: &str = "og-test-key";

/// PagerDuty's `GET /oncalls` answer with users included.
pub(crate) fn pagerduty_on_call(emails: &[&str]) -> Value {
    let oncalls: Vec<Value> = emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            json!({
                "escalation_level": 1,
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-31T00:00:00Z",
                "schedule": { "id": "PSCHED1", "type": "schedule_reference" },
                "user": { "id": format!("PUSER{i}"), "type": "user", "name": "Someone", "email": email },
            })
        })
        .collect();
    json!({ "oncalls": oncalls, "limit": 25, "offset": 0, "more": false, "total": null })
}

pub(crate) async fn pagerduty_answering(schedule: &str, answer: ResponseTemplate) -> MockServer {
    let pagerduty = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .and(query_param("schedule_ids[]", schedule))
        .and(query_param("include[]", "users"))
        .and(header(
            "authorization",
            format!("Token token={PAGERDUTY_TOKEN}").as_str(),
        ))
        .respond_with(answer)
        .mount(&pagerduty)
        .await;
    pagerduty
}

async fn spawn(policy: &str, pagerduty: &MockServer) -> TestApp {
    TestApp::spawn_with_env(
        policy,
        &[
            ("PAGERDUTY_API_TOKEN", PAGERDUTY_TOKEN),
            ("PAGERDUTY_API_URL", &pagerduty.uri()),
        ],
    )
    .await
}

fn auto_policy(schedules: &str) -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "incident-db"
provider = "iam"
target = "incident_rw"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = {{ on_call = [{schedules}], max_duration = "2h" }}

[identities]
U0NOMAILPAGER = {{ email = "pager@corp.example" }}
"#
    )
}

#[tokio::test]
async fn the_engineer_on_call_in_pagerduty_is_granted_at_once_and_told_why() {
    let pagerduty = pagerduty_answering(
        "PSCHED1",
        ResponseTemplate::new(200).set_body_json(pagerduty_on_call(&[
            "u0alice@example.com",
            "pager@corp.example",
        ])),
    )
    .await;
    let app = spawn(&auto_policy(r#""pagerduty:PSCHED1""#), &pagerduty).await;

    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request incident-db 1h INC-7 paged")
        .await;
    assert!(answer.contains("approved automatically"), "{answer}");
    assert!(
        answer.contains("on call for schedule pagerduty:PSCHED1"),
        "{answer}"
    );
    let id = crate::helpers::request_id_in(&answer).unwrap();
    app.until_granted(&id).await;
    let audited = app.audit_details("AutoApproved").await;
    assert!(
        audited
            .iter()
            .any(|d| d.contains("on call for schedule pagerduty:PSCHED1")),
        "{audited:?}"
    );
    let card = app.latest_card(&id).await.unwrap();
    assert!(!has_buttons(&card), "nothing left to decide: {card}");

    // Matched through [identities] when the chat profile has no address.
    let by_identity = app
        .request("U0NOMAILPAGER", "request incident-db 1h INC-7 paged too")
        .await;
    app.until_granted(&by_identity).await;

    // Someone not on call waits for the approvers, as usual.
    let not_on_call = app.request("U0BOB", "request incident-db 1h INC-7").await;
    let card = eventually("the card for someone not on call", || async {
        app.cards_for(&not_on_call).await.into_iter().next()
    })
    .await;
    assert!(has_buttons(&card), "{card}");
    assert_eq!(app.state_of(&not_on_call).await, "pending");
    // One look-up served all three requests (answers are kept a minute).
    let asked = pagerduty.received_requests().await.unwrap().len();
    assert_eq!(asked, 1, "PagerDuty asked once, not per request");
}

#[tokio::test]
async fn opsgenie_on_call_is_matched_by_the_participants_name() {
    let opsgenie = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/schedules/platform-primary/on-calls"))
        .and(query_param("scheduleIdentifierType", "name"))
        .and(header(
            "authorization",
            format!("GenieKey {OPSGENIE_KEY}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {
                "_parent": { "id": "d875e654", "name": "platform-primary", "enabled": true },
                "onCallParticipants": [
                    { "id": "t1", "name": "u0bob@example.com", "type": "team" },
                    { "id": "u1", "name": "u0alice@example.com", "type": "user" },
                ],
            },
            "took": 0.1,
            "requestId": "abc",
        })))
        .mount(&opsgenie)
        .await;
    let app = TestApp::spawn_with_env(
        &auto_policy(r#""pagerduty:PNONE", "opsgenie:platform-primary""#),
        &[
            ("OPSGENIE_API_KEY", OPSGENIE_KEY),
            ("OPSGENIE_API_URL", &opsgenie.uri()),
        ],
    )
    .await;
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request incident-db 1h INC-8")
        .await;
    assert!(
        answer.contains("on call for schedule opsgenie:platform-primary"),
        "{answer}"
    );
    let id = crate::helpers::request_id_in(&answer).unwrap();
    app.until_granted(&id).await;
    // A team of that name is not a person on call.
    let team = app.request("U0BOB", "request incident-db 1h INC-8").await;
    assert_eq!(app.state_of(&team).await, "pending");
    // PagerDuty has no token here: it counts nobody, and says so.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"jitbot_on_call_lookups_total{outcome="not_configured"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unknown_schedule_or_an_outage_means_not_on_call_and_the_card_is_posted() {
    for (answer, outcome) in [
        (
            ResponseTemplate::new(404)
                .set_body_json(json!({ "error": { "message": "Not Found", "code": 2100 } })),
            "unknown_schedule",
        ),
        (ResponseTemplate::new(503), "failed"),
    ] {
        let pagerduty = pagerduty_answering("PSCHED1", answer).await;
        let app = spawn(&auto_policy(r#""pagerduty:PSCHED1""#), &pagerduty).await;
        let id = app.request("U0ALICE", "request incident-db 1h INC-9").await;
        let card = eventually("the card", || async {
            app.cards_for(&id).await.into_iter().next()
        })
        .await;
        assert!(has_buttons(&card), "{card}");
        assert_eq!(app.state_of(&id).await, "pending");
        let metrics = app.metrics().await;
        let line = format!(r#"jitbot_on_call_lookups_total{{outcome="{outcome}"}} 1"#);
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_lookup_that_answers_after_its_deadline_never_approves_afterwards() {
    let late = Duration::from_secs(3);
    let pagerduty = pagerduty_answering(
        "PSCHED1",
        ResponseTemplate::new(200)
            .set_body_json(pagerduty_on_call(&["u0alice@example.com"]))
            .set_delay(late),
    )
    .await;
    let app = spawn(&auto_policy(r#""pagerduty:PSCHED1""#), &pagerduty).await;
    let asked_at = tokio::time::Instant::now();
    let answer = app
        .command_text("U0ALICE", "C0GENERAL", "request incident-db 1h INC-10")
        .await;
    assert!(answer.contains("waiting for approval"), "{answer}");
    let id = crate::helpers::request_id_in(&answer).unwrap();
    let card = eventually("the card", || async {
        app.cards_for(&id).await.into_iter().next()
    })
    .await;
    assert!(has_buttons(&card), "{card}");
    // Past the moment PagerDuty's late answer arrives, the request is
    // still the approvers' to decide and nothing was granted.
    tokio::time::sleep_until(asked_at + late + Duration::from_secs(1)).await;
    assert_eq!(app.state_of(&id).await, "pending");
    assert_eq!(app.iam_actions("grant", &id).await, 0);
    assert!(app.audit_details("AutoApproved").await.is_empty());
}

fn approvers_policy() -> String {
    format!(
        r#"{BASE_POLICY}
[[groups]]
name = "pager-db"
provider = "iam"
target = "pager_rw"
approvers = ["pagerduty:PAPPROVERS"]
"#
    )
}

#[tokio::test]
async fn whoever_is_on_call_is_asked_by_dm_and_only_they_may_decide() {
    let pagerduty = pagerduty_answering(
        "PAPPROVERS",
        ResponseTemplate::new(200).set_body_json(pagerduty_on_call(&["u0oncall@example.com"])),
    )
    .await;
    let app = spawn(&approvers_policy(), &pagerduty).await;
    let id = app.request("U0ALICE", "request pager-db 1h INC-11").await;
    let card = eventually("a DM card to the one on call", || async {
        app.slack_calls("chat.postMessage")
            .await
            .into_iter()
            .find(|m| m["channel"] == "DU0ONCALL" && m["blocks"].to_string().contains(&id))
    })
    .await;
    assert!(has_buttons(&card), "{card}");
    assert!(
        card["blocks"]
            .to_string()
            .contains("on call for pagerduty:PAPPROVERS"),
        "{card}"
    );
    let looked_up = app.slack_calls("users.lookupByEmail").await;
    assert_eq!(looked_up[0]["email"], "u0oncall@example.com");

    // Someone who was not asked cannot decide, whatever their rights
    // elsewhere; the requester cannot either.
    app.approve("U0LEAD", &id).await;
    app.approve("U0ALICE", &id).await;
    assert_eq!(app.state_of(&id).await, "pending");

    app.approve("U0ONCALL", &id).await;
    app.until_granted(&id).await;
    let approvals = app.request_json(&id).await["approvals"].clone();
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals}");
}

#[tokio::test]
async fn the_one_asked_keeps_the_decision_after_a_restart() {
    let pagerduty = pagerduty_answering(
        "PAPPROVERS",
        ResponseTemplate::new(200).set_body_json(pagerduty_on_call(&["u0oncall@example.com"])),
    )
    .await;
    let mut app = spawn(&approvers_policy(), &pagerduty).await;
    let id = app.request("U0ALICE", "request pager-db 1h INC-12").await;
    app.until_outbox_empty().await;
    // Who was asked is part of the request, not of the cache.
    app.restart().await;
    app.approve("U0ONCALL", &id).await;
    app.until_granted(&id).await;
}
