//! The Teams client's contact book, kept in the store: who a Teams user is
//! to the Bot Connector, and which service serves a conversation. Wired
//! into the client when the server is assembled, so the chat adapter keeps
//! no state and never reaches the store itself.

use std::sync::Arc;

use async_trait::async_trait;

use crate::chat::teams::ContactBook;
use crate::chat::ChatError;
use crate::domain::contact::TeamsContact;
use crate::store::{Store, StoreError};

pub struct StoreContactBook {
    store: Arc<dyn Store>,
}

impl StoreContactBook {
    pub fn new(store: Arc<dyn Store>) -> StoreContactBook {
        StoreContactBook { store }
    }
}

fn failed(error: StoreError) -> ChatError {
    ChatError::Failed(error.to_string())
}

#[async_trait]
impl ContactBook for StoreContactBook {
    async fn contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, ChatError> {
        self.store
            .teams_contact(aad_object_id)
            .await
            .map_err(failed)
    }

    async fn service_url(&self, conversation: &str) -> Result<Option<String>, ChatError> {
        self.store
            .teams_service_url(conversation)
            .await
            .map_err(failed)
    }

    async fn opened_personal_chat(
        &self,
        contact: &TeamsContact,
        conversation: &str,
    ) -> Result<(), ChatError> {
        self.store
            .put_teams_conversation(conversation, &contact.service_url)
            .await
            .map_err(failed)?;
        let mut contact = contact.clone();
        contact.personal_conversation = Some(conversation.to_string());
        self.store.put_teams_contact(&contact).await.map_err(failed)
    }
}
