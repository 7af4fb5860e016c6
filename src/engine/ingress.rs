//! What the HTTP layer asks of the engine about a delivery itself, before
//! (or beside) what it says: was it seen before (a replay), and who sent it
//! (a Teams user and conversation to remember for later messages).

use super::{Engine, EngineError};
use crate::domain::contact::TeamsContact;

/// A Teams user as an activity showed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsSighting {
    pub aad_object_id: String,
    pub teams_id: String,
    pub name: String,
    pub tenant_id: String,
    pub service_url: String,
    pub conversation: String,
    /// The conversation is the user's 1:1 chat with the bot.
    pub personal: bool,
}

impl Engine {
    /// Accept a signed delivery once: `false` if a delivery with this
    /// signature (in canonical bytes) and signing time was seen before.
    pub async fn accept_delivery(
        &self,
        signed_at: i64,
        signature: &[u8],
    ) -> Result<bool, EngineError> {
        Ok(self.store.remember_delivery(signed_at, signature).await?)
    }

    /// Forget deliveries signed before `cutoff` (outside the replay window).
    pub async fn forget_deliveries_before(&self, cutoff: i64) -> Result<usize, EngineError> {
        Ok(self.store.forget_deliveries_before(cutoff).await?)
    }

    /// Keep what is needed to reach a conversation, and a Teams user, later.
    pub async fn remember_teams_conversation(
        &self,
        conversation: &str,
        service_url: &str,
    ) -> Result<(), EngineError> {
        Ok(self
            .store
            .put_teams_conversation(conversation, service_url)
            .await?)
    }

    /// Keep (or refresh) a Teams user's contact, keeping the 1:1 chat
    /// already known unless this sighting is in one.
    pub async fn remember_teams_user(&self, seen: TeamsSighting) -> Result<(), EngineError> {
        let aad = seen.aad_object_id.to_lowercase();
        let known = self.store.teams_contact(&aad).await?;
        let personal = if seen.personal {
            Some(seen.conversation.clone())
        } else {
            known.as_ref().and_then(|k| k.personal_conversation.clone())
        };
        let contact = TeamsContact {
            aad_object_id: aad,
            teams_id: seen.teams_id,
            name: seen.name,
            tenant_id: seen.tenant_id,
            service_url: seen.service_url,
            personal_conversation: personal,
            seen_in: seen.conversation,
        };
        if known.as_ref() != Some(&contact) {
            self.store.put_teams_contact(&contact).await?;
        }
        Ok(())
    }
}
