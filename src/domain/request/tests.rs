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
        request.deny(
            &Decider::from_ids(&actor("U0ALICE"), true, &request),
            "no",
            now()
        ),
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
    assert!(approved
        .deny(
            &Decider::from_ids(&actor("U0DBA"), true, &approved),
            "late",
            now()
        )
        .is_err());
    assert!(approved.cancel(&actor("U0ALICE"), now()).is_err());
}

#[test]
fn deny_needs_a_reason() {
    assert_eq!(
        pending()
            .deny(
                &Decider::from_ids(&actor("U0LEAD"), true, &pending()),
                "  ",
                now()
            )
            .unwrap_err(),
        Refusal::DenyReasonMissing
    );
    let (denied, _) = pending()
        .deny(
            &Decider::from_ids(&actor("U0LEAD"), true, &pending()),
            "not now",
            now(),
        )
        .unwrap();
    assert!(matches!(denied.state, RequestState::Denied { ref reason, .. } if reason == "not now"));
}

#[test]
fn an_overlong_denial_is_refused_whatever_way_it_came() {
    assert_eq!(
        pending()
            .deny(
                &Decider::from_ids(&actor("U0LEAD"), true, &pending()),
                &"x".repeat(3000),
                now()
            )
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
    let (active, _) = approved
        .activate(now(), "alice", Default::default())
        .unwrap();
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
    let (active, _) = approved
        .activate(now(), "alice", Default::default())
        .unwrap();
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
    let (active, _) = approved
        .activate(later, "alice", Default::default())
        .unwrap();
    assert_eq!(
        active.expires_at(),
        Some(now() + chrono::Duration::hours(2))
    );
    assert!(
        active
            .activate(later, "alice", Default::default())
            .is_none(),
        "activation happens once"
    );
    assert!(active.expire(later).is_none(), "not due yet");
    let end = now() + chrono::Duration::hours(2);
    assert!(active
        .expire(end - chrono::Duration::milliseconds(1))
        .is_none());
    assert!(active.expire(end).is_some());
}

#[test]
fn a_chain_asks_its_steps_in_order_and_a_person_counts_in_one_step() {
    let steps = [1, 2];
    let (after_lead, happened) = pending()
        .approve_in_steps(
            &Decider::from_ids(&actor("U0LEAD"), true, &pending()),
            &steps,
            now(),
        )
        .unwrap();
    assert_eq!(
        happened,
        Happened::StepMet {
            by: actor("U0LEAD"),
            step: 1,
            of: 2
        }
    );
    assert_eq!(after_lead.state, RequestState::Pending);
    assert_eq!(after_lead.current_step(&steps), 1);
    assert_eq!(after_lead.step_asked_at(&steps), now());
    assert_eq!(
        after_lead
            .approve_in_steps(
                &Decider::from_ids(&actor("U0LEAD"), true, &after_lead),
                &steps,
                now()
            )
            .unwrap_err(),
        Refusal::AlreadyApproved(after_lead.id.clone()),
        "the lead met step 1 and cannot also count in step 2"
    );
    let (one_of_two, happened) = after_lead
        .approve_in_steps(
            &Decider::from_ids(&actor("U0SEC1"), true, &after_lead),
            &steps,
            now(),
        )
        .unwrap();
    assert!(matches!(
        happened,
        Happened::ApprovalRecorded {
            count: 1,
            required: 2,
            ..
        }
    ));
    let (approved, happened) = one_of_two
        .approve_in_steps(
            &Decider::from_ids(&actor("U0SEC2"), true, &one_of_two),
            &steps,
            now(),
        )
        .unwrap();
    assert!(matches!(happened, Happened::Approved { .. }));
    assert!(matches!(approved.state, RequestState::Approved { .. }));
    let by_step: Vec<usize> = approved.approvals.iter().map(|a| a.step).collect();
    assert_eq!(by_step, [0, 1, 1]);
}

mod chains {
    use proptest::prelude::*;

    use super::*;

    /// Someone who clicks: one of a few people, the requester among them
    /// (also as the same person on another platform, known by email).
    fn clicker(index: u8) -> Actor {
        match index % 5 {
            0 => actor("U0ALICE"),
            1 => Actor::new(Platform::Teams, UserId::new("alice-aad"), "Alice").with_email(Some(
                crate::domain::email::EmailAddress::parse("u0alice@example.com").unwrap(),
            )),
            2 => actor("U0LEAD"),
            3 => actor("U0SEC1"),
            _ => actor("U0SEC2"),
        }
    }

    fn requester_with_email() -> AccessRequest {
        let mut request = pending();
        request.requester = actor("U0ALICE").with_email(Some(
            crate::domain::email::EmailAddress::parse("u0alice@example.com").unwrap(),
        ));
        request
    }

    proptest! {
        /// Whatever the chain and whoever clicks, in any order and with any
        /// rights: the requester's own click never counts, nobody counts
        /// twice, and the request is approved only once every step is met.
        #[test]
        fn no_chain_lets_the_requester_count_or_anyone_count_twice(
            steps in prop::collection::vec(1u32..=3, 1..=4),
            clicks in prop::collection::vec((0u8..5, any::<bool>()), 0..24),
        ) {
            let mut request = requester_with_email();
            for (who, is_approver) in clicks {
                let by = clicker(who);
                if let Ok((next, _)) = request.approve_in_steps(&Decider::from_ids(&by, is_approver, &request), &steps, now()) {
                    request = next;
                }
            }
            prop_assert!(request.approvals.iter().all(|a| !a.by.is(&request.requester)));
            for (i, a) in request.approvals.iter().enumerate() {
                prop_assert!(request.approvals[i + 1..].iter().all(|b| !b.by.is(&a.by)));
            }
            let every_step_met = steps.iter().enumerate().all(|(i, need)| {
                request.approvals.iter().filter(|a| a.step == i).count() >= *need as usize
            });
            prop_assert_eq!(
                matches!(request.state, RequestState::Approved { .. }),
                every_step_met
            );
            // Steps are met in order: no approval counts in a step whose
            // predecessor was not met when it was given.
            for (i, a) in request.approvals.iter().enumerate() {
                let before = &request.approvals[..i];
                for (earlier, need) in steps.iter().enumerate().take(a.step) {
                    prop_assert!(
                        before.iter().filter(|b| b.step == earlier).count() >= *need as usize
                    );
                }
            }
        }
    }
}

mod bundles {
    //! How the members of a request for several groups follow each other.
    use super::*;

    /// A bundle of two pending members: prod-db (R-AAAAAA), logs (R-BBBBBB).
    fn bundle() -> (AccessRequest, AccessRequest) {
        let members = vec![
            BundleMember {
                request: RequestId::parse("R-AAAAAA").unwrap(),
                group: GroupName::parse("prod-db").unwrap(),
            },
            BundleMember {
                request: RequestId::parse("R-BBBBBB").unwrap(),
                group: GroupName::parse("logs").unwrap(),
            },
        ];
        let member = |index: usize| {
            let mut request = pending();
            request.id = members[index].request.clone();
            request.group = members[index].group.clone();
            request.bundle = members.clone();
            request
        };
        (member(0), member(1))
    }

    fn later(minutes: i64) -> DateTime<Utc> {
        now() + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn a_denial_withdraws_the_others_and_nothing_is_revoked() {
        let (db, logs) = bundle();
        let (db_approved, _) = db.approve(&actor("U0LEAD"), true, 1, now()).unwrap();
        let (denied, _) = logs
            .deny(
                &Decider::from_ids(&actor("U0SEC"), true, &logs),
                "no",
                now(),
            )
            .unwrap();
        let follow = db_approved.follow_bundle(&denied).unwrap();
        let BundleFollow::Withdraw { because } = &follow else {
            panic!("{follow:?}")
        };
        assert!(
            because.contains("logs") && because.contains("denied"),
            "{because}"
        );
        let (withdrawn, happened) = db_approved.withdraw(because, later(1)).unwrap();
        assert_eq!(withdrawn.state, RequestState::Cancelled { at: later(1) });
        assert!(matches!(happened, Happened::Withdrawn { .. }));
        // Closed, it follows nothing more; nor does a request outside the bundle.
        assert_eq!(withdrawn.follow_bundle(&denied), None);
        assert_eq!(db_approved.follow_bundle(&pending()), None);
    }

    #[test]
    fn a_failed_grant_revokes_what_may_be_granted_and_release_ends_all() {
        let (db, logs) = bundle();
        let (db, _) = db.approve(&actor("U0LEAD"), true, 1, now()).unwrap();
        let (logs, _) = logs.approve(&actor("U0SEC"), true, 1, now()).unwrap();
        let (failed, _) = logs.fail("no such role", later(1)).unwrap();
        // Approved: its grant may be under way, so it is revoked too.
        let Some(BundleFollow::Revoke { end }) = db.follow_bundle(&failed) else {
            panic!("revoked")
        };
        let (undone, happened) = db.end_with_bundle(&end, later(1)).unwrap();
        assert!(matches!(undone.state, RequestState::Failed { .. }));
        assert!(
            matches!(happened, Happened::Undone { ref because } if because.contains("no such role"))
        );

        let (active, _) = db.activate(later(1), "alice", Default::default()).unwrap();
        let (logs_active, _) = logs
            .activate(later(1), "alice", Default::default())
            .unwrap();
        let (released, _) = logs_active
            .end_early(&actor("U0ALICE"), None, later(2))
            .unwrap();
        let Some(BundleFollow::Revoke { end }) = active.follow_bundle(&released) else {
            panic!("revoked")
        };
        assert_eq!(
            end,
            BundleEnd::Release {
                by: actor("U0ALICE")
            }
        );
        let (ended, _) = active.end_with_bundle(&end, later(2)).unwrap();
        assert_eq!(ended.state, RequestState::Released { at: later(2) });
    }

    #[test]
    fn the_bundle_is_approved_when_its_last_member_is_and_counts_from_then() {
        let (db, logs) = bundle();
        let (db, _) = db.approve(&actor("U0LEAD"), true, 1, now()).unwrap();
        assert_eq!(
            AccessRequest::bundle_approved_at(&[db.clone(), logs.clone()]),
            None
        );
        let (logs, _) = logs.approve(&actor("U0SEC"), true, 1, later(5)).unwrap();
        let at = AccessRequest::bundle_approved_at(&[db.clone(), logs.clone()]).unwrap();
        assert_eq!(at, later(5));
        // The earlier member's grant is counted from the bundle's approval.
        let restamped = db.approved_from(at).unwrap();
        assert_eq!(restamped.approved_until(), logs.approved_until());
        assert_eq!(logs.approved_from(at), None, "already counted so");
        // A member granted already counts from the same moment.
        let (active, _) = logs
            .activate(later(6), "alice", Default::default())
            .unwrap();
        assert_eq!(
            AccessRequest::bundle_approved_at(&[restamped.clone(), active]),
            Some(later(5))
        );
        // An extension of the bundle applied already does not hold the
        // others back.
        let mut applied = logs.clone();
        applied.state = RequestState::Extended {
            at: later(6),
            until: later(60),
        };
        assert!(AccessRequest::bundle_approved_at(&[restamped, applied]).is_some());
    }
}

#[test]
fn a_decider_jitbot_cannot_tell_from_the_requester_or_an_approver_does_not_count() {
    let request = pending();
    let unknown_to_requester = Decider {
        by: actor("U0LEAD"),
        may_decide: true,
        versus_requester: crate::domain::identity::Sameness::Unknown,
        versus_approvers: crate::domain::identity::Sameness::Different,
    };
    assert_eq!(
        request
            .approve_in_steps(&unknown_to_requester, &[1], now())
            .unwrap_err(),
        Refusal::CannotTellFromRequester(request.id.clone())
    );
    assert!(Refusal::CannotTellFromRequester(request.id.clone())
        .to_string()
        .starts_with("jitbot cannot verify that you are not the requester"));
    // A denial takes nothing from anyone: it stands.
    assert!(request
        .deny(&unknown_to_requester, "not now", now())
        .is_ok());
    let unknown_to_approver = Decider {
        versus_requester: crate::domain::identity::Sameness::Different,
        versus_approvers: crate::domain::identity::Sameness::Unknown,
        ..unknown_to_requester
    };
    assert_eq!(
        request
            .approve_in_steps(&unknown_to_approver, &[2], now())
            .unwrap_err(),
        Refusal::CannotTellFromApprovers(request.id.clone())
    );
}

#[test]
fn an_email_approver_is_told_apart_from_a_chat_requester_only_by_a_known_address() {
    let approver =
        Actor::by_email(&crate::domain::email::EmailAddress::parse("lead@example.com").unwrap());
    // The requester's address is unknown: they may be the approver.
    assert_eq!(
        pending().approve(&approver, true, 1, now()).unwrap_err(),
        Refusal::CannotTellFromRequester(pending().id)
    );
    let mut known = pending();
    known.requester = known.requester.with_email(Some(
        crate::domain::email::EmailAddress::parse("alice@example.com").unwrap(),
    ));
    assert!(known.approve(&approver, true, 1, now()).is_ok());
    known.requester.email =
        Some(crate::domain::email::EmailAddress::parse("LEAD@example.com").unwrap());
    assert_eq!(
        known.approve(&approver, true, 1, now()).unwrap_err(),
        Refusal::OwnRequest(known.id.clone())
    );
}
