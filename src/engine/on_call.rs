//! On-call schedules in decisions: whether a requester is on call now (for
//! `auto_approve.on_call`), and who is asked to approve for a group's
//! on-call approver schedules. Both are looked up while a person waits for
//! the ack, so each has a deadline; a look-up that fails or is late means
//! "nobody on call" — the card is posted, never an error.

use std::time::Duration;

use futures_util::future::join_all;

use super::Engine;
use crate::domain::email::EmailAddress;
use crate::domain::ids::{Actor, Platform};
use crate::domain::on_call::{OnCallApprover, Schedule};
use crate::domain::policy::GroupPolicy;

/// Each of a request's two on-call questions (is the requester on call?
/// who is asked to approve?) gets at most this long: with the other checks
/// on the path, the ack stays well inside Slack's 3 s.
pub(super) const ON_CALL_DEADLINE: Duration = Duration::from_millis(1000);

impl Engine {
    /// The first of `schedules` (in policy order) `requester` is on call
    /// for now, if any.
    pub(super) async fn on_call_schedule_of(
        &self,
        schedules: &[Schedule],
        requester: &Actor,
    ) -> Option<Schedule> {
        let work = async {
            let email = self.email_for_on_call(requester).await?;
            let rosters = join_all(schedules.iter().map(|s| self.on_call.people(s))).await;
            schedules
                .iter()
                .zip(rosters)
                .find(|(_, people)| people.as_ref().is_ok_and(|p| p.contains(&email)))
                .map(|(schedule, _)| schedule.clone())
        };
        match tokio::time::timeout(ON_CALL_DEADLINE, work).await {
            Ok(found) => found,
            Err(_) => {
                crate::telemetry::Metrics::count(&self.metrics.on_call_lookups, "timed_out");
                tracing::warn!(group_schedules = ?schedules, "who is on call: no answer in time; the request goes to its approvers");
                None
            }
        }
    }

    /// The requester's address to find them in a schedule: one that may
    /// give them rights ([`Engine::rights_email`]) — never one a request
    /// body named.
    async fn email_for_on_call(&self, person: &Actor) -> Option<EmailAddress> {
        match self.rights_email(person).await {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(%error, "who is on call: cannot read the requester's email");
                None
            }
        }
    }

    /// Whoever is on call now for `group`'s approver schedules, as the
    /// Slack users they are (found by email): they get a DM card and may
    /// decide. Someone Slack does not know by that address is skipped.
    pub(super) async fn on_call_approvers(&self, group: &GroupPolicy) -> Vec<OnCallApprover> {
        let schedules: Vec<&Schedule> = group
            .approvers
            .iter()
            .filter_map(|s| s.schedule())
            .collect();
        if schedules.is_empty() {
            return Vec::new();
        }
        let work = async {
            let mut asked = Vec::new();
            for schedule in schedules.iter().copied() {
                let Ok(people) = self.on_call.people(schedule).await else {
                    continue;
                };
                let mut people: Vec<&EmailAddress> = people.iter().collect();
                people.sort();
                for email in people {
                    if let Some(person) = self.slack_user_by_email(email).await {
                        asked.push(OnCallApprover {
                            schedule: schedule.clone(),
                            person,
                        });
                    }
                }
            }
            asked
        };
        match tokio::time::timeout(ON_CALL_DEADLINE, work).await {
            Ok(asked) => asked,
            Err(_) => {
                crate::telemetry::Metrics::count(&self.metrics.on_call_lookups, "timed_out");
                tracing::warn!(group = %group.name, "on-call approvers: no answer in time; the request goes to the group's other approvers");
                Vec::new()
            }
        }
    }

    async fn slack_user_by_email(&self, email: &EmailAddress) -> Option<Actor> {
        let directory = self.directories.get(&Platform::Slack)?;
        match directory.user_by_email(email.as_str()).await {
            Ok(Some(user)) => Some(
                Actor::new(Platform::Slack, user, email.as_str()).with_email(Some(email.clone())),
            ),
            Ok(None) => {
                tracing::warn!(%email, "on call, but Slack knows nobody by this address; not asked");
                None
            }
            Err(error) => {
                tracing::warn!(%email, %error, "on call, but the Slack look-up failed; not asked");
                None
            }
        }
    }
}
