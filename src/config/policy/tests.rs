//! The policy parser's tests: valid files, and every problem reported
//! with its line and column.
use super::groups::{DEFAULT_SWEEP_INTERVAL, GROUP_KEYS};
use super::reader::closest;
use super::*;
use crate::config::email::EmailSetup;
use crate::domain::duration::HumanDuration;
use crate::domain::policy::{ProviderKind, Subject, SweepMode};

const VALID: &str = r#"
admins = ["U0ADMIN"]

[defaults]
min_duration = "1m"
max_duration = "8h"
default_duration = "1h"
warn_before = "10m"
pending_timeout = "1h"
reason_required = true

[providers.hook]
kind = "webhook"
url = "https://iam.example.internal/jit"
secret_env = "JITBOT_WEBHOOK_SECRET"

[providers.shell]
kind = "exec"
grant = ["/usr/local/bin/grant-role", "{principal}", "{target}"]
revoke = ["/usr/local/bin/revoke-role", "{principal}", "{target}"]
timeout = "30s"

[[groups]]
name = "prod-db"
description = "Read/write on the production database"
provider = "hook"
target = "prod_rw"
approvers = ["U0LEAD", "S0DBAS", "6f1c2e4a-0000-4000-8000-00000000a11d"]
approvals_required = 1
requesters = ["*"]
channel = "C0APPROVALS"
teams_channel = "19:abc@thread.tacv2"
max_duration = "4h"
auto_approve = { requesters = ["U0ONCALL"], max_duration = "30m" }
escalate_after = "15m"
escalate_to = ["U0HEAD"]
sweep = "off"

[identities]
U0LEAD = { hook = "lead_admin" }
"#;

#[test]
fn the_documented_shape_parses() {
    let policy = parse(VALID).unwrap();
    assert_eq!(
        policy.admins,
        vec![Subject::SlackUser(crate::domain::ids::UserId::new(
            "U0ADMIN"
        ))]
    );
    let group = &policy.groups[0];
    assert_eq!(group.name.as_str(), "prod-db");
    assert_eq!(group.limits.max_duration.to_string(), "4h");
    assert_eq!(
        group.limits.min_duration.to_string(),
        "1m",
        "inherited from defaults"
    );
    assert_eq!(group.approvers.len(), 3);
    assert_eq!(
        group
            .auto_approve
            .as_ref()
            .unwrap()
            .max_duration
            .to_string(),
        "30m"
    );
    assert_eq!(
        super::identities::entry(&policy.identities, "U0LEAD").principals["hook"],
        "lead_admin"
    );
    assert!(matches!(
        policy.providers["shell"].kind,
        ProviderKind::Exec { .. }
    ));
}

fn problems(source: &str) -> Vec<String> {
    parse(source)
        .unwrap_err()
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let source = r#"admins = ["U0ADMIN"]
colour = "blue"

[providers.hook]
kind = "webhook"
url = "https://x.example/jit"
secret_env = "S"

[[groups]]
name = "prod-db"
provider = "nope"
target = "t"
approvers = ["U1"]
approvals_required = 2
channel = "C1"
min_duration = "2h"
max_duration = "1h"
aprovers = ["U2"]

[[groups]]
name = "dev"
provider = "hook"
target = "t"
approvers = ["U1"]
channel = "C1"
pending_timeout = "soon"
"#;
    let found = problems(source);
    assert_eq!(
        found,
        vec![
            "2:1: unknown key `colour` in the policy (expected one of: admins, defaults, providers, groups, identities)",
            "11:12: group `prod-db` uses unknown provider `nope` (declared: hook)",
            "14:22: group `prod-db`: approvals_required is 2 but only 1 approver(s) are listed",
            "17:16: group `prod-db`: max_duration (1h) is below min_duration (2h)",
            "18:1: unknown key `aprovers` in group `prod-db` (did you mean `approvers`?)",
            "26:19: `pending_timeout` in group `dev`: `soon` is not a duration (write it like 90s, 30m, 2h, 1h30m or 1d)",
        ],
        "{found:#?}"
    );
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let found = problems("admins = [\"U1\"\n[defaults]\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("2:1: not valid TOML"), "{found:?}");
}

#[test]
fn unknown_provider_kind_and_bad_placeholders() {
    let found = problems(
        r#"[providers.ad]
kind = "ldap"
[providers.x]
kind = "exec"
grant = ["/bin/g", "{principle}"]
revoke = ["/bin/r"]
"#,
    );
    assert!(
        found.iter().any(|p| p.starts_with(
            "2:8: unknown provider kind `ldap` in [providers.ad] (this build supports: webhook, exec, postgres, slack_usergroup, mysql, kubernetes, aws_identity_center, okta, entra)"
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("5:20: unknown placeholder `{principle}`")),
        "{found:?}"
    );
}

#[test]
fn real_providers_parse_with_their_keys() {
    let policy = parse(
        r#"[providers.pg]
kind = "postgres"
url_env = "JITBOT_PG_URL"
principal = "{email_local}"
terminate_sessions = true
[providers.ug]
kind = "slack_usergroup"
[providers.hook]
kind = "webhook"
url = "https://iam.example/jit"
secret_env = "S"
holders_url = "https://iam.example/holders"
[[groups]]
name = "prod-db"
provider = "pg"
target = "prod_rw"
approvers = ["U1"]
channel = "C1"
sweep = "enforce"
sweep_interval = "5m"
standing = ["svc_app"]
[[groups]]
name = "oncall"
provider = "ug"
target = "S0ONCALL"
approvers = ["U1"]
channel = "C1"
sweep = "report"
"#,
    )
    .unwrap();
    assert_eq!(
        policy.providers["pg"].kind,
        ProviderKind::Postgres {
            url_env: "JITBOT_PG_URL".into(),
            terminate_sessions: true
        }
    );
    assert_eq!(
        policy.providers["ug"].kind,
        ProviderKind::SlackUsergroup {
            token_env: "SLACK_BOT_TOKEN".into()
        }
    );
    assert_eq!(policy.providers["ug"].principal, "{slack_user_id}");
    let db = &policy.groups[0];
    assert_eq!(db.sweep, SweepMode::Enforce);
    assert_eq!(db.sweep_interval, HumanDuration::from_secs(300));
    assert_eq!(db.standing, vec!["svc_app".to_string()]);
    assert_eq!(policy.groups[1].sweep_interval, DEFAULT_SWEEP_INTERVAL);
}

#[test]
fn a_sweep_needs_a_provider_that_lists_holders() {
    let found = problems(
        r#"[providers.hook]
kind = "webhook"
url = "https://iam.example/jit"
secret_env = "S"
[providers.pg]
kind = "postgres"
[[groups]]
name = "g"
provider = "hook"
target = "t"
approvers = ["U1"]
channel = "C1"
sweep = "enforce"
"#,
    );
    assert_eq!(
        found,
        vec![
            "5:12: [providers.pg] is missing `url_env`",
            "13:9: group `g`: sweep = \"enforce\" needs a provider that lists holders, and provider `hook` cannot (give it a `holders_url`)",
        ],
        "{found:#?}"
    );
}

#[test]
fn approver_entries_must_be_ids() {
    let found = problems(
        r##"[providers.h]
kind = "webhook"
url = "https://x"
secret_env = "S"
[[groups]]
name = "g"
provider = "h"
target = "t"
approvers = ["bob", "*"]
channel = "#approvals"
"##,
    );
    assert!(
        found.iter().any(|p| p.contains("`bob` in `approvers`")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("\"*\" is not allowed")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("must be a Slack channel id")),
        "{found:?}"
    );
}

#[test]
fn anyone_is_refused_wherever_people_decide_or_administer() {
    // `"*"` may only say who may ask; in every list of who decides or
    // administers it would let anyone approve, break the glass or run the
    // admin commands.
    let source = format!(
        "admins = [\"U0ADMIN\", \"*\"]\n{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nrequesters = [\"*\"]\nescalate_after = \"15m\"\nescalate_to = [\"*\"]\n"
    );
    assert_eq!(
        problems(&source),
        vec![
            "1:10: the policy: \"*\" is not allowed in `admins`; name the admins (chat user ids or Slack user groups)",
            "14:15: group `g`: \"*\" is not allowed in `escalate_to`; name the people or user groups who decide escalated requests",
        ]
    );
    let steps = format!(
        "{ON_CALL_GROUP}steps = [{{ approvers = [\"U0LEAD\"] }}, {{ approvers = [\"*\"] }}]\n"
    );
    assert_eq!(
        problems(&steps),
        vec!["10:52: step 2 of group `g`: \"*\" is not allowed in `approvers`; name the people or user groups who approve"]
    );
    // Who may ask, and who is auto-approved, may be anyone.
    let open = format!(
        "{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nrequesters = [\"*\"]\nauto_approve = {{ requesters = [\"*\"], hours = \"Mon-Fri 09:00-18:00 UTC\" }}\n"
    );
    let policy = parse(&open).unwrap();
    assert_eq!(policy.groups[0].requesters, vec![Subject::Anyone]);
}

#[test]
fn edit_distance_suggestions() {
    assert_eq!(closest("aprovers", GROUP_KEYS), Some("approvers"));
    assert_eq!(closest("zzzzzz", GROUP_KEYS), None);
}

const EMAIL_GROUPS: &str = r#"
[providers.hook]
kind = "webhook"
url = "https://iam.example.internal/jit"
secret_env = "JITBOT_WEBHOOK_SECRET"

[[groups]]
name = "records"
provider = "hook"
target = "records_ro"
approvers = ["Owner@Example.com"]

[[groups]]
name = "prod-db"
provider = "hook"
target = "prod_rw"
approvers = ["U0LEAD", "lead@"]
channel = "C0APPROVALS"
escalate_after = "15m"
escalate_to = ["head@example.com"]
"#;

fn problems_with(source: &str, email: EmailSetup) -> Vec<String> {
    match parse_with(source, email) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn email_approvers_are_addresses_and_need_email_set_up() {
    // Everything set: only the malformed address is refused.
    assert_eq!(
        problems_with(EMAIL_GROUPS, EmailSetup::READY),
        vec!["17:24: in `approvers` of group `prod-db`: `lead@` is not an email address (expected something like lead@example.com)"]
    );
    let without_smtp = EmailSetup {
        smtp_url: false,
        ..EmailSetup::READY
    };
    let found = problems_with(EMAIL_GROUPS, without_smtp);
    assert!(
        found.contains(&"11:14: `owner@example.com` in `approvers` of group `records` is an email approver, but JITBOT_SMTP_URL is not set (email approvers need JITBOT_SMTP_URL)".to_string()),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("20:16: `head@example.com` in `escalate_to`")),
        "{found:#?}"
    );
    let without_public_url = EmailSetup {
        public_url: false,
        token_key: false,
        ..EmailSetup::READY
    };
    let found = problems_with(EMAIL_GROUPS, without_public_url);
    assert!(
        found.iter().any(|p| p.contains("but JITBOT_PUBLIC_URL is not set (email approvers need JITBOT_PUBLIC_URL, JITBOT_EMAIL_TOKEN_KEY)")),
        "{found:#?}"
    );
}

#[test]
fn a_group_decided_only_by_email_needs_no_channel_and_people_elsewhere_need_chat_ids() {
    let policy = parse(&EMAIL_GROUPS.replace("\"lead@\"", "\"lead@example.com\"")).unwrap();
    let records = &policy.groups[0];
    assert_eq!(records.channel, None);
    assert_eq!(
        records
            .email_approvers()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["owner@example.com"]
    );
    assert!(records.decided_by_email());
    let found = problems(
        r#"admins = ["admin@example.com"]
"#,
    );
    assert_eq!(
        found,
        vec!["1:11: `admin@example.com` in `admins` of the policy: email addresses may only approve (in `approvers` or `escalate_to`); name a chat user here"]
    );
}

#[test]
fn the_idp_cloud_database_and_cluster_providers_parse_with_their_keys() {
    let policy = parse(
        r#"
[providers.db]
kind = "mysql"
url_env = "DB_URL"
kill_sessions = true

[providers.k8s]
kind = "kubernetes"
subject_kind = "Group"

[providers.aws]
kind = "aws_identity_center"
instance_arn = "arn:aws:sso:::instance/ssoins-1"
identity_store_id = "d-1234567890"

[providers.okta]
kind = "okta"
org_url = "https://example.okta.com"
api_token_env = "OKTA_TOKEN"

[providers.entra]
kind = "entra"
tenant_id = "contoso.onmicrosoft.com"
client_id = "app"
client_secret_env = "ENTRA_SECRET"
"#,
    )
    .unwrap();
    assert_eq!(
        policy.providers["db"].kind,
        ProviderKind::Mysql {
            url_env: "DB_URL".into(),
            default_role: false,
            kill_sessions: true
        }
    );
    assert_eq!(policy.providers["okta"].principal, "{email}");
    assert_eq!(
        policy.providers["entra"].kind,
        ProviderKind::Entra {
            client_id: "app".into(),
            client_secret_env: "ENTRA_SECRET".into(),
            graph_url: "https://graph.microsoft.com/v1.0".into(),
            token_url:
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token".into(),
        }
    );
    assert!(policy.providers.values().all(|p| p.kind.lists_holders()));

    let found = problems(
        r#"[providers.k8s]
kind = "kubernetes"
subject_kind = "ServiceAccount"

[providers.okta]
kind = "okta"
org_url = "example.okta.com"
api_token_env = "T"
colour = "blue"

[providers.aws]
kind = "aws_identity_center"
instance_arn = "ssoins-1"
"#,
    );
    assert!(
        found.iter().any(|p| p.starts_with("3:16: `subject_kind`")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("7:11: `org_url`")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("unknown key `colour`")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("missing `identity_store_id`") || p.contains("identity_store_id")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("13:16: `instance_arn`")),
        "{found:#?}"
    );
}

#[test]
fn idle_release_and_sweep_unused_are_checked_where_they_are_written() {
    let found = problems(
        r#"[defaults]
activity_interval = "1m"
[providers.hook]
kind = "webhook"
url = "https://x"
secret_env = "S"
holders_url = "https://x/holders"
[providers.shell]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]
[providers.chat_groups]
kind = "slack_usergroup"
[[groups]]
name = "short"
provider = "hook"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
idle_release = "90s"
[[groups]]
name = "long"
provider = "shell"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
max_duration = "1h"
idle_release = "2h"
[[groups]]
name = "untold"
provider = "chat_groups"
target = "S0TEAM"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep = "report"
sweep_unused = "30d"
[[groups]]
name = "unswept"
provider = "pg"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
sweep_unused = "30d"
[providers.pg]
kind = "postgres"
url_env = "PG"
"#,
    );
    assert_eq!(
        found,
        vec![
            "20:16: group `short`: idle_release (1m30s) must be at least twice activity_interval (1m): use is sampled every activity_interval",
            "20:16: group `short`: idle_release needs a provider that can tell whether access is used, and provider `hook` (webhook) cannot: give it an `activity_url`",
            "28:16: group `long`: idle_release (2h) is longer than the group's max_duration (1h), so it could never apply",
            "28:16: group `long`: idle_release needs a provider that can tell whether access is used, and provider `shell` (exec) cannot: give it an `activity` command",
            "36:16: group `untold`: sweep_unused needs a provider that can tell whether access is used, and provider `chat_groups` (slack_usergroup) cannot: Slack does not say when a user group's membership is used",
            "43:16: group `unswept`: sweep_unused needs sweep = \"report\" or \"enforce\"",
        ],
        "{found:#?}"
    );
}

#[test]
fn activity_keys_parse_and_are_inherited() {
    let policy = parse(
        r#"[defaults]
activity_interval = "2s"
[providers.hook]
kind = "webhook"
url = "https://x"
secret_env = "S"
holders_url = "https://x/holders"
activity_url = "https://x/activity"
[providers.shell]
kind = "exec"
grant = ["/bin/true"]
revoke = ["/bin/true"]
activity = ["/usr/local/bin/last-login", "{principal}", "{target}"]
[[groups]]
name = "a"
provider = "hook"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
idle_release = "4s"
sweep = "enforce"
sweep_unused = "30d"
[[groups]]
name = "b"
provider = "shell"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
activity_interval = "1m"
idle_release = "30m"
"#,
    )
    .unwrap();
    let (a, b) = (&policy.groups[0], &policy.groups[1]);
    assert_eq!(a.limits.activity_interval.to_string(), "2s");
    assert_eq!(a.idle_release.map(|d| d.to_string()).as_deref(), Some("4s"));
    assert_eq!(
        a.sweep_unused.map(|d| d.to_string()).as_deref(),
        Some("30d")
    );
    assert_eq!(b.limits.activity_interval.to_string(), "1m");
    assert!(a.watches_activity() && b.watches_activity());
    assert!(!parse(VALID).unwrap().groups[0].watches_activity());
    assert!(policy.providers["shell"]
        .kind
        .cannot_tell_activity()
        .is_none());
}

#[test]
fn a_reason_pattern_must_compile_and_must_not_match_an_empty_reason() {
    let group = |pattern: &str| {
        format!(
            r#"[providers.h]
kind = "webhook"
url = "https://x"
secret_env = "S"
[[groups]]
name = "g"
provider = "h"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
reason_pattern = '{pattern}'
"#
        )
    };
    let broken = problems(&group("(INC|CHG-[0-9]+"));
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0].starts_with(
            "11:18: `reason_pattern` in group `g`: it is not a valid regular expression"
        ),
        "{broken:?}"
    );
    assert_eq!(
        problems(&group("[A-Z]*")),
        vec!["11:18: `reason_pattern` in group `g`: it matches an empty reason, so it would let any reason through"]
    );
    let policy = parse(&group("(INC|CHG)-[0-9]+")).unwrap();
    let g = &policy.groups[0];
    assert_eq!(
        g.ticket_in("rolling back CHG-42 now").as_deref(),
        Some("CHG-42")
    );
    assert_eq!(g.ticket_in("no ticket"), None);
    let refused = g
        .check_request(Some(HumanDuration::parse("1h").unwrap()), "fixing it")
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "The reason for `g` must name a ticket matching `(INC|CHG)-[0-9]+`; nothing was filed. Add the ticket id to the reason and try again."
    );
    assert!(g
        .check_request(Some(HumanDuration::parse("1h").unwrap()), "INC-7 fix")
        .is_ok());
}

#[test]
fn auto_approve_hours_are_checked_and_any_condition_may_stand_alone() {
    let group = |rule: &str| {
        format!(
            r#"[providers.h]
kind = "webhook"
url = "https://x"
secret_env = "S"
[[groups]]
name = "g"
provider = "h"
target = "t"
approvers = ["U0LEAD"]
channel = "C0APPROVALS"
auto_approve = {rule}
"#
        )
    };
    let policy = parse(&group(r#"{ hours = "Mon-Fri 09:00-18:00 Europe/Berlin" }"#)).unwrap();
    let rule = policy.groups[0].auto_approve.as_ref().unwrap();
    assert!(rule.requesters.is_none());
    assert_eq!(
        rule.hours.as_ref().unwrap().as_str(),
        "Mon-Fri 09:00-18:00 Europe/Berlin"
    );
    assert_eq!(
        problems(&group(r#"{ hours = "Mon-Fri 09:00-18:00 Europe/Berlinn" }"#)),
        vec!["11:26: `hours` in auto_approve of group `g`: `Europe/Berlinn` is not an IANA time zone (like Europe/Berlin or America/New_York)"]
    );
    assert_eq!(
        problems(&group(r#"{ max_duration = "30m" }"#)),
        vec!["11:16: auto_approve of group `g` needs a condition: `requesters`, `on_call`, `hours`, or several"]
    );
}

const ON_CALL_GROUP: &str = r#"[providers.h]
kind = "webhook"
url = "https://x"
secret_env = "S"
[[groups]]
name = "g"
provider = "h"
target = "t"
channel = "C0APPROVALS"
"#;

#[test]
fn on_call_schedules_auto_approve_and_approve_but_request_nothing() {
    let policy = parse(&format!(
        "{ON_CALL_GROUP}approvers = [\"pagerduty:PAPPROVE\", \"U0LEAD\"]\nauto_approve = {{ on_call = [\"pagerduty:PABC\", \"opsgenie:Platform Team\"] }}\n"
    ))
    .unwrap();
    let group = &policy.groups[0];
    let on_call: Vec<String> = group
        .auto_approve
        .as_ref()
        .unwrap()
        .on_call
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(on_call, ["pagerduty:PABC", "opsgenie:Platform Team"]);
    assert_eq!(
        group.approvers[0]
            .schedule()
            .map(|s| s.to_string())
            .as_deref(),
        Some("pagerduty:PAPPROVE")
    );
    // Only approvers may be a schedule; a bad or empty one is named.
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nrequesters = [\"opsgenie:Ops\"]\n")),
        vec!["11:15: `opsgenie:Ops` in `requesters` of group `g`: on-call schedules may only approve (in `approvers`); to auto-approve whoever is on call, use auto_approve.on_call"]
    );
    assert_eq!(
        problems(&format!(
            "{ON_CALL_GROUP}approvers = [\"U0LEAD\", \"pagerduty:\"]\n"
        )),
        vec![
            "10:24: in `approvers` of group `g`: `pagerduty:` names no schedule after `pagerduty:`"
        ]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nauto_approve = {{ on_call = [] }}\n")),
        vec!["11:28: `on_call` in auto_approve of group `g` is empty; name schedules like \"pagerduty:PABC123\" or \"opsgenie:Platform\""]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nauto_approve = {{ on_call = [\"victorops:x\"] }}\n")),
        vec!["11:29: in `on_call` of auto_approve of group `g`: `victorops:x` is not an on-call schedule (expected pagerduty:<schedule id> or opsgenie:<schedule name>)"]
    );
}

#[test]
fn identities_may_give_a_users_email_for_on_call_matching() {
    let policy = parse(&format!(
        "{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\n[identities]\nU0PAGER = {{ email = \"Pager@Corp.Example\" }}\n"
    ))
    .unwrap();
    assert_eq!(
        policy
            .linked_email(&crate::domain::ids::Actor::new(
                crate::domain::ids::Platform::Slack,
                crate::domain::ids::UserId::new("U0PAGER"),
                "",
            ))
            .map(|e| e.to_string()),
        Some("pager@corp.example".to_string())
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\n[identities]\nU0PAGER = {{ email = \"pager@\" }}\n")),
        vec!["12:13: identities.U0PAGER.email: `pager@` is not an email address (expected something like lead@example.com)"]
    );
}

#[test]
fn break_glass_names_its_people_and_stays_within_the_group() {
    let policy = parse(&format!(
        "{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nbreak_glass = {{ requesters = [\"U0ONCALL\"], max_duration = \"1h\" }}\n"
    ))
    .unwrap();
    let rule = policy.groups[0].break_glass.as_ref().unwrap();
    assert_eq!(rule.max_duration.to_string(), "1h");
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nbreak_glass = {{ max_duration = \"1h\" }}\n")),
        vec!["11:15: break_glass of group `g` needs `requesters`: the people who may take access without approval"]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nbreak_glass = {{ requesters = [\"*\"] }}\n")),
        vec!["11:30: break_glass of group `g`: \"*\" is not allowed in `requesters`; name the people who may break the glass"]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nbreak_glass = {{ requesters = [\"U0ONCALL\"], max_duration = \"1d\" }}\n")),
        vec!["11:59: break_glass of group `g`: max_duration (1d) is outside the group's min_duration..max_duration (1m..8h)"]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nbreak_glass = {{ requesters = [\"U0ONCALL\"], max = \"1h\" }}\n")),
        vec!["11:44: unknown key `max` in break_glass of group `g` (expected one of: requesters, max_duration)"]
    );
}

#[test]
fn steps_make_a_chain_in_place_of_approvers() {
    let policy = parse(&format!(
        "{ON_CALL_GROUP}steps = [{{ approvers = [\"U0LEAD\"] }}, {{ approvers = [\"U0SEC1\", \"U0SEC2\"], approvals_required = 2 }}]\n"
    ))
    .unwrap();
    let group = &policy.groups[0];
    assert_eq!(group.step_requirements(), [1, 2]);
    assert_eq!(group.approvers.len(), 3, "every step's approvers");
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\nsteps = [{{ approvers = [\"U0SEC1\"] }}]\n")),
        vec!["10:1: group `g`: `steps` replaces `approvers`; give each step its approvers (and approvals_required)"]
    );
    assert_eq!(
        problems(&format!(
            "{ON_CALL_GROUP}steps = [{{ approvers = [\"U0SEC1\"], approvals_required = 2 }}]\n"
        )),
        vec![
            "10:57: step 1 of group `g`: approvals_required is 2 but only 1 approver(s) are listed"
        ]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}steps = [{{ approvers = [\"U0LEAD\"] }}, {{ approver = [\"U0SEC1\"] }}]\n")),
        vec![
            "10:9: step 2 of group `g` has no `approvers`, so nobody could meet it",
            "10:40: unknown key `approver` in step 2 of group `g` (did you mean `approvers`?)",
        ]
    );
    assert_eq!(
        problems(&format!("{ON_CALL_GROUP}steps = [\"U0LEAD\"]\n")),
        vec!["10:9: `steps` in group `g` must be a list of tables like [{ approvers = [\"U0LEAD\"] }, { approvers = [\"S0SECURITY\"], approvals_required = 1 }]"]
    );
}

#[test]
fn identities_link_one_persons_ids_across_platforms() {
    let policy = parse(&format!(
        "{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\n[identities]\nU0ALICE = {{ teams = \"6F1C2E4A-0000-4000-8000-00000000A11C\", email = \"Alice@Example.com\", github = \"Alice-GH\", h = \"alice_admin\" }}\n"
    ))
    .unwrap();
    let entry = super::identities::entry(&policy.identities, "U0ALICE");
    use crate::domain::identity::KnownId;
    use crate::domain::ids::{Actor, Platform, UserId};
    assert!(entry.ids.contains(&KnownId::Teams(UserId::new(
        "6f1c2e4a-0000-4000-8000-00000000a11c"
    ))));
    assert!(entry.ids.contains(&KnownId::GitHub("alice-gh".into())));
    assert_eq!(entry.principals["h"], "alice_admin");
    // The Teams account is the same person: the override applies to it too.
    let on_teams = Actor::new(
        Platform::Teams,
        UserId::new("6f1c2e4a-0000-4000-8000-00000000a11c"),
        "",
    );
    assert_eq!(
        policy.principal_override(&on_teams, "h"),
        Some("alice_admin")
    );
    assert_eq!(
        policy.linked_email(&on_teams).map(|e| e.to_string()),
        Some("alice@example.com".into())
    );
}

#[test]
fn identity_links_are_checked_and_never_shared_by_two_entries() {
    let found = problems(&format!(
        "{ON_CALL_GROUP}approvers = [\"U0LEAD\"]\n[identities]\nU0ALICE = {{ email = \"alice@example.com\", teams = \"not-a-guid\" }}\nU0ALICE2 = {{ email = \"ALICE@example.com\" }}\nU0BOB = {{ slack = \"U0OTHER\" }}\nlead = {{ h = \"x\" }}\n"
    ));
    assert_eq!(
        found,
        vec![
            "12:42: identities.U0ALICE.teams must be an AAD object id like 6f1c2e4a-0000-4000-8000-00000000a11d, not `not-a-guid`",
            "13:1: identities.U0ALICE2 links email:alice@example.com, which identities.U0ALICE links already; one id is one person, so give it one entry",
            "14:11: identities.U0BOB.slack links a second slack account to U0BOB; one entry is one person",
            "15:1: identities.lead: an entry is keyed by a chat user id (a Slack U…/W… id or a Teams AAD object id)",
        ],
        "{found:#?}"
    );
}

#[test]
fn link_keys_cannot_name_a_provider() {
    let found = problems(
        "[providers.email]\nkind = \"exec\"\ngrant = [\"/bin/true\"]\nrevoke = [\"/bin/true\"]\n",
    );
    assert_eq!(
        found,
        vec!["1:12: [providers.email]: `email` cannot name a provider: [identities] entries use it to link a person's ids (slack, teams, email, github); pick another name"],
        "{found:#?}"
    );
}
