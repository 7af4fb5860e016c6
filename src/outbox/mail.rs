//! Delivering owed messages by email: the approval email with an approver's
//! link, and notices for people reached by email.

use super::OutboxWorker;
use crate::chat::ChatError;
use crate::domain::email::EmailAddress;
use crate::domain::ids::{Actor, RequestId};
use crate::domain::request::RequestState;
use crate::email::compose::{approval_email, notice_email};
use crate::store::OutboxEntry;

impl OutboxWorker {
    fn mailer(&self) -> Result<&crate::email::Mailer, ChatError> {
        self.mailer.as_deref().ok_or_else(|| {
            ChatError::Unreachable("email is not configured (JITBOT_SMTP_URL)".into())
        })
    }

    /// The Message-ID of the email `entry` sends: the same each time the
    /// entry is tried, so a resend after a crash is recognisably one email.
    fn message_id(entry: &OutboxEntry) -> String {
        format!(
            "jitbot.{}.{}",
            entry.created_at.timestamp_millis(),
            entry.seq
        )
    }

    fn address_of(to: &Actor) -> Result<EmailAddress, ChatError> {
        EmailAddress::parse(to.user.as_str()).map_err(|e| ChatError::Unreachable(e.to_string()))
    }

    /// The email address of a chat user jitbot cannot message, when email
    /// is set up and their profile (or their request) has one.
    pub(super) async fn address_of_chat_user(&self, person: &Actor) -> Option<EmailAddress> {
        self.mailer.as_ref()?;
        if person.platform == crate::domain::ids::Platform::Email {
            return None;
        }
        if let Some(address) = &person.email {
            return Some(address.clone());
        }
        let directory = self.directories.get(&person.platform)?;
        let text = directory.email(&person.user).await.ok().flatten()?;
        EmailAddress::parse(&text).ok()
    }

    /// Ask an email approver to decide `request`, with their own link.
    pub(super) async fn mail_approval(
        &self,
        entry: &OutboxEntry,
        request: &RequestId,
        to: &Actor,
    ) -> Result<(), ChatError> {
        let mailer = self.mailer()?;
        let Some(request) = self
            .store
            .get_request(request)
            .await
            .map_err(|e| ChatError::Failed(e.to_string()))?
        else {
            return Ok(());
        };
        // Decided while this waited: a link to it would only say so.
        if request.state != RequestState::Pending {
            return Ok(());
        }
        let approver = Self::address_of(to)?;
        // For a bundle, the email is about the group that names them.
        let members = crate::store::bundle_members(self.store.as_ref(), &request)
            .await
            .map_err(|e| ChatError::Failed(e.to_string()))?;
        let request = members
            .into_iter()
            .find(|member| {
                self.policy
                    .group(&member.group)
                    .is_some_and(|group| group.names_email_approver(&approver))
            })
            .unwrap_or(request);
        let link = mailer.approval_link(&request.id, &approver)?;
        let email = approval_email(
            &request,
            self.policy.group(&request.group),
            &approver,
            &link,
        );
        mailer.send(&email, &Self::message_id(entry)).await
    }

    /// Tell someone reached by email what a chat user would get as a DM.
    pub(super) async fn mail_notice(
        &self,
        entry: &OutboxEntry,
        to: &Actor,
        text: &str,
    ) -> Result<(), ChatError> {
        let mailer = self.mailer()?;
        let email = notice_email(&Self::address_of(to)?, text);
        mailer.send(&email, &Self::message_id(entry)).await
    }
}
