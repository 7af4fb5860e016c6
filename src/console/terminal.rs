//! The terminal as a chat platform: cards, DMs and notices are printed as
//! they are delivered, and each card button gets a number the person at
//! the keyboard can type to press it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::chat::card::{Card, CardActionKind, CardText};
use crate::chat::directory::Directory;
use crate::chat::home::HomeView;
use crate::chat::{ChatError, ChatPlatform, PostedMessage};
use crate::domain::ids::{ChannelId, Platform, UserId};
use crate::domain::text::render;

/// A button shown on screen: what it does, and to which request or grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub kind: CardActionKind,
    pub value: String,
}

/// Where output goes (stdout, or a buffer in tests), and the buttons shown
/// so far, numbered from 1.
pub struct Terminal {
    out: Mutex<Box<dyn Write + Send>>,
    buttons: Mutex<Vec<Button>>,
    next_message: AtomicU64,
}

impl Terminal {
    pub fn new(out: Box<dyn Write + Send>) -> Arc<Terminal> {
        Arc::new(Terminal {
            out: Mutex::new(out),
            buttons: Mutex::new(Vec::new()),
            next_message: AtomicU64::new(1),
        })
    }

    /// Print a block of text at once, so concurrent deliveries do not mix.
    /// People's words in it are shown, never obeyed as terminal codes.
    pub fn say(&self, text: &str) {
        let text = render(text, str::to_string, visible);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A closed terminal cannot be told anything; there is no one to tell.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// The button numbered `number`, if one was shown.
    pub fn button(&self, number: usize) -> Option<Button> {
        let buttons = self.buttons.lock().unwrap_or_else(|p| p.into_inner());
        number.checked_sub(1).and_then(|i| buttons.get(i).cloned())
    }

    fn message_id(&self) -> String {
        self.next_message.fetch_add(1, Ordering::SeqCst).to_string()
    }

    /// Someone's home: each section and its lines; the buttons a console
    /// can press (Approve, Deny, Extend) numbered, the others shown as the
    /// command that does the same.
    pub fn show_home(&self, who: &UserId, view: &HomeView) {
        let mut lines = vec![format!("── the home of {who} ──")];
        let mut buttons = self.buttons.lock().unwrap_or_else(|p| p.into_inner());
        for section in &view.sections {
            lines.push(format!("  {}", section.title));
            if section.rows.is_empty() {
                lines.push(format!("    {}", section.empty));
            }
            for row in &section.rows {
                let text: Vec<String> = row.text.iter().map(show).collect();
                let mut line = format!("    {}", text.join(""));
                for button in &row.buttons {
                    match CardActionKind::from_action_id(button.action) {
                        Some(kind) => {
                            buttons.push(Button {
                                kind,
                                value: button.value.clone(),
                            });
                            line.push_str(&format!(
                                "   [{}] {} {}",
                                buttons.len(),
                                button.label,
                                button.value
                            ));
                        }
                        None => line.push_str(&format!(
                            "   ({}: /jit {} {})",
                            button.label,
                            button.label.to_lowercase(),
                            button.value
                        )),
                    }
                }
                lines.push(line);
            }
        }
        lines.push("  (Request access: /jit request)".to_string());
        drop(buttons);
        self.say(&lines.join("\n"));
    }

    /// The card as indented lines, its buttons numbered.
    fn render(&self, heading: &str, text: Option<&str>, card: Option<&Card>) -> String {
        let mut lines = vec![format!("── {heading} ──")];
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            lines.extend(text.lines().map(|l| format!("  {l}")));
        }
        if let Some(card) = card {
            lines.push(format!("  {}", card.title));
            for (label, value) in &card.fields {
                lines.push(format!("  {label}: {}", show(value)));
            }
            if let Some(body) = &card.body {
                let body = visible(body);
                lines.push(format!("  > {body}"));
            }
            if !card.status.is_empty() {
                let status: Vec<String> = card.status.iter().map(show).collect();
                lines.push(format!("  {}", status.join("")));
            }
            if !card.actions.is_empty() {
                let mut buttons = self.buttons.lock().unwrap_or_else(|p| p.into_inner());
                let mut shown = Vec::new();
                for action in &card.actions {
                    buttons.push(Button {
                        kind: action.kind,
                        value: action.value.clone(),
                    });
                    shown.push(format!(
                        "[{}] {} {}",
                        buttons.len(),
                        action.label,
                        action.value
                    ));
                }
                lines.push(format!(
                    "  {}   (type the number to press)",
                    shown.join("   ")
                ));
            }
        }
        lines.join("\n")
    }
}

fn show(text: &CardText) -> String {
    match text {
        CardText::Plain(text) => text.clone(),
        CardText::Literal(text) => visible(text),
        CardText::User(actor) => format!("@{}", visible(actor.name_or_id())),
        CardText::Time(at) => at.format("%H:%M:%S UTC").to_string(),
    }
}

/// Someone's words for a terminal: control characters (an escape sequence
/// that would recolour or clear the screen, a carriage return that would
/// overwrite the line) are shown as escapes, not obeyed. A line break in a
/// reason stays a line break.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The terminal standing in for Slack: user and channel ids keep Slack's
/// shapes, so the same policy file works here and in a workspace.
pub struct ConsoleChat {
    pub terminal: Arc<Terminal>,
}

#[async_trait]
impl ChatPlatform for ConsoleChat {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn post_card(
        &self,
        channel: &ChannelId,
        card: &Card,
    ) -> Result<PostedMessage, ChatError> {
        self.terminal.say(
            &self
                .terminal
                .render(&format!("#{channel}"), None, Some(card)),
        );
        Ok(PostedMessage {
            channel: channel.clone(),
            message_id: self.terminal.message_id(),
        })
    }

    async fn update_card(&self, message: &PostedMessage, card: &Card) -> Result<(), ChatError> {
        let heading = format!("#{} (card updated)", message.channel);
        self.terminal
            .say(&self.terminal.render(&heading, None, Some(card)));
        Ok(())
    }

    async fn direct_message(
        &self,
        user: &UserId,
        text: &str,
        card: Option<&Card>,
    ) -> Result<PostedMessage, ChatError> {
        self.terminal.say(
            &self
                .terminal
                .render(&format!("DM to {user}"), Some(text), card),
        );
        Ok(PostedMessage {
            channel: ChannelId::new(format!("D{user}")),
            message_id: self.terminal.message_id(),
        })
    }

    async fn ephemeral(
        &self,
        channel: &ChannelId,
        user: &UserId,
        text: &str,
    ) -> Result<(), ChatError> {
        let heading = format!("#{channel}, only {user} sees");
        self.terminal
            .say(&self.terminal.render(&heading, Some(text), None));
        Ok(())
    }

    async fn post_text(&self, channel: &ChannelId, text: &str) -> Result<(), ChatError> {
        self.terminal.say(
            &self
                .terminal
                .render(&format!("#{channel}"), Some(text), None),
        );
        Ok(())
    }
}

/// Who is who at the console: user groups come from `--group S0DBAS=U0A,U0B`
/// options, and everyone's email is `<id in lowercase>@example.com`.
pub struct ConsoleDirectory {
    pub user_groups: HashMap<String, Vec<UserId>>,
}

#[async_trait]
impl Directory for ConsoleDirectory {
    async fn user_group_members(&self, group: &str) -> Result<Vec<UserId>, ChatError> {
        Ok(self.user_groups.get(group).cloned().unwrap_or_default())
    }

    async fn user_email(&self, user: &UserId) -> Result<Option<String>, ChatError> {
        Ok(Some(format!(
            "{}@example.com",
            user.as_str().to_lowercase()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::literal;

    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn nobodys_escape_sequences_reach_the_terminal() {
        let screen = Screen::default();
        let terminal = Terminal::new(Box::new(screen.clone()));
        let text = format!("denied: {}", literal("\u{1b}[2Jgone\rx"));
        terminal.say(&terminal.render("DM", Some(&text), None));
        let shown = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\r'),
            "{shown:?}"
        );
        assert!(shown.contains("denied: \\u{1b}[2Jgone\\rx"), "{shown:?}");
    }
}
