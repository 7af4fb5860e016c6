//! Extensions and expiry warnings. An approved extension moves its grant's
//! end (from the current end) and reschedules the grant's warning and
//! expiry; the access is never revoked in between. Both steps are
//! idempotent, so a crash between them only repeats the second.

use super::{Announce, Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::job::{Job, JobKind};
use crate::domain::message::Outgoing;
use crate::domain::request::{AccessRequest, RequestState};
use crate::store::{Applied, Effects, Write};

impl Engine {
    /// An approved extension that cannot move its grant's end fails, saying why.
    async fn refuse_extension(
        &self,
        job: &Job,
        extension: &AccessRequest,
        error: &str,
    ) -> Result<(), EngineError> {
        let now = self.now();
        self.record_step(
            job,
            extension,
            extension.fail(error, now),
            Announce::default(),
            now,
        )
        .await
    }

    /// The activation of an approved extension request.
    pub(super) async fn apply_extension(
        &self,
        job: &Job,
        extension: &AccessRequest,
    ) -> Result<(), EngineError> {
        let Some(grant_id) = &extension.extends else {
            return self.consume(job).await;
        };
        loop {
            let now = self.now();
            let grant = self.store.get_request(grant_id).await?;
            // Already absorbed by the grant (perhaps before a crash), even if
            // the grant has ended since: only the extension's record is left.
            let applied_until = grant
                .as_ref()
                .filter(|g| g.extensions.iter().any(|e| e.request == extension.id))
                .map(|g| g.expires_at().unwrap_or(now));
            if let Some(until) = applied_until {
                self.record_step(
                    job,
                    extension,
                    extension.mark_applied(until, now),
                    Announce::default(),
                    now,
                )
                .await?;
                return Ok(());
            }
            // A last check before the end moves: the whole grant stays
            // within its group's max_duration (the filing checked it; the
            // policy may have changed since).
            // An auto-approved one, within what the policy approves by
            // itself: another extension may have been applied between its
            // filing and now.
            let too_long = grant.as_ref().and_then(|g| {
                let whole = g.total_duration().saturating_add(extension.duration);
                let Some(group) = self.policy.group(&g.group) else {
                    return Some(format!(
                        "{}'s group `{}` is no longer in the policy",
                        g.id.grant_id(),
                        g.group
                    ));
                };
                let max = group.limits.max_duration;
                if whole > max {
                    return Some(format!(
                        "{} would last {whole} in all, past its group's max_duration of {max}",
                        g.id.grant_id()
                    ));
                }
                let auto_max = group.auto_approve.as_ref().map(|rule| rule.max_duration);
                match (&extension.auto_approval, auto_max) {
                    (Some(_), Some(auto_max)) if whole <= auto_max => None,
                    (Some(_), _) => Some(format!(
                        "{} would last {whole} in all, more than the group approves without a person",
                        g.id.grant_id()
                    )),
                    (None, _) => None,
                }
            });
            if let Some(error) = too_long {
                return self.refuse_extension(job, extension, &error).await;
            }
            let moved = grant
                .as_ref()
                .and_then(|g| g.extend_by(extension, now).map(|m| (g, m)));
            let Some((grant, (next, happened))) = moved else {
                let state = grant.as_ref().map_or("gone", |g| g.state.label());
                let error = format!(
                    "grant {} is {state}, so it cannot be extended; request access again with `/jit request`",
                    grant_id.grant_id()
                );
                return self.refuse_extension(job, extension, &error).await;
            };
            let audience = self.audience(grant).await?;
            let effects = self
                .effects_of(&next, &happened, None, &audience, None, now)
                .await?;
            let write = Write {
                request: Some(next),
                effects,
            };
            if self.write_if_unchanged(grant, None, &write).await? == Applied::Written {
                self.commit_and_wake_for(&write.effects).await?;
            }
            // Loop: the next pass records the extension as applied.
        }
    }

    pub(super) async fn run_warn(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Warn {
            request: id,
            expires_at,
        } = &job.kind
        else {
            return Ok(());
        };
        let Some(grant) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        // Extended or ended since: a newer warning (or none) applies.
        let current = matches!(grant.state, RequestState::Active { .. })
            && grant.expires_at() == Some(*expires_at);
        if !current {
            return self.consume(job).await;
        }
        let effects = Effects {
            audit: vec![AuditRecord {
                at: self.now(),
                action: AuditAction::Warned,
                actor: None,
                request: Some(grant.id.clone()),
                group: Some(grant.group.clone()),
                detail: format!("expiry warning sent; ends {}", expires_at.to_rfc3339()),
            }],
            outbox: vec![Outgoing::ExpiryWarning {
                request: grant.id.clone(),
                expires_at: *expires_at,
            }],
            ..Effects::default()
        };
        self.settle(
            job,
            &grant,
            Write {
                request: None,
                effects,
            },
        )
        .await?;
        Ok(())
    }
}
