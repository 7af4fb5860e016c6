//! Audit events: append-only and hash-chained. Each event carries the hash of
//! the one before it, so removing, reordering or editing any event breaks
//! every hash after it — which `jitbot audit verify` detects.
//!
//! A plain SHA-256 chain only shows edits: whoever can write the store can
//! also rewrite every hash after an edit, or drop the last events and the
//! head with them. So, with `JITBOT_AUDIT_KEY` set, each link is an
//! HMAC-SHA256 under that key (the event says so: `"chain":"hmac-sha256"`),
//! which nobody without the key can compute. A log written before the key
//! keeps its plain links; the first keyed event covers the last plain
//! hash, so the plain part cannot be rewritten either. Once one event is
//! keyed every later one must be, and a verifier with the key refuses a log
//! without any keyed event — turning a keyed log back into a plain one is
//! the one rewrite left, and it shows. What no chain can show by itself is
//! its end being cut off: a head (`seq` and hash) kept somewhere the store's
//! writers cannot reach is checked with [`ChainWalk::new`]'s `shipped`.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{Actor, GroupName, RequestId};

/// The least `JITBOT_AUDIT_KEY` may be: a MAC key as long as its hash.
pub const MIN_AUDIT_KEY_BYTES: usize = 32;

/// The key of the audit chain's HMAC links (`JITBOT_AUDIT_KEY`). Never shown.
#[derive(Clone)]
pub struct AuditKey(std::sync::Arc<[u8]>);

impl AuditKey {
    /// The key, or why it is refused (shorter than [`MIN_AUDIT_KEY_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<AuditKey, String> {
        if bytes.len() < MIN_AUDIT_KEY_BYTES {
            return Err(format!(
                "JITBOT_AUDIT_KEY is {} bytes; it must be at least {MIN_AUDIT_KEY_BYTES} (a random key, e.g. `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        Ok(AuditKey(bytes.into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(redacted)")
    }
}

/// How an event is linked to the one before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Link {
    /// SHA-256 of the event's text: what any writer can compute. Not
    /// written in the event (events from before keys carry no `chain`).
    #[default]
    #[serde(rename = "sha256")]
    Plain,
    /// HMAC-SHA256 of the event's text under `JITBOT_AUDIT_KEY`.
    #[serde(rename = "hmac-sha256")]
    Keyed,
}

impl Link {
    pub fn is_plain(&self) -> bool {
        *self == Link::Plain
    }
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Requested,
    AutoApproved,
    ApprovalRecorded,
    Approved,
    Denied,
    Cancelled,
    DecisionRefused,
    Granted,
    GrantFailed,
    Expired,
    Extended,
    Warned,
    Released,
    Revoked,
    TimedOut,
    Escalated,
    EndRequested,
    AdminRefused,
    RevokeFailed,
    /// The precautionary revoke after a failed grant succeeded.
    CleanupRevoked,
    /// A sweep listed a target's holders (findings in the detail).
    SweepRan,
    /// A sweep could not list a target's holders.
    SweepFailed,
    /// A sweep in enforce mode removed access no grant explained.
    StandingRevoked,
    StandingRevokeFailed,
    /// An admin routed a group's cards to another channel, or stopped.
    MappingAdded,
    MappingRemoved,
    /// The requester was warned that an unused grant is about to be
    /// released (with a Keep it button).
    IdleWarned,
    /// The requester pressed Keep it: that counts as use.
    KeptInUse,
    /// Access taken at once under the group's `break_glass`, unapproved.
    BreakGlassUsed,
    /// Someone not listed in `break_glass` tried it; nothing was filed.
    BreakGlassRefused,
    /// An approver reviewed a break-glass use and let it stand.
    BreakGlassAcknowledged,
    /// An approver reviewed a break-glass use and revoked the access.
    BreakGlassRevoked,
    /// The policy no longer grants a live grant the way it was granted (a
    /// renamed target, a removed group): it is still revoked as granted,
    /// and the admins were told.
    PolicyDrift,
    /// From this event on the chain is keyed (`JITBOT_AUDIT_KEY`): written
    /// when a process with the key finds the log ending in a plain event.
    ChainKeyed,
}

impl AuditAction {
    /// Whether the event is part of a break-glass use: taken, refused or
    /// reviewed.
    pub fn is_break_glass(&self) -> bool {
        matches!(
            self,
            AuditAction::BreakGlassUsed
                | AuditAction::BreakGlassRefused
                | AuditAction::BreakGlassAcknowledged
                | AuditAction::BreakGlassRevoked
        )
    }
}

/// An event before it joins the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    /// Who did it; `None` when jitbot itself acted (scheduler, provider).
    pub actor: Option<Actor>,
    pub request: Option<RequestId>,
    pub group: Option<GroupName>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    pub actor: Option<Actor>,
    pub request: Option<RequestId>,
    pub group: Option<GroupName>,
    pub detail: String,
    pub prev_hash: String,
    /// How `hash` was made; absent (plain) in events from before keys.
    #[serde(default, skip_serializing_if = "Link::is_plain")]
    pub chain: Link,
    pub hash: String,
}

/// The end of the chain: the last sequence number and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty log: sequence 0 and an all-zero hash.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: "0".repeat(64),
        }
    }

    /// A head as `jitbot audit head` prints it and `audit verify --head`
    /// takes it: `<seq>:<hash>`.
    pub fn shown(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }

    /// `<seq>:<hash>`, `{"seq":N,"hash":"…"}` or the export's last line
    /// `{"head":{"seq":N,"hash":"…"}}`.
    pub fn parse(text: &str) -> Result<ChainHead, String> {
        let text = text.trim();
        let head = if text.starts_with('{') {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Written {
                Line { head: ChainHead },
                Bare(ChainHead),
            }
            match serde_json::from_str::<Written>(text) {
                Ok(Written::Line { head }) | Ok(Written::Bare(head)) => head,
                Err(_) => {
                    return Err(format!(
                        "`{text}` is not a head like {{\"seq\":42,\"hash\":\"…\"}}"
                    ))
                }
            }
        } else {
            let (seq, hash) = text
                .split_once(':')
                .ok_or_else(|| format!("`{text}` is not a head like 42:<64 hex digits>"))?;
            let seq = seq
                .parse()
                .map_err(|_| format!("`{seq}` in the head is not a sequence number"))?;
            ChainHead {
                seq,
                hash: hash.to_string(),
            }
        };
        let hex_digest = head.hash.len() == 64 && head.hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_digest {
            return Err(format!(
                "the head's hash `{}` is not 64 hex digits",
                head.hash
            ));
        }
        Ok(ChainHead {
            hash: head.hash.to_ascii_lowercase(),
            ..head
        })
    }
}

/// The fields the hash covers, in a fixed order. A keyed link covers its
/// scheme too (`,"chain":"hmac-sha256"` after `prev_hash`); a plain one's
/// text is what it always was.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: &'a DateTime<Utc>,
    action: AuditAction,
    actor: &'a Option<Actor>,
    request: &'a Option<RequestId>,
    group: &'a Option<GroupName>,
    detail: &'a str,
    prev_hash: &'a str,
    #[serde(skip_serializing_if = "Link::is_plain")]
    chain: Link,
}

impl Hashed<'_> {
    fn text(&self) -> Vec<u8> {
        // Serialising a struct of plain fields cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The link: SHA-256 of the text, or its HMAC under `key`.
    fn link(&self, key: Option<&AuditKey>) -> String {
        match (self.chain, key) {
            (Link::Keyed, Some(key)) => {
                let mut mac = key.mac();
                mac.update(&self.text());
                hex::encode(mac.finalize().into_bytes())
            }
            _ => hex::encode(Sha256::digest(self.text())),
        }
    }

    /// Whether `hash` is this text's keyed link, compared in constant time.
    fn keyed_link_is(&self, key: &AuditKey, hash: &str) -> bool {
        let Ok(presented) = hex::decode(hash) else {
            return false;
        };
        let mut mac = key.mac();
        mac.update(&self.text());
        mac.verify_slice(&presented).is_ok()
    }
}

/// The fields between `seq` and `prev_hash`, in the hashed order.
#[derive(Serialize)]
struct Unsealed<'a> {
    at: &'a DateTime<Utc>,
    action: AuditAction,
    actor: &'a Option<Actor>,
    request: &'a Option<RequestId>,
    group: &'a Option<GroupName>,
    detail: &'a str,
}

impl AuditRecord {
    /// This record's fields as they stand between `"seq":N,` and
    /// `,"prev_hash":…` in both the hashed text and the event's JSON:
    /// what a store that chains events where they are written (the
    /// PostgreSQL one, in SQL) needs to seal it exactly as [`Self::seal`]
    /// would. Its hash: SHA-256 of `{"seq":N,` + this + `,"prev_hash":"P"}`.
    pub fn unsealed_json(&self) -> String {
        let whole = serde_json::to_string(&Unsealed {
            at: &self.at,
            action: self.action,
            actor: &self.actor,
            request: &self.request,
            group: &self.group,
            detail: &self.detail,
        })
        .unwrap_or_default();
        // `{…}` without its braces.
        whole[1..whole.len() - 1].to_string()
    }

    /// The record [`Self::unsealed_json`] wrote.
    pub fn from_unsealed_json(fields: &str) -> Result<AuditRecord, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            at: DateTime<Utc>,
            action: AuditAction,
            actor: Option<Actor>,
            request: Option<RequestId>,
            group: Option<GroupName>,
            detail: String,
        }
        let fields: Fields = serde_json::from_str(&format!("{{{fields}}}"))
            .map_err(|e| format!("an unsealed audit record is unreadable: {e}"))?;
        Ok(AuditRecord {
            at: fields.at,
            action: fields.action,
            actor: fields.actor,
            request: fields.request,
            group: fields.group,
            detail: fields.detail,
        })
    }

    /// Append this record after `head` with a plain link, returning the
    /// sealed event and the new head.
    pub fn seal(self, head: &ChainHead) -> (AuditEvent, ChainHead) {
        self.seal_with(head, None)
    }

    /// Append this record after `head`, linked under `key` if there is one.
    pub fn seal_with(self, head: &ChainHead, key: Option<&AuditKey>) -> (AuditEvent, ChainHead) {
        let seq = head.seq + 1;
        let chain = if key.is_some() {
            Link::Keyed
        } else {
            Link::Plain
        };
        let hash = Hashed {
            seq,
            at: &self.at,
            action: self.action,
            actor: &self.actor,
            request: &self.request,
            group: &self.group,
            detail: &self.detail,
            prev_hash: &head.hash,
            chain,
        }
        .link(key);
        let event = AuditEvent {
            seq,
            at: self.at,
            action: self.action,
            actor: self.actor,
            request: self.request,
            group: self.group,
            detail: self.detail,
            prev_hash: head.hash.clone(),
            chain,
            hash: hash.clone(),
        };
        (event, ChainHead { seq, hash })
    }

    /// The event that starts the keyed part of a chain.
    pub fn chain_keyed(at: DateTime<Utc>, after: &ChainHead) -> AuditRecord {
        AuditRecord {
            at,
            action: AuditAction::ChainKeyed,
            actor: None,
            request: None,
            group: None,
            detail: format!(
                "from this event on the audit chain is HMAC-SHA256 under JITBOT_AUDIT_KEY; events up to {} are plain SHA-256, and this one covers the last of them",
                after.seq
            ),
        }
    }
}

impl AuditEvent {
    fn hashed(&self) -> Hashed<'_> {
        Hashed {
            seq: self.seq,
            at: &self.at,
            action: self.action,
            actor: &self.actor,
            request: &self.request,
            group: &self.group,
            detail: &self.detail,
            prev_hash: &self.prev_hash,
            chain: self.chain,
        }
    }

    /// Recompute this event's plain hash from its fields.
    pub fn computed_hash(&self) -> String {
        self.hashed().link(None)
    }
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("event {seq}: expected sequence number {expected}")]
    Gap { seq: u64, expected: u64 },
    #[error("event {seq}: its prev_hash does not match the hash of event {}", seq - 1)]
    Unlinked { seq: u64 },
    #[error("event {seq}: its content does not match its hash (edited?)")]
    Tampered { seq: u64 },
    #[error("event {seq}: its content does not match its HMAC under JITBOT_AUDIT_KEY (edited, or written under another key?)")]
    Forged { seq: u64 },
    #[error("event {seq} is chained under JITBOT_AUDIT_KEY; set it to verify the log")]
    KeyNeeded { seq: u64 },
    #[error("event {seq} is chained without JITBOT_AUDIT_KEY after event {keyed} was chained under it (rewritten without the key?)")]
    Unkeyed { seq: u64, keyed: u64 },
    #[error("no event up to {last} is chained under JITBOT_AUDIT_KEY: the log was rewritten without the key, or jitbot has not run with the key yet (start it once to chain the log)")]
    NeverKeyed { last: u64 },
    #[error("the chain ends at event {last} but the recorded head is event {head}")]
    Truncated { last: u64, head: u64 },
    #[error("the log ends at event {last}, before the shipped head {shipped} (truncated?)")]
    ShortOfShipped { last: u64, shipped: u64 },
    #[error("event {seq} is not the shipped head's: its hash differs (rewritten?)")]
    NotShipped { seq: u64 },
}

/// Whether two hashes are the same text, compared in constant time (how
/// much of a hash matched must not show in how long the answer took).
fn same_hash(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A walk along the chain, one event at a time, oldest first: each link is
/// checked as it comes, so a long log never has to sit in memory whole.
pub struct ChainWalk<'k> {
    key: Option<&'k AuditKey>,
    shipped: Option<ChainHead>,
    head: ChainHead,
    /// The first keyed event seen: every one after it must be keyed too.
    keyed_from: Option<u64>,
    /// Whether the event at the shipped head's sequence has been seen.
    reached_shipped: bool,
}

impl<'k> ChainWalk<'k> {
    /// A walk checking keyed links under `key` (without it, a keyed link
    /// cannot be checked and fails), and, if given, that the log still
    /// reaches the `shipped` head unchanged.
    pub fn new(key: Option<&'k AuditKey>, shipped: Option<&ChainHead>) -> ChainWalk<'k> {
        ChainWalk {
            key,
            shipped: shipped.cloned(),
            head: ChainHead::genesis(),
            keyed_from: None,
            reached_shipped: shipped.is_some_and(|s| s.seq == 0),
        }
    }

    /// Check the next event.
    pub fn step(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let seq = event.seq;
        if seq != self.head.seq + 1 {
            return Err(ChainBreak::Gap {
                seq,
                expected: self.head.seq + 1,
            });
        }
        if !same_hash(&event.prev_hash, &self.head.hash) {
            return Err(ChainBreak::Unlinked { seq });
        }
        match (event.chain, self.key) {
            (Link::Plain, _) => {
                if let Some(keyed) = self.keyed_from {
                    return Err(ChainBreak::Unkeyed { seq, keyed });
                }
                if !same_hash(&event.computed_hash(), &event.hash) {
                    return Err(ChainBreak::Tampered { seq });
                }
            }
            (Link::Keyed, None) => return Err(ChainBreak::KeyNeeded { seq }),
            (Link::Keyed, Some(key)) => {
                if !event.hashed().keyed_link_is(key, &event.hash) {
                    return Err(ChainBreak::Forged { seq });
                }
                self.keyed_from.get_or_insert(seq);
            }
        }
        if let Some(shipped) = &self.shipped {
            if shipped.seq == seq {
                if !same_hash(&shipped.hash, &event.hash.to_ascii_lowercase()) {
                    return Err(ChainBreak::NotShipped { seq });
                }
                self.reached_shipped = true;
            }
        }
        self.head = ChainHead {
            seq,
            hash: event.hash.clone(),
        };
        Ok(())
    }

    /// After the last event: the number of events checked, if the chain
    /// ends at the store's `recorded` head, reaches the shipped one, and —
    /// with a key — is keyed at its end.
    pub fn finish(self, recorded: &ChainHead) -> Result<u64, ChainBreak> {
        if self.head.seq != recorded.seq || !same_hash(&self.head.hash, &recorded.hash) {
            return Err(ChainBreak::Truncated {
                last: self.head.seq,
                head: recorded.seq,
            });
        }
        if let Some(shipped) = &self.shipped {
            if !self.reached_shipped {
                return Err(ChainBreak::ShortOfShipped {
                    last: self.head.seq,
                    shipped: shipped.seq,
                });
            }
        }
        if self.key.is_some() && self.head.seq > 0 && self.keyed_from.is_none() {
            return Err(ChainBreak::NeverKeyed {
                last: self.head.seq,
            });
        }
        Ok(self.head.seq)
    }
}

/// Walk events in order, checking each link (plain ones only: no key, no
/// shipped head). Returns the number checked.
pub fn verify_chain<I>(events: I, recorded_head: &ChainHead) -> Result<u64, ChainBreak>
where
    I: IntoIterator<Item = AuditEvent>,
{
    let mut walk = ChainWalk::new(None, None);
    for event in events {
        walk.step(&event)?;
    }
    walk.finish(recorded_head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(detail: &str) -> AuditRecord {
        AuditRecord {
            at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            action: AuditAction::Requested,
            actor: None,
            request: None,
            group: None,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_record_sealed_from_its_unsealed_text_is_the_record_sealed_here() {
        // What a store that seals events elsewhere (in SQL) builds from
        // unsealed_json must be byte for byte what seal() makes.
        let mut record = record("say \"hi\" to ☃ \u{e000}");
        record.actor = Some(Actor::new(
            crate::domain::ids::Platform::Slack,
            crate::domain::ids::UserId::new("U0ALICE"),
            "alice",
        ));
        let head = ChainHead {
            seq: 41,
            hash: "ab".repeat(32),
        };
        let fields = record.unsealed_json();
        let (event, next) = record.seal(&head);
        let hashed = format!("{{\"seq\":42,{fields},\"prev_hash\":\"{}\"}}", head.hash);
        assert_eq!(hex::encode(Sha256::digest(hashed.as_bytes())), event.hash);
        let text = format!(
            "{{\"seq\":42,{fields},\"prev_hash\":\"{}\",\"hash\":\"{}\"}}",
            head.hash, event.hash
        );
        assert_eq!(text, serde_json::to_string(&event).unwrap());
        assert_eq!(
            serde_json::to_string(&next).unwrap(),
            format!("{{\"seq\":42,\"hash\":\"{}\"}}", event.hash)
        );
    }

    fn chain(n: usize) -> (Vec<AuditEvent>, ChainHead) {
        let mut head = ChainHead::genesis();
        let mut events = Vec::new();
        for i in 0..n {
            let (event, next) = record(&format!("event {i}")).seal(&head);
            events.push(event);
            head = next;
        }
        (events, head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (events, head) = chain(5);
        assert_eq!(verify_chain(events, &head), Ok(5));
    }

    #[test]
    fn edits_deletions_and_truncation_are_detected() {
        let (mut events, head) = chain(5);
        events[2].detail = "rewritten".into();
        assert_eq!(
            verify_chain(events, &head),
            Err(ChainBreak::Tampered { seq: 3 })
        );

        let (mut events, head) = chain(5);
        events.remove(1);
        assert_eq!(
            verify_chain(events, &head),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        );

        let (mut events, head) = chain(5);
        events.pop();
        assert_eq!(
            verify_chain(events, &head),
            Err(ChainBreak::Truncated { last: 4, head: 5 })
        );
    }

    fn key(byte: u8) -> AuditKey {
        AuditKey::new(&[byte; 32]).unwrap()
    }

    /// `plain` events, then `keyed` ones under `key`.
    fn mixed(plain: usize, keyed: usize, key: &AuditKey) -> (Vec<AuditEvent>, ChainHead) {
        let (mut events, mut head) = chain(plain);
        for i in 0..keyed {
            let (event, next) = record(&format!("keyed {i}")).seal_with(&head, Some(key));
            events.push(event);
            head = next;
        }
        (events, head)
    }

    fn walk(
        events: &[AuditEvent],
        recorded: &ChainHead,
        key: Option<&AuditKey>,
        shipped: Option<&ChainHead>,
    ) -> Result<u64, ChainBreak> {
        let mut walk = ChainWalk::new(key, shipped);
        for event in events {
            walk.step(event)?;
        }
        walk.finish(recorded)
    }

    /// Re-chain `events` from the first as someone without the key can:
    /// plain links, each over the previous one's new hash.
    fn rechained_plain(events: &[AuditEvent]) -> (Vec<AuditEvent>, ChainHead) {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        for event in events {
            let (event, next) = AuditRecord {
                at: event.at,
                action: event.action,
                actor: event.actor.clone(),
                request: event.request.clone(),
                group: event.group.clone(),
                detail: event.detail.clone(),
            }
            .seal(&head);
            out.push(event);
            head = next;
        }
        (out, head)
    }

    #[test]
    fn a_keyed_link_is_the_hmac_of_the_documented_text() {
        let head = ChainHead {
            seq: 6,
            hash: "ab".repeat(32),
        };
        let key = key(7);
        let (event, next) = record("x").seal_with(&head, Some(&key));
        let text = format!(
            r#"{{"seq":7,"at":"2026-11-23T10:00:00Z","action":"requested","actor":null,"request":null,"group":null,"detail":"x","prev_hash":"{}","chain":"hmac-sha256"}}"#,
            head.hash
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        mac.update(text.as_bytes());
        assert_eq!(event.hash, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(next.hash, event.hash);
        let json = serde_json::to_string(&event).unwrap();
        assert!(
            json.ends_with(&format!(
                r#","chain":"hmac-sha256","hash":"{}"}}"#,
                event.hash
            )),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<AuditEvent>(&json).unwrap(), event);
        // A plain event's text and JSON are what they were before keys.
        let (plain, _) = record("x").seal(&head);
        assert!(!serde_json::to_string(&plain).unwrap().contains("chain"));
    }

    #[test]
    fn a_keyed_chain_verifies_under_its_key_only() {
        let (events, head) = mixed(0, 4, &key(1));
        assert_eq!(walk(&events, &head, Some(&key(1)), None), Ok(4));
        assert_eq!(
            walk(&events, &head, None, None),
            Err(ChainBreak::KeyNeeded { seq: 1 })
        );
        assert_eq!(
            walk(&events, &head, Some(&key(2)), None),
            Err(ChainBreak::Forged { seq: 1 })
        );
        // Without a key, a plain chain verifies as it always did; with
        // one, a plain chain is refused: it could be a rewritten one.
        let (plain, plain_head) = chain(3);
        assert_eq!(walk(&plain, &plain_head, None, None), Ok(3));
        assert_eq!(
            walk(&plain, &plain_head, Some(&key(1)), None),
            Err(ChainBreak::NeverKeyed { last: 3 })
        );
        assert_eq!(walk(&[], &ChainHead::genesis(), Some(&key(1)), None), Ok(0));
    }

    #[test]
    fn a_log_keyed_later_verifies_and_its_plain_part_is_covered() {
        let key = key(3);
        let (events, head) = mixed(3, 2, &key);
        assert_eq!(walk(&events, &head, Some(&key), None), Ok(5));

        // Rewriting a plain event and re-chaining the plain part breaks
        // the first keyed event's link to it.
        let mut edited = events.clone();
        edited[1].detail = "rewritten".into();
        let (replain, _) = rechained_plain(&edited[..3]);
        let mut forged: Vec<AuditEvent> = replain;
        forged.extend_from_slice(&events[3..]);
        assert_eq!(
            walk(&forged, &head, Some(&key), None),
            Err(ChainBreak::Unlinked { seq: 4 })
        );
        // Pointing the keyed event at the new hash breaks its HMAC.
        forged[3].prev_hash = forged[2].hash.clone();
        assert_eq!(
            walk(&forged, &head, Some(&key), None),
            Err(ChainBreak::Forged { seq: 4 })
        );
    }

    #[test]
    fn rewrites_without_the_key_are_refused() {
        let key = key(4);
        let (events, _) = mixed(2, 3, &key);
        // Everything re-chained plain, the head with it.
        let (rewritten, rewritten_head) = rechained_plain(&events);
        assert_eq!(
            walk(&rewritten, &rewritten_head, Some(&key), None),
            Err(ChainBreak::NeverKeyed { last: 5 })
        );
        // The keyed tail re-chained plain after the keyed part.
        let (events, head) = mixed(0, 3, &key);
        let mut tail = events.clone();
        let (last, new_head) = AuditRecord {
            detail: "inserted".into(),
            ..record("")
        }
        .seal(&ChainHead {
            seq: 2,
            hash: tail[1].hash.clone(),
        });
        tail[2] = last;
        assert_eq!(
            walk(&tail, &new_head, Some(&key), None),
            Err(ChainBreak::Unkeyed { seq: 3, keyed: 1 })
        );
        // An edit of a keyed event.
        let mut edited = events;
        edited[1].detail = "nothing to see".into();
        assert_eq!(
            walk(&edited, &head, Some(&key), None),
            Err(ChainBreak::Forged { seq: 2 })
        );
    }

    #[test]
    fn a_shipped_head_shows_truncation_and_rewrites() {
        let key = key(5);
        let (events, head) = mixed(0, 5, &key);
        let shipped = ChainHead {
            seq: 4,
            hash: events[3].hash.clone(),
        };
        assert_eq!(walk(&events, &head, Some(&key), Some(&shipped)), Ok(5));
        // The last two events dropped, the store's head moved back: the
        // chain itself is sound, but it no longer reaches the shipped head.
        let cut = &events[..3];
        let cut_head = ChainHead {
            seq: 3,
            hash: events[2].hash.clone(),
        };
        assert_eq!(walk(cut, &cut_head, Some(&key), None), Ok(3));
        assert_eq!(
            walk(cut, &cut_head, Some(&key), Some(&shipped)),
            Err(ChainBreak::ShortOfShipped {
                last: 3,
                shipped: 4
            })
        );
        // A plain chain rewritten from the start reaches seq 4 with
        // another hash.
        let (plain, _) = chain(5);
        let (rewritten, rewritten_head) = rechained_plain(
            &plain
                .iter()
                .map(|e| AuditEvent {
                    detail: format!("{} (edited)", e.detail),
                    ..e.clone()
                })
                .collect::<Vec<_>>(),
        );
        let plain_shipped = ChainHead {
            seq: 4,
            hash: plain[3].hash.clone(),
        };
        assert_eq!(walk(&rewritten, &rewritten_head, None, None), Ok(5));
        assert_eq!(
            walk(&rewritten, &rewritten_head, None, Some(&plain_shipped)),
            Err(ChainBreak::NotShipped { seq: 4 })
        );
    }

    #[test]
    fn heads_are_read_as_printed_and_as_exported() {
        let hash = "ab".repeat(32);
        let head = ChainHead {
            seq: 42,
            hash: hash.clone(),
        };
        assert_eq!(ChainHead::parse(&head.shown()), Ok(head.clone()));
        assert_eq!(
            ChainHead::parse(&format!(r#"{{"seq":42,"hash":"{hash}"}}"#)),
            Ok(head.clone())
        );
        assert_eq!(
            ChainHead::parse(&format!(
                "{{\"head\":{{\"seq\":42,\"hash\":\"{}\"}}}}\n",
                hash.to_uppercase()
            )),
            Ok(head)
        );
        for bad in ["42", "x:ab", "42:abc", "{\"seq\":1}", ""] {
            assert!(ChainHead::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_key_is_long_enough_and_never_shown() {
        let error = AuditKey::new(b"short").unwrap_err();
        assert!(error.contains("at least 32"), "{error}");
        let key = AuditKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "AuditKey(redacted)");
    }
}
