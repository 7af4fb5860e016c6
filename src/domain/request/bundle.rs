//! Several groups asked for in one request (`request a,b,c 2h …`): one
//! member request per group, filed together, each approved by its own
//! group's approvers and granted by its own provider — and closed together.
//! When one member ends, the others follow it; these are the decisions of
//! how.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccessRequest, Happened, RequestState};
use crate::domain::ids::{Actor, GroupName, RequestId};
use crate::domain::text::literal;

/// One group of a bundle, and the request filed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleMember {
    pub request: RequestId,
    pub group: GroupName,
}

/// How a member follows another member of its bundle that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleFollow {
    /// Nothing was granted for it: it is withdrawn (nobody is asked any
    /// more), and no provider is called.
    Withdraw { because: String },
    /// Its access may be held (granted, or being granted): the provider
    /// revokes it, then it ends as `end` says.
    Revoke { end: BundleEnd },
}

/// How a member whose access was revoked with its bundle ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleEnd {
    /// Another group's grant failed for good: the whole request is undone.
    Undo { because: String },
    /// The requester released the request.
    Release { by: Actor },
    /// An admin revoked it.
    Revoke { by: Actor, reason: String },
    /// Its time is up.
    Expire,
}

impl AccessRequest {
    /// Whether it was filed with other groups as one request.
    pub fn in_bundle(&self) -> bool {
        !self.bundle.is_empty()
    }

    /// The request whose cards show the whole bundle (its first member),
    /// or this one.
    pub fn card_owner(&self) -> &RequestId {
        self.bundle.first().map_or(&self.id, |first| &first.request)
    }

    /// The other members of its bundle.
    pub fn siblings(&self) -> impl Iterator<Item = &BundleMember> + '_ {
        self.bundle.iter().filter(move |m| m.request != self.id)
    }

    /// The groups of its bundle as the requester named them ("a, b"), or
    /// its own group.
    pub fn groups_label(&self) -> String {
        if self.bundle.is_empty() {
            return self.group.to_string();
        }
        let names: Vec<&str> = self.bundle.iter().map(|m| m.group.as_str()).collect();
        names.join(", ")
    }

    /// How this member follows `ended`, a member of its bundle that has
    /// just ended; `None` when it is closed already, or when `ended` is
    /// not of its bundle.
    pub fn follow_bundle(&self, ended: &AccessRequest) -> Option<BundleFollow> {
        if !self.state.is_open()
            || ended.id == self.id
            || !self.siblings().any(|m| m.request == ended.id)
        {
            return None;
        }
        let group = &ended.group;
        let because = match &ended.state {
            RequestState::Denied { by, reason, .. } => format!(
                "{group}, asked in the same request, was denied by {}: {}",
                literal(by.name_or_id()),
                literal(reason)
            ),
            RequestState::Cancelled { .. } => {
                format!("{group}, asked in the same request, was cancelled")
            }
            RequestState::TimedOut { .. } => {
                format!("{group}, asked in the same request, timed out undecided")
            }
            RequestState::Failed { error, .. } => format!(
                "granting {group}, asked in the same request, failed: {}",
                literal(error)
            ),
            _ => String::new(),
        };
        // An extension never holds access of its own: it is only withdrawn.
        if self.extends.is_some() {
            return matches!(
                self.state,
                RequestState::Pending | RequestState::Approved { .. }
            )
            .then(|| BundleFollow::Withdraw {
                because: if because.is_empty() {
                    format!("{group}, asked in the same request, has ended")
                } else {
                    because
                },
            });
        }
        let end = match &ended.state {
            RequestState::Failed { .. } => BundleEnd::Undo { because },
            RequestState::Released { .. } => BundleEnd::Release {
                by: ended.requester.clone(),
            },
            RequestState::Revoked { by, reason, .. } => BundleEnd::Revoke {
                by: by.clone(),
                reason: reason.clone(),
            },
            RequestState::Expired { .. } => BundleEnd::Expire,
            // Denied, cancelled or timed out before anything was granted:
            // none of the bundle was granted either.
            RequestState::Denied { .. }
            | RequestState::Cancelled { .. }
            | RequestState::TimedOut { .. } => return Some(BundleFollow::Withdraw { because }),
            _ => return None,
        };
        match self.state {
            // Still waiting for its own approvers: nothing to revoke.
            RequestState::Pending => Some(BundleFollow::Withdraw {
                because: match end {
                    BundleEnd::Undo { because } => because,
                    _ => format!("{group}, asked in the same request, has ended"),
                },
            }),
            _ => Some(BundleFollow::Revoke { end }),
        }
    }

    /// Withdrawn with its bundle before anything was granted for it.
    pub fn withdraw(&self, because: &str, now: DateTime<Utc>) -> Option<(AccessRequest, Happened)> {
        if !matches!(
            self.state,
            RequestState::Pending | RequestState::Approved { .. }
        ) {
            return None;
        }
        let mut next = self.clone();
        next.state = RequestState::Cancelled { at: now };
        Some((
            next,
            Happened::Withdrawn {
                because: because.to_string(),
            },
        ))
    }

    /// Its access was revoked with its bundle; it ends as `end` says.
    pub fn end_with_bundle(
        &self,
        end: &BundleEnd,
        now: DateTime<Utc>,
    ) -> Option<(AccessRequest, Happened)> {
        if !self.may_hold_access() {
            return None;
        }
        let mut next = self.clone();
        let happened = match end {
            BundleEnd::Undo { because } => {
                next.state = RequestState::Failed {
                    at: now,
                    error: because.clone(),
                };
                Happened::Undone {
                    because: because.clone(),
                }
            }
            BundleEnd::Release { .. } => {
                next.state = RequestState::Released { at: now };
                Happened::Released
            }
            BundleEnd::Revoke { by, reason } => {
                next.state = RequestState::Revoked {
                    by: by.clone(),
                    at: now,
                    reason: reason.clone(),
                };
                Happened::Revoked {
                    by: by.clone(),
                    reason: reason.clone(),
                }
            }
            BundleEnd::Expire => {
                next.state = RequestState::Expired { at: now };
                Happened::Expired
            }
        };
        Some((next, happened))
    }

    /// When every member of its bundle (`members`, itself included) is
    /// approved, the moment the last one was: every member's grant is
    /// counted from then, so the bundle ends together. `None` while a
    /// member still waits for its approvers, or once one has ended.
    pub fn bundle_approved_at(members: &[AccessRequest]) -> Option<DateTime<Utc>> {
        members
            .iter()
            .map(|member| match member.state {
                RequestState::Approved { at, .. } => Some(at),
                // Granted already (its sibling's activation was retried or
                // interrupted): it was counted from the same moment.
                RequestState::Active { expires_at, .. } => {
                    Some(expires_at - member.total_duration().as_chrono())
                }
                // An extension of the bundle applied already (it moves its
                // grant's end, whenever it is applied).
                RequestState::Extended { at, .. } => Some(at),
                _ => None,
            })
            .try_fold(None, |last: Option<DateTime<Utc>>, at| {
                let at = at?;
                Some(Some(last.map_or(at, |last| last.max(at))))
            })
            .flatten()
    }

    /// This approved member, its grant counted from `at` (the bundle's
    /// approval); `None` if it is not approved or already counted so.
    pub fn approved_from(&self, at: DateTime<Utc>) -> Option<AccessRequest> {
        match self.state {
            RequestState::Approved { at: own, auto } if own != at => {
                let mut next = self.clone();
                next.state = RequestState::Approved { at, auto };
                Some(next)
            }
            _ => None,
        }
    }
}
