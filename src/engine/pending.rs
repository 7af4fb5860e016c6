//! Requests nobody decides: escalation after `escalate_after` to the
//! group's `escalate_to` (who may then decide too), and the time-out after
//! `pending_timeout`.

use std::collections::HashSet;

use super::{Announce, Engine, EngineError, Lookup};
use crate::chat::ChatError;
use crate::domain::ids::{Actor, Platform};
use crate::domain::job::{Job, JobKind};
use crate::domain::policy::{GroupPolicy, Subject};
use crate::domain::request::AccessRequest;

impl Engine {
    /// Whether `by` may decide `request`: an approver of its group, or —
    /// once the request was escalated — one of the group's `escalate_to`.
    pub(super) async fn may_approve(
        &self,
        request: &AccessRequest,
        group: &GroupPolicy,
        by: &Actor,
        lookup: Lookup,
    ) -> Result<bool, ChatError> {
        if self.is_named(&group.approvers, by, lookup).await? {
            return Ok(true);
        }
        if request.escalated_at.is_some() {
            return self.is_named(&group.escalate_to, by, lookup).await;
        }
        Ok(false)
    }

    /// The people `subjects` name, with user groups expanded.
    async fn people(&self, subjects: &[Subject]) -> Result<Vec<Actor>, ChatError> {
        let mut seen = HashSet::new();
        let mut people = Vec::new();
        for subject in subjects {
            let found: Vec<Actor> = match subject {
                Subject::SlackUser(id) => vec![Actor::new(Platform::Slack, id.clone(), "")],
                Subject::TeamsUser(id) => vec![Actor::new(Platform::Teams, id.clone(), "")],
                Subject::SlackUserGroup(group) => match self.directories.get(&Platform::Slack) {
                    Some(directory) => directory
                        .members(group)
                        .await?
                        .iter()
                        .map(|id| Actor::new(Platform::Slack, id.clone(), ""))
                        .collect(),
                    None => Vec::new(),
                },
                Subject::Anyone => Vec::new(),
            };
            for person in found {
                let reachable = self.directories.contains_key(&person.platform);
                if reachable && seen.insert((person.platform, person.user.clone())) {
                    people.push(person);
                }
            }
        }
        Ok(people)
    }

    pub(super) async fn run_escalate(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Escalate { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id)? else {
            return self.consume(job);
        };
        let Some(group) = self.policy.group(&request.group) else {
            return self.consume(job);
        };
        let to = match self.people(&group.escalate_to).await {
            Ok(to) => to,
            Err(error) => {
                tracing::warn!(request = %id, %error, "cannot resolve escalation recipients; retrying");
                return self.retry_later(job, Default::default()).await;
            }
        };
        let now = self.now();
        self.record_step(
            job,
            &request,
            request.escalate(to, now),
            Announce::default(),
            now,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn run_time_out(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::TimeOut { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id)? else {
            return self.consume(job);
        };
        let now = self.now();
        self.record_step(
            job,
            &request,
            request.time_out(now),
            Announce::default(),
            now,
        )
        .await?;
        Ok(())
    }
}
