//! `/jit admin …` from chat: channel-to-group mappings (checked, audited,
//! persistent), the active-grants and audit views with pages, and refusals.

use crate::helpers::{eventually, TestApp};

async fn admin(app: &TestApp, text: &str) -> String {
    app.command_text("U0ADMIN", "C0OPS", text).await
}

#[tokio::test]
async fn a_mapping_routes_cards_survives_restarts_and_is_audited() {
    let mut app = TestApp::spawn().await;
    let answer = admin(&app, "admin map <#C0DBA|dba> prod-db").await;
    assert!(
        answer.starts_with("Mapped <#C0DBA> to `prod-db`: its approval cards go there now"),
        "{answer}"
    );
    // jitbot checked it can post there by saying so in the channel.
    let notices = app.notices_in("C0DBA").await;
    assert_eq!(
        notices,
        ["Approval cards for `prod-db` will be posted here from now on (mapped by u0admin)."]
    );
    assert_eq!(
        admin(&app, "admin map #C0DBA prod-db").await,
        "<#C0DBA> is already mapped to `prod-db`."
    );

    let id = app.request("U0ALICE", "request prod-db 1h INC-9").await;
    let card = eventually("the card in the mapped channel", || async {
        app.cards_for(&id).await.into_iter().next()
    })
    .await;
    assert_eq!(
        card["channel"], "C0DBA",
        "the mapping replaces the policy's channel"
    );

    // `/jit request` typed in the mapped channel offers prod-db first.
    app.command("U0ALICE", "C0DBA", "request").await;
    let form = eventually("views.open", || async {
        app.slack_calls("views.open").await.pop()
    })
    .await;
    let first = &form["view"]["blocks"][0]["element"]["option_groups"][0]["options"][0];
    assert_eq!(first["value"], "prod-db");

    app.restart().await;
    let listed = admin(&app, "admin mappings").await;
    assert!(
        listed.contains("• `prod-db` → <#C0APPROVALS> (policy)"),
        "{listed}"
    );
    assert!(
        listed.contains("• `prod-db` → <#C0DBA> (mapped by u0admin on "),
        "{listed}"
    );

    assert_eq!(
        admin(&app, "admin unmap <#C0DBA> prod-db").await,
        "<#C0DBA> no longer gets `prod-db`'s approval cards."
    );
    assert_eq!(
        admin(&app, "admin unmap <#C0DBA> prod-db").await,
        "<#C0DBA> is not mapped to `prod-db`."
    );
    let added = app.audit_details("MappingAdded").await;
    let removed = app.audit_details("MappingRemoved").await;
    assert_eq!(added, ["approval cards also go to <#C0DBA>"]);
    assert_eq!(removed, ["approval cards no longer go to <#C0DBA>"]);
}

#[tokio::test]
async fn bad_mappings_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(
        admin(&app, "admin map <#C0NOTIN1> prod-db").await,
        "I cannot post in <#C0NOTIN1>: not_in_channel. Invite me to the channel (`/invite @jitbot`), then map it again."
    );
    assert_eq!(
        admin(&app, "admin map <#C0DBA> nope").await,
        "There is no group `nope` in the policy."
    );
    let not_a_channel = admin(&app, "admin map #approvals prod-db").await;
    assert!(
        not_a_channel.starts_with("That is not a channel; mention it like #approvals."),
        "{not_a_channel}"
    );
    // Someone who is not an admin is refused, and that is audited.
    let refused = app
        .command_text("U0ALICE", "C0OPS", "admin map <#C0DBA> prod-db")
        .await;
    assert_eq!(refused, "Only jitbot admins can use `/jit admin` commands.");
    let listed = admin(&app, "admin mappings").await;
    assert!(!listed.contains("mapped by"), "{listed}");
    assert!(app.audit_details("MappingAdded").await.is_empty());
    assert_eq!(
        app.audit_details("AdminRefused").await,
        ["not an admin: /jit admin map"]
    );
}

#[tokio::test]
async fn active_grants_are_listed_soonest_first_in_pages() {
    // One person files all 22; the per-person limits are not what this is about.
    let generous = jitbot::domain::quota::FilingLimits {
        per_minute: 100,
        pending: 100,
    };
    let app = TestApp::spawn_with_limits(crate::helpers::BASE_POLICY, None, generous).await;
    // 22 auto-approved grants; the first ends last.
    let mut ids = vec![
        app.request("U0ONCALL", "request sandbox 30m long one")
            .await,
    ];
    for n in 1..22 {
        ids.push(
            app.request("U0ONCALL", &format!("request sandbox {}m batch {n}", 5 + n))
                .await,
        );
    }
    eventually("all grants active", || async {
        let page = admin(&app, "admin grants").await;
        page.starts_with("22 active grants").then_some(())
    })
    .await;
    let first = admin(&app, "admin grants").await;
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(
        lines[0],
        "22 active grants (soonest expiry first), page 1 of 2:"
    );
    assert!(
        lines[1].starts_with(&format!("• G-{} `sandbox` — u0oncall until", &ids[1][2..])),
        "{first}"
    );
    assert_eq!(lines.len(), 1 + 20 + 1, "{first}");
    assert_eq!(lines[21], "`/jit admin grants 2` for the next page.");
    let second = admin(&app, "admin grants 2").await;
    let lines: Vec<&str> = second.lines().collect();
    assert_eq!(lines.len(), 1 + 2, "{second}");
    assert!(
        lines[2].starts_with(&format!("• G-{}", &ids[0][2..])),
        "the longest ends last: {second}"
    );
}

#[tokio::test]
async fn the_audit_view_filters_by_user_group_and_time() {
    let app = TestApp::spawn().await;
    let alice = app
        .request("U0ALICE", "request prod-db 1h for the audit")
        .await;
    app.approve("U0LEAD", &alice).await;
    let bob = app
        .request("U0BOB", "request two-key 1h also audited")
        .await;
    // The grant is audited once the provider answered and it is recorded.
    let by_alice = eventually("alice's grant in the audit", || async {
        let view = admin(&app, "admin audit <@U0ALICE|alice>").await;
        view.contains("Granted").then_some(view)
    })
    .await;
    assert!(
        by_alice.starts_with("Audit events, newest first (page 1):"),
        "{by_alice}"
    );
    assert!(
        by_alice.contains(&format!("Granted `prod-db` {alice}")),
        "{by_alice}"
    );
    assert!(
        by_alice.contains(&format!("Requested `prod-db` {alice} by u0alice")),
        "{by_alice}"
    );
    assert!(!by_alice.contains(&bob), "{by_alice}");
    // Newest first: the grant is listed before the request.
    assert!(by_alice.find("Granted").unwrap() < by_alice.find("Requested").unwrap());

    let two_key = admin(&app, "admin audit two-key 1h").await;
    assert!(
        two_key.contains(&bob) && !two_key.contains(&alice),
        "{two_key}"
    );
    assert_eq!(
        admin(&app, "admin audit two-key 1h 2").await,
        "No more matching audit events."
    );
    let refused = app.command_text("U0BOB", "C0OPS", "admin audit").await;
    assert_eq!(refused, "Only jitbot admins can use `/jit admin` commands.");
}
