//! Reading a whole sled store out, to copy it into another backend
//! (`jitbot store migrate --from-sled`). The store must not be in use: it
//! is read as it stands.

use super::tx::decode;
use super::{keys, SledStore};
use crate::domain::audit::{AuditEvent, ChainHead};
use crate::domain::ids::Actor;
use crate::domain::job::Job;
use crate::domain::quota::Quota;
use crate::domain::request::AccessRequest;
use crate::domain::usage::Usage;
use crate::store::{Mapping, OutboxEntry, StoreError, SweepRun, TeamsContact};

/// Everything a sled store remembers.
#[derive(Debug)]
pub struct SledExport {
    pub requests: Vec<AccessRequest>,
    /// Group, principal, and who jitbot granted it to.
    pub principal_owners: Vec<(String, String, Actor)>,
    /// `platform:user` and what they filed lately and have waiting.
    pub quotas: Vec<(String, Quota)>,
    pub jobs: Vec<Job>,
    /// In sequence order.
    pub outbox: Vec<OutboxEntry>,
    /// Each outbox queue and when its head may be tried (millis).
    pub queue_ready: Vec<(String, i64)>,
    /// In sequence order.
    pub audit: Vec<AuditEvent>,
    pub audit_head: ChainHead,
    pub mappings: Vec<Mapping>,
    pub teams_contacts: Vec<TeamsContact>,
    /// Conversation and its service URL.
    pub teams_conversations: Vec<(String, String)>,
    pub latest_service_url: Option<String>,
    /// Group and its last sweep.
    pub sweeps: Vec<(String, SweepRun)>,
    /// Group and what jitbot saw of one principal's use of its target.
    pub usages: Vec<(String, Usage)>,
    /// Slack user and when they last opened their App Home (millis).
    pub home_openings: Vec<(String, i64)>,
    /// Above every id the store has handed out.
    pub next_id: u64,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl SledStore {
    /// Read everything out.
    pub fn export(&self) -> Result<SledExport, StoreError> {
        let mut export = SledExport {
            requests: Vec::new(),
            principal_owners: Vec::new(),
            quotas: Vec::new(),
            jobs: Vec::new(),
            outbox: Vec::new(),
            queue_ready: Vec::new(),
            audit: Vec::new(),
            audit_head: ChainHead::genesis(),
            mappings: Vec::new(),
            teams_contacts: Vec::new(),
            teams_conversations: Vec::new(),
            latest_service_url: None,
            sweeps: Vec::new(),
            usages: Vec::new(),
            home_openings: Vec::new(),
            next_id: self.db.generate_id()?,
        };
        for item in self.requests.iter() {
            export.requests.push(decode(&item?.1)?);
        }
        for item in self.principals.iter() {
            let (key, value) = item?;
            let body = &key[1..];
            let split = body
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| StoreError::Corrupt("malformed principal-owner key".into()))?;
            export.principal_owners.push((
                text(&body[..split]),
                text(&body[split + 1..]),
                decode(&value)?,
            ));
        }
        for item in self.quotas.iter() {
            let (key, value) = item?;
            export.quotas.push((text(&key[1..]), decode(&value)?));
        }
        for item in self.due.iter() {
            export.jobs.push(decode(&item?.1)?);
        }
        for item in self.outbox.iter() {
            export.outbox.push(decode(&item?.1)?);
        }
        for item in self.ready.iter() {
            let (key, _) = item?;
            let (ready_ms, queue) = keys::parse_ready(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed outbox readiness key".into()))?;
            export.queue_ready.push((queue, ready_ms));
        }
        for item in self.audit.iter() {
            export.audit.push(decode(&item?.1)?);
        }
        export.audit_head = match self.meta.get(keys::AUDIT_HEAD)? {
            Some(bytes) => decode(&bytes)?,
            None => ChainHead::genesis(),
        };
        for item in self.mappings.iter() {
            export.mappings.push(decode(&item?.1)?);
        }
        for item in self.teams.iter() {
            let (key, value) = item?;
            if key.as_ref() == keys::TEAMS_LATEST_SERVICE_URL {
                export.latest_service_url = Some(text(&value));
            } else if let Some(conversation) = key.strip_prefix(b"\x01conversation:") {
                export
                    .teams_conversations
                    .push((text(conversation), text(&value)));
            } else if key.starts_with(b"\x01user:") {
                export.teams_contacts.push(decode(&value)?);
            }
        }
        for item in self.meta.scan_prefix(b"\x01sweep:") {
            let (key, value) = item?;
            export
                .sweeps
                .push((text(&key[b"\x01sweep:".len()..]), decode(&value)?));
        }
        for item in self.meta.scan_prefix(b"\x01usage:") {
            let (key, value) = item?;
            let body = &key[b"\x01usage:".len()..];
            let group = body.split(|b| *b == 0).next().unwrap_or_default();
            export.usages.push((text(group), decode(&value)?));
        }
        for item in self.meta.scan_prefix(keys::HOME_OPENED_PREFIX) {
            let (key, value) = item?;
            export
                .home_openings
                .extend(keys::parse_home_opened(&key, &value));
        }
        Ok(export)
    }
}
