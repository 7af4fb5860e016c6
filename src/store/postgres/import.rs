//! Copying a sled store into an empty database, in one transaction, and
//! checking the copied audit chain before anyone relies on it.

use super::write::{due_ms, requester_key};
use super::{encode, with_conn, Kind, PgError, PgStore, LONG_CALL, MIGRATION_CALL};
use crate::domain::audit::ChainBreak;
use crate::store::{AuditStore, SledExport, StoreError};

/// What was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub requests: usize,
    pub jobs: usize,
    pub messages: usize,
    pub audit_events: u64,
}

/// Why a copy was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the database already holds jitbot data ({0}); copy into an empty database")]
    NotEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the copied audit chain does not verify: {0}")]
    Broken(ChainBreak),
    #[error("the copied audit chain has {copied} events, the sled store {expected}")]
    Short { copied: u64, expected: u64 },
}

impl PgStore {
    /// Copy everything in `export` into this (empty) database.
    pub async fn import(&self, export: &SledExport) -> Result<Imported, ImportError> {
        let occupied: Option<String> = with_conn!(self, pool, Kind::Read, LONG_CALL, |conn| {
            let row = conn
                .client()
                .query_one(
                    "SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM audit) + (SELECT count(*) FROM audit_pending),
                            (SELECT count(*) FROM jobs), (SELECT count(*) FROM outbox),
                            (SELECT count(*) FROM mappings)",
                    &[],
                )
                .await?;
            let counts: Vec<i64> = (0..5).map(|i| row.get(i)).collect();
            let names = ["requests", "audit events", "jobs", "messages", "mappings"];
            let held: Vec<String> = counts
                .iter()
                .zip(names)
                .filter(|(count, _)| **count > 0)
                .map(|(count, name)| format!("{count} {name}"))
                .collect();
            Ok::<_, PgError>((!held.is_empty()).then(|| held.join(", ")))
        })?;
        if let Some(held) = occupied {
            return Err(ImportError::NotEmpty(held));
        }
        with_conn!(self, pool, Kind::Write, MIGRATION_CALL, |conn| {
            conn.begin().await?;
            let client = conn.client();
            for request in &export.requests {
                client
                    .execute(
                        "INSERT INTO requests (id, requester, created_ms, live, body)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &request.id.as_str(),
                            &requester_key(&request.requester),
                            &request.created_at.timestamp_millis(),
                            &request.may_hold_access(),
                            &encode(request)?,
                        ],
                    )
                    .await?;
            }
            for (group, principal, owner) in &export.principal_owners {
                client
                    .execute(
                        "INSERT INTO principal_owners (grp, principal, owner) VALUES ($1, $2, $3)",
                        &[group, principal, &encode(owner)?],
                    )
                    .await?;
            }
            for (requester, quota) in &export.quotas {
                client
                    .execute(
                        "INSERT INTO quotas (requester, body) VALUES ($1, $2)",
                        &[requester, &encode(quota)?],
                    )
                    .await?;
            }
            for job in &export.jobs {
                client
                    .execute(
                        "INSERT INTO jobs (id, due_ms, lane, body) VALUES ($1, $2, $3, $4)",
                        &[&(job.id as i64), &due_ms(job), &job.lane, &encode(job)?],
                    )
                    .await?;
            }
            for entry in &export.outbox {
                client
                    .execute(
                        "INSERT INTO outbox (seq, queue, message, attempts, next_attempt_ms, created_ms, last_error)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[
                            &(entry.seq as i64),
                            &entry.queue,
                            &encode(&entry.message)?,
                            &(entry.attempts as i32),
                            &entry.next_attempt_at.timestamp_millis(),
                            &entry.created_at.timestamp_millis(),
                            &entry.last_error,
                        ],
                    )
                    .await?;
            }
            for (queue, ready_ms) in &export.queue_ready {
                client
                    .execute(
                        "INSERT INTO outbox_queues (queue, ready_ms) VALUES ($1, $2)",
                        &[queue, ready_ms],
                    )
                    .await?;
            }
            for event in &export.audit {
                client
                    .execute(
                        "INSERT INTO audit (seq, event) VALUES ($1, $2)",
                        &[&(event.seq as i64), &encode(event)?],
                    )
                    .await?;
            }
            client
                .execute(
                    "UPDATE audit_head SET head = $1 WHERE singleton",
                    &[&encode(&export.audit_head)?],
                )
                .await?;
            for mapping in &export.mappings {
                client
                    .execute(
                        "INSERT INTO mappings (grp, platform, channel, body) VALUES ($1, $2, $3, $4)",
                        &[
                            &mapping.group.as_str(),
                            &mapping.destination.platform.to_string(),
                            &mapping.destination.channel.as_str(),
                            &encode(mapping)?,
                        ],
                    )
                    .await?;
            }
            for contact in &export.teams_contacts {
                client
                    .execute(
                        "INSERT INTO teams_contacts (aad_object_id, body) VALUES ($1, $2)",
                        &[&contact.aad_object_id.to_lowercase(), &encode(contact)?],
                    )
                    .await?;
            }
            for (conversation, service_url) in &export.teams_conversations {
                // The latest service URL is seen last.
                let seen = i64::from(export.latest_service_url.as_ref() == Some(service_url));
                client
                    .execute(
                        "INSERT INTO teams_conversations (conversation, service_url, seen_ms)
                         VALUES ($1, $2, $3)",
                        &[conversation, service_url, &seen],
                    )
                    .await?;
            }
            for (group, run) in &export.sweeps {
                client
                    .execute(
                        "INSERT INTO sweeps (grp, body) VALUES ($1, $2)",
                        &[group, &encode(run)?],
                    )
                    .await?;
            }
            for (group, usage) in &export.usages {
                client
                    .execute(
                        "INSERT INTO access_usage (grp, principal, body) VALUES ($1, $2, $3)",
                        &[group, &usage.principal, &encode(usage)?],
                    )
                    .await?;
            }
            for (user, opened_ms) in &export.home_openings {
                client
                    .execute(
                        "INSERT INTO home_openings (user_id, opened_ms) VALUES ($1, $2)",
                        &[user, opened_ms],
                    )
                    .await?;
            }
            let next_id = export.next_id.min(i64::MAX as u64) as i64;
            client
                .execute("SELECT setval('ids', $1)", &[&next_id.max(1)])
                .await?;
            let next_seq = export.outbox.iter().map(|e| e.seq).max().unwrap_or(0) as i64;
            client
                .execute(
                    "SELECT setval('outbox_seq_seq', $1, $2)",
                    &[&next_seq.max(1), &(next_seq > 0)],
                )
                .await?;
            conn.commit().await?;
            Ok::<_, PgError>(())
        })?;
        let expected = export.audit.len() as u64;
        let copied = match self.verify_audit().await? {
            Ok(copied) => copied,
            // A plain log copied while JITBOT_AUDIT_KEY is set: every link
            // was checked; the first start with the key chains it on.
            Err(ChainBreak::NeverKeyed { last }) => last,
            Err(broken) => return Err(ImportError::Broken(broken)),
        };
        if copied != expected {
            return Err(ImportError::Short { copied, expected });
        }
        Ok(Imported {
            requests: export.requests.len(),
            jobs: export.jobs.len(),
            messages: export.outbox.len(),
            audit_events: copied,
        })
    }
}
