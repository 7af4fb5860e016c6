//! Email: the third way to approve (after Slack and Teams), and how people
//! jitbot cannot reach in chat hear what they are owed. Emails are written
//! to the durable outbox like chat messages and sent from there over SMTP;
//! the link in an approval email opens a page (`http::approve`) that asks
//! before anything is decided.
//!
//! - `token`: the signed link tokens and the page's CSRF field.
//! - `compose`: the approval email and notices, plain text and HTML.
//! - `html`: escaping for everything HTML.

pub mod compose;
pub mod html;
pub mod token;

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::chat::ChatError;
use crate::config::email::{EmailSettings, SmtpSecurity};
use crate::domain::email::EmailAddress;
use crate::domain::ids::RequestId;
use compose::Email;
use token::{ApprovalLink, TokenKey};

/// An SMTP conversation that takes longer than this has failed (and is
/// tried again later).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends email through the configured SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: EmailAddress,
    /// Where approval links point, when set.
    public_url: Option<String>,
    key: Option<TokenKey>,
}

impl Mailer {
    /// The mailer `settings` describe; `None` when no SMTP server is set.
    pub fn new(settings: &EmailSettings) -> Result<Option<Mailer>, String> {
        let Some(smtp) = &settings.smtp else {
            return Ok(None);
        };
        let builder = match smtp.security {
            // A local relay: no TLS, no AUTH.
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    .map_err(|e| format!("JITBOT_SMTP_URL: {e}"))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| format!("JITBOT_SMTP_URL: {e}"))?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            sender: settings.sender(),
            public_url: settings.public_url.clone(),
            key: settings.token_key.clone().map(TokenKey::new),
        }))
    }

    /// The approval page's address for `approver` and `request`.
    pub fn approval_link(
        &self,
        request: &RequestId,
        approver: &EmailAddress,
    ) -> Result<String, ChatError> {
        let (Some(base), Some(key)) = (&self.public_url, &self.key) else {
            return Err(ChatError::Unreachable(
                "approval links need JITBOT_PUBLIC_URL and JITBOT_EMAIL_TOKEN_KEY".into(),
            ));
        };
        let token = key.token(&ApprovalLink {
            request: request.clone(),
            approver: approver.clone(),
        });
        Ok(format!("{base}/approve/{token}"))
    }

    /// Send `email`. `message_id` names this message for good (the same
    /// id when the outbox sends it again after a crash, so mail clients
    /// show it once).
    pub async fn send(&self, email: &Email, message_id: &str) -> Result<(), ChatError> {
        let sender_domain = self
            .sender
            .as_str()
            .rsplit_once('@')
            .map_or("localhost", |(_, domain)| domain);
        let from = Mailbox::new(Some("jitbot".into()), self.address(&self.sender)?);
        let message = Message::builder()
            .from(from)
            .to(Mailbox::new(None, self.address(&email.to)?))
            .subject(email.subject.clone())
            .message_id(Some(format!("<{message_id}@{sender_domain}>")))
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| ChatError::Unreachable(format!("cannot compose the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx: the server refuses this message (an unknown mailbox, a
            // policy); the outbox tries a few times, then reports it.
            Err(error) if error.is_permanent() => Err(ChatError::Refused(format!(
                "the mail server refused it: {error}"
            ))),
            // 4xx, a dropped connection, a timeout: try again later.
            Err(error) => Err(ChatError::Failed(format!("sending email: {error}"))),
        }
    }

    fn address(&self, address: &EmailAddress) -> Result<lettre::Address, ChatError> {
        address
            .as_str()
            .parse()
            .map_err(|e| ChatError::Unreachable(format!("`{address}`: {e}")))
    }
}
