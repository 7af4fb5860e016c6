//! Who someone is, from trusted sources only: the id they act with, the
//! policy's `[identities]` links, and the chat directory. The rules —
//! nobody decides their own request, an approver counts once — ask here,
//! and refuse when the answer is "cannot tell" ([`Sameness::Unknown`]).
//!
//! Two kinds of address are told apart. The address that may *give
//! rights* (match an email approver, find someone in an on-call schedule)
//! comes from `[identities]` or from the Slack workspace's verified
//! profile only; a Teams member's `email` is a tenant directory attribute
//! and never grants anything. For telling people *apart* the Teams
//! member's address is used too: without it every Teams decision on a
//! Slack requester's request would be "cannot tell" (an `[identities]`
//! link is firmer, and wins).

use super::Engine;
use crate::chat::ChatError;
use crate::domain::email::EmailAddress;
use crate::domain::identity::{KnownId, Person, Sameness};
use crate::domain::ids::{Actor, Platform};
use crate::domain::request::{AccessRequest, Decider};

impl Engine {
    /// `actor` with only what they prove by acting: a chat user's stored
    /// address is dropped (it may predate these rules, or come from a
    /// request body) and established again by [`Engine::person`].
    fn as_acting(actor: &Actor) -> Actor {
        match actor.platform {
            Platform::Email => actor.clone(),
            _ => Actor {
                email: None,
                ..actor.clone()
            },
        }
    }

    /// The person `actor` is by their own id and the policy's links alone.
    pub(super) fn linked_person(&self, actor: &Actor) -> Person {
        self.policy
            .identities
            .expand(Person::of(&Self::as_acting(actor)))
    }

    /// Everything jitbot can establish about who `actor` is: their id, the
    /// ids `[identities]` links to it, and the address their chat directory
    /// gives (the Slack profile, the Teams member). An error means the
    /// directory could not be asked.
    pub(super) async fn person(&self, actor: &Actor) -> Result<Person, ChatError> {
        let mut person = self.linked_person(actor);
        if actor.platform != Platform::Email {
            if let Some(directory) = self.directories.get(&actor.platform) {
                let found = directory
                    .email(&actor.user)
                    .await?
                    .and_then(|text| EmailAddress::parse(&text).ok());
                if let Some(address) = found {
                    person.know(KnownId::Email(address));
                }
            }
        }
        Ok(self.policy.identities.expand(person))
    }

    /// Whether `a` and `b` are one person: by ids and links first, and
    /// only when those cannot tell, by what the directories say.
    pub(super) async fn sameness(&self, a: &Actor, b: &Actor) -> Result<Sameness, ChatError> {
        let (linked_a, linked_b) = (self.linked_person(a), self.linked_person(b));
        match linked_a.compare(&linked_b) {
            // A shared id is final. So are two different accounts of one
            // platform: one person has one. Different *addresses* are not
            // (a person's profile may carry another), so those are asked.
            Sameness::Same => return Ok(Sameness::Same),
            Sameness::Different if !differ_only_by_address(&linked_a, &linked_b) => {
                return Ok(Sameness::Different)
            }
            _ => {}
        }
        let (a, b) = (self.person(a).await?, self.person(b).await?);
        Ok(a.compare(&b))
    }

    /// The address that may give `actor` rights (an email approver, an
    /// on-call schedule's member): linked in `[identities]`, else — on
    /// Slack — the workspace's verified profile. Never a request body's,
    /// never a Teams member attribute.
    pub(super) async fn rights_email(
        &self,
        actor: &Actor,
    ) -> Result<Option<EmailAddress>, ChatError> {
        if actor.platform == Platform::Email {
            return Ok(actor.email.clone());
        }
        if let Some(linked) = self.policy.linked_email(actor) {
            return Ok(Some(linked));
        }
        if !matches!(actor.platform, Platform::Slack | Platform::Console) {
            return Ok(None);
        }
        let Some(directory) = self.directories.get(&actor.platform) else {
            return Ok(None);
        };
        Ok(directory
            .email(&actor.user)
            .await?
            .and_then(|text| EmailAddress::parse(&text).ok()))
    }

    /// `actor` as approver lists may match them: with their rights address
    /// when one of `decided_by_email`'s lists names people by address.
    pub(super) async fn with_rights_email(
        &self,
        actor: &Actor,
        decided_by_email: bool,
    ) -> Result<Actor, ChatError> {
        let acting = Self::as_acting(actor);
        if acting.platform == Platform::Email {
            return Ok(acting);
        }
        let email = match self.policy.linked_email(&acting) {
            Some(linked) => Some(linked),
            None if decided_by_email => self.rights_email(&acting).await?,
            None => None,
        };
        Ok(acting.with_email(email))
    }

    /// The requester `actor`, to be reached at `address` (the API's
    /// `email`): only when it is the address jitbot knows them by. A body
    /// never names who someone is — nor where jitbot sends their request.
    pub async fn requester_reached_at(
        &self,
        actor: &Actor,
        address: &EmailAddress,
    ) -> Result<Actor, OwnAddressRefusal> {
        // Only the rights address: the request carries it as the
        // requester's, and a list that names people by address may match
        // it (a Teams member's address is a tenant attribute, never that).
        let known = tokio::time::timeout(super::PROMPT_LOOKUP_TIMEOUT, self.rights_email(actor))
            .await
            .map_err(|_| {
                OwnAddressRefusal::Unavailable("the chat directory did not answer".into())
            })?
            .map_err(|error| OwnAddressRefusal::Unavailable(error.to_string()))?;
        match known {
            Some(own) if &own == address => Ok(Self::as_acting(actor).with_email(Some(own))),
            _ => Err(OwnAddressRefusal::NotTheirs),
        }
    }

    /// What the rules must know of `by` deciding `request`: `may_decide`
    /// as checked, and whether they are the requester or someone whose
    /// approval counts already.
    pub(super) async fn judge(
        &self,
        request: &AccessRequest,
        by: &Actor,
        may_decide: bool,
    ) -> Result<Decider, ChatError> {
        let versus_requester = self.sameness(by, &request.requester).await?;
        let mut versus_approvers = Vec::new();
        for approval in &request.approvals {
            versus_approvers.push(self.sameness(by, &approval.by).await?);
        }
        Ok(Decider {
            by: by.clone(),
            may_decide,
            versus_requester,
            versus_approvers: Sameness::worst(versus_approvers),
        })
    }
}

/// Why the API's `email` was not taken.
#[derive(Debug)]
pub enum OwnAddressRefusal {
    /// It is not the address jitbot knows the caller by (or it knows none).
    NotTheirs,
    /// The directory could not be asked.
    Unavailable(String),
}

/// Whether two people known by ids and links differ only in their
/// addresses: then another address of one of them may still be the other's.
fn differ_only_by_address(a: &Person, b: &Person) -> bool {
    let accounts = |p: &Person| -> Vec<KnownId> {
        p.ids()
            .filter(|id| !matches!(id, KnownId::Email(_)))
            .cloned()
            .collect()
    };
    let (a_accounts, b_accounts) = (accounts(a), accounts(b));
    let mut a_only = Person::default();
    a_accounts.into_iter().for_each(|id| a_only.know(id));
    let mut b_only = Person::default();
    b_accounts.into_iter().for_each(|id| b_only.know(id));
    a_only.compare(&b_only) != Sameness::Different
}
