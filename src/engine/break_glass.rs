//! Break-glass: `/jit breakglass <group> <duration> <reason>` grants at
//! once, without approval, to someone the group's `break_glass` lists; the
//! use is announced loudly (every approval channel, every admin by DM) and
//! its card asks an approver to review it — Acknowledge, or Revoke now.

use super::rights::Lookup;
use super::submit::{Filing, Receipt, SubmitError};
use super::{Engine, EngineError};
use crate::domain::audit::{AuditAction, AuditRecord};
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, Destination, GroupName, RequestId};
use crate::domain::job::JobKind;
use crate::domain::message::Outgoing;
use crate::domain::policy::RequestRefusal;
use crate::domain::request::{Refusal, Verdict};
use crate::domain::text::literal;
use crate::store::{Applied, Effects, Write};

/// A review that lost a race with another change of the request is
/// decided again on a fresh read; a few rounds always settle it.
const REVIEW_ATTEMPTS: usize = 3;

impl Engine {
    /// Take access to `group_name` now, under its `break_glass` rule.
    pub async fn break_glass(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        group_name: &GroupName,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let result = self
            .break_glass_checked(requester, origin, group_name, duration, reason)
            .await;
        self.count_submission(&result);
        result
    }

    async fn break_glass_checked(
        &self,
        requester: Actor,
        origin: Option<Destination>,
        group_name: &GroupName,
        duration: HumanDuration,
        reason: &str,
    ) -> Result<Receipt, SubmitError> {
        let group = self
            .policy
            .group(group_name)
            .ok_or_else(|| RequestRefusal::UnknownGroup(group_name.to_string()))?;
        let Some(rule) = &group.break_glass else {
            return Err(RequestRefusal::NoBreakGlass(group.name.to_string()).into());
        };
        let listed = self
            .is_named_promptly(&rule.requesters, &requester, Lookup::Fresh)
            .await
            .map_err(SubmitError::Directory)?;
        if !listed {
            // An attempt by someone not listed is worth a reviewer's eyes.
            self.record_effects(Effects {
                audit: vec![AuditRecord {
                    at: self.now(),
                    action: AuditAction::BreakGlassRefused,
                    actor: Some(requester.clone()),
                    request: None,
                    group: Some(group.name.clone()),
                    detail: format!("not listed in break_glass; asked for {duration}: {reason}"),
                }],
                ..Effects::default()
            })
            .await?;
            return Err(RequestRefusal::NotABreakGlassRequester(group.name.to_string()).into());
        }
        let duration = group.check_break_glass(duration, reason)?;
        self.check_principal(group, &requester).await?;
        self.file(
            requester,
            origin,
            group,
            duration,
            reason,
            Filing::BreakGlass,
        )
        .await
    }

    /// What a break-glass use owes beyond a request's: the loud notice in
    /// every approval channel and a DM to every admin.
    pub(super) async fn break_glass_alarm(
        &self,
        request: &crate::domain::request::AccessRequest,
        channels: &[Destination],
    ) -> Vec<Outgoing> {
        let who = literal(request.requester.name_or_id());
        let reason = literal(&request.reason);
        let (group, id, duration) = (&request.group, &request.id, request.duration);
        let mut owed: Vec<Outgoing> = channels
            .iter()
            .map(|channel| Outgoing::ChannelNotice {
                to: channel.clone(),
                text: format!(
                    "🚨 break-glass: {who} took `{group}` for {duration} without approval ({id}). Reason: {reason}. An approver must review it on its card: Acknowledge or Revoke now."
                ),
            })
            .collect();
        let admins = match self.people(&self.policy.admins).await {
            Ok(admins) => admins,
            Err(error) => {
                tracing::error!(%error, request = %id, "break-glass: cannot list the admins to tell");
                Vec::new()
            }
        };
        owed.extend(admins.into_iter().map(|admin| Outgoing::Direct {
            to: admin,
            text: format!(
                "🚨 break-glass used on `{group}`: {who} took it for {duration} without approval ({id}). Reason: {reason}. `/jit admin audit break-glass` lists every use."
            ),
            about: Some(id.clone()),
        }));
        owed
    }

    /// An approver's review of a break-glass use, from its card. The
    /// answer is what the reviewer is told.
    pub async fn review_break_glass(
        &self,
        by: &Actor,
        id: &RequestId,
        verdict: Verdict,
    ) -> Result<String, EngineError> {
        for _ in 0..REVIEW_ATTEMPTS {
            let Some(request) = self.store.get_request(id).await? else {
                return Ok(format!("There is no request {id}."));
            };
            let Some(group) = self.policy.group(&request.group) else {
                return Ok(format!(
                    "`{}` is no longer in the policy; nobody can review {id}.",
                    request.group
                ));
            };
            let decider = match self.who_decides(&request, group, by, Lookup::Fresh).await {
                Ok(decider) => decider,
                Err(error) => {
                    return Ok(format!(
                        "I could not check your rights right now ({}); please try again.",
                        literal(&error.to_string())
                    ))
                }
            };
            let now = self.now();
            let next = match request.review_break_glass(&decider, verdict, now) {
                Ok(next) => next,
                Err(refusal) => {
                    if matches!(
                        refusal,
                        Refusal::NotAReviewer { .. }
                            | Refusal::OwnBreakGlass(_)
                            | Refusal::CannotTellFromRequester(_)
                    ) {
                        let effects = self.refusal_effects(&request, by, &refusal, None);
                        self.record_effects(Effects {
                            outbox: Vec::new(),
                            ..effects
                        })
                        .await?;
                    }
                    return Ok(refusal.to_string());
                }
            };
            let (action, detail) = match verdict {
                Verdict::Acknowledged => (
                    AuditAction::BreakGlassAcknowledged,
                    "break-glass use reviewed: acknowledged".to_string(),
                ),
                Verdict::Revoked => (
                    AuditAction::BreakGlassRevoked,
                    "break-glass use reviewed: revoke now".to_string(),
                ),
            };
            let mut effects = Effects {
                audit: vec![AuditRecord {
                    at: now,
                    action,
                    actor: Some(by.clone()),
                    request: Some(request.id.clone()),
                    group: Some(request.group.clone()),
                    detail,
                }],
                outbox: vec![Outgoing::RefreshCards {
                    request: request.id.clone(),
                }],
                ..Effects::default()
            };
            if verdict == Verdict::Revoked {
                effects.jobs.push(
                    self.new_job(
                        JobKind::End {
                            request: request.id.clone(),
                            by: by.clone(),
                            admin_reason: Some("break-glass use revoked on review".into()),
                        },
                        now,
                        Self::lane_of(&request),
                    )
                    .await?,
                );
            }
            let write = Write {
                request: Some(next),
                effects,
            };
            if self.write_if_unchanged(&request, None, &write).await? == Applied::Written {
                self.commit_and_wake_for(&write.effects).await?;
                return Ok(match verdict {
                    Verdict::Acknowledged => format!(
                        "You acknowledged the break-glass use {id} ({} on `{}`); the access runs its course.",
                        literal(request.requester.name_or_id()),
                        request.group
                    ),
                    Verdict::Revoked => format!(
                        "Revoking {} now ({} on `{}`); they are told why.",
                        request.id.grant_id(),
                        literal(request.requester.name_or_id()),
                        request.group
                    ),
                });
            }
        }
        Ok(format!(
            "{id} kept changing while I recorded your review; please try again."
        ))
    }
}
