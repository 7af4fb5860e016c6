//! `jitbot console`: the whole engine — real store, policy, providers,
//! scheduler and outbox — with the terminal as its chat, like Hubot's shell
//! adapter. Type `/jit …` as the current user, `/as U0LEAD` to become
//! someone else, and a card's button number to press it; DMs, cards and
//! expiry warnings print as they are delivered.

mod terminal;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, Lines};
use tokio_util::sync::CancellationToken;

pub use terminal::{Button, ConsoleChat, ConsoleDirectory, Terminal};

use crate::chat::card::CardActionKind;
use crate::chat::directory::CachedDirectory;
use crate::chat::ChatPlatform;
use crate::clock::SystemClock;
use crate::domain::duration::HumanDuration;
use crate::domain::ids::{
    Actor, ChannelId, Destination, GrantId, GroupName, Platform, RequestId, UserId,
};
use crate::domain::job::Decision;
use crate::domain::policy::{user_actor, Policy};
use crate::domain::request::Verdict;
use crate::engine::{Click, ClickOutcome, Engine, FormChoice, Reply, Wakers};
use crate::providers::Providers;
use crate::store::{Store, StoreError, StoreLocation};

/// The channel commands are typed in until `/in` picks another.
const DEFAULT_CHANNEL: &str = "C0CONSOLE";

const HELP: &str = "Console commands:
  /jit <command>     a jitbot command as the current user (try /jit help)
  <number>           press the button with that number on a card
  /as <user id>      act as someone else, e.g. /as U0LEAD
  /in <channel id>   type commands in another channel, e.g. /in C0APPROVALS
  /home              your home: grants, requests, what waits for your approval
  /help              this text
  /quit              stop (ctrl-d works too)";

/// What the console starts with.
pub struct ConsoleOptions {
    pub user: String,
    /// Slack user groups the console should know: id → members.
    pub user_groups: HashMap<String, Vec<UserId>>,
    /// Whether the store is a fresh one of the console's own (said at
    /// start, so nobody takes it for the server's).
    pub fresh_store: bool,
    /// The audit chain's HMAC key (`JITBOT_AUDIT_KEY`), if set.
    pub audit_key: Option<crate::domain::audit::AuditKey>,
}

type Input<R> = Lines<R>;

/// Run the console until `/quit` or the end of `input`. Returns the exit code.
pub async fn run<R: AsyncBufRead + Unpin>(
    location: &StoreLocation,
    policy: Policy,
    providers: Providers,
    options: ConsoleOptions,
    input: R,
    terminal: Arc<Terminal>,
) -> Result<(), StoreError> {
    let Some(mut me) = console_user(&options.user) else {
        terminal.say(&format!(
            "`{}` is not a user id; start with --as U0ALICE (or another U… id).",
            options.user
        ));
        return Ok(());
    };
    let store: Arc<dyn Store> =
        crate::store::open_keyed(location, Arc::new(SystemClock), options.audit_key.clone())
            .await?;
    let policy = Arc::new(policy);
    let chat: Arc<dyn ChatPlatform> = Arc::new(ConsoleChat {
        terminal: terminal.clone(),
    });
    let platforms = HashMap::from([(Platform::Console, chat)]);
    let directory = Arc::new(CachedDirectory::new(Arc::new(ConsoleDirectory {
        user_groups: options.user_groups,
    })));
    let wakers = Wakers::default();
    let engine = Arc::new(
        Engine::new(
            Arc::new(SystemClock),
            store.clone(),
            policy.clone(),
            providers,
            HashMap::from([(Platform::Console, directory)]),
            wakers.clone(),
        )
        .with_chat(platforms.clone()),
    );
    let cancel = CancellationToken::new();
    let workers = crate::server::spawn_workers(&engine, policy, platforms, None, &wakers, &cancel);

    let store_note = if options.fresh_store {
        "a fresh store of its own, discarded at /quit (--use-configured-store to use the configured one)"
    } else {
        "the configured store"
    };
    terminal.say(&format!(
        "jitbot console — you are {me}, typing in #{DEFAULT_CHANNEL}, on {store_note}. Try `/jit groups`.\n{HELP}"
    ));
    let mut session = Session {
        engine: &engine,
        terminal: &terminal,
        channel: ChannelId::new(DEFAULT_CHANNEL),
    };
    let mut lines = input.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" || line == "/exit" {
            break;
        }
        session.handle(&mut me, &line, &mut lines).await;
    }
    terminal.say("Stopping: finishing running jobs and deliveries…");
    cancel.cancel();
    workers.wait().await;
    store.sync().await?;
    Ok(())
}

/// The console user acting under the policy's Slack id `id` (`U0LEAD`):
/// they match what the policy says of that id, and are audited as the
/// console user they are, never as the Slack user.
fn console_user(id: &str) -> Option<Actor> {
    let actor = user_actor(id).filter(|a| a.platform == Platform::Slack)?;
    Some(Actor::new(Platform::Console, actor.user, actor.name))
}

struct Session<'a> {
    engine: &'a Arc<Engine>,
    terminal: &'a Arc<Terminal>,
    channel: ChannelId,
}

impl Session<'_> {
    fn origin(&self) -> Destination {
        Destination {
            platform: Platform::Console,
            channel: self.channel.clone(),
        }
    }

    async fn handle<R: AsyncBufRead + Unpin>(
        &mut self,
        me: &mut Actor,
        line: &str,
        input: &mut Input<R>,
    ) {
        if line == "/help" {
            self.terminal.say(HELP);
        } else if let Some(who) = line.strip_prefix("/as ") {
            match console_user(who.trim()) {
                Some(actor) => {
                    *me = actor;
                    self.terminal.say(&format!("You are now {me}."));
                }
                None => self
                    .terminal
                    .say(&format!("`{}` is not a user id like U0LEAD.", who.trim())),
            }
        } else if let Some(channel) = line.strip_prefix("/in ") {
            self.channel = ChannelId::new(channel.trim().trim_start_matches('#'));
            self.terminal
                .say(&format!("You are now typing in #{}.", self.channel));
        } else if line == "/home" {
            let reply = self
                .engine
                .handle_command(me.clone(), Some(self.origin()), "home")
                .await;
            match reply {
                Reply::Home(view) => self.terminal.show_home(&me.user, &view),
                Reply::Text(text) => self.reply(me, &text),
                Reply::OpenRequestForm(_) => {}
            }
        } else if let Ok(number) = line.parse::<usize>() {
            self.press(me, number, input).await;
        } else if line.starts_with("/jit") || line.starts_with("jit ") {
            let reply = self
                .engine
                .handle_command(me.clone(), Some(self.origin()), line)
                .await;
            match reply {
                Reply::Text(text) => self.reply(me, &text),
                Reply::OpenRequestForm(choices) => self.request_form(me, choices, input).await,
                Reply::Home(view) => self.terminal.show_home(&me.user, &view),
            }
        } else {
            self.terminal
                .say("Type /jit help, /as <user>, /in <channel>, /home, a button number, /help or /quit.");
        }
    }

    fn reply(&self, me: &Actor, text: &str) {
        let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        self.terminal.say(&format!(
            "── jitbot, to {} only ──\n{}",
            me.user,
            indented.join("\n")
        ));
    }

    async fn ask<R: AsyncBufRead + Unpin>(
        &self,
        question: &str,
        input: &mut Input<R>,
    ) -> Option<String> {
        self.terminal.say(question);
        input
            .next_line()
            .await
            .ok()
            .flatten()
            .map(|l| l.trim().to_string())
    }

    /// The request form, one question at a time.
    async fn request_form<R: AsyncBufRead + Unpin>(
        &self,
        me: &Actor,
        choices: Vec<FormChoice>,
        input: &mut Input<R>,
    ) {
        let mut menu = vec!["── request form ──".to_string()];
        for (index, choice) in choices.iter().enumerate() {
            menu.push(format!(
                "  [{}] {}{} (default {})",
                index + 1,
                choice.name,
                if choice.description.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", choice.description)
                },
                choice.default_duration
            ));
        }
        self.terminal.say(&menu.join("\n"));
        let Some(picked) = self.ask("Group (number or name):", input).await else {
            return;
        };
        let group = match picked.parse::<usize>() {
            Ok(n) if (1..=choices.len()).contains(&n) => choices[n - 1].name.clone(),
            _ => match GroupName::parse(&picked) {
                Ok(name) => name,
                Err(error) => return self.reply(me, &error.to_string()),
            },
        };
        let Some(duration) = self.ask("Duration (empty for the default):", input).await else {
            return;
        };
        let duration = if duration.is_empty() {
            None
        } else {
            match HumanDuration::parse(&duration) {
                Ok(duration) => Some(duration),
                Err(error) => return self.reply(me, &error.to_string()),
            }
        };
        let Some(reason) = self.ask("Reason:", input).await else {
            return;
        };
        let text = match self
            .engine
            .submit(me.clone(), Some(self.origin()), &group, duration, &reason)
            .await
        {
            Ok(receipt) => receipt.summary(),
            Err(refusal) => refusal.to_string(),
        };
        self.reply(me, &text);
    }

    async fn press<R: AsyncBufRead + Unpin>(
        &self,
        me: &Actor,
        number: usize,
        input: &mut Input<R>,
    ) {
        let Some(button) = self.terminal.button(number) else {
            return self.reply(me, &format!("There is no button [{number}]."));
        };
        match button.kind {
            CardActionKind::Approve | CardActionKind::Deny => {
                let Ok(id) = RequestId::parse(&button.value) else {
                    return;
                };
                let decision = if button.kind == CardActionKind::Approve {
                    Decision::Approve
                } else {
                    let Some(reason) = self
                        .ask(&format!("Why deny {id}? (the requester is told)"), input)
                        .await
                    else {
                        return;
                    };
                    Decision::Deny { reason }
                };
                let pressed = if button.kind == CardActionKind::Approve {
                    "Approve"
                } else {
                    "Deny"
                };
                self.terminal
                    .say(&format!("({} pressed {pressed} on {id})", me.user));
                let click = Click {
                    request: id.clone(),
                    by: me.clone(),
                    decision,
                    reply_in: Some(self.origin()),
                    answers_inline: true,
                };
                match self.engine.click(click).await {
                    Ok(ClickOutcome::Recorded(_)) => {}
                    Ok(ClickOutcome::Refused(refusal)) => self.reply(me, &refusal.to_string()),
                    Ok(ClickOutcome::Missing) => {
                        self.reply(me, &format!("There is no request {id}."))
                    }
                    Err(error) => self.reply(me, &format!("That did not work: {error}")),
                }
            }
            CardActionKind::Acknowledge | CardActionKind::RevokeNow => {
                let Ok(id) = RequestId::parse(&button.value) else {
                    return;
                };
                let (verdict, pressed) = if button.kind == CardActionKind::Acknowledge {
                    (Verdict::Acknowledged, "Acknowledge")
                } else {
                    (Verdict::Revoked, "Revoke now")
                };
                self.terminal
                    .say(&format!("({} pressed {pressed} on {id})", me.user));
                match self.engine.review_break_glass(me, &id, verdict).await {
                    Ok(text) => self.reply(me, &text),
                    Err(error) => self.reply(me, &format!("That did not work: {error}")),
                }
            }
            CardActionKind::KeepIt => {
                let Ok(grant) = GrantId::parse(&button.value) else {
                    return;
                };
                self.terminal
                    .say(&format!("({} pressed Keep it on {grant})", me.user));
                match self.engine.keep_grant(me, &grant).await {
                    Ok(outcome) => self.reply(me, outcome.text()),
                    Err(error) => self.reply(me, &format!("That did not work: {error}")),
                }
            }
            CardActionKind::Extend => {
                let Ok(grant) = GrantId::parse(&button.value) else {
                    return;
                };
                let Some(answer) = self
                    .ask(
                        &format!("How much longer do you need {grant}, and why? (e.g. 30m still debugging)"),
                        input,
                    )
                    .await
                else {
                    return;
                };
                let (duration, reason) = answer.split_once(' ').unwrap_or((&answer, ""));
                let duration = match HumanDuration::parse(duration) {
                    Ok(duration) => duration,
                    Err(error) => return self.reply(me, &error.to_string()),
                };
                let text = match self
                    .engine
                    .submit_extension(
                        me.clone(),
                        Some(self.origin()),
                        &grant,
                        duration,
                        reason.trim(),
                    )
                    .await
                {
                    Ok(receipt) => receipt.summary(),
                    Err(refusal) => refusal.to_string(),
                };
                self.reply(me, &text);
            }
        }
    }
}
