//! How much one person may ask of jitbot at once: at most `per_minute` new
//! requests in any minute and at most `pending` requests waiting for a
//! decision (DESIGN.md "Limits and abuse"). One person filing thousands of
//! requests would otherwise flood the approval channels and the chat API
//! quota everyone shares. The store keeps a [`Quota`] per person and
//! checks it in the same transaction that files the request, so concurrent
//! filings cannot overshoot.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ids::RequestId;
use super::request::{AccessRequest, RequestState};

/// `JITBOT_USER_RATE`'s default.
pub const DEFAULT_PER_MINUTE: u32 = 10;
/// Requests one person may have waiting for a decision.
pub const DEFAULT_PENDING: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilingLimits {
    pub per_minute: u32,
    pub pending: u32,
}

impl Default for FilingLimits {
    fn default() -> Self {
        Self {
            per_minute: DEFAULT_PER_MINUTE,
            pending: DEFAULT_PENDING,
        }
    }
}

/// What one person has filed lately and has waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// When each request of the last minute was filed, oldest first.
    #[serde(default)]
    recent: Vec<DateTime<Utc>>,
    /// Their requests still waiting for a decision.
    #[serde(default)]
    pending: Vec<RequestId>,
    /// Their extensions filed and not yet applied or ended, one per grant
    /// at most: each is checked against the grant's whole length when it
    /// is filed, so two filed at once must not both pass that check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extending: Vec<OpenExtension>,
}

/// An extension of `grant` that is still pending or approved and not yet
/// applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenExtension {
    grant: RequestId,
    extension: RequestId,
}

/// Whether `request` is an extension that may still move its grant's end.
fn open_extension(request: &AccessRequest) -> Option<OpenExtension> {
    let open = matches!(
        request.state,
        RequestState::Pending | RequestState::Approved { .. }
    );
    match (&request.extends, open) {
        (Some(grant), true) => Some(OpenExtension {
            grant: grant.clone(),
            extension: request.id.clone(),
        }),
        _ => None,
    }
}

/// The extensions a grant's change from `before` to `after` took in.
fn absorbed<'a>(before: Option<&AccessRequest>, after: &'a AccessRequest) -> Vec<&'a RequestId> {
    after
        .extensions
        .iter()
        .map(|applied| &applied.request)
        .filter(|id| !before.is_some_and(|b| b.extensions.iter().any(|e| &e.request == *id)))
        .collect()
}

/// Why a new request was not filed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    #[error("You have filed {count} requests in the last minute, the most jitbot takes from one person; try again in {}.", seconds(*retry_in))]
    TooFast { count: usize, retry_in: Duration },
    #[error("You have {count} requests waiting for a decision, the most jitbot keeps open for one person; cancel one (`/jit list` shows them) or try again when one is decided.")]
    TooManyPending { count: usize },
    #[error("The extension {extension} of {grant} is not settled yet, and a grant takes one extension at a time; wait until it is decided (or `/jit cancel {extension}`).")]
    ExtensionWaiting {
        grant: super::ids::GrantId,
        extension: RequestId,
    },
}

fn seconds(wait: Duration) -> String {
    let secs = ((wait.num_milliseconds() + 999) / 1000).max(1);
    if secs == 1 {
        "1 second".to_string()
    } else {
        format!("{secs} seconds")
    }
}

impl QuotaRefusal {
    /// How long until trying again can succeed, when that is known.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            QuotaRefusal::TooFast { retry_in, .. } => Some(*retry_in),
            QuotaRefusal::TooManyPending { .. } | QuotaRefusal::ExtensionWaiting { .. } => None,
        }
    }
}

const WINDOW: Duration = Duration::minutes(1);
/// Filings stamped a little after `now` still count: concurrent filings
/// (and replicas whose clocks differ slightly) take their time before
/// they take their turn. Much later stamps mean the clock went back, and
/// are forgotten rather than blocking someone for as long as it jumped.
const SKEW: Duration = Duration::seconds(10);

impl Quota {
    /// Their requests waiting for a decision.
    pub fn pending_ids(&self) -> &[RequestId] {
        &self.pending
    }

    /// Count request `id`, filed at `now` (`pending` if it waits for a
    /// decision), or refuse it without changing anything.
    pub fn admit(
        &mut self,
        id: &RequestId,
        pending: bool,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<(), QuotaRefusal> {
        self.recent
            .retain(|at| *at > now - WINDOW && *at <= now + SKEW);
        if self.recent.len() >= limits.per_minute as usize {
            let oldest = self.recent[0];
            return Err(QuotaRefusal::TooFast {
                count: self.recent.len(),
                retry_in: oldest + WINDOW - now,
            });
        }
        if pending && self.pending.len() >= limits.pending as usize {
            return Err(QuotaRefusal::TooManyPending {
                count: self.pending.len(),
            });
        }
        let at = self.recent.last().map_or(now, |last| now.max(*last));
        self.recent.push(at);
        if pending && !self.pending.contains(id) {
            self.pending.push(id.clone());
        }
        Ok(())
    }

    /// Count `request` as it is filed — under the limits, and as the only
    /// open extension of its grant — or refuse it without changing
    /// anything.
    pub fn admit_request(
        &mut self,
        request: &AccessRequest,
        limits: FilingLimits,
        now: DateTime<Utc>,
    ) -> Result<(), QuotaRefusal> {
        let opens = open_extension(request);
        if let Some(opens) = &opens {
            if let Some(waiting) = self.extending.iter().find(|e| e.grant == opens.grant) {
                return Err(QuotaRefusal::ExtensionWaiting {
                    grant: waiting.grant.grant_id(),
                    extension: waiting.extension.clone(),
                });
            }
        }
        let pending = request.state == RequestState::Pending;
        self.admit(&request.id, pending, limits, now)?;
        self.extending.extend(opens);
        Ok(())
    }

    /// Whether a request's change from `before` to `after` changes what
    /// its requester's quota counts (then the store updates the quota in
    /// the same transaction, with [`Quota::follow`]).
    pub fn is_moved_by(before: Option<&AccessRequest>, after: &AccessRequest) -> bool {
        let pending =
            |r: Option<&AccessRequest>| r.is_some_and(|r| r.state == RequestState::Pending);
        let extending = |r: Option<&AccessRequest>| r.and_then(open_extension).is_some();
        pending(before) != pending(Some(after))
            || extending(before) != extending(Some(after))
            || !absorbed(before, after).is_empty()
    }

    /// Follow a request's change from `before` to `after`: count it as
    /// waiting, or as decided; an extension that was applied or ended no
    /// longer holds its grant's next extension back.
    pub fn follow(&mut self, before: Option<&AccessRequest>, after: &AccessRequest) {
        if after.state == RequestState::Pending {
            self.note_pending(&after.id);
        } else if before.is_some_and(|b| b.state == RequestState::Pending) {
            self.decided(&after.id);
        }
        match open_extension(after) {
            Some(open) => {
                if !self.extending.contains(&open) {
                    self.extending.retain(|e| e.grant != open.grant);
                    self.extending.push(open);
                }
            }
            None => self.extending.retain(|e| e.extension != after.id),
        }
        // A grant that has just taken in an extension: that extension moves
        // the end no more, so the next may be filed at once — not only once
        // the extension's own record says so, a step later.
        let absorbed = absorbed(before, after);
        self.extending.retain(|e| !absorbed.contains(&&e.extension));
    }

    /// Count `id` as waiting, without a limit (a request written by another
    /// path, or an index rebuilt from the requests).
    pub fn note_pending(&mut self, id: &RequestId) {
        if !self.pending.contains(id) {
            self.pending.push(id.clone());
        }
    }

    /// Request `id` was decided, cancelled or timed out.
    pub fn decided(&mut self, id: &RequestId) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p != id);
        self.pending.len() != before
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn limits(per_minute: u32, pending: u32) -> FilingLimits {
        FilingLimits {
            per_minute,
            pending,
        }
    }

    #[test]
    fn the_rate_is_a_sliding_minute_and_says_when_to_come_back() {
        let mut quota = Quota::default();
        for i in 0..3 {
            quota
                .admit(&RequestId::generate(), false, limits(3, 20), at(i * 10))
                .unwrap();
        }
        let refused = quota
            .admit(&RequestId::generate(), false, limits(3, 20), at(45))
            .unwrap_err();
        assert_eq!(
            refused,
            QuotaRefusal::TooFast {
                count: 3,
                retry_in: Duration::seconds(15)
            }
        );
        assert!(
            refused.to_string().contains("try again in 15 seconds"),
            "{refused}"
        );
        // A minute after the first, there is room again.
        quota
            .admit(&RequestId::generate(), false, limits(3, 20), at(60))
            .unwrap();
    }

    #[test]
    fn filings_that_took_their_turn_late_still_count() {
        // Concurrent filings read the clock before they queue for the
        // quota: one stamped earlier may be admitted after later ones.
        let mut quota = Quota::default();
        quota
            .admit(&RequestId::generate(), false, limits(2, 20), at(5))
            .unwrap();
        quota
            .admit(&RequestId::generate(), false, limits(2, 20), at(4))
            .unwrap();
        assert!(quota
            .admit(&RequestId::generate(), false, limits(2, 20), at(3))
            .is_err());
        // A clock that jumped far back forgets what it cannot place.
        assert!(quota
            .admit(&RequestId::generate(), false, limits(2, 20), at(-3600))
            .is_ok());
    }

    #[test]
    fn pending_requests_are_capped_until_one_is_decided() {
        let mut quota = Quota::default();
        let first = RequestId::generate();
        quota.admit(&first, true, limits(100, 2), at(0)).unwrap();
        quota
            .admit(&RequestId::generate(), true, limits(100, 2), at(1))
            .unwrap();
        let refused = quota
            .admit(&RequestId::generate(), true, limits(100, 2), at(2))
            .unwrap_err();
        assert_eq!(refused, QuotaRefusal::TooManyPending { count: 2 });
        // Auto-approved requests do not wait, so they are not capped.
        quota
            .admit(&RequestId::generate(), false, limits(100, 2), at(3))
            .unwrap();
        assert!(quota.decided(&first));
        quota
            .admit(&RequestId::generate(), true, limits(100, 2), at(4))
            .unwrap();
        assert_eq!(quota.pending(), 2);
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let mut quota = Quota::default();
        quota
            .admit(&RequestId::generate(), true, limits(1, 20), at(0))
            .unwrap();
        let before = quota.clone();
        assert!(quota
            .admit(&RequestId::generate(), true, limits(1, 20), at(1))
            .is_err());
        assert_eq!(quota, before);
    }

    #[test]
    fn a_grant_that_takes_in_its_extension_frees_the_next_at_once() {
        use crate::domain::duration::HumanDuration;
        use crate::domain::ids::{Actor, GroupName, Platform, UserId};
        let alice = Actor::new(Platform::Slack, UserId::new("U0ALICE"), "U0ALICE");
        let file = |id: &str, duration: &str| {
            AccessRequest::file(
                RequestId::parse(id).unwrap(),
                alice.clone(),
                GroupName::parse("prod-db").unwrap(),
                HumanDuration::parse(duration).unwrap(),
                "fixing INC-1".into(),
                None,
                false,
                at(0),
            )
            .0
        };
        let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "U0LEAD");
        let (approved, _) = file("R-GRANT1", "1h")
            .approve(&lead, true, 1, at(0))
            .unwrap();
        let (grant, _) = approved
            .activate(at(0), "alice", Default::default())
            .unwrap();
        let mut quota = Quota::default();
        let first = file("R-EXTND1", "30m").extending(&grant);
        quota.admit_request(&first, limits(10, 20), at(1)).unwrap();
        let second = file("R-EXTND2", "15m").extending(&grant);
        assert!(matches!(
            quota.clone().admit_request(&second, limits(10, 20), at(2)),
            Err(QuotaRefusal::ExtensionWaiting { .. })
        ));
        let (first, _) = first.approve(&lead, true, 1, at(3)).unwrap();
        let (extended, _) = grant.extend_by(&first, at(4)).unwrap();
        // The grant's own write says the first is taken in: the quota
        // follows it then, before the extension's record is marked applied.
        assert!(Quota::is_moved_by(Some(&grant), &extended));
        quota.follow(Some(&grant), &extended);
        quota.admit_request(&second, limits(10, 20), at(5)).unwrap();
    }
}
