//! The `slack_usergroup` provider against the fake Slack API: membership
//! granted and revoked by rewriting the whole member list, safely when two
//! grants race on one group, and holders for the sweep.

use crate::helpers::{eventually, TestApp};

const POLICY: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1s"

[providers.oncall]
kind = "slack_usergroup"
timeout = "5s"

[[groups]]
name = "pager"
description = "The @oncall Slack user group"
provider = "oncall"
target = "S0ONCALL"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = { requesters = ["U0ALICE", "U0BOB"], max_duration = "30m" }
sweep = "{SWEEP}"
sweep_interval = "1h"
"#;

fn sorted(mut members: Vec<String>) -> Vec<String> {
    members.sort();
    members
}

#[tokio::test]
async fn racing_grants_to_one_user_group_both_land_and_both_end() {
    let app = TestApp::spawn_with(&POLICY.replace("{SWEEP}", "off")).await;
    // Two auto-approved requests activate at the same moment; the fake
    // Slack is slow to list members, so unserialised updates would overlap
    // and the second write would drop the first user.
    let (alice, bob) = tokio::join!(
        app.request("U0ALICE", "request pager 10m taking the pager"),
        app.request("U0BOB", "request pager 10m second pair of hands"),
    );
    assert_ne!(alice, bob);
    app.until_active(&alice).await;
    app.until_active(&bob).await;
    assert_eq!(
        sorted(app.user_group("S0ONCALL")),
        ["U0ALICE", "U0BOB", "U0LEAD"],
        "both granted, neither write lost"
    );
    let updates = app.slack_calls("usergroups.users.update").await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(updates.iter().all(|u| u["usergroup"] == "S0ONCALL"));
    app.advance_past_end(&alice).await;
    app.advance_past_end(&bob).await;

    eventually(
        "both removed at expiry, the standing member kept",
        || async { (app.user_group("S0ONCALL") == ["U0LEAD"]).then_some(()) },
    )
    .await;
    eventually("the expiry DMs", || async {
        let alice_told = app
            .dms_to("U0ALICE")
            .await
            .iter()
            .any(|d| d.contains("expired"));
        let bob_told = app
            .dms_to("U0BOB")
            .await
            .iter()
            .any(|d| d.contains("expired"));
        (alice_told && bob_told).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_report_sweep_names_members_without_a_grant_and_changes_nothing() {
    let app = TestApp::spawn_with(&POLICY.replace("{SWEEP}", "report")).await;
    // U0LEAD is in the group without a grant: standing access.
    let notice = app
        .wait_for_notice(
            "C0APPROVALS",
            "the sweep report",
            "Standing access to `pager`",
        )
        .await;
    assert!(
        notice.contains("1 holder without an active grant: `U0LEAD`"),
        "{notice}"
    );
    assert!(notice.contains("Report only"), "{notice}");
    assert_eq!(app.user_group("S0ONCALL"), ["U0LEAD"]);
    assert!(app.slack_calls("usergroups.users.update").await.is_empty());
    let ran = app.audit_details("SweepRan").await;
    assert_eq!(ran.len(), 1, "one sweep per interval: {ran:?}");
    assert!(ran[0].contains("without a grant: [U0LEAD]"), "{ran:?}");
}
