//! The request lifecycle's rules: who may decide, how approvals count,
//! when time runs out.
use super::*;
use crate::domain::ids::UserId;

fn actor(id: &str) -> Actor {
    Actor::new(Platform::Slack, UserId::new(id), id)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn pending() -> AccessRequest {
    AccessRequest::file(
        RequestId::parse("R-7K3Q9X").unwrap(),
        actor("U0ALICE"),
        GroupName::parse("prod-db").unwrap(),
        HumanDuration::parse("2h").unwrap(),
        "fixing INC-123".into(),
        None,
        false,
        now(),
    )
    .0
}

#[test]
fn one_of_one_approval_approves() {
    let (next, happened) = pending().approve(&actor("U0LEAD"), true, 1, now()).unwrap();
    assert!(matches!(
        next.state,
        RequestState::Approved { auto: false, .. }
    ));
    assert_eq!(
        happened,
        Happened::Approved {
            by: Some(actor("U0LEAD"))
        }
    );
}

#[test]
fn two_of_m_needs_two_different_approvers() {
    let (once, happened) = pending().approve(&actor("U0LEAD"), true, 2, now()).unwrap();
    assert_eq!(once.state, RequestState::Pending);
    assert!(matches!(
        happened,
        Happened::ApprovalRecorded {
            count: 1,
            required: 2,
            ..
        }
    ));
    assert_eq!(
        once.approve(&actor("U0LEAD"), true, 2, now()).unwrap_err(),
        Refusal::AlreadyApproved(once.id.clone())
    );
    let (twice, _) = once.approve(&actor("U0DBA"), true, 2, now()).unwrap();
    assert!(matches!(twice.state, RequestState::Approved { .. }));
    assert_eq!(twice.approvals.len(), 2);
}

#[test]
fn requester_and_non_approvers_cannot_decide() {
    let request = pending();
    assert!(matches!(
        request.approve(&actor("U0ALICE"), true, 1, now()),
        Err(Refusal::OwnRequest(_))
    ));
    assert!(matches!(
        request.deny(&actor("U0ALICE"), true, "no", now()),
        Err(Refusal::DenyOwnRequest(_))
    ));
    assert!(matches!(
        request.approve(&actor("U0MALLORY"), false, 1, now()),
        Err(Refusal::NotAnApprover { .. })
    ));
}

#[test]
fn decided_requests_do_not_change() {
    let (approved, _) = pending().approve(&actor("U0LEAD"), true, 1, now()).unwrap();
    let refusal = approved
        .approve(&actor("U0DBA"), true, 1, now())
        .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "R-7K3Q9X is already approved; nothing changed."
    );
    assert!(approved.deny(&actor("U0DBA"), true, "late", now()).is_err());
    assert!(approved.cancel(&actor("U0ALICE"), now()).is_err());
}

#[test]
fn deny_needs_a_reason() {
    assert_eq!(
        pending()
            .deny(&actor("U0LEAD"), true, "  ", now())
            .unwrap_err(),
        Refusal::DenyReasonMissing
    );
    let (denied, _) = pending()
        .deny(&actor("U0LEAD"), true, "not now", now())
        .unwrap();
    assert!(matches!(denied.state, RequestState::Denied { ref reason, .. } if reason == "not now"));
}

#[test]
fn an_overlong_denial_is_refused_whatever_way_it_came() {
    assert_eq!(
        pending()
            .deny(&actor("U0LEAD"), true, &"x".repeat(3000), now())
            .unwrap_err(),
        Refusal::ReasonTooLong(500)
    );
}

#[test]
fn only_the_requester_cancels() {
    assert!(matches!(
        pending().cancel(&actor("U0LEAD"), now()),
        Err(Refusal::NotYourRequest(_))
    ));
    let (cancelled, _) = pending().cancel(&actor("U0ALICE"), now()).unwrap();
    assert_eq!(cancelled.state.label(), "cancelled");
}

#[test]
fn only_active_grants_end_early_and_only_by_their_requester_or_an_admin() {
    let request = pending();
    assert!(matches!(
        request.check_end(&actor("U0ALICE"), None),
        Err(Refusal::NotActive {
            state: "pending",
            ..
        })
    ));
    assert!(request.time_out(now()).is_some());
    let (approved, _) = request.approve(&actor("U0LEAD"), true, 1, now()).unwrap();
    assert!(
        approved.time_out(now()).is_none(),
        "decided requests do not time out"
    );
    let (active, _) = approved.activate(now(), "alice").unwrap();
    assert_eq!(active.check_end(&actor("U0ALICE"), None), Ok(()));
    assert!(matches!(
        active.check_end(&actor("U0BOB"), None),
        Err(Refusal::NotYourGrant(_))
    ));
    assert_eq!(active.check_end(&actor("U0ADMIN"), Some("left")), Ok(()));
    assert_eq!(
        active.check_end(&actor("U0ADMIN"), Some(&"x".repeat(501))),
        Err(Refusal::ReasonTooLong(500))
    );
    let (released, happened) = active.end_early(&actor("U0ALICE"), None, now()).unwrap();
    assert_eq!(
        (released.state.label(), happened),
        ("released", Happened::Released)
    );
    let (revoked, _) = active
        .end_early(&actor("U0ADMIN"), Some("left the team"), now())
        .unwrap();
    assert!(
        matches!(revoked.state, RequestState::Revoked { ref reason, .. } if reason == "left the team")
    );
    assert!(released.end_early(&actor("U0ALICE"), None, now()).is_none());
}

#[test]
fn an_extension_moves_the_end_once_and_counts_in_the_total() {
    let (approved, _) = pending().approve(&actor("U0LEAD"), true, 1, now()).unwrap();
    let (active, _) = approved.activate(now(), "alice").unwrap();
    let end = active.expires_at().unwrap();
    let extension = AccessRequest::file(
        RequestId::parse("R-EXT000").unwrap(),
        actor("U0ALICE"),
        GroupName::parse("prod-db").unwrap(),
        HumanDuration::parse("30m").unwrap(),
        "more time".into(),
        None,
        false,
        now(),
    )
    .0
    .extending(&active);
    let (extended, happened) = active.extend_by(&extension, now()).unwrap();
    assert_eq!(
        extended.expires_at(),
        Some(end + chrono::Duration::minutes(30))
    );
    assert!(matches!(happened, Happened::GrantExtended { .. }));
    assert_eq!(extended.total_duration().to_string(), "2h30m");
    assert!(
        extended.extend_by(&extension, now()).is_none(),
        "applied once"
    );
    assert!(
        extension.mark_applied(end, now()).is_none(),
        "only approved extensions are applied"
    );
}

#[test]
fn expiry_counts_from_the_approval_however_late_the_activation() {
    let (approved, _) = pending().approve(&actor("U0LEAD"), true, 1, now()).unwrap();
    let later = now() + chrono::Duration::minutes(30);
    let (active, _) = approved.activate(later, "alice").unwrap();
    assert_eq!(
        active.expires_at(),
        Some(now() + chrono::Duration::hours(2))
    );
    assert!(
        active.activate(later, "alice").is_none(),
        "activation happens once"
    );
    assert!(active.expire(later).is_none(), "not due yet");
    let end = now() + chrono::Duration::hours(2);
    assert!(active
        .expire(end - chrono::Duration::milliseconds(1))
        .is_none());
    assert!(active.expire(end).is_some());
}
