//! Platform-neutral cards, and the approval card of a request. Slack renders
//! a [`Card`] as Block Kit, Teams as an Adaptive Card.

use chrono::{DateTime, Utc};

use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, GroupName, Platform};
use crate::domain::policy::{ApprovalStep, GroupPolicy};
use crate::domain::request::{AccessRequest, Approval, RequestState};
use crate::domain::text::literal;

/// One group offered in the request form, whatever draws the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormChoice {
    pub name: GroupName,
    pub description: String,
    /// Mapped to the conversation the form was asked for in: offered first.
    pub mapped_here: bool,
    pub default_duration: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// jitbot's words, with anyone else's (a group description) marked by
    /// [`literal`].
    pub title: String,
    /// Short label/value pairs (who, what, how long).
    pub fields: Vec<(String, CardText)>,
    /// The requester's own words (the reason), shown quoted and literally.
    pub body: Option<String>,
    /// The current outcome line, e.g. "Approved by @lead at 10:02".
    pub status: Vec<CardText>,
    pub actions: Vec<CardAction>,
    /// Summary for notifications and clients without cards; people's words
    /// in it are marked by [`literal`].
    pub fallback: String,
}

/// Text that platforms render in their own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardText {
    /// jitbot's own words.
    Plain(String),
    /// Someone's words (a reason, an error a provider sent): shown literally.
    Literal(String),
    /// A user, rendered as a mention where the platform supports it.
    User(Actor),
    /// A moment, rendered in the reader's time zone where supported.
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAction {
    pub kind: CardActionKind,
    pub label: String,
    /// What the action is about (a request id).
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardActionKind {
    Approve,
    Deny,
    /// Ask for more time on a grant (the value is the grant id).
    Extend,
    /// Keep a grant nobody used lately from its idle release (the value
    /// is the grant id); the click counts as use.
    KeepIt,
    /// Review a break-glass use and let it stand (the value is the
    /// request id).
    Acknowledge,
    /// Review a break-glass use and take the access away now.
    RevokeNow,
}

impl CardActionKind {
    /// The id carried by the button and matched when it is clicked.
    pub fn action_id(self) -> &'static str {
        match self {
            CardActionKind::Approve => "jit_approve",
            CardActionKind::Deny => "jit_deny",
            CardActionKind::Extend => "jit_extend",
            CardActionKind::KeepIt => "jit_keep",
            CardActionKind::Acknowledge => "jit_bg_ack",
            CardActionKind::RevokeNow => "jit_bg_revoke",
        }
    }

    pub fn from_action_id(id: &str) -> Option<CardActionKind> {
        match id {
            "jit_approve" => Some(CardActionKind::Approve),
            "jit_deny" => Some(CardActionKind::Deny),
            "jit_extend" => Some(CardActionKind::Extend),
            "jit_keep" => Some(CardActionKind::KeepIt),
            "jit_bg_ack" => Some(CardActionKind::Acknowledge),
            "jit_bg_revoke" => Some(CardActionKind::RevokeNow),
            _ => None,
        }
    }
}

fn plain(text: impl Into<String>) -> CardText {
    CardText::Plain(text.into())
}

fn theirs(text: impl Into<String>) -> CardText {
    CardText::Literal(text.into())
}

/// The approval card for `request` in its current state: buttons while it
/// is pending, the outcome (who, when) once decided. For an extension
/// request, `extended` is the grant it extends.
/// How a person is named where they cannot be mentioned: their name, and
/// how they acted when it was not through chat ("lead@example.com (by
/// email)").
pub fn who(actor: &Actor) -> String {
    match actor.platform {
        Platform::Email => format!("{} (by email)", actor.name_or_id()),
        _ => actor.name_or_id().to_string(),
    }
}

/// Each step of an approval chain: who approved it and when, or what it
/// still needs while it is the one asked.
fn chain_status(request: &AccessRequest, steps: &[ApprovalStep]) -> Vec<CardText> {
    let requirements: Vec<u32> = steps.iter().map(|s| s.approvals_required.max(1)).collect();
    let waiting = request.current_step(&requirements);
    let mut status = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        status.push(plain(format!("Step {} of {}: ", index + 1, steps.len())));
        let approvals: Vec<&Approval> = request
            .approvals
            .iter()
            .filter(|a| a.step == index)
            .collect();
        for (n, approval) in approvals.iter().enumerate() {
            status.extend([
                plain(if n == 0 { "approved by " } else { ", " }),
                CardText::User(approval.by.clone()),
                plain(" at "),
                CardText::Time(approval.at),
            ]);
        }
        let met = approvals.len() >= step.approvals_required.max(1) as usize;
        if !met && request.state == RequestState::Pending {
            let more = step.approvals_required.max(1) as usize - approvals.len();
            status.push(plain(if index == waiting {
                format!(
                    "{}waiting for {more} approval(s)",
                    if approvals.is_empty() { "" } else { "; " }
                )
            } else {
                "asked once the step before is met".to_string()
            }));
        } else if approvals.is_empty() {
            status.push(plain("not reached"));
        }
        status.push(plain(". "));
    }
    status
}

/// "Approved by @x at …. " for each approval so far.
fn approvals_status(request: &AccessRequest) -> Vec<CardText> {
    request
        .approvals
        .iter()
        .flat_map(|approval| {
            [
                plain("Approved by "),
                CardText::User(approval.by.clone()),
                plain(" at "),
                CardText::Time(approval.at),
                plain(". "),
            ]
        })
        .collect()
}

pub fn approval_card(
    request: &AccessRequest,
    group: Option<&GroupPolicy>,
    extended: Option<&AccessRequest>,
) -> Card {
    let required = group.map_or(1, |g| g.approvals_required).max(1);
    let mut fields = vec![
        (
            "Requester".to_string(),
            CardText::User(request.requester.clone()),
        ),
        ("Group".to_string(), plain(request.group.as_str())),
        ("Duration".to_string(), plain(request.duration.to_string())),
        ("Request".to_string(), plain(request.id.as_str())),
    ];
    if let Some(ticket) = &request.ticket {
        // Part of what the requester wrote: shown literally.
        fields.push(("Ticket".to_string(), theirs(ticket.as_str())));
    }
    if let Some(grant) = extended {
        fields.push(("Extends".to_string(), plain(grant.id.grant_id().as_str())));
        // While pending, what the total would become; once applied, the
        // grant already counts this extension.
        let already_counted = grant.extensions.iter().any(|e| e.request == request.id);
        let total = if already_counted {
            grant.total_duration()
        } else {
            grant.total_duration().saturating_add(request.duration)
        };
        fields.push(("Total with this".to_string(), plain(total.to_string())));
    }
    let steps = group.map(|g| g.steps.as_slice()).unwrap_or_default();
    if steps.len() > 1 {
        let waiting =
            request.current_step(&group.map(|g| g.step_requirements()).unwrap_or_default());
        if request.state == RequestState::Pending {
            fields.push((
                "Step".to_string(),
                plain(format!("{} of {}", waiting + 1, steps.len())),
            ));
        }
    } else if required > 1 {
        fields.push((
            "Approvals".to_string(),
            plain(format!("{} of {required}", request.approvals.len())),
        ));
    }
    let mut status = Vec::new();
    if request.state == RequestState::Pending {
        for asked in &request.on_call {
            status.extend([
                plain("Asked "),
                CardText::User(asked.person.clone()),
                plain(" (on call for "),
                theirs(asked.schedule.to_string()),
                plain("). "),
            ]);
        }
    }
    if steps.len() > 1 {
        status.extend(chain_status(request, steps));
    } else {
        status.extend(approvals_status(request));
    }
    match &request.state {
        RequestState::Pending => {}
        RequestState::Approved { .. } if request.break_glass.is_some() => status.push(plain(
            "Taken at once by break-glass, without approval; granting access…",
        )),
        RequestState::Approved { auto: true, .. } => {
            let why = request
                .auto_approval
                .as_ref()
                .map(|conditions| format!(" ({conditions})"))
                .unwrap_or_default();
            status.push(plain(format!(
                "Auto-approved by policy{why}; granting access…"
            )))
        }
        RequestState::Approved { .. } => status.push(plain("Granting access…")),
        RequestState::Active { expires_at, .. } => {
            status.extend([
                plain("Access is active until "),
                CardText::Time(*expires_at),
                plain("."),
            ]);
        }
        RequestState::Denied { by, at, reason } => {
            status.extend([
                plain("Denied by "),
                CardText::User(by.clone()),
                plain(" at "),
                CardText::Time(*at),
                plain(": "),
                theirs(reason),
            ]);
        }
        RequestState::Cancelled { at } if request.in_bundle() => {
            status.extend([plain("Withdrawn at "), CardText::Time(*at), plain(".")])
        }
        RequestState::Cancelled { at } => status.extend([
            plain("Cancelled by the requester at "),
            CardText::Time(*at),
            plain("."),
        ]),
        RequestState::TimedOut { at } => status.extend([
            plain("Timed out undecided at "),
            CardText::Time(*at),
            plain("."),
        ]),
        RequestState::Failed { error, .. } => {
            status.extend([plain("The grant failed: "), theirs(error)])
        }
        RequestState::Expired { at } => {
            status.extend([plain("Expired at "), CardText::Time(*at), plain(".")])
        }
        RequestState::Extended { until, .. } => status.extend([
            plain("Extension applied; the grant now ends at "),
            CardText::Time(*until),
            plain("."),
        ]),
        RequestState::Released { at } => status.extend([
            plain("Released by the requester at "),
            CardText::Time(*at),
            plain("."),
        ]),
        RequestState::Revoked { by, at, reason } => status.extend([
            plain("Revoked by "),
            CardText::User(by.clone()),
            plain(" at "),
            CardText::Time(*at),
            plain(": "),
            theirs(reason),
        ]),
    }
    if let Some(used) = &request.break_glass {
        match &used.review {
            None => status.push(plain(
                " Break-glass use: an approver must review it — Acknowledge, or Revoke now.",
            )),
            Some(review) => status.extend([
                plain(format!(" Break-glass use {} by ", review.verdict.label())),
                CardText::User(review.by.clone()),
                plain(" at "),
                CardText::Time(review.at),
                plain("."),
            ]),
        }
    }
    let actions = if request.awaits_break_glass_review() {
        vec![
            CardAction {
                kind: CardActionKind::Acknowledge,
                label: "Acknowledge".into(),
                value: request.id.to_string(),
            },
            CardAction {
                kind: CardActionKind::RevokeNow,
                label: "Revoke now".into(),
                value: request.id.to_string(),
            },
        ]
    } else if request.state == RequestState::Pending {
        vec![
            CardAction {
                kind: CardActionKind::Approve,
                label: "Approve".into(),
                value: request.id.to_string(),
            },
            CardAction {
                kind: CardActionKind::Deny,
                label: "Deny".into(),
                value: request.id.to_string(),
            },
        ]
    } else {
        Vec::new()
    };
    let description = group
        .map(|g| g.description.as_str())
        .filter(|d| !d.is_empty());
    let kind = if extended.is_some() {
        "Extension request"
    } else if request.break_glass.is_some() {
        "Break-glass access"
    } else {
        "Access request"
    };
    let title = match description {
        Some(description) => format!("{kind} for {} ({})", request.group, literal(description)),
        None => format!("{kind} for {}", request.group),
    };
    Card {
        fallback: format!(
            "{} asks for {} for {}: {} [{}]",
            literal(request.requester.name_or_id()),
            request.group,
            request.duration,
            literal(&request.reason),
            request.state.label()
        ),
        title,
        fields,
        body: (!request.reason.is_empty()).then(|| request.reason.clone()),
        status,
        actions,
    }
}

/// The one card of a bundle (several groups asked for in one request):
/// each member's group and where it stands, and Approve / Deny while any
/// member waits for its approvers. A click acts for the groups the clicker
/// may decide. `members` are in the bundle's order; `group_of` finds each
/// member's policy.
pub fn bundle_card<'p>(
    members: &[AccessRequest],
    group_of: impl Fn(&GroupName) -> Option<&'p GroupPolicy>,
) -> Option<Card> {
    let lead = members.first()?;
    let groups = lead.groups_label();
    let undecided = members.iter().any(|m| m.state == RequestState::Pending);
    let mut fields = vec![
        (
            "Requester".to_string(),
            CardText::User(lead.requester.clone()),
        ),
        ("Groups".to_string(), plain(groups.as_str())),
        ("Duration".to_string(), plain(lead.duration.to_string())),
        ("Request".to_string(), plain(lead.id.as_str())),
    ];
    if let Some(ticket) = &lead.ticket {
        fields.push(("Ticket".to_string(), theirs(ticket.as_str())));
    }
    let mut status = Vec::new();
    for member in members {
        let group = group_of(&member.group);
        status.push(plain(format!("{}: ", member.group)));
        match member.state {
            // Its approvers said yes; the grant waits for the others'.
            RequestState::Approved { auto, .. } if undecided => {
                status.extend(approvals_status(member));
                if auto {
                    status.push(plain("Approved by policy. "));
                }
                status.push(plain("Waiting for the other groups."));
            }
            RequestState::Pending => {
                status.extend(approval_card(member, group, None).status);
                // A chain's status says what each step waits for.
                let chained = group.is_some_and(|g| g.steps.len() > 1);
                if !chained {
                    let need = group.map_or(1, |g| g.approvals_required).max(1) as usize;
                    status.push(plain(format!(
                        "Waiting for {} approval(s).",
                        need.saturating_sub(member.approvals.len())
                    )));
                }
            }
            _ => status.extend(approval_card(member, group, None).status),
        }
        status.push(plain(" "));
    }
    let all_open = members.iter().all(|m| m.state.is_open());
    let actions = if undecided && all_open {
        [
            (CardActionKind::Approve, "Approve"),
            (CardActionKind::Deny, "Deny"),
        ]
        .into_iter()
        .map(|(kind, label)| CardAction {
            kind,
            label: label.into(),
            value: lead.id.to_string(),
        })
        .collect()
    } else {
        Vec::new()
    };
    let kind = if lead.extends.is_some() {
        "Extension request"
    } else {
        "Access request"
    };
    let states: Vec<String> = members
        .iter()
        .map(|m| format!("{} {}", m.group, m.state.label()))
        .collect();
    Some(Card {
        title: format!("{kind} for {groups}"),
        fallback: format!(
            "{} asks for {groups} for {}: {} [{}]",
            literal(lead.requester.name_or_id()),
            lead.duration,
            literal(&lead.reason),
            states.join(", ")
        ),
        fields,
        body: (!lead.reason.is_empty()).then(|| lead.reason.clone()),
        status,
        actions,
    })
}

/// The warning DM before a grant ends, with an Extend button.
pub fn expiry_warning(request: &AccessRequest, expires_at: chrono::DateTime<chrono::Utc>) -> Card {
    let grant = request.id.grant_id();
    Card {
        title: format!("Your access to {} ends soon", request.group),
        fields: vec![
            ("Grant".to_string(), plain(grant.as_str())),
            ("Ends at".to_string(), CardText::Time(expires_at)),
            ("Total so far".to_string(), plain(request.total_duration().to_string())),
        ],
        body: None,
        status: vec![plain(format!(
            "Need more time? Extend it (approvers decide as for a request), or type `/jit extend {grant} <duration> <reason>`."
        ))],
        actions: vec![CardAction {
            kind: CardActionKind::Extend,
            label: "Extend".into(),
            value: grant.to_string(),
        }],
        fallback: format!(
            "Your access to {} ({grant}) ends at {}.",
            request.group,
            expires_at.format("%Y-%m-%d %H:%M UTC")
        ),
    }
}

/// The DM before an unused grant is released early, with a Keep it button.
pub fn idle_warning(
    request: &AccessRequest,
    release_at: chrono::DateTime<chrono::Utc>,
    idle_release: Option<HumanDuration>,
) -> Card {
    let grant = request.id.grant_id();
    let unused = idle_release
        .map(|idle| format!(" for {idle}"))
        .unwrap_or_default();
    Card {
        title: format!("Your access to {} is about to be released", request.group),
        fields: vec![
            ("Grant".to_string(), plain(grant.as_str())),
            ("Released at".to_string(), CardText::Time(release_at)),
        ],
        body: None,
        status: vec![plain(format!(
            "Nobody has used it{unused}, so it is released early unless you use it or press Keep it."
        ))],
        actions: vec![CardAction {
            kind: CardActionKind::KeepIt,
            label: "Keep it".into(),
            value: grant.to_string(),
        }],
        fallback: format!(
            "Your access to {} ({grant}) has not been used{unused}; it is released at {} unless you use it or keep it.",
            request.group,
            release_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::duration::HumanDuration;
    use crate::domain::ids::{GroupName, Platform, RequestId, UserId};

    fn request() -> AccessRequest {
        AccessRequest::file(
            RequestId::parse("R-7K3Q9X").unwrap(),
            Actor::new(Platform::Slack, UserId::new("U0ALICE"), "alice"),
            GroupName::parse("prod-db").unwrap(),
            HumanDuration::parse("2h").unwrap(),
            "fixing INC-123".into(),
            None,
            false,
            Utc::now(),
        )
        .0
    }

    #[test]
    fn pending_card_has_buttons_and_decided_card_has_none() {
        let pending = approval_card(&request(), None, None);
        assert_eq!(pending.actions.len(), 2);
        assert_eq!(pending.actions[0].value, "R-7K3Q9X");
        let lead = Actor::new(Platform::Slack, UserId::new("U0LEAD"), "lead");
        let (denied, _) = request()
            .deny(
                &crate::domain::request::Decider::from_ids(&lead, true, &request()),
                "not today",
                Utc::now(),
            )
            .unwrap();
        let card = approval_card(&denied, None, None);
        assert!(card.actions.is_empty());
        assert!(card.status.contains(&CardText::User(lead)));
        assert!(card.status.contains(&CardText::Literal("not today".into())));
    }
}
