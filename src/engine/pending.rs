//! Requests nobody decides: escalation after `escalate_after` to the
//! group's `escalate_to` (who may then decide too), and the time-out after
//! `pending_timeout`.

use super::{Announce, Engine, EngineError};
use crate::domain::duration::HumanDuration;
use crate::domain::job::{Job, JobKind};
use crate::domain::policy::GroupPolicy;
use crate::domain::request::AccessRequest;

impl Engine {
    /// Whether `job`, due `wait` after a step of the chain was asked,
    /// belongs to an earlier step than the one `request` waits for now:
    /// that step has its own escalation and time-out, due later.
    fn for_an_earlier_step(
        &self,
        request: &AccessRequest,
        job: &Job,
        wait: impl Fn(&GroupPolicy) -> Option<HumanDuration>,
    ) -> bool {
        let Some(group) = self.policy.group(&request.group) else {
            return false;
        };
        let Some(wait) = wait(group) else {
            return false;
        };
        job.due_at < request.step_asked_at(&group.step_requirements()) + wait.as_chrono()
    }

    pub(super) async fn run_escalate(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::Escalate { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        let Some(group) = self.policy.group(&request.group) else {
            return self.consume(job).await;
        };
        if self.for_an_earlier_step(&request, job, |g| g.escalate_after) {
            return self.consume(job).await;
        }
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
        .await
    }

    pub(super) async fn run_time_out(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::TimeOut { request: id } = &job.kind else {
            return Ok(());
        };
        let Some(request) = self.store.get_request(id).await? else {
            return self.consume(job).await;
        };
        if self.for_an_earlier_step(&request, job, |g| Some(g.limits.pending_timeout)) {
            return self.consume(job).await;
        }
        let now = self.now();
        self.record_step(
            job,
            &request,
            request.time_out(now),
            Announce::default(),
            now,
        )
        .await
    }
}
