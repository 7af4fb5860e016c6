//! The outbox: Slack throttling delays messages but loses none.

use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{eventually, TestApp};

#[tokio::test]
async fn slack_429_is_honoured_and_the_card_still_arrives() {
    let app = TestApp::spawn().await;
    app.throttle_next_slack_post().await;
    let started = std::time::Instant::now();
    let id = app.request("U0ALICE", "request prod-db 1h throttled").await;
    let card = eventually("the card after the throttle", || async {
        app.cards_for(&id).await.into_iter().nth(1)
    })
    .await;
    assert_eq!(card["channel"], "C0APPROVALS");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for Retry-After"
    );
    // The first attempt was throttled, the second delivered: two calls, one card.
    assert_eq!(app.cards_for(&id).await.len(), 2);
    app.approve("U0LEAD", &id).await;
    eventually("the card update", || async {
        app.latest_card(&id)
            .await
            .filter(|c| c["blocks"].to_string().contains("Approved by"))
    })
    .await;
}

#[tokio::test]
async fn a_slack_outage_delays_messages_without_losing_them() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&app.slack)
        .await;
    let id = app
        .request("U0ALICE", "request prod-db 1h during an outage")
        .await;
    // Two calls fail with 503; the third, after backoff, delivers the card.
    let card = eventually("the card after the outage", || async {
        app.cards_for(&id).await.into_iter().nth(2)
    })
    .await;
    assert_eq!(card["channel"], "C0APPROVALS");
    assert!(card["blocks"].to_string().contains("during an outage"));
}
