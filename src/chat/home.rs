//! A person's home: the access they hold, what they asked for, what waits
//! for their decision, what happened lately — and, for admins, the live
//! grants and the pending requests across groups. Slack shows it as the
//! App Home tab. Platform-neutral, like [`crate::chat::card`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::card::CardText;
use crate::domain::ids::{Actor, GroupName};
use crate::domain::request::AccessRequest;

/// The requests waiting for someone's decision shown at most.
pub const TO_DECIDE_SHOWN: usize = 20;
/// Their own grants, and their own pending requests, shown at most (the
/// App Home tab holds at most 100 blocks).
pub const MINE_SHOWN: usize = 10;
/// Their own closed requests shown.
pub const HISTORY_SHOWN: usize = 10;
/// Live grants an admin sees, soonest end first.
pub const ADMIN_GRANTS_SHOWN: usize = 20;

/// What a home shows, as read from the store for one person.
#[derive(Debug, Clone, Default)]
pub struct Home {
    /// Their active grants, soonest end first.
    pub grants: Vec<AccessRequest>,
    /// Their requests waiting for a decision, oldest first.
    pub pending: Vec<AccessRequest>,
    /// Others' requests they may decide now, oldest first.
    pub to_decide: Vec<AccessRequest>,
    /// Their closed requests, newest first.
    pub history: Vec<AccessRequest>,
    /// For an admin: what all groups hold and wait for.
    pub admin: Option<AdminHome>,
}

#[derive(Debug, Clone, Default)]
pub struct AdminHome {
    /// Live grants across groups, soonest end first.
    pub grants: Vec<AccessRequest>,
    /// How many requests wait for a decision, per group.
    pub pending_per_group: Vec<(GroupName, usize)>,
}

/// One line of a home and its buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeRow {
    pub text: Vec<CardText>,
    pub buttons: Vec<HomeButton>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeButton {
    pub label: &'static str,
    /// The action id the click carries.
    pub action: &'static str,
    /// What it acts on (a request or grant id).
    pub value: String,
    /// Asked before it acts, when it cannot be undone.
    pub confirm: Option<String>,
    pub primary: bool,
}

/// A titled part of a home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeSection {
    pub title: String,
    pub rows: Vec<HomeRow>,
    /// Said when there are no rows.
    pub empty: &'static str,
}

/// A home laid out: sections, then the buttons under them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeView {
    pub sections: Vec<HomeSection>,
    pub buttons: Vec<HomeButton>,
}

/// Action ids of the home's own buttons (Approve, Deny and Extend are the
/// cards' own: the same click path).
pub const RELEASE_ACTION: &str = "jit_release";
pub const CANCEL_ACTION: &str = "jit_cancel";
pub const REQUEST_ACCESS_ACTION: &str = "jit_request_access";

/// The command a home's own button stands for (`None`: not one of them;
/// `Err`: its value is not the id it must be). The buttons take the
/// commands' path, with the same rules.
pub fn command_of(action: &str, value: &str) -> Option<Result<String, String>> {
    use crate::domain::ids::{GrantId, RequestId};
    Some(match action {
        RELEASE_ACTION => GrantId::parse(value)
            .map(|grant| format!("release {grant}"))
            .map_err(|_| format!("`{value}` is not a grant id.")),
        CANCEL_ACTION => RequestId::parse(value)
            .map(|request| format!("cancel {request}"))
            .map_err(|_| format!("`{value}` is not a request id.")),
        REQUEST_ACCESS_ACTION => Ok("request".to_string()),
        _ => return None,
    })
}

/// Builds a person's home view, wherever it is shown.
#[async_trait]
pub trait HomeSource: Send + Sync {
    async fn home_view(&self, user: &Actor) -> Result<HomeView, String>;
}

fn plain(text: impl Into<String>) -> CardText {
    CardText::Plain(text.into())
}

fn button(label: &'static str, action: &'static str, value: String) -> HomeButton {
    HomeButton {
        label,
        action,
        value,
        confirm: None,
        primary: false,
    }
}

/// "in 42m", "in 3h05m": time left until `end`.
fn time_left(end: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (end - now).num_minutes().max(0);
    match minutes {
        0 => "less than a minute left".to_string(),
        m if m < 60 => format!("{m}m left"),
        m => format!("{}h{:02}m left", m / 60, m % 60),
    }
}

impl Home {
    /// The home laid out at `now`.
    pub fn view(&self, now: DateTime<Utc>) -> HomeView {
        let grant_row = |grant: &AccessRequest, mine: bool| {
            let mut text = vec![plain(format!("{} — ", grant.group))];
            if !mine {
                text.extend([CardText::User(grant.requester.clone()), plain(" — ")]);
            }
            let end = grant.expires_at().unwrap_or(now);
            text.extend([
                plain(format!("grant {}, ends ", grant.id.grant_id())),
                CardText::Time(end),
                plain(format!(" ({})", time_left(end, now))),
            ]);
            let buttons = if mine {
                let grant_id = grant.id.grant_id().to_string();
                vec![
                    HomeButton {
                        confirm: Some(format!(
                            "Give back your access to {} now? The provider revokes it at once.",
                            grant.group
                        )),
                        ..button("Release", RELEASE_ACTION, grant_id.clone())
                    },
                    button("Extend", "jit_extend", grant_id),
                ]
            } else {
                Vec::new()
            };
            HomeRow { text, buttons }
        };
        let request_row = |request: &AccessRequest| {
            vec![
                plain(format!(
                    "{} — {} for {}: ",
                    request.id, request.group, request.duration
                )),
                CardText::Literal(request.reason.clone()),
            ]
        };
        let mut sections = vec![
            HomeSection {
                title: "Your access".into(),
                rows: self.grants.iter().map(|g| grant_row(g, true)).collect(),
                empty: "You hold no access through jitbot right now.",
            },
            HomeSection {
                title: "Your requests waiting for approval".into(),
                rows: self
                    .pending
                    .iter()
                    .map(|request| HomeRow {
                        text: request_row(request),
                        buttons: vec![button("Cancel", CANCEL_ACTION, request.id.to_string())],
                    })
                    .collect(),
                empty: "None.",
            },
            HomeSection {
                title: "Waiting for your approval".into(),
                rows: self
                    .to_decide
                    .iter()
                    .map(|request| {
                        let mut text =
                            vec![CardText::User(request.requester.clone()), plain(" asks: ")];
                        text.extend(request_row(request));
                        HomeRow {
                            text,
                            buttons: vec![
                                HomeButton {
                                    primary: true,
                                    ..button("Approve", "jit_approve", request.id.to_string())
                                },
                                button("Deny", "jit_deny", request.id.to_string()),
                            ],
                        }
                    })
                    .collect(),
                empty: "Nothing waits for you.",
            },
            HomeSection {
                title: "Recent".into(),
                rows: self
                    .history
                    .iter()
                    .map(|request| HomeRow {
                        text: vec![plain(format!(
                            "{} — {} for {}: {}",
                            request.id,
                            request.group,
                            request.duration,
                            request.state.label()
                        ))],
                        buttons: Vec::new(),
                    })
                    .collect(),
                empty: "Nothing yet.",
            },
        ];
        if let Some(admin) = &self.admin {
            sections.push(HomeSection {
                title: "Admin: live grants, soonest end first".into(),
                rows: admin.grants.iter().map(|g| grant_row(g, false)).collect(),
                empty: "No live grants.",
            });
            sections.push(HomeSection {
                title: "Admin: pending requests per group".into(),
                rows: admin
                    .pending_per_group
                    .iter()
                    .map(|(group, count)| HomeRow {
                        text: vec![plain(format!("{group}: {count}"))],
                        buttons: Vec::new(),
                    })
                    .collect(),
                empty: "No pending requests.",
            });
        }
        HomeView {
            sections,
            buttons: vec![HomeButton {
                primary: true,
                ..button("Request access", REQUEST_ACCESS_ACTION, "form".into())
            }],
        }
    }
}
