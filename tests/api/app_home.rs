//! Slack's App Home tab (issue 19, point 2): opening it publishes the
//! person's home — their grants (Release, Extend), their pending requests
//! (Cancel), what waits for their approval (Approve, Deny: the cards' own
//! click path), recent history and a Request access button; admins also see
//! the live grants and the pending requests per group. It is published
//! again when something in it changes, a burst of changes coalesced.

use serde_json::{json, Value};

use crate::helpers::{eventually, TestApp};

/// Open `user`'s Home tab, as Slack reports it over the Events API.
async fn open_home(app: &TestApp, user: &str) {
    let body = json!({
        "type": "event_callback",
        "team_id": "T0TEAM",
        "event_id": format!("Ev-{user}-{}", rand_id()),
        "event": { "type": "app_home_opened", "user": user, "channel": format!("D{user}"), "tab": "home" },
    });
    let response = app
        .post_signed(
            "/slack/events",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(response.status(), 200);
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// The views published for `user`, oldest first.
async fn published(app: &TestApp, user: &str) -> Vec<Value> {
    app.slack_calls("views.publish")
        .await
        .into_iter()
        .filter(|call| call["user_id"] == user)
        .map(|call| call["view"].clone())
        .collect()
}

/// The latest view published for `user` that satisfies `check`.
async fn home_where(app: &TestApp, user: &str, what: &str, check: impl Fn(&str) -> bool) -> Value {
    eventually(what, || async {
        published(app, user)
            .await
            .pop()
            .filter(|view| check(&view.to_string()))
    })
    .await
}

/// The section texts under the header `title`, up to the next header.
fn section(view: &Value, title: &str) -> Vec<String> {
    let blocks = view["blocks"].as_array().unwrap();
    let start = blocks
        .iter()
        .position(|b| b["type"] == "header" && b["text"]["text"] == title)
        .unwrap_or_else(|| panic!("no section {title:?} in {view}"));
    blocks[start + 1..]
        .iter()
        .take_while(|b| b["type"] != "header")
        .filter_map(|b| match b["type"].as_str() {
            Some("section") => b["text"]["text"].as_str().map(str::to_string),
            Some("context") => b["elements"][0]["text"].as_str().map(str::to_string),
            _ => None,
        })
        .collect()
}

/// The buttons of the view: (label, action id, value).
fn buttons(view: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for block in view["blocks"].as_array().unwrap() {
        let elements: Vec<&Value> = match block["type"].as_str() {
            Some("actions") => block["elements"].as_array().unwrap().iter().collect(),
            Some("section") if block.get("accessory").is_some() => vec![&block["accessory"]],
            _ => Vec::new(),
        };
        for element in elements {
            found.push((
                element["text"]["text"].as_str().unwrap().to_string(),
                element["action_id"].as_str().unwrap().to_string(),
                element["value"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    found
}

/// `user` presses a button of their Home tab (no channel: a view).
async fn press(app: &TestApp, user: &str, action: &str, value: &str) {
    let response = app
        .interact(json!({
            "type": "block_actions",
            "user": { "id": user, "username": user.to_lowercase(), "team_id": "T0TEAM" },
            "trigger_id": format!("trigger-home-{}", rand_id()),
            "container": { "type": "view", "view_id": "V0HOME" },
            "view": { "id": "V0HOME", "type": "home" },
            "actions": [{ "action_id": action, "block_id": "home", "value": value, "type": "button" }],
        }))
        .await;
    assert_eq!(response.status(), 200);
}

fn has_button(view: &Value, label: &str, value: &str) -> bool {
    buttons(view)
        .iter()
        .any(|(l, _, v)| l == label && v == value)
}

#[tokio::test]
async fn the_home_shows_each_state_with_its_buttons() {
    let app = TestApp::spawn().await;
    open_home(&app, "U0ALICE").await;
    let empty = home_where(&app, "U0ALICE", "an empty home", |_| true).await;
    assert_eq!(empty["type"], "home");
    assert_eq!(
        section(&empty, "Your access"),
        ["You hold no access through jitbot right now."]
    );
    assert!(buttons(&empty)
        .iter()
        .any(|(label, action, _)| label == "Request access" && action == "jit_request_access"));
    assert!(empty.to_string().find("Admin").is_none(), "not an admin");

    // A pending request: Cancel on Alice's home, Approve / Deny on the
    // lead's once they open theirs.
    let pending = app
        .request("U0ALICE", "request prod-db 1h INC-1 <b>home</b> & more")
        .await;
    let home = home_where(&app, "U0ALICE", "the pending request", |v| {
        v.contains(&pending)
    })
    .await;
    let waiting = section(&home, "Your requests waiting for approval");
    assert!(waiting[0].contains("prod-db for 1h"), "{waiting:?}");
    // The reason is shown literally, never as markup.
    assert!(
        waiting[0].contains("&lt;b&gt;home&lt;/b&gt; &amp; more"),
        "{waiting:?}"
    );
    assert!(has_button(&home, "Cancel", &pending));
    open_home(&app, "U0LEAD").await;
    let lead = home_where(&app, "U0LEAD", "the lead's home", |v| v.contains(&pending)).await;
    let to_decide = section(&lead, "Waiting for your approval");
    assert!(to_decide[0].starts_with("<@U0ALICE> asks"), "{to_decide:?}");
    assert!(has_button(&lead, "Approve", &pending) && has_button(&lead, "Deny", &pending));
    // Nobody else's request shows as waiting for Alice.
    assert_eq!(
        section(&home, "Waiting for your approval"),
        ["Nothing waits for you."]
    );

    // Approved from the home, exactly as from the card: granted.
    press(&app, "U0LEAD", "jit_approve", &pending).await;
    app.until_granted(&pending).await;
    let grant = format!("G-{}", &pending[2..]);
    let home = home_where(&app, "U0ALICE", "the grant", |v| v.contains(&grant)).await;
    let access = section(&home, "Your access");
    assert!(
        access[0].contains("prod-db") && access[0].contains("left"),
        "{access:?}"
    );
    assert!(has_button(&home, "Release", &grant) && has_button(&home, "Extend", &grant));
    let release = buttons(&home)
        .into_iter()
        .find(|(label, _, _)| label == "Release")
        .unwrap();
    assert_eq!(release.1, "jit_release");
    let lead = home_where(&app, "U0LEAD", "the lead's home without it", |v| {
        !v.contains(&pending)
    })
    .await;
    assert_eq!(
        section(&lead, "Waiting for your approval"),
        ["Nothing waits for you."]
    );

    // Release acts at once, through the same path as /jit release.
    press(&app, "U0ALICE", "jit_release", &grant).await;
    eventually("the release", || async {
        (app.state_of(&pending).await == "released").then_some(())
    })
    .await;
    let home = home_where(&app, "U0ALICE", "the history", |v| v.contains("released")).await;
    assert_eq!(
        section(&home, "Your access"),
        ["You hold no access through jitbot right now."]
    );
    assert!(section(&home, "Recent")[0].contains("released"));

    // Cancel from the home.
    let second = app.request("U0ALICE", "request hasty 1h INC-2").await;
    home_where(&app, "U0ALICE", "the second request", |v| {
        v.contains(&second)
    })
    .await;
    press(&app, "U0ALICE", "jit_cancel", &second).await;
    eventually("the cancel", || async {
        (app.state_of(&second).await == "cancelled").then_some(())
    })
    .await;
    // Request access opens the request form.
    press(&app, "U0ALICE", "jit_request_access", "form").await;
    let form = eventually("the request form", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    assert_eq!(form["view"]["callback_id"], "jit_request_form");
    // Someone who is not an approver is told so, and nothing changes.
    let third = app.request("U0ALICE", "request prod-db 1h INC-3").await;
    press(&app, "U0BOB", "jit_approve", &third).await;
    app.wait_for_dm("U0BOB", "the refusal", "not an approver")
        .await;
    assert_eq!(app.state_of(&third).await, "pending");
}

#[tokio::test]
async fn admins_see_every_live_grant_and_the_pending_count_per_group() {
    let app = TestApp::spawn().await;
    let granted = app.request("U0ALICE", "request prod-db 1h INC-3").await;
    app.approve("U0LEAD", &granted).await;
    app.until_granted(&granted).await;
    app.request("U0BOB", "request hasty 1h INC-4").await;
    app.request("U0CAROL", "request hasty 1h INC-5").await;
    open_home(&app, "U0ADMIN").await;
    let admin = home_where(&app, "U0ADMIN", "the admin home", |v| v.contains("Admin")).await;
    let live = section(&admin, "Admin: live grants, soonest end first");
    assert!(
        live[0].contains("prod-db") && live[0].contains("<@U0ALICE>"),
        "{live:?}"
    );
    assert_eq!(
        section(&admin, "Admin: pending requests per group"),
        ["hasty: 2"]
    );
    // A non-admin sees their own only.
    open_home(&app, "U0BOB").await;
    let bob = home_where(&app, "U0BOB", "Bob's home", |_| true).await;
    assert!(!bob.to_string().contains("U0ALICE"), "{bob}");
    assert!(!bob.to_string().contains("Admin"), "{bob}");
}

#[tokio::test]
async fn the_list_waiting_for_an_approver_holds_at_least_ten() {
    let app = TestApp::spawn().await;
    let mut filed = Vec::new();
    for n in 0..12 {
        let user = format!("U0USER{n:02}");
        filed.push(
            app.request(&user, &format!("request hasty 1h INC-{n}"))
                .await,
        );
    }
    open_home(&app, "U0LEAD").await;
    let home = home_where(&app, "U0LEAD", "twelve waiting", |v| {
        filed.iter().all(|id| v.contains(id))
    })
    .await;
    assert_eq!(section(&home, "Waiting for your approval").len(), 12);
}

#[tokio::test]
async fn a_burst_of_changes_publishes_a_bounded_number_of_times() {
    let app = TestApp::spawn().await;
    open_home(&app, "U0LEAD").await;
    home_where(&app, "U0LEAD", "the first publish", |_| true).await;
    app.until_outbox_empty().await;
    let before = published(&app, "U0LEAD").await.len();
    // Twenty requests at once.
    let filed: Vec<String> = futures_util::future::join_all((0..20).map(|n| {
        let app = &app;
        async move {
            app.request(
                &format!("U0BURST{n:02}"),
                &format!("request hasty 1h INC-{n}"),
            )
            .await
        }
    }))
    .await;
    // The last publish shows all twenty.
    home_where(&app, "U0LEAD", "all twenty", |v| {
        filed.iter().all(|id| v.contains(id))
    })
    .await;
    app.until_outbox_empty().await;
    let publishes = published(&app, "U0LEAD").await.len() - before;
    assert!(
        (1..=5).contains(&publishes),
        "{publishes} publishes for 20 changes"
    );
    eprintln!("20 changes published the home {publishes} times");
}

#[tokio::test]
async fn slash_home_points_to_the_home_tab_and_publishes_it() {
    let app = TestApp::spawn().await;
    let answer = app.command_text("U0ALICE", "C0GENERAL", "home").await;
    assert!(answer.contains("Home"), "{answer}");
    let home = home_where(&app, "U0ALICE", "the published home", |_| true).await;
    assert_eq!(home["type"], "home");
}
