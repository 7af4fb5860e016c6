//! Delivering one owed message through its chat platform, and reporting
//! what cannot be delivered at all to whoever must know.

use std::sync::Arc;
use std::time::Duration;

use super::OutboxWorker;
use crate::chat::card::{approval_card, bundle_card, expiry_warning, idle_warning};
use crate::chat::{Card, ChatError, ChatPlatform, PostedMessage};
use crate::domain::ids::{Platform, RequestId};
use crate::domain::message::Outgoing;
use crate::domain::policy::Policy;
use crate::domain::request::{AccessRequest, PostedCard};
use crate::domain::routing::approval_destinations;
use crate::store::{OutboxEntry, Store, StoreError, Write};

/// A message its destination refuses (a mail server's 5xx) is tried this
/// many times in all, then reported as undeliverable.
const REFUSED_ATTEMPTS: u32 = 3;

/// How one attempt went.
pub(super) enum Delivery {
    Done,
    /// Try again after `wait`; `rate_limited` when the chat API asked for
    /// the pause (the conversation then waits as a whole).
    Retry {
        wait: Duration,
        error: String,
        rate_limited: bool,
    },
}

impl OutboxWorker {
    pub(super) async fn deliver(&self, entry: &OutboxEntry) -> Delivery {
        let message = &entry.message;
        let result = match self.try_deliver(entry).await {
            // Refused again and again: it is not passing.
            Err(ChatError::Refused(error)) if entry.attempts + 1 >= REFUSED_ATTEMPTS => {
                Err(ChatError::Unreachable(error))
            }
            Err(ChatError::Refused(error)) => Err(ChatError::Failed(error)),
            other => other,
        };
        if let Err(error) = &result {
            let kind = match error {
                ChatError::RateLimited(_) => "rate_limited",
                ChatError::Unreachable(_) | ChatError::Refused(_) => "unreachable",
                ChatError::Failed(_) => "failed",
            };
            self.metrics
                .count_chat_error(self.platform_label(message).await, kind);
        }
        match result {
            Ok(()) => Delivery::Done,
            Err(ChatError::RateLimited(wait)) => {
                tracing::info!(?wait, "chat API rate limit; waiting as told");
                Delivery::Retry {
                    wait,
                    error: "rate limited".into(),
                    rate_limited: true,
                }
            }
            Err(ChatError::Unreachable(error) | ChatError::Refused(error)) => {
                tracing::error!(%error, ?message, "message cannot be delivered; dropping it");
                self.report_undeliverable_card(message, &error).await;
                self.report_unreachable_person(message, &error).await;
                Delivery::Done
            }
            Err(ChatError::Failed(error)) => {
                tracing::warn!(%error, attempts = entry.attempts + 1, "message delivery failed; will retry");
                Delivery::Retry {
                    wait: crate::domain::backoff::backoff(
                        entry.attempts,
                        rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2),
                    ),
                    error,
                    rate_limited: false,
                }
            }
        }
    }

    /// An approval card that cannot be posted (bot not in the channel,
    /// channel archived) would leave the request waiting for nobody: tell
    /// the requester, so they can ask an admin to fix the channel.
    async fn report_undeliverable_card(&self, message: &Outgoing, error: &str) {
        let (Outgoing::PostCard { request: id, .. } | Outgoing::DirectCard { request: id, .. }) =
            message
        else {
            return;
        };
        let request = match self.store.get_request(id).await {
            Ok(Some(request)) => request,
            _ => return,
        };
        let text = match message {
            Outgoing::DirectCard { to, .. } if to.platform == Platform::Email => format!(
                "I could not send the approval email for your request {id} ({}) to {}: {}. Ask an admin to check that approver's address; your request stays pending meanwhile.",
                request.group,
                crate::domain::text::literal(to.user.as_str()),
                crate::domain::text::literal(error)
            ),
            Outgoing::PostCard { to, .. } => format!(
                "I could not send the approval card for your request {id} ({}) to channel {}: {error}. Ask an admin to invite jitbot to the approval channel; your request stays pending meanwhile.",
                request.group, to.channel
            ),
            _ => format!(
                "I could not send the approval card for your request {id} ({}) to an approver: {error}. Ask an admin to invite jitbot to the approval channel; your request stays pending meanwhile.",
                request.group
            ),
        };
        let requester = request.requester_inbox(self.mailer.is_some());
        let effects = crate::store::Effects {
            outbox: vec![Outgoing::Direct {
                to: requester,
                text,
                about: None,
            }],
            ..Default::default()
        };
        if let Err(error) = self.store.record(&effects).await {
            tracing::error!(%error, "could not record the report of an undeliverable card");
        }
    }

    /// Someone jitbot cannot message at all (app not installed, user
    /// unknown) must not silently miss what their request needs them to
    /// know: the request's approval channels are told instead.
    async fn report_unreachable_person(&self, message: &Outgoing, error: &str) {
        let (to, id, what) = match message {
            Outgoing::Direct {
                to,
                text,
                about: Some(id),
            } => (to.clone(), id, text.clone()),
            Outgoing::ExpiryWarning { request, .. } => {
                match self.store.get_request(request).await {
                    Ok(Some(r)) => (
                        r.requester,
                        request,
                        format!("the warning that {} is about to end", request.grant_id()),
                    ),
                    _ => return,
                }
            }
            Outgoing::IdleWarning {
                request,
                release_at,
            } => match self.store.get_request(request).await {
                Ok(Some(r)) => (
                    r.requester,
                    request,
                    format!(
                        "the warning that {} is released at {} because nobody uses it",
                        request.grant_id(),
                        release_at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                ),
                _ => return,
            },
            _ => return,
        };
        let Ok(Some(request)) = self.store.get_request(id).await else {
            return;
        };
        let Some(group) = self.policy.group(&request.group) else {
            return;
        };
        let mappings = self.store.mappings().await.unwrap_or_default();
        let channels = approval_destinations(group, &mappings, self.platforms.keys().copied());
        let text = format!(
            ":warning: I cannot reach {} on {} ({error}), so they did not get this about {id} ({}): {what}",
            crate::domain::text::literal(to.name_or_id()),
            to.platform,
            request.group
        );
        let mut outbox: Vec<Outgoing> = channels
            .into_iter()
            .map(|to| Outgoing::ChannelNotice {
                to,
                text: text.clone(),
            })
            .collect();
        // With email set up, they get it by email too.
        if let Some(address) = self.address_of_chat_user(&to).await {
            outbox.push(Outgoing::Direct {
                to: crate::domain::ids::Actor::by_email(&address),
                text: what,
                about: None,
            });
        }
        let effects = crate::store::Effects {
            outbox,
            ..Default::default()
        };
        if let Err(error) = self.store.record(&effects).await {
            tracing::error!(%error, "could not record the report of an unreachable person");
        }
    }

    fn platform(&self, platform: Platform) -> Result<&Arc<dyn ChatPlatform>, ChatError> {
        self.platforms
            .get(&platform)
            .ok_or_else(|| ChatError::Unreachable(format!("{platform} is not configured")))
    }

    async fn try_deliver(&self, entry: &OutboxEntry) -> Result<(), ChatError> {
        let message = &entry.message;
        match message {
            Outgoing::DirectCard { request, to } if to.platform == Platform::Email => {
                self.mail_approval(entry, request, to).await
            }
            Outgoing::Direct { to, text, .. } if to.platform == Platform::Email => {
                self.mail_notice(entry, to, text).await
            }
            Outgoing::PostCard { request, to } => {
                self.post_card(request, to.platform, |platform, card| {
                    let channel = to.channel.clone();
                    async move { platform.post_card(&channel, &card).await }
                })
                .await
            }
            Outgoing::DirectCard { request, to } => {
                self.post_card(request, to.platform, |platform, card| {
                    let user = to.user.clone();
                    async move {
                        platform
                            .direct_message(&user, &card.fallback, Some(&card))
                            .await
                    }
                })
                .await
            }
            Outgoing::RefreshCards { request } => self.refresh_cards(request).await,
            Outgoing::PublishHome { user } => {
                let Some(homes) = &self.homes else {
                    return Ok(());
                };
                let view = homes.home_view(user).await.map_err(ChatError::Failed)?;
                self.platform(user.platform)?
                    .publish_home(&user.user, &view)
                    .await
            }
            Outgoing::Direct { to, text, .. } => self
                .platform(to.platform)?
                .direct_message(&to.user, text, None)
                .await
                .map(drop),
            Outgoing::Ephemeral {
                platform,
                channel,
                user,
                text,
            } => {
                self.platform(*platform)?
                    .ephemeral(channel, user, text)
                    .await
            }
            Outgoing::ChannelNotice { to, text } => {
                self.platform(to.platform)?
                    .post_text(&to.channel, text)
                    .await
            }
            Outgoing::SweepNotice { to, notice } => {
                match crate::chat::sweep_notice::sweep_notice_text(notice, to.platform) {
                    Some(text) => {
                        self.platform(to.platform)?
                            .post_text(&to.channel, &text)
                            .await
                    }
                    None => Ok(()),
                }
            }
            Outgoing::ExpiryWarning {
                request,
                expires_at,
            } => {
                let Some(grant) = self.read_request(request).await? else {
                    return Ok(());
                };
                let card = expiry_warning(&grant, *expires_at);
                let email_text = format!(
                    "{} To keep it longer, extend it before then (`/jit extend {} <duration> <reason>`); approvers decide as for a request.",
                    card.fallback,
                    request.grant_id()
                );
                self.warn_requester(entry, &grant, &card, email_text).await
            }
            Outgoing::IdleWarning {
                request,
                release_at,
            } => {
                let grant = self.read_request(request).await?;
                // Released or ended meanwhile: there is nothing to warn about.
                let Some(grant) = grant.filter(|g| g.activated_at().is_some()) else {
                    return Ok(());
                };
                let idle_release = self.policy.group(&grant.group).and_then(|g| g.idle_release);
                let card = idle_warning(&grant, *release_at, idle_release);
                let email_text = format!("{} Using it before then keeps it.", card.fallback);
                self.warn_requester(entry, &grant, &card, email_text).await
            }
        }
    }

    /// The request a message is about, as it is now.
    async fn read_request(&self, id: &RequestId) -> Result<Option<AccessRequest>, ChatError> {
        self.store
            .get_request(id)
            .await
            .map_err(|e| ChatError::Failed(e.to_string()))
    }

    /// DM a grant's requester a warning card — or, when they hear back by
    /// email, `email_text`.
    async fn warn_requester(
        &self,
        entry: &OutboxEntry,
        grant: &AccessRequest,
        card: &Card,
        email_text: String,
    ) -> Result<(), ChatError> {
        let inbox = grant.requester_inbox(self.mailer.is_some());
        if inbox.platform == Platform::Email {
            return self.mail_notice(entry, &inbox, &email_text).await;
        }
        self.platform(grant.requester.platform)?
            .direct_message(&grant.requester.user, &card.fallback, Some(card))
            .await
            .map(drop)
    }

    /// Post a request's card once, record where it went, and bring it up to
    /// date if the request changed while it was being posted.
    async fn post_card<F, Fut>(
        &self,
        id: &RequestId,
        platform: Platform,
        post: F,
    ) -> Result<(), ChatError>
    where
        F: FnOnce(Arc<dyn ChatPlatform>, Card) -> Fut,
        Fut: std::future::Future<Output = Result<PostedMessage, ChatError>>,
    {
        let store_error = |e: StoreError| ChatError::Failed(e.to_string());
        let Some(request) = self.store.get_request(id).await.map_err(store_error)? else {
            return Ok(());
        };
        let chat = self.platform(platform)?.clone();
        let card = self.render(&request).await;
        let posted = post(chat.clone(), card.clone()).await?;
        let record = PostedCard {
            platform,
            channel: posted.channel.clone(),
            message_id: posted.message_id.clone(),
        };
        self.store
            .apply(id, None, &mut |current| {
                let mut next = current?.clone();
                next.cards.push(record.clone());
                Some(Write {
                    request: Some(next),
                    effects: Default::default(),
                })
            })
            .await
            .map_err(store_error)?;
        if let Some(now) = self.store.get_request(id).await.map_err(store_error)? {
            let fresh = self.render(&now).await;
            if fresh != card {
                chat.update_card(&posted, &fresh).await?;
            }
        }
        Ok(())
    }

    /// The approval card of `request` as it stands.
    async fn render(&self, request: &AccessRequest) -> Card {
        current_card(self.store.as_ref(), &self.policy, request).await
    }

    async fn refresh_cards(&self, id: &RequestId) -> Result<(), ChatError> {
        let Some(request) = self
            .store
            .get_request(id)
            .await
            .map_err(|e| ChatError::Failed(e.to_string()))?
        else {
            return Ok(());
        };
        let card = self.render(&request).await;
        // A bundle's card may have been posted for any of its members (a
        // step's or an escalation's DM): all show the same bundle.
        let holders = crate::store::bundle_members(self.store.as_ref(), &request)
            .await
            .map_err(|e| ChatError::Failed(e.to_string()))?;
        for posted in holders.iter().flat_map(|holder| &holder.cards) {
            let message = PostedMessage {
                channel: posted.channel.clone(),
                message_id: posted.message_id.clone(),
            };
            match self
                .platform(posted.platform)?
                .update_card(&message, &card)
                .await
            {
                Ok(()) => {}
                // A deleted card does not stop the others from updating.
                Err(ChatError::Unreachable(error)) => {
                    tracing::warn!(%error, request = %id, "card cannot be updated")
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Which platform a message goes to, for the error metrics.
    async fn platform_label(&self, message: &Outgoing) -> &'static str {
        let platform = match message {
            Outgoing::PostCard { to, .. }
            | Outgoing::ChannelNotice { to, .. }
            | Outgoing::SweepNotice { to, .. } => Some(to.platform),
            Outgoing::DirectCard { to, .. } | Outgoing::Direct { to, .. } => Some(to.platform),
            Outgoing::PublishHome { user } => Some(user.platform),
            Outgoing::Ephemeral { platform, .. } => Some(*platform),
            Outgoing::RefreshCards { request }
            | Outgoing::ExpiryWarning { request, .. }
            | Outgoing::IdleWarning { request, .. } => self
                .store
                .get_request(request)
                .await
                .ok()
                .flatten()
                .map(|r| r.requester.platform),
        };
        match platform {
            Some(Platform::Slack) => "slack",
            Some(Platform::Teams) => "teams",
            Some(Platform::Email) => "email",
            Some(Platform::Console) => "console",
            None => "unknown",
        }
    }
}

/// The approval card of `request` as it stands: a bundle's shows all its
/// groups, an extension's the grant it extends.
pub(crate) async fn current_card(
    store: &dyn Store,
    policy: &Policy,
    request: &AccessRequest,
) -> Card {
    if request.in_bundle() {
        // Members that cannot be read now are shown at the next refresh.
        let members = crate::store::bundle_members(store, request)
            .await
            .unwrap_or_else(|_| vec![request.clone()]);
        if let Some(card) = bundle_card(&members, |name| policy.group(name)) {
            return card;
        }
    }
    let extended = match &request.extends {
        Some(id) => store.get_request(id).await.ok().flatten(),
        None => None,
    };
    approval_card(request, policy.group(&request.group), extended.as_ref())
}
