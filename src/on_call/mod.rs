//! Who is on call right now, asked of the paging service a schedule lives
//! in (PagerDuty or Opsgenie), as email addresses. Answers are kept for a
//! minute at most, so a burst of requests is one look-up and a hand-over
//! is seen within a minute. Failures are never cached: the next request
//! asks again.

mod opsgenie;
mod pagerduty;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::paging::{PagingAccount, PagingSettings, OPSGENIE_KEY_VAR, PAGERDUTY_TOKEN_VAR};
use crate::domain::email::EmailAddress;
use crate::domain::on_call::{PagingService, Schedule};
use crate::telemetry::Metrics;

/// How long an answer about who is on call is trusted.
const ROSTER_TTL: Duration = Duration::from_secs(60);
/// A single call's limit; a request waiting for its answer uses a much
/// shorter deadline of its own.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Schedules have a handful of people on call; more pages than this is a
/// misbehaving API.
const MAX_PAGES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0} is not set")]
    NotConfigured(&'static str),
    #[error("the paging service has no such schedule")]
    UnknownSchedule,
    #[error("{0}")]
    Failed(String),
}

/// People on call for one schedule.
pub type OnCallNow = Arc<HashSet<EmailAddress>>;

type Roster = HashMap<Schedule, (Instant, OnCallNow)>;

pub struct OnCall {
    /// Or why there is none: every look-up then fails (nobody on call).
    http: Result<reqwest::Client, String>,
    settings: PagingSettings,
    roster: Mutex<Roster>,
    /// Schedules already reported as unknown, so the log says it once.
    reported_unknown: Mutex<HashSet<Schedule>>,
    metrics: Arc<Metrics>,
}

impl OnCall {
    pub fn new(settings: PagingSettings, metrics: Arc<Metrics>) -> OnCall {
        let http = crate::outbound::client(CALL_TIMEOUT);
        OnCall {
            http,
            settings,
            roster: Mutex::new(HashMap::new()),
            reported_unknown: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    /// Who is on call for `schedule` now, from a minute-old answer at most.
    pub async fn people(&self, schedule: &Schedule) -> Result<OnCallNow, LookupError> {
        if let Some(people) = self.remembered(schedule) {
            return Ok(people);
        }
        let answer = self.ask(schedule).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(LookupError::UnknownSchedule) => "unknown_schedule",
            Err(LookupError::NotConfigured(_)) => "not_configured",
            Err(LookupError::Failed(_)) => "failed",
        };
        Metrics::count(&self.metrics.on_call_lookups, outcome);
        match answer {
            Ok(people) => {
                let people: OnCallNow = Arc::new(people.into_iter().collect());
                self.lock_roster()
                    .insert(schedule.clone(), (Instant::now(), people.clone()));
                Ok(people)
            }
            Err(error) => {
                self.report(schedule, &error);
                Err(error)
            }
        }
    }

    fn remembered(&self, schedule: &Schedule) -> Option<OnCallNow> {
        self.lock_roster()
            .get(schedule)
            .filter(|(at, _)| at.elapsed() < ROSTER_TTL)
            .map(|(_, people)| people.clone())
    }

    fn lock_roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        // A poisoned lock only means a panic mid-insert; the map is a cache.
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, schedule: &Schedule) -> Result<Vec<EmailAddress>, LookupError> {
        let http = self
            .http
            .as_ref()
            .map_err(|why| LookupError::Failed(format!("no HTTP client: {why}")))?;
        match schedule.service {
            PagingService::PagerDuty => {
                let account = Self::account(&self.settings.pagerduty, PAGERDUTY_TOKEN_VAR)?;
                pagerduty::on_call(http, account, &schedule.id).await
            }
            PagingService::Opsgenie => {
                let account = Self::account(&self.settings.opsgenie, OPSGENIE_KEY_VAR)?;
                opsgenie::on_call(http, account, &schedule.id).await
            }
        }
    }

    fn account<'a>(
        account: &'a Option<PagingAccount>,
        var: &'static str,
    ) -> Result<&'a PagingAccount, LookupError> {
        account.as_ref().ok_or(LookupError::NotConfigured(var))
    }

    /// Log a failed look-up; an unknown schedule or a missing token is a
    /// policy or deployment mistake that stays until someone fixes it, so
    /// it is said once, not on every request.
    fn report(&self, schedule: &Schedule, error: &LookupError) {
        match error {
            LookupError::Failed(why) => {
                tracing::warn!(%schedule, %why, "who is on call: look-up failed; counting nobody as on call")
            }
            LookupError::UnknownSchedule | LookupError::NotConfigured(_) => {
                let first = self
                    .reported_unknown
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(schedule.clone());
                if first {
                    tracing::warn!(%schedule, %error, "who is on call: cannot look up this schedule; nobody counts as on call for it");
                }
            }
        }
    }
}

/// The variables a policy's schedules need that are not set: without
/// them nobody counts as on call for those schedules, which an operator
/// should hear about at start rather than find out from a stuck request.
pub fn missing_credentials(
    policy: &crate::domain::policy::Policy,
    settings: &PagingSettings,
) -> Vec<&'static str> {
    let named: HashSet<PagingService> = policy
        .groups
        .iter()
        .flat_map(|group| {
            let approvers = group.approvers.iter().filter_map(|s| s.schedule());
            let auto = group
                .auto_approve
                .iter()
                .flat_map(|rule| rule.on_call.iter().flatten());
            approvers.chain(auto).map(|schedule| schedule.service)
        })
        .collect();
    let mut missing = Vec::new();
    if named.contains(&PagingService::PagerDuty) && settings.pagerduty.is_none() {
        missing.push(PAGERDUTY_TOKEN_VAR);
    }
    if named.contains(&PagingService::Opsgenie) && settings.opsgenie.is_none() {
        missing.push(OPSGENIE_KEY_VAR);
    }
    missing
}

/// What a paging API answered, as a look-up result: 404 means the
/// schedule does not exist, any other failure may pass.
async fn read_answer(
    service: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<serde_json::Value, LookupError> {
    let response = response
        .map_err(|e| LookupError::Failed(format!("{service}: {}", crate::outbound::failure(&e))))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(LookupError::UnknownSchedule);
    }
    if status.is_redirection() {
        return Err(LookupError::Failed(format!(
            "{service}: {}",
            crate::outbound::redirect_refused(status)
        )));
    }
    if !status.is_success() {
        return Err(LookupError::Failed(format!("{service}: HTTP {status}")));
    }
    response.json().await.map_err(|e| {
        LookupError::Failed(format!(
            "{service}: unreadable answer: {}",
            crate::outbound::failure(&e)
        ))
    })
}

/// `text` as an address, if it is one (paging services hold other names
/// too: teams, escalation targets).
fn address(text: Option<&str>) -> Option<EmailAddress> {
    EmailAddress::parse(text?).ok()
}
