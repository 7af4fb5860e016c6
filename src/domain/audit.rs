//! Audit events: append-only and hash-chained. Each event carries the hash of
//! the one before it, so removing, reordering or editing any event breaks
//! every hash after it — which `jitbot audit verify` detects.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{Actor, GroupName, RequestId};

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
}

/// The fields the hash covers, in a fixed order.
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
}

fn hash_of(hashed: &Hashed<'_>) -> String {
    // Serialising a struct of plain fields cannot fail.
    let bytes = serde_json::to_vec(hashed).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
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

    /// Append this record after `head`, returning the sealed event and the new head.
    pub fn seal(self, head: &ChainHead) -> (AuditEvent, ChainHead) {
        let seq = head.seq + 1;
        let hash = hash_of(&Hashed {
            seq,
            at: &self.at,
            action: self.action,
            actor: &self.actor,
            request: &self.request,
            group: &self.group,
            detail: &self.detail,
            prev_hash: &head.hash,
        });
        let event = AuditEvent {
            seq,
            at: self.at,
            action: self.action,
            actor: self.actor,
            request: self.request,
            group: self.group,
            detail: self.detail,
            prev_hash: head.hash.clone(),
            hash: hash.clone(),
        };
        (event, ChainHead { seq, hash })
    }
}

impl AuditEvent {
    /// Recompute this event's hash from its fields.
    pub fn computed_hash(&self) -> String {
        hash_of(&Hashed {
            seq: self.seq,
            at: &self.at,
            action: self.action,
            actor: &self.actor,
            request: &self.request,
            group: &self.group,
            detail: &self.detail,
            prev_hash: &self.prev_hash,
        })
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
    #[error("the chain ends at event {last} but the recorded head is event {head}")]
    Truncated { last: u64, head: u64 },
}

/// Walk events in order, checking each link. Returns the number checked.
pub fn verify_chain<I>(events: I, recorded_head: &ChainHead) -> Result<u64, ChainBreak>
where
    I: IntoIterator<Item = AuditEvent>,
{
    let mut head = ChainHead::genesis();
    for event in events {
        if event.seq != head.seq + 1 {
            return Err(ChainBreak::Gap {
                seq: event.seq,
                expected: head.seq + 1,
            });
        }
        if event.prev_hash != head.hash {
            return Err(ChainBreak::Unlinked { seq: event.seq });
        }
        if event.computed_hash() != event.hash {
            return Err(ChainBreak::Tampered { seq: event.seq });
        }
        head = ChainHead {
            seq: event.seq,
            hash: event.hash,
        };
    }
    if head.seq != recorded_head.seq || head.hash != recorded_head.hash {
        return Err(ChainBreak::Truncated {
            last: head.seq,
            head: recorded_head.seq,
        });
    }
    Ok(head.seq)
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
}
