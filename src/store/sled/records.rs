//! Mappings, Teams contacts, sweep times and the replay cache.

use async_trait::async_trait;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::tx::{decode, encode, finish, Abort, Prepared};
use super::{keys, SledStore, MAPPINGS};
use crate::domain::audit::AuditRecord;
use chrono::{DateTime, Utc};

use crate::domain::ids::{Destination, GroupName, UserId};
use crate::domain::usage::Usage;
use crate::store::{Applied, Effects, Mapping, RecordStore, StoreError, SweepRun, TeamsContact};

#[async_trait]
impl RecordStore for SledStore {
    async fn mappings(&self) -> Result<Vec<Mapping>, StoreError> {
        Self::decode_all(self.mappings.iter(), usize::MAX)
    }

    async fn put_mapping(&self, mapping: &Mapping, audit: AuditRecord) -> Result<(), StoreError> {
        let key = keys::mapping(
            mapping.group.as_str(),
            &mapping.destination.platform.to_string(),
            mapping.destination.channel.as_str(),
        );
        let value = encode(mapping)?;
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let effects = Prepared::new(&effects, self.clock.now(), self.audit_key.as_ref())?;
        finish(self.tx_trees.as_slice().transaction(|trees| {
            trees[MAPPINGS].insert(key.as_slice(), value.as_slice())?;
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))
        .map(drop)
    }

    async fn remove_mapping(
        &self,
        group: &GroupName,
        destination: &Destination,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let key = keys::mapping(
            group.as_str(),
            &destination.platform.to_string(),
            destination.channel.as_str(),
        );
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let effects = Prepared::new(&effects, self.clock.now(), self.audit_key.as_ref())?;
        let applied = finish(self.tx_trees.as_slice().transaction(|trees| {
            if trees[MAPPINGS].remove(key.as_slice())?.is_none() {
                return Err(ConflictableTransactionError::Abort(Abort::Skipped));
            }
            Self::write_effects(trees, &effects)?;
            Ok(Applied::Written)
        }))?;
        Ok(applied == Applied::Written)
    }

    async fn put_teams_contact(&self, contact: &TeamsContact) -> Result<(), StoreError> {
        self.teams
            .insert(keys::teams_user(&contact.aad_object_id), encode(contact)?)?;
        Ok(())
    }

    async fn teams_contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, StoreError> {
        self.teams
            .get(keys::teams_user(aad_object_id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn put_teams_conversation(
        &self,
        conversation: &str,
        service_url: &str,
    ) -> Result<(), StoreError> {
        let known = self.teams.get(keys::teams_conversation(conversation))?;
        if known.as_deref() != Some(service_url.as_bytes()) {
            self.teams.insert(
                keys::teams_conversation(conversation),
                service_url.as_bytes(),
            )?;
        }
        let latest = self.teams.get(keys::TEAMS_LATEST_SERVICE_URL)?;
        if latest.as_deref() != Some(service_url.as_bytes()) {
            self.teams
                .insert(keys::TEAMS_LATEST_SERVICE_URL, service_url.as_bytes())?;
        }
        Ok(())
    }

    async fn teams_service_url(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        let found = match self.teams.get(keys::teams_conversation(conversation))? {
            Some(url) => Some(url),
            None => self.teams.get(keys::TEAMS_LATEST_SERVICE_URL)?,
        };
        Ok(found.map(|url| String::from_utf8_lossy(&url).into_owned()))
    }

    async fn last_sweep(&self, group: &str) -> Result<Option<SweepRun>, StoreError> {
        self.meta
            .get(keys::last_sweep(group))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn put_last_sweep(&self, group: &str, run: &SweepRun) -> Result<(), StoreError> {
        self.meta.insert(keys::last_sweep(group), encode(run)?)?;
        Ok(())
    }

    async fn usages(&self, group: &str) -> Result<Vec<Usage>, StoreError> {
        self.meta
            .scan_prefix(keys::usage_prefix(group))
            .map(|item| decode(&item?.1))
            .collect()
    }

    async fn usage(&self, group: &str, principal: &str) -> Result<Option<Usage>, StoreError> {
        self.meta
            .get(keys::usage(group, principal))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn put_usage(&self, group: &str, usage: &Usage) -> Result<(), StoreError> {
        self.meta
            .insert(keys::usage(group, &usage.principal), encode(usage)?)?;
        Ok(())
    }

    async fn forget_usage(&self, group: &str, principal: &str) -> Result<(), StoreError> {
        self.meta.remove(keys::usage(group, principal))?;
        Ok(())
    }

    async fn put_home_opened(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.meta.insert(
            keys::home_opened(user.as_str()),
            &at.timestamp_millis().to_be_bytes(),
        )?;
        Ok(())
    }

    async fn homes_opened_since(&self, since: DateTime<Utc>) -> Result<Vec<UserId>, StoreError> {
        let since_ms = since.timestamp_millis();
        let mut users = Vec::new();
        for item in self.meta.scan_prefix(keys::HOME_OPENED_PREFIX) {
            let (key, value) = item?;
            match keys::parse_home_opened(&key, &value) {
                Some((user, opened_ms)) if opened_ms >= since_ms => users.push(UserId::new(user)),
                _ => {}
            }
        }
        Ok(users)
    }

    async fn remember_delivery(
        &self,
        timestamp_secs: i64,
        signature: &[u8],
    ) -> Result<bool, StoreError> {
        let key = keys::replay(timestamp_secs, signature);
        let fresh = self
            .replay
            .compare_and_swap(key, None as Option<&[u8]>, Some(&[] as &[u8]))?
            .is_ok();
        Ok(fresh)
    }

    async fn forget_deliveries_before(&self, timestamp_secs: i64) -> Result<usize, StoreError> {
        let end = keys::replay(timestamp_secs, &[]);
        let mut removed = 0;
        for item in self.replay.range(..end) {
            let (key, _) = item?;
            self.replay.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }
}
