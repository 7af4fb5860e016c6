//! How an approval channel is told what a sweep found, on each platform.

use crate::domain::ids::Platform;
use crate::domain::sweep::{Finding, FindingAction, SweepNotice, SweepOutcome, SweepReport};
use crate::domain::text::literal;

/// The notice's text on `platform`; none if the sweep found nothing to say.
pub fn sweep_notice_text(notice: &SweepNotice, platform: Platform) -> Option<String> {
    // Slack renders its emoji codes; Teams shows the characters themselves.
    let (mag, warning) = match platform {
        Platform::Slack => (":mag:", ":warning:"),
        Platform::Teams | Platform::Email | Platform::Console => ("\u{1f50d}", "\u{26a0}\u{fe0f}"),
    };
    let report = &notice.report;
    match &report.outcome {
        SweepOutcome::ListingFailed(error) => Some(format!(
            "{warning} The standing-access sweep of `{}` could not list the holders of `{}`: {}. It will keep trying every {}.",
            report.group,
            report.target,
            literal(error),
            notice.interval
        )),
        SweepOutcome::Listed {
            findings,
            held_back,
            ..
        } => findings_text(report, findings, held_back.as_deref(), mag),
    }
}

/// The approval channel's message about a sweep's findings; none if the
/// target is clean.
fn findings_text(
    report: &SweepReport,
    findings: &[Finding],
    held_back: Option<&str>,
    mag: &str,
) -> Option<String> {
    if findings.is_empty() {
        return None;
    }
    // Principals come from the provider, names from chat: both shown as
    // they are, never as markup.
    let name = |f: &Finding| match &f.owner {
        Some(owner) => format!(
            "`{}` ({})",
            literal(&f.principal),
            literal(owner.name_or_id())
        ),
        None => format!("`{}`", literal(&f.principal)),
    };
    let with = |wanted: fn(&FindingAction) -> bool| {
        findings
            .iter()
            .filter(|f| wanted(&f.action))
            .map(name)
            .collect::<Vec<_>>()
    };
    let mut parts = vec![format!(
        "{mag} Standing access to `{}` (`{}` via {}):",
        report.group, report.target, report.provider
    )];
    let unused = report
        .unused_after
        .map(|period| format!(", unused for {period}"))
        .unwrap_or_default();
    let reported = with(|a| matches!(a, FindingAction::Reported));
    if !reported.is_empty() {
        parts.push(format!(
            "{} without an active grant{unused}: {}.",
            plural(reported.len(), "holder"),
            reported.join(", ")
        ));
        parts.push(match held_back {
            Some(why) => format!(
                "Not removed this time because {}; the next sweep tries again.",
                literal(why)
            ),
            None => "Report only: set `sweep = \"enforce\"` to remove it, or list the principal in the group's `standing` to allow it.".to_string(),
        });
    }
    let revoked = with(|a| matches!(a, FindingAction::Revoked));
    if !revoked.is_empty() {
        parts.push(format!("Removed{unused}: {}.", revoked.join(", ")));
    }
    let failed: Vec<String> = findings
        .iter()
        .filter_map(|f| match &f.action {
            FindingAction::RevokeFailed(error) => Some(format!("{} ({})", name(f), literal(error))),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        parts.push(format!(
            "Could not remove: {}; the next sweep tries again.",
            failed.join(", ")
        ));
    }
    Some(parts.join(" "))
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::duration::HumanDuration;
    use crate::domain::policy::SweepMode;

    fn notice(outcome: SweepOutcome) -> SweepNotice {
        SweepNotice {
            report: SweepReport {
                group: "console".into(),
                target: "aws-admin".into(),
                provider: "iam".into(),
                mode: SweepMode::Report,
                dry_run: false,
                outcome,
                unused_after: None,
            },
            interval: HumanDuration::parse("15m").unwrap(),
        }
    }

    #[test]
    fn each_platform_gets_its_own_emoji_and_clean_sweeps_say_nothing() {
        let failed = notice(SweepOutcome::ListingFailed("HTTP 503".into()));
        let slack = sweep_notice_text(&failed, Platform::Slack).unwrap();
        let teams = sweep_notice_text(&failed, Platform::Teams).unwrap();
        assert!(slack.starts_with(":warning: "), "{slack}");
        assert!(
            teams.starts_with('\u{26a0}') && !teams.contains(":warning:"),
            "{teams}"
        );
        let clean = notice(SweepOutcome::Listed {
            holders: 1,
            allowed: vec![],
            findings: vec![],
            held_back: None,
            kept_in_use: vec![],
        });
        assert_eq!(sweep_notice_text(&clean, Platform::Slack), None);
    }
}
