//! Answers to chat commands. Every refusal is a short message that says
//! what to type instead; nothing here waits on a provider or a chat API.

use super::{
    show_channel, show_time, AdminError, Engine, EngineError, FormChoice, Receipt, SubmitError,
};
use crate::domain::command::{self, AdminCommand, AuditFilter, Command};
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{Actor, Destination, GroupName, RequestId};
use crate::domain::request::RequestState;
use crate::domain::text::literal;
use crate::store::Applied;

/// What to answer the person who typed a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A private text answer.
    Text(String),
    /// Open the request form with these choices.
    OpenRequestForm(Vec<FormChoice>),
    /// Show this person's home.
    Home(Box<crate::chat::home::HomeView>),
}

/// Closed requests shown by `/jit list` (open ones are always shown).
const LIST_RECENT_CLOSED: usize = 5;

const HELP: &str = "*jitbot* gives you temporary access, approved by a person.
• `/jit request <group> <duration> <reason>` — ask for access, e.g. `/jit request prod-db 2h fixing INC-123`
• `/jit request <group>,<group> <duration> <reason>` — several groups in one request, granted all together
• `/jit request` — open the request form
• `/jit groups` — the groups you can request, with their limits
• `/jit list` — your requests and grants
• `/jit home` — your grants, requests and what waits for your approval, with buttons
• `/jit cancel <request-id>` — withdraw a pending request
• `/jit release <grant-id|group>` — give access back before it ends
• `/jit extend <grant-id> <duration> <reason>` — ask for more time on a grant
• `/jit breakglass <group> <duration> <reason>` — in an emergency, where the policy lets you: access at once, announced loudly and reviewed afterwards
• `/jit admin …` — for jitbot admins: map channels to groups, list grants, revoke, read the audit log, see unused access
Durations look like `90s`, `30m`, `2h`, `1h30m`, `1d`.";

/// Lines per page of `/jit admin grants` and `/jit admin audit`: well within
/// what a chat message shows without folding.
const ADMIN_PAGE_SIZE: usize = 20;

/// How much of an audit event's detail `/jit admin audit` shows.
const AUDIT_DETAIL_CHARS: usize = 160;

/// An admin change's answer: the refusal's own text, or the engine's error.
fn admin_answer(result: Result<String, AdminError>) -> Result<String, EngineError> {
    match result {
        Ok(text) => Ok(text),
        Err(AdminError::Engine(error)) => Err(error),
        Err(refusal) => Ok(refusal.to_string()),
    }
}

/// The answer to a filed (or refused) request or extension.
fn receipt_reply(result: Result<Receipt, SubmitError>) -> Reply {
    match result {
        Ok(receipt) => Reply::Text(receipt.summary()),
        Err(SubmitError::Engine(error)) => {
            tracing::error!(%error, "submit failed");
            Reply::Text(SubmitError::Engine(error).to_string())
        }
        Err(refusal) => Reply::Text(refusal.to_string()),
    }
}

impl Engine {
    pub async fn handle_command(
        &self,
        actor: Actor,
        origin: Option<Destination>,
        text: &str,
    ) -> Reply {
        let command = match command::parse(text) {
            Ok(command) => command,
            Err(error) => return Reply::Text(error.to_string()),
        };
        let result = match command {
            Command::Request {
                groups,
                duration,
                reason,
            } => {
                return receipt_reply(
                    self.submit_groups(actor, origin, &groups, duration, &reason)
                        .await,
                )
            }
            Command::BreakGlass {
                group,
                duration,
                reason,
            } => {
                return receipt_reply(
                    self.break_glass(actor, origin, &group, duration, &reason)
                        .await,
                )
            }
            Command::OpenRequestForm => {
                return match self.requestable_groups(&actor, origin.as_ref()).await {
                    Ok(choices) if choices.is_empty() => {
                        Reply::Text("There are no groups you are allowed to request.".into())
                    }
                    Ok(choices) => Reply::OpenRequestForm(choices),
                    Err(error) => Reply::Text(error.to_string()),
                }
            }
            Command::Home => {
                return match self.home(&actor).await {
                    Ok(home) => Reply::Home(Box::new(home.view(self.now()))),
                    Err(error) => Reply::Text(super::failure_text(&error, "changed")),
                }
            }
            Command::List => self.list(&actor).await,
            Command::Groups => return self.groups(&actor, origin.as_ref()).await,
            Command::Cancel(id) => self.cancel(&actor, &id).await,
            Command::Help => Ok(HELP.to_string()),
            Command::Release(target) => self.release(&actor, &target).await,
            Command::Extend {
                grant,
                duration,
                reason,
            } => {
                let result = self
                    .submit_extension(actor, origin, &grant, duration, &reason)
                    .await;
                return receipt_reply(result);
            }
            Command::Admin(admin) => self.admin(&actor, admin).await,
        };
        Reply::Text(result.unwrap_or_else(|error| {
            tracing::error!(%error, "command failed");
            super::failure_text(&error, "changed")
        }))
    }

    async fn admin(&self, actor: &Actor, command: AdminCommand) -> Result<String, EngineError> {
        let name = match &command {
            AdminCommand::Map { .. } => "map",
            AdminCommand::Unmap { .. } => "unmap",
            AdminCommand::Mappings => "mappings",
            AdminCommand::Grants { .. } => "grants",
            AdminCommand::Revoke { .. } => "revoke",
            AdminCommand::Audit { .. } => "audit",
            AdminCommand::Unused { .. } => "unused",
        };
        if let Some(refusal) = self.check_admin(actor, name).await? {
            return Ok(refusal);
        }
        match command {
            AdminCommand::Revoke { grant, reason } => {
                self.admin_revoke(actor, &grant, &reason).await
            }
            AdminCommand::Map { channel, group } => {
                let destination = Destination {
                    platform: command::channel_platform(&channel, actor.platform),
                    channel,
                };
                let shown = show_channel(&destination);
                admin_answer(match self.map_channel(actor, destination, &group).await {
                    Ok(true) => Ok(format!(
                        "Mapped {shown} to `{group}`: its approval cards go there now, with any other channel mapped to it (the policy's channel is the fallback when none is). `/jit admin mappings` lists them all."
                    )),
                    Ok(false) => Ok(format!("{shown} is already mapped to `{group}`.")),
                    Err(error) => Err(error),
                })
            }
            AdminCommand::Unmap { channel, group } => {
                let destination = Destination {
                    platform: command::channel_platform(&channel, actor.platform),
                    channel,
                };
                let shown = show_channel(&destination);
                admin_answer(
                    self.unmap_channel(actor, &destination, &group)
                        .await
                        .map(|()| format!("{shown} no longer gets `{group}`'s approval cards.")),
                )
            }
            AdminCommand::Mappings => self.mappings_text().await,
            AdminCommand::Grants { page } => self.grants_text(page).await,
            AdminCommand::Audit {
                filter,
                since,
                page,
            } => self.audit_text(filter, since, page).await,
            AdminCommand::Unused { group } => self.unused_text(group).await,
        }
    }

    async fn unused_text(&self, group: Option<GroupName>) -> Result<String, EngineError> {
        if let Some(name) = &group {
            match self.policy.group(name) {
                None => return Ok(format!("There is no group `{name}`.")),
                Some(g) if !g.watches_activity() => {
                    return Ok(format!(
                        "`{name}` has neither `idle_release` nor `sweep_unused`, so jitbot does not watch whether it is used."
                    ))
                }
                Some(_) => {}
            }
        }
        let entries = self.unused(group.as_ref().map(|g| g.as_str())).await?;
        if entries.is_empty() {
            return Ok("No watched grant or standing holder right now.".into());
        }
        let mut lines = vec!["Last seen use of watched access:".to_string()];
        for entry in entries {
            let what = match &entry.grant_id {
                Some(grant) => format!("grant {grant}"),
                None => "standing access".to_string(),
            };
            let last = entry
                .last_used
                .map(|at| format!("last used {}", show_time(at)))
                .unwrap_or_else(|| "never seen in use".into());
            lines.push(format!(
                "• `{}` — `{}` ({what}): {last}",
                entry.group,
                literal(&entry.principal)
            ));
        }
        Ok(lines.join("\n"))
    }

    async fn mappings_text(&self) -> Result<String, EngineError> {
        let views = self.mapping_views().await?;
        if views.is_empty() {
            return Ok("No group has an approval channel; cards go to approvers by DM.".into());
        }
        let mut lines = vec!["Where approval cards go:".to_string()];
        for view in views {
            let source = match &view.mapped {
                None => "policy".to_string(),
                Some((by, at)) => format!(
                    "mapped by {} on {}",
                    literal(by.name_or_id()),
                    show_time(*at)
                ),
            };
            lines.push(format!(
                "• `{}` → {} ({source})",
                view.group,
                show_channel(&view.destination)
            ));
        }
        Ok(lines.join("\n"))
    }

    async fn grants_text(&self, page: usize) -> Result<String, EngineError> {
        let grants = self.active_grants().await?;
        if grants.is_empty() {
            return Ok("There are no active grants.".into());
        }
        let pages = grants.len().div_ceil(ADMIN_PAGE_SIZE);
        let page = page.min(pages);
        let mut lines = vec![format!(
            "{} active grant{} (soonest expiry first), page {page} of {pages}:",
            grants.len(),
            if grants.len() == 1 { "" } else { "s" }
        )];
        for grant in grants
            .iter()
            .skip((page - 1) * ADMIN_PAGE_SIZE)
            .take(ADMIN_PAGE_SIZE)
        {
            let until = grant.expires_at().map(show_time).unwrap_or_default();
            lines.push(format!(
                "• {} `{}` — {} until {until}",
                grant.id.grant_id(),
                grant.group,
                literal(grant.requester.name_or_id())
            ));
        }
        if page < pages {
            lines.push(format!(
                "`/jit admin grants {}` for the next page.",
                page + 1
            ));
        }
        Ok(lines.join("\n"))
    }

    async fn audit_text(
        &self,
        filter: Option<AuditFilter>,
        since: Option<HumanDuration>,
        page: usize,
    ) -> Result<String, EngineError> {
        let since_at = since.map(|since| self.now() - since.as_chrono());
        let found = self
            .audit_page(filter.as_ref(), since_at, page, ADMIN_PAGE_SIZE)
            .await?;
        if found.items.is_empty() {
            return Ok(if page > 1 {
                "No more matching audit events.".into()
            } else {
                "No matching audit events.".into()
            });
        }
        let mut lines = vec![format!(
            "Audit events, newest first (page {}):",
            found.number
        )];
        for event in &found.items {
            let mut fields = vec![show_time(event.at), format!("{:?}", event.action)];
            fields.extend(event.group.as_ref().map(|g| format!("`{g}`")));
            fields.extend(event.request.as_ref().map(ToString::to_string));
            fields.extend(
                event
                    .actor
                    .as_ref()
                    .map(|a| format!("by {}", literal(a.name_or_id()))),
            );
            let detail: String = event.detail.chars().take(AUDIT_DETAIL_CHARS).collect();
            let ellipsis = if event.detail.chars().count() > AUDIT_DETAIL_CHARS {
                "…"
            } else {
                ""
            };
            lines.push(format!(
                "• {} — {}{ellipsis}",
                fields.join(" "),
                literal(&detail)
            ));
        }
        if found.more {
            let mut next = vec!["/jit admin audit".to_string()];
            next.extend(filter.map(|f| match f {
                AuditFilter::User(user) => format!("<@{user}>"),
                AuditFilter::Group(group) => group.to_string(),
                AuditFilter::BreakGlass => "break-glass".to_string(),
            }));
            next.extend(since.map(|s| s.to_string()));
            next.push((found.number + 1).to_string());
            lines.push(format!("`{}` for older events.", next.join(" ")));
        }
        Ok(lines.join("\n"))
    }

    async fn list(&self, actor: &Actor) -> Result<String, EngineError> {
        let requests = self.store.requests_of(actor).await?;
        if requests.is_empty() {
            return Ok("You have no requests. Try `/jit groups`, then `/jit request <group> <duration> <reason>`.".into());
        }
        let (open, closed): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.state.is_open());
        let mut lines = vec!["Your requests:".to_string()];
        for request in open.iter().chain(closed.iter().take(LIST_RECENT_CLOSED)) {
            let status = match &request.state {
                RequestState::Active { expires_at, .. } => {
                    format!(
                        "active as {} until {}",
                        request.id.grant_id(),
                        show_time(*expires_at)
                    )
                }
                RequestState::Pending => format!("pending since {}", show_time(request.created_at)),
                other => other.label().to_string(),
            };
            lines.push(format!(
                "• {} {} ({}) — {status}",
                request.id, request.group, request.duration
            ));
        }
        Ok(lines.join("\n"))
    }

    async fn groups(&self, actor: &Actor, origin: Option<&Destination>) -> Reply {
        let choices = match self.requestable_groups(actor, origin).await {
            Ok(choices) => choices,
            Err(error) => return Reply::Text(error.to_string()),
        };
        if choices.is_empty() {
            return Reply::Text("There are no groups you are allowed to request.".into());
        }
        let mut lines = vec!["Groups you can request:".to_string()];
        for choice in choices {
            let Some(group) = self.policy.group(&choice.name) else {
                continue;
            };
            let description = if group.description.is_empty() {
                String::new()
            } else {
                format!(" — {}", literal(&group.description))
            };
            let approvals = match group.steps.len() {
                0 | 1 => format!(
                    "{} approval{} needed",
                    group.approvals_required,
                    if group.approvals_required == 1 {
                        ""
                    } else {
                        "s"
                    }
                ),
                steps => format!("approved in {steps} steps"),
            };
            let break_glass = if group.break_glass.is_some() {
                "; break-glass available"
            } else {
                ""
            };
            lines.push(format!(
                "• {}{description} (up to {}, default {}, {approvals}{break_glass})",
                group.name, group.limits.max_duration, group.limits.default_duration,
            ));
        }
        Reply::Text(lines.join("\n"))
    }

    async fn cancel(&self, actor: &Actor, id: &RequestId) -> Result<String, EngineError> {
        loop {
            let Some(mut snapshot) = self.store.get_request(id).await? else {
                return Ok(format!(
                    "There is no request {id}. `/jit list` shows yours."
                ));
            };
            // A bundle is cancelled through any member still undecided; the
            // others are withdrawn with it.
            if snapshot.in_bundle() && snapshot.state != RequestState::Pending {
                let members = crate::store::bundle_members(self.store.as_ref(), &snapshot).await?;
                if let Some(pending) = members
                    .into_iter()
                    .find(|m| m.state == RequestState::Pending)
                {
                    snapshot = pending;
                }
            }
            let now = self.now();
            let (next, happened) = match snapshot.cancel(actor, now) {
                Ok(done) => done,
                Err(refusal) => return Ok(refusal.to_string()),
            };
            let audience = self.audience(&next).await?;
            let effects = self
                .effects_of(&next, &happened, Some(actor), &audience, None, now)
                .await?;
            let write = crate::store::Write {
                request: Some(next),
                effects,
            };
            let applied = self.write_if_unchanged(&snapshot, None, &write).await?;
            if applied == Applied::Written {
                self.commit_and_wake_for(&write.effects).await?;
                return Ok(if snapshot.in_bundle() {
                    format!("Request {id} ({}) is cancelled.", snapshot.groups_label())
                } else {
                    format!("Request {id} is cancelled.")
                });
            }
        }
    }
}
