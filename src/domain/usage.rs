//! Whether watched access is used: what jitbot saw of one principal's use
//! of a group's target, and the decisions that follow from it — releasing
//! an idle grant early, and finding standing holders nobody uses.
//!
//! The rules that keep this safe: a sample that failed counts as possible
//! use (an outage never makes access look unused); times only move
//! forward (a clock that jumps back delays a release, never hastens it);
//! and a holder is judged unused only after jitbot watched it for the
//! whole period.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// The Keep it warning comes this long before an idle release at most.
const WARN_LEAD_MAX: Duration = Duration::minutes(5);

/// What jitbot saw of one principal's use of one group's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub principal: String,
    /// When jitbot first sampled it: for standing access, the start of
    /// the period it must stay unused.
    pub watched_since: DateTime<Utc>,
    /// The last time it was seen in use (or its owner said "Keep it").
    pub last_used: Option<DateTime<Utc>>,
    /// The last time a sample failed: that moment counts as possible use.
    #[serde(default)]
    pub last_unknown: Option<DateTime<Utc>>,
    /// The Keep it warning sent: for the quiet period that began at
    /// `for_quiet_since`, at `at`.
    #[serde(default)]
    pub warned: Option<Warned>,
    /// The quiet period an idle release was scheduled for (so it is
    /// scheduled once).
    #[serde(default)]
    pub release_scheduled_for: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warned {
    pub for_quiet_since: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// One answer of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Seen {
        in_use: bool,
        last_used: Option<DateTime<Utc>>,
    },
    /// The provider could not say (an outage, an answer of the wrong shape).
    Unknown,
}

/// What to do about an active grant's idleness now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStep {
    /// Nothing yet; look again at `next_look` at the latest.
    Wait { next_look: DateTime<Utc> },
    /// DM the requester a Keep it button: released at `release_at` unless used.
    Warn { release_at: DateTime<Utc> },
    /// Unused since `quiet_since`: release it now.
    Release { quiet_since: DateTime<Utc> },
    /// Its release is scheduled already.
    Releasing,
}

fn latest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> DateTime<Utc> {
    a.map_or(b, |a| a.max(b))
}

impl Usage {
    pub fn new(principal: &str, now: DateTime<Utc>) -> Usage {
        Usage {
            principal: principal.to_string(),
            watched_since: now,
            last_used: None,
            last_unknown: None,
            warned: None,
            release_scheduled_for: None,
        }
    }

    /// Take one sample in. A last-used time the provider reports is never
    /// taken as later than now.
    pub fn observe(&mut self, sample: Sample, now: DateTime<Utc>) {
        match sample {
            Sample::Seen { in_use: true, .. } => self.last_used = Some(latest(self.last_used, now)),
            Sample::Seen {
                in_use: false,
                last_used: Some(at),
            } => self.last_used = Some(latest(self.last_used, at.min(now))),
            Sample::Seen {
                in_use: false,
                last_used: None,
            } => {}
            Sample::Unknown => self.last_unknown = Some(latest(self.last_unknown, now)),
        }
    }

    /// Its owner said they still need it ("Keep it"): that counts as use.
    pub fn keep(&mut self, now: DateTime<Utc>) {
        self.last_used = Some(latest(self.last_used, now));
    }

    /// Since when nothing suggests it was used, counting from `start` (a
    /// grant's activation; for standing access, when watching began).
    pub fn quiet_since(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        let mut since = latest(self.last_used, start);
        since = latest(self.last_unknown, since);
        since
    }

    /// The last use jitbot knows of at or after `start`.
    pub fn used_since(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_used.filter(|at| *at >= start)
    }

    /// What an active grant, live since `activated_at`, needs now under
    /// `idle_release`. The warning comes `min(5m, idle_release / 2)` before
    /// the release; a release never comes sooner than that after the
    /// warning for the same quiet period was sent.
    pub fn idle_step(
        &self,
        activated_at: DateTime<Utc>,
        idle_release: HumanDuration,
        now: DateTime<Utc>,
    ) -> IdleStep {
        let quiet_since = self.quiet_since(activated_at);
        let lead = warn_lead(idle_release);
        let release_at = quiet_since + idle_release.as_chrono();
        let warned_at = self
            .warned
            .filter(|w| w.for_quiet_since == quiet_since)
            .map(|w| w.at);
        match warned_at {
            None if now >= release_at - lead => IdleStep::Warn {
                release_at: release_at.max(now + lead),
            },
            None => IdleStep::Wait {
                next_look: release_at - lead,
            },
            Some(_) if self.release_scheduled_for == Some(quiet_since) => IdleStep::Releasing,
            Some(at) => {
                let release_at = release_at.max(at + lead);
                if now >= release_at {
                    IdleStep::Release { quiet_since }
                } else {
                    IdleStep::Wait {
                        next_look: release_at,
                    }
                }
            }
        }
    }

    /// Record that the Keep it warning for the current quiet period went out.
    pub fn warned(&mut self, activated_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.warned = Some(Warned {
            for_quiet_since: self.quiet_since(activated_at),
            at: now,
        });
    }

    /// Whether a standing holder has gone unused for `period`, watched by
    /// jitbot all along.
    pub fn unused_for(&self, period: HumanDuration, now: DateTime<Utc>) -> bool {
        now - self.quiet_since(self.watched_since) >= period.as_chrono()
    }
}

/// How long before an idle release its Keep it warning comes.
pub fn warn_lead(idle_release: HumanDuration) -> Duration {
    (idle_release.as_chrono() / 2).min(WARN_LEAD_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn mins(m: u64) -> HumanDuration {
        HumanDuration::from_secs(m * 60)
    }

    const UNUSED: Sample = Sample::Seen {
        in_use: false,
        last_used: None,
    };
    const IN_USE: Sample = Sample::Seen {
        in_use: true,
        last_used: None,
    };

    #[test]
    fn an_unused_grant_is_warned_five_minutes_before_and_released_at_idle_release() {
        let mut usage = Usage::new("alice", at(0));
        usage.observe(UNUSED, at(60));
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(60)),
            IdleStep::Wait {
                next_look: at(25 * 60)
            }
        );
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(25 * 60)),
            IdleStep::Warn {
                release_at: at(30 * 60)
            }
        );
        usage.warned(at(0), at(25 * 60));
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(29 * 60)),
            IdleStep::Wait {
                next_look: at(30 * 60)
            }
        );
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(30 * 60)),
            IdleStep::Release { quiet_since: at(0) }
        );
    }

    #[test]
    fn the_warning_lead_is_half_of_a_short_idle_release() {
        assert_eq!(warn_lead(HumanDuration::from_secs(4)), Duration::seconds(2));
        assert_eq!(warn_lead(mins(30)), Duration::minutes(5));
    }

    #[test]
    fn use_or_keep_it_starts_the_quiet_period_again() {
        let mut usage = Usage::new("alice", at(0));
        usage.warned(at(0), at(25 * 60));
        usage.observe(IN_USE, at(26 * 60));
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(31 * 60)),
            IdleStep::Wait {
                next_look: at((26 + 25) * 60)
            }
        );
        usage.keep(at(40 * 60));
        assert_eq!(usage.quiet_since(at(0)), at(40 * 60));
    }

    #[test]
    fn a_failed_sample_counts_as_possible_use() {
        let mut usage = Usage::new("alice", at(0));
        usage.observe(Sample::Unknown, at(29 * 60));
        assert!(matches!(
            usage.idle_step(at(0), mins(30), at(31 * 60)),
            IdleStep::Wait { .. }
        ));
        let mut standing = Usage::new("svc", at(0));
        standing.observe(Sample::Unknown, at(20 * 60));
        assert!(!standing.unused_for(mins(30), at(31 * 60)));
        assert!(standing.unused_for(mins(30), at(50 * 60)));
    }

    #[test]
    fn a_late_first_look_warns_before_it_releases() {
        // Nothing was looked at for an hour (jitbot was down): the owner is
        // still warned, and the release follows the warning's lead.
        let usage = Usage::new("alice", at(0));
        assert_eq!(
            usage.idle_step(at(0), mins(30), at(60 * 60)),
            IdleStep::Warn {
                release_at: at(65 * 60)
            }
        );
    }

    #[test]
    fn a_clock_that_jumps_back_releases_nothing_early() {
        let mut usage = Usage::new("alice", at(0));
        usage.observe(IN_USE, at(20 * 60));
        // The clock is set back ten minutes: the use seen at 20m still counts.
        usage.observe(UNUSED, at(10 * 60));
        assert_eq!(usage.quiet_since(at(0)), at(20 * 60));
        assert!(matches!(
            usage.idle_step(at(0), mins(30), at(40 * 60)),
            IdleStep::Wait { .. }
        ));
    }

    #[test]
    fn a_reported_last_use_counts_but_never_as_later_than_now() {
        let mut usage = Usage::new("svc", at(0));
        usage.observe(
            Sample::Seen {
                in_use: false,
                last_used: Some(at(100 * 60)),
            },
            at(10 * 60),
        );
        assert_eq!(usage.last_used, Some(at(10 * 60)));
    }

    #[test]
    fn a_standing_holder_is_unused_only_after_being_watched_for_the_whole_period() {
        let mut usage = Usage::new("svc", at(0));
        // Never seen in use, but watched for less than the period.
        usage.observe(UNUSED, at(29 * 60));
        assert!(!usage.unused_for(mins(30), at(29 * 60)));
        assert!(usage.unused_for(mins(30), at(30 * 60)));
        usage.observe(IN_USE, at(31 * 60));
        assert!(!usage.unused_for(mins(30), at(40 * 60)));
    }
}
