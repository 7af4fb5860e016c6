//! A sweep's findings: who holds a group's target, who of them no grant or
//! allow-list explains, and what was done about each. The engine runs the
//! sweep; this is what it found, for the CLI, the API, the audit log and
//! (worded by each chat platform) the approval channel.

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::ids::Actor;
use super::policy::SweepMode;

/// What an approval channel is told after a sweep: the findings, or that
/// the holders could not be listed. Each chat platform words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepNotice {
    pub report: SweepReport,
    /// How often the sweep runs (it tries again then).
    pub interval: HumanDuration,
}

/// What one sweep of one group found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    pub group: String,
    pub target: String,
    pub provider: String,
    pub mode: SweepMode,
    pub dry_run: bool,
    pub outcome: SweepOutcome,
    /// The group's `sweep_unused`: only holders unused this long count.
    #[serde(default)]
    pub unused_after: Option<HumanDuration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepOutcome {
    /// The provider could not list the target's holders.
    ListingFailed(String),
    Listed {
        holders: usize,
        /// Holders the `standing` allow-list covers.
        allowed: Vec<String>,
        /// Holders without a grant, and what happened to each.
        findings: Vec<Finding>,
        /// Why nothing was revoked this time, if enforcement was held back.
        held_back: Option<String>,
        /// With `sweep_unused`: holders without a grant that are kept,
        /// because they were used within the period (or jitbot has not
        /// watched them that long yet).
        #[serde(default)]
        kept_in_use: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub principal: String,
    /// The chat user behind the principal, if jitbot can tell.
    pub owner: Option<Actor>,
    pub action: FindingAction,
}

impl Finding {
    /// ` (slack:U0BOB)` when the chat user is known, else nothing.
    pub fn owner_suffix(&self) -> String {
        self.owner
            .as_ref()
            .map(|owner| format!(" ({owner})"))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingAction {
    Reported,
    WouldRevoke,
    Revoked,
    RevokeFailed(String),
    /// A grant for it appeared while the sweep ran; left alone.
    NowGranted,
}

impl SweepReport {
    /// Whether the holders were listed and every revoke attempted worked.
    pub fn succeeded(&self) -> bool {
        match &self.outcome {
            SweepOutcome::ListingFailed(_) => false,
            SweepOutcome::Listed { findings, .. } => !findings
                .iter()
                .any(|f| matches!(f.action, FindingAction::RevokeFailed(_))),
        }
    }

    /// One line per fact, for the CLI and logs.
    pub fn lines(&self) -> Vec<String> {
        let head = format!(
            "{} ({} via {}, sweep = {}{})",
            self.group,
            self.target,
            self.provider,
            self.mode.label(),
            if self.dry_run { ", dry run" } else { "" }
        );
        let (holders, allowed, findings, held_back, kept_in_use) = match &self.outcome {
            SweepOutcome::ListingFailed(error) => {
                return vec![format!("{head}: could not list holders: {error}")]
            }
            SweepOutcome::Listed {
                holders,
                allowed,
                findings,
                held_back,
                kept_in_use,
            } => (holders, allowed, findings, held_back, kept_in_use),
        };
        let unused = self
            .unused_after
            .map(|period| format!(" and unused for {period}"))
            .unwrap_or_default();
        let mut lines = vec![format!(
            "{head}: {holders} holder(s), {} allowed standing, {} without a grant{unused}",
            allowed.len(),
            findings.len()
        )];
        if let (Some(period), false) = (self.unused_after, kept_in_use.is_empty()) {
            lines.push(format!(
                "  kept (used within {period}, or not watched that long yet): {}",
                kept_in_use.join(", ")
            ));
        }
        for finding in findings {
            let what = match &finding.action {
                FindingAction::Reported => "reported".to_string(),
                FindingAction::WouldRevoke => "would be revoked".to_string(),
                FindingAction::Revoked => "revoked".to_string(),
                FindingAction::RevokeFailed(error) => format!("revoke failed: {error}"),
                FindingAction::NowGranted => "granted meanwhile; left alone".to_string(),
            };
            lines.push(format!(
                "  {}{}: {what}",
                finding.principal,
                finding.owner_suffix()
            ));
        }
        if let Some(why) = held_back {
            lines.push(format!("  nothing revoked: {why}"));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_each_finding_and_what_was_done() {
        let report = SweepReport {
            group: "console".into(),
            target: "aws-admin".into(),
            provider: "iam".into(),
            mode: SweepMode::Enforce,
            dry_run: true,
            outcome: SweepOutcome::Listed {
                holders: 2,
                allowed: vec!["svc".into()],
                findings: vec![Finding {
                    principal: "mallory".into(),
                    owner: None,
                    action: FindingAction::WouldRevoke,
                }],
                held_back: None,
                kept_in_use: vec![],
            },
            unused_after: None,
        };
        assert_eq!(
            report.lines(),
            [
                "console (aws-admin via iam, sweep = enforce, dry run): 2 holder(s), 1 allowed standing, 1 without a grant",
                "  mallory: would be revoked",
            ]
        );
        assert!(report.succeeded());
    }
}
