//! Mappings, Teams contacts, sweep times and the replay cache, shared by
//! every replica.

use async_trait::async_trait;

use super::write::Pipeline;
use super::{decode, encode, with_conn, Kind, PgError, PgStore, SHORT_CALL};
use crate::domain::audit::AuditRecord;
use chrono::{DateTime, Utc};

use crate::domain::ids::{Destination, GroupName, UserId};
use crate::domain::usage::Usage;
use crate::store::{Effects, Mapping, RecordStore, StoreError, SweepRun, TeamsContact};

impl PgStore {
    /// One row's text by key, or none.
    async fn text_by_key(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn.prepared(sql).await?;
            let row = conn.client().query_opt(&statement, &[&key]).await?;
            Ok::<_, PgError>(row.map(|row| row.get(0)))
        })
    }

    /// Set a key to a text (insert or replace).
    async fn put_text(&self, sql: &'static str, key: &str, text: &str) -> Result<(), StoreError> {
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn.prepared(sql).await?;
            conn.client().execute(&statement, &[&key, &text]).await?;
            Ok::<_, PgError>(())
        })
    }
}

#[async_trait]
impl RecordStore for PgStore {
    async fn mappings(&self) -> Result<Vec<Mapping>, StoreError> {
        let bodies: Vec<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM mappings ORDER BY grp, platform, channel")
                .await?;
            let rows = conn.client().query(&statement, &[]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        bodies.iter().map(|body| decode(body)).collect()
    }

    async fn put_mapping(&self, mapping: &Mapping, audit: AuditRecord) -> Result<(), StoreError> {
        let body = encode(mapping)?;
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let now = self.clock.now();
        let platform = mapping.destination.platform.to_string();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            conn.begin().await?;
            let statement = conn
                .prepared(
                    "INSERT INTO mappings (grp, platform, channel, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (grp, platform, channel) DO UPDATE SET body = EXCLUDED.body",
                )
                .await?;
            conn.client()
                .execute(
                    &statement,
                    &[
                        &mapping.group.as_str(),
                        &platform,
                        &mapping.destination.channel.as_str(),
                        &body,
                    ],
                )
                .await?;
            self.commit_with_effects(&mut conn, Pipeline::default(), &effects, now)
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn remove_mapping(
        &self,
        group: &GroupName,
        destination: &Destination,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let effects = Effects {
            audit: vec![audit],
            ..Effects::default()
        };
        let now = self.clock.now();
        let platform = destination.platform.to_string();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            conn.begin().await?;
            let statement = conn
                .prepared("DELETE FROM mappings WHERE grp = $1 AND platform = $2 AND channel = $3")
                .await?;
            let removed = conn
                .client()
                .execute(
                    &statement,
                    &[&group.as_str(), &platform, &destination.channel.as_str()],
                )
                .await?;
            if removed == 0 {
                conn.rollback().await?;
                return Ok(false);
            }
            self.commit_with_effects(&mut conn, Pipeline::default(), &effects, now)
                .await?;
            Ok::<_, PgError>(true)
        })
    }

    async fn put_teams_contact(&self, contact: &TeamsContact) -> Result<(), StoreError> {
        self.put_text(
            "INSERT INTO teams_contacts (aad_object_id, body) VALUES ($1, $2)
             ON CONFLICT (aad_object_id) DO UPDATE SET body = EXCLUDED.body",
            &contact.aad_object_id.to_lowercase(),
            &encode(contact)?,
        )
        .await
    }

    async fn teams_contact(&self, aad_object_id: &str) -> Result<Option<TeamsContact>, StoreError> {
        self.text_by_key(
            "SELECT body FROM teams_contacts WHERE aad_object_id = $1",
            &aad_object_id.to_lowercase(),
        )
        .await?
        .map(|body| decode(&body))
        .transpose()
    }

    async fn put_teams_conversation(
        &self,
        conversation: &str,
        service_url: &str,
    ) -> Result<(), StoreError> {
        let seen_ms = self.clock.now().timestamp_millis();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared(
                    "INSERT INTO teams_conversations (conversation, service_url, seen_ms)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (conversation) DO UPDATE
                        SET service_url = EXCLUDED.service_url, seen_ms = EXCLUDED.seen_ms",
                )
                .await?;
            conn.client()
                .execute(&statement, &[&conversation, &service_url, &seen_ms])
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn teams_service_url(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        self.text_by_key(
            "SELECT service_url FROM (
                SELECT service_url, 0 AS rank FROM teams_conversations WHERE conversation = $1
                UNION ALL
                (SELECT service_url, 1 FROM teams_conversations ORDER BY seen_ms DESC LIMIT 1)
             ) AS found ORDER BY rank LIMIT 1",
            conversation,
        )
        .await
    }

    async fn last_sweep(&self, group: &str) -> Result<Option<SweepRun>, StoreError> {
        self.text_by_key("SELECT body FROM sweeps WHERE grp = $1", group)
            .await?
            .map(|body| decode(&body))
            .transpose()
    }

    async fn put_last_sweep(&self, group: &str, run: &SweepRun) -> Result<(), StoreError> {
        self.put_text(
            "INSERT INTO sweeps (grp, body) VALUES ($1, $2)
             ON CONFLICT (grp) DO UPDATE SET body = EXCLUDED.body",
            group,
            &encode(run)?,
        )
        .await
    }

    async fn usages(&self, group: &str) -> Result<Vec<Usage>, StoreError> {
        let bodies: Vec<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM access_usage WHERE grp = $1 ORDER BY principal")
                .await?;
            let rows = conn.client().query(&statement, &[&group]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        bodies.iter().map(|body| decode(body)).collect()
    }

    async fn usage(&self, group: &str, principal: &str) -> Result<Option<Usage>, StoreError> {
        let body: Option<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT body FROM access_usage WHERE grp = $1 AND principal = $2")
                .await?;
            let row = conn
                .client()
                .query_opt(&statement, &[&group, &principal])
                .await?;
            Ok::<_, PgError>(row.map(|row| row.get(0)))
        })?;
        body.map(|body| decode(&body)).transpose()
    }

    async fn put_usage(&self, group: &str, usage: &Usage) -> Result<(), StoreError> {
        let body = encode(usage)?;
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared(
                    "INSERT INTO access_usage (grp, principal, body) VALUES ($1, $2, $3)
                     ON CONFLICT (grp, principal) DO UPDATE SET body = EXCLUDED.body",
                )
                .await?;
            conn.client()
                .execute(&statement, &[&group, &usage.principal, &body])
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn forget_usage(&self, group: &str, principal: &str) -> Result<(), StoreError> {
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("DELETE FROM access_usage WHERE grp = $1 AND principal = $2")
                .await?;
            conn.client()
                .execute(&statement, &[&group, &principal])
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn put_home_opened(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let opened_ms = at.timestamp_millis();
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared(
                    "INSERT INTO home_openings (user_id, opened_ms) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE
                     SET opened_ms = GREATEST(home_openings.opened_ms, EXCLUDED.opened_ms)",
                )
                .await?;
            conn.client()
                .execute(&statement, &[&user.as_str(), &opened_ms])
                .await?;
            Ok::<_, PgError>(())
        })
    }

    async fn homes_opened_since(&self, since: DateTime<Utc>) -> Result<Vec<UserId>, StoreError> {
        let since_ms = since.timestamp_millis();
        let users: Vec<String> = with_conn!(self, pool, Kind::Read, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("SELECT user_id FROM home_openings WHERE opened_ms >= $1")
                .await?;
            let rows = conn.client().query(&statement, &[&since_ms]).await?;
            Ok::<_, PgError>(rows.iter().map(|row| row.get(0)).collect())
        })?;
        Ok(users.into_iter().map(UserId::new).collect())
    }

    async fn remember_delivery(
        &self,
        timestamp_secs: i64,
        signature: &[u8],
    ) -> Result<bool, StoreError> {
        // On the connections that do not wait for the flush: whatever the
        // delivery goes on to change is committed with a flush, which makes
        // this row durable first (the log is written in order), and a
        // delivery that changed nothing is harmless to accept twice.
        with_conn!(self, bookkeeping, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared(
                    "INSERT INTO replay (signed_at, signature) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let inserted = conn
                .client()
                .execute(&statement, &[&timestamp_secs, &signature])
                .await?;
            Ok::<_, PgError>(inserted == 1)
        })
    }

    async fn forget_deliveries_before(&self, timestamp_secs: i64) -> Result<usize, StoreError> {
        with_conn!(self, pool, Kind::Write, SHORT_CALL, |conn| {
            let statement = conn
                .prepared("DELETE FROM replay WHERE signed_at < $1")
                .await?;
            let removed = conn
                .client()
                .execute(&statement, &[&timestamp_secs])
                .await?;
            Ok::<_, PgError>(removed as usize)
        })
    }
}
