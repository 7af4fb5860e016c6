//! On-call schedules as the policy names them — `pagerduty:<schedule id>`,
//! `opsgenie:<schedule name>` — and the record of who was asked to approve
//! a request because they were on call when it was filed. Who is on call
//! is asked of the paging service by `crate::on_call`; this is only the
//! vocabulary.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::Actor;

/// Schedule ids and names are short; anything longer is a typo or an attack.
const MAX_SCHEDULE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PagingService {
    PagerDuty,
    Opsgenie,
}

impl PagingService {
    pub fn prefix(&self) -> &'static str {
        match self {
            PagingService::PagerDuty => "pagerduty",
            PagingService::Opsgenie => "opsgenie",
        }
    }

    /// The service a policy entry names by its prefix, with the rest.
    fn split(text: &str) -> Option<(PagingService, &str)> {
        let (prefix, rest) = text.split_once(':')?;
        let service = match prefix.trim().to_ascii_lowercase().as_str() {
            "pagerduty" => PagingService::PagerDuty,
            "opsgenie" => PagingService::Opsgenie,
            _ => return None,
        };
        Some((service, rest))
    }
}

/// One on-call schedule: a PagerDuty schedule id or an Opsgenie schedule
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule {
    pub service: PagingService,
    /// The schedule's id (PagerDuty) or name (Opsgenie), as written.
    pub id: String,
}

impl Schedule {
    /// Whether `text` is meant as a schedule (it has a paging service's
    /// prefix); then [`Schedule::parse`] must accept it.
    pub fn looks_like(text: &str) -> bool {
        PagingService::split(text.trim()).is_some()
    }

    pub fn parse(raw: &str) -> Result<Schedule, String> {
        let text = raw.trim();
        let Some((service, id)) = PagingService::split(text) else {
            return Err(format!(
                "`{text}` is not an on-call schedule (expected pagerduty:<schedule id> or opsgenie:<schedule name>)"
            ));
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(format!(
                "`{text}` names no schedule after `{}:`",
                service.prefix()
            ));
        }
        if id.chars().count() > MAX_SCHEDULE_CHARS || id.chars().any(char::is_control) {
            return Err(format!(
                "`{}:…` is not a usable schedule (control characters, or longer than {MAX_SCHEDULE_CHARS} characters)",
                service.prefix()
            ));
        }
        Ok(Schedule {
            service,
            id: id.to_string(),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service.prefix(), self.id)
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Schedule::parse(&text)
    }
}

impl From<Schedule> for String {
    fn from(schedule: Schedule) -> String {
        schedule.to_string()
    }
}

/// Someone asked to approve a request because they were on call for one of
/// its group's approver schedules when it was filed. Only they — not
/// whoever is on call at click time — may decide for that schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCallApprover {
    pub schedule: Schedule,
    pub person: Actor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_with_their_service() {
        let pd = Schedule::parse("pagerduty:PABC123").unwrap();
        assert_eq!(pd.service, PagingService::PagerDuty);
        assert_eq!(pd.id, "PABC123");
        let og = Schedule::parse(" opsgenie:Platform Team ").unwrap();
        assert_eq!(og.service, PagingService::Opsgenie);
        assert_eq!(og.id, "Platform Team");
        assert_eq!(og.to_string(), "opsgenie:Platform Team");
        assert!(Schedule::looks_like("PagerDuty:P1"));
    }

    #[test]
    fn a_schedule_needs_an_id_and_a_known_service() {
        assert!(Schedule::parse("pagerduty:").is_err());
        assert!(Schedule::parse("victorops:x").is_err());
        assert!(Schedule::parse("opsgenie:a\nb").is_err());
        assert!(Schedule::parse(&format!("opsgenie:{}", "x".repeat(201))).is_err());
        assert!(!Schedule::looks_like("U0LEAD"));
        assert!(!Schedule::looks_like("lead@example.com"));
    }

    #[test]
    fn a_schedule_survives_a_round_trip_through_json() {
        let schedule = Schedule::parse("opsgenie:Ops").unwrap();
        let json = serde_json::to_string(&schedule).unwrap();
        assert_eq!(json, "\"opsgenie:Ops\"");
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
    }
}
