//! The schema, as numbered migrations embedded in the binary. Each replica
//! runs the missing ones at start, under an advisory lock, so replicas
//! starting together do not race; a database migrated by a newer jitbot is
//! refused rather than misread.

use super::{encode, StoreError};
use crate::domain::audit::ChainHead;
use crate::postgres::pool::Conn;
use crate::postgres::{describe, Target};

/// The advisory lock migrations run under (an arbitrary constant: "jitb").
const MIGRATION_LOCK: i64 = 0x6a69_7462;

/// Each migration, in order; the number of one is its position + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE requests (
    id text PRIMARY KEY,
    requester text NOT NULL,
    created_ms bigint NOT NULL,
    live boolean NOT NULL,
    body text NOT NULL
);
CREATE INDEX requests_by_requester ON requests (requester, created_ms DESC);
CREATE INDEX requests_live ON requests (id) WHERE live;

CREATE TABLE principal_owners (
    grp text NOT NULL,
    principal text NOT NULL,
    owner text NOT NULL,
    PRIMARY KEY (grp, principal)
);

CREATE TABLE quotas (
    requester text PRIMARY KEY,
    body text NOT NULL
);

CREATE TABLE jobs (
    id bigint PRIMARY KEY,
    due_ms bigint NOT NULL,
    lane text NOT NULL,
    body text NOT NULL,
    claimed_by text,
    lease_until timestamptz
);
CREATE INDEX jobs_by_due ON jobs (due_ms, id);
CREATE INDEX jobs_claimed_lanes ON jobs (lane) WHERE claimed_by IS NOT NULL;

CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    queue text NOT NULL,
    message text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint NOT NULL,
    created_ms bigint NOT NULL,
    last_error text
);
CREATE INDEX outbox_by_queue ON outbox (queue, seq);

CREATE TABLE outbox_queues (
    queue text PRIMARY KEY,
    ready_ms bigint NOT NULL,
    claimed_by text,
    lease_until timestamptz
);
CREATE INDEX outbox_queues_by_ready ON outbox_queues (ready_ms);

CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    event text NOT NULL
);
CREATE TABLE audit_head (
    singleton boolean PRIMARY KEY CHECK (singleton),
    head text NOT NULL
);

CREATE TABLE mappings (
    grp text NOT NULL,
    platform text NOT NULL,
    channel text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (grp, platform, channel)
);

CREATE TABLE teams_contacts (
    aad_object_id text PRIMARY KEY,
    body text NOT NULL
);
CREATE TABLE teams_conversations (
    conversation text PRIMARY KEY,
    service_url text NOT NULL,
    seen_ms bigint NOT NULL
);
CREATE INDEX teams_conversations_by_seen ON teams_conversations (seen_ms DESC);

CREATE TABLE sweeps (
    grp text PRIMARY KEY,
    body text NOT NULL
);

CREATE TABLE replay (
    signed_at bigint NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (signed_at, signature)
);

CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    lease_until timestamptz NOT NULL
);

CREATE SEQUENCE ids;
"#,
    r#"
-- Appends audit records after the chain's head, sealing each as
-- AuditRecord::seal does: the hash is SHA-256 of
-- {"seq":N,<fields>,"prev_hash":"P"}, the event {"seq":N,<fields>,"prev_hash":"P","hash":"H"}.
-- <fields> come from AuditRecord::unsealed_json. Run where the records are
-- written, so the head is held for this statement and the commit only.
CREATE FUNCTION jitbot_append_audit(records text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    head jsonb;
    seq bigint;
    prev text;
    hash text;
    fields text;
BEGIN
    SELECT audit_head.head::jsonb INTO head FROM audit_head WHERE singleton FOR UPDATE;
    seq := (head->>'seq')::bigint;
    prev := head->>'hash';
    FOREACH fields IN ARRAY records LOOP
        seq := seq + 1;
        hash := encode(sha256(convert_to(
            '{"seq":' || seq || ',' || fields || ',"prev_hash":"' || prev || '"}', 'UTF8')), 'hex');
        INSERT INTO audit (seq, event) VALUES (seq,
            '{"seq":' || seq || ',' || fields || ',"prev_hash":"' || prev || '","hash":"' || hash || '"}');
        prev := hash;
    END LOOP;
    UPDATE audit_head SET head = '{"seq":' || seq || ',"hash":"' || prev || '"}' WHERE singleton;
    RETURN seq;
END
$$;
"#,
    r#"
-- Audit records are written unsealed with the change they describe, and
-- sealed into the chain soon after by jitbot_seal_audit: a change then
-- holds no row every other change needs until its commit is on disk, and
-- commits of concurrent changes share their flushes again. It replaces
-- jitbot_append_audit, which chained them inside the change.
CREATE TABLE audit_pending (
    id bigserial PRIMARY KEY,
    fields text NOT NULL
);
DROP FUNCTION jitbot_append_audit(text[]);

-- Seals every pending record visible now, in the order they were written
-- (by id; one change's records keep their order), after the chain's head,
-- as AuditRecord::seal does (see migration 2 for the text hashed). Callers
-- serialise on the head. Returns how many were sealed.
CREATE FUNCTION jitbot_seal_audit() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pending record;
    sealed_ids bigint[] := '{}';
    head jsonb;
    seq bigint;
    prev text;
    hash text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_pending) THEN
        RETURN 0;
    END IF;
    SELECT audit_head.head::jsonb INTO head FROM audit_head WHERE singleton FOR UPDATE;
    seq := (head->>'seq')::bigint;
    prev := head->>'hash';
    FOR pending IN SELECT id, fields FROM audit_pending ORDER BY id LOOP
        seq := seq + 1;
        hash := encode(sha256(convert_to(
            '{"seq":' || seq || ',' || pending.fields || ',"prev_hash":"' || prev || '"}', 'UTF8')), 'hex');
        INSERT INTO audit (seq, event) VALUES (seq,
            '{"seq":' || seq || ',' || pending.fields || ',"prev_hash":"' || prev || '","hash":"' || hash || '"}');
        prev := hash;
        sealed_ids := sealed_ids || pending.id;
    END LOOP;
    -- Exactly what was sealed: a row committed meanwhile may have a lower
    -- id (ids are taken before the commit); it waits for the next call.
    DELETE FROM audit_pending WHERE id = ANY(sealed_ids);
    UPDATE audit_head SET head = '{"seq":' || seq || ',"hash":"' || prev || '"}' WHERE singleton;
    RETURN cardinality(sealed_ids);
END
$$;
"#,
    r#"
-- The outbox's bookkeeping, one call each (a round trip per message
-- delivered instead of six).
--
-- A busy destination (the approval channel every card goes to) must not
-- make its writers wait for each other: they hold its queue row with a
-- key-share lock, which only a deletion of the row waits for. Claims,
-- renewals and new ready times take no-key locks, which do not wait for
-- writers; only dropping an empty queue does.

-- Make sure each queue in `held` has its row, and hold it (key share)
-- until the transaction ends, so it is not dropped under a message being
-- added. Rows are taken in one order.
CREATE FUNCTION jitbot_hold_queues(held text[], now_ms bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    FOREACH q IN ARRAY ARRAY(SELECT DISTINCT x FROM unnest(held) AS x ORDER BY x) LOOP
        LOOP
            PERFORM 1 FROM outbox_queues WHERE queue = q FOR KEY SHARE;
            EXIT WHEN FOUND;
            INSERT INTO outbox_queues (queue, ready_ms) VALUES (q, now_ms)
                ON CONFLICT (queue) DO NOTHING;
            -- Ours until the commit; otherwise another writer's row
            -- appeared meanwhile (or went): look again.
            EXIT WHEN FOUND;
        END LOOP;
    END LOOP;
END
$$;

-- Drop the queue if it is empty, else make it ready when its (new) head
-- may be tried. The statements after a lock see entries committed while it
-- waited.
CREATE FUNCTION jitbot_settle_queue(settled text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    head_ms bigint;
BEGIN
    PERFORM 1 FROM outbox_queues WHERE queue = settled FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT next_attempt_ms INTO head_ms FROM outbox WHERE queue = settled ORDER BY seq LIMIT 1;
    IF NOT FOUND THEN
        -- Looks empty: wait for writers adding to it, then look again.
        PERFORM 1 FROM outbox_queues WHERE queue = settled FOR UPDATE;
        SELECT next_attempt_ms INTO head_ms FROM outbox WHERE queue = settled ORDER BY seq LIMIT 1;
        IF NOT FOUND THEN
            DELETE FROM outbox_queues WHERE queue = settled;
            RETURN;
        END IF;
    END IF;
    UPDATE outbox_queues SET ready_ms = head_ms WHERE queue = settled;
END
$$;

CREATE FUNCTION jitbot_outbox_done(delivered bigint, settled text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM outbox WHERE seq = delivered;
    PERFORM jitbot_settle_queue(settled);
END
$$;

CREATE FUNCTION jitbot_outbox_retry(
    retried bigint, tried integer, next_ms bigint, error text, settled text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET attempts = tried, next_attempt_ms = next_ms, last_error = error
     WHERE seq = retried;
    IF FOUND THEN
        PERFORM jitbot_settle_queue(settled);
    END IF;
END
$$;
"#,
    r#"
-- What jitbot saw of each watched principal's use of a group's target
-- (domain::usage::Usage as JSON).
CREATE TABLE access_usage (
    grp text NOT NULL,
    principal text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (grp, principal)
);
"#,
    r#"
-- Slack users who opened their App Home tab, and when they last did: every
-- replica publishes their home again when something in it changes.
CREATE TABLE home_openings (
    user_id text PRIMARY KEY,
    opened_ms bigint NOT NULL
);
"#,
    r#"
-- jitbot seals the audit log itself now (store::postgres::audit::seal),
-- so the HMAC key of a keyed chain (JITBOT_AUDIT_KEY) never reaches the
-- database. Each event says how it was linked ("chain":"hmac-sha256" in
-- its text; plain ones say nothing), so no column is added. The function
-- stays for replicas of an older jitbot still running during an upgrade,
-- but seals nothing once the chain's last event is keyed: a plain link
-- after a keyed one would break the chain.
CREATE OR REPLACE FUNCTION jitbot_seal_audit() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pending record;
    sealed_ids bigint[] := '{}';
    head jsonb;
    seq bigint;
    prev text;
    hash text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_pending) THEN
        RETURN 0;
    END IF;
    SELECT audit_head.head::jsonb INTO head FROM audit_head WHERE singleton FOR UPDATE;
    seq := (head->>'seq')::bigint;
    prev := head->>'hash';
    IF EXISTS (SELECT 1 FROM audit
                WHERE audit.seq = (head->>'seq')::bigint
                  AND audit.event::jsonb->>'chain' = 'hmac-sha256') THEN
        RETURN 0;
    END IF;
    FOR pending IN SELECT id, fields FROM audit_pending ORDER BY id LOOP
        seq := seq + 1;
        hash := encode(sha256(convert_to(
            '{"seq":' || seq || ',' || pending.fields || ',"prev_hash":"' || prev || '"}', 'UTF8')), 'hex');
        INSERT INTO audit (seq, event) VALUES (seq,
            '{"seq":' || seq || ',' || pending.fields || ',"prev_hash":"' || prev || '","hash":"' || hash || '"}');
        prev := hash;
        sealed_ids := sealed_ids || pending.id;
    END LOOP;
    DELETE FROM audit_pending WHERE id = ANY(sealed_ids);
    UPDATE audit_head SET head = '{"seq":' || seq || ',"hash":"' || prev || '"}' WHERE singleton;
    RETURN cardinality(sealed_ids);
END
$$;
"#,
];

fn failed(target: &Target, what: &str, error: &tokio_postgres::Error) -> StoreError {
    StoreError::Database(target.redact(&format!("{what}: {}", describe(error))))
}

/// Bring the schema up to date on `conn`. The audit chain is hashed over
/// UTF-8 text, so the database must store text as UTF-8.
pub(super) async fn migrate(mut conn: Conn, target: &Target) -> Result<(), StoreError> {
    let client = conn.client();
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(target, "cannot take the migration lock", &e))?;
    let outcome = apply_missing(&mut conn, target).await;
    // Unlocking fails only with the connection, which then goes anyway.
    if conn
        .client()
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .is_ok()
    {
        conn.reusable();
    }
    outcome
}

async fn apply_missing(conn: &mut Conn, target: &Target) -> Result<(), StoreError> {
    conn.client()
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS jitbot_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| failed(target, "cannot create the schema table", &e))?;
    let row = conn
        .client()
        .query_one("SELECT coalesce(max(version), 0) FROM jitbot_schema", &[])
        .await
        .map_err(|e| failed(target, "cannot read the schema version", &e))?;
    let current: i32 = row.get(0);
    let encoding: String = conn
        .client()
        .query_one("SELECT current_setting('server_encoding')", &[])
        .await
        .map_err(|e| failed(target, "cannot read the database's encoding", &e))?
        .get(0);
    if encoding != "UTF8" {
        return Err(StoreError::Database(format!(
            "the database's encoding is {encoding}; jitbot needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
        )));
    }
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Err(StoreError::Database(format!(
            "the database's schema is version {current}, newer than this jitbot knows ({known}); run a newer jitbot"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        let run = async {
            conn.begin().await?;
            conn.client().batch_execute(sql).await?;
            if version == 1 {
                let genesis = encode(&ChainHead::genesis()).map_err(|e| e.to_string());
                let genesis = genesis.unwrap_or_default();
                conn.client()
                    .execute(
                        "INSERT INTO audit_head (singleton, head) VALUES (true, $1)",
                        &[&genesis],
                    )
                    .await?;
            }
            conn.client()
                .execute(
                    "INSERT INTO jitbot_schema (version) VALUES ($1)",
                    &[&version],
                )
                .await?;
            conn.commit().await
        };
        run.await
            .map_err(|e| failed(target, &format!("migration {version} failed"), &e))?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}
