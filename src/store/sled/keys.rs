//! Key layouts. Every key starts with a version byte so a future layout can
//! live beside this one; times are wall-clock milliseconds, big-endian, so
//! byte order is time order.

use crate::domain::ids::{Actor, RequestId};

pub(super) const V1: u8 = 1;

pub(super) fn request(id: &RequestId) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

/// `by_user` index: the user, a NUL, then the request id.
pub(super) fn user_prefix(user: &Actor) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(user.platform.to_string().as_bytes());
    key.push(b':');
    key.extend_from_slice(user.user.as_str().as_bytes());
    key.push(0);
    key
}

pub(super) fn user_request(user: &Actor, id: &RequestId) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

/// Due-index key: due time then job id, so the first key is the next job.
pub(super) fn due(due_ms: i64, job_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(V1);
    // Times before 1970 do not occur; clamp so the cast cannot wrap.
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&job_id.to_be_bytes());
    key
}

/// The due time (millis) and job id of a due-index key.
pub(super) fn parse_due(key: &[u8]) -> Option<(i64, u64)> {
    if key.len() != 17 || key[0] != V1 {
        return None;
    }
    let due = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let id = u64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((i64::try_from(due).ok()?, id))
}

pub(super) fn sequence(seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(V1);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Replay-cache key: the signed timestamp first (so old entries are pruned
/// with one range scan), then the signature.
pub(super) fn replay(timestamp_secs: i64, signature: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + signature.len());
    key.push(V1);
    key.extend_from_slice(&(timestamp_secs.max(0) as u64).to_be_bytes());
    key.extend_from_slice(signature);
    key
}

pub(super) fn mapping(group: &str, platform: &str, channel: &str) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(platform.as_bytes());
    key.push(0);
    key.extend_from_slice(channel.as_bytes());
    key
}

/// Principal-owner index: the group, a NUL, then the principal it granted.
pub(super) fn principal_owner(group: &str, principal: &str) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(principal.as_bytes());
    key
}

/// Every usage record of `group` starts with this.
pub(super) fn usage_prefix(group: &str) -> Vec<u8> {
    let mut key = b"\x01usage:".to_vec();
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key
}

pub(super) fn usage(group: &str, principal: &str) -> Vec<u8> {
    let mut key = usage_prefix(group);
    key.extend_from_slice(principal.as_bytes());
    key
}

pub(super) fn last_sweep(group: &str) -> Vec<u8> {
    let mut key = b"\x01sweep:".to_vec();
    key.extend_from_slice(group.as_bytes());
    key
}

/// Every App Home opening starts with this.
pub(super) const HOME_OPENED_PREFIX: &[u8] = b"\x01home:";

pub(super) fn home_opened(user: &str) -> Vec<u8> {
    let mut key = HOME_OPENED_PREFIX.to_vec();
    key.extend_from_slice(user.as_bytes());
    key
}

/// The user and the time (millis) of a home opening's key and value.
pub(super) fn parse_home_opened(key: &[u8], value: &[u8]) -> Option<(String, i64)> {
    let user = key.strip_prefix(HOME_OPENED_PREFIX)?;
    let opened_ms = i64::from_be_bytes(value.try_into().ok()?);
    Some((String::from_utf8_lossy(user).into_owned(), opened_ms))
}

pub(super) fn teams_user(aad_object_id: &str) -> Vec<u8> {
    let mut key = b"\x01user:".to_vec();
    key.extend_from_slice(aad_object_id.to_lowercase().as_bytes());
    key
}

pub(super) fn teams_conversation(conversation: &str) -> Vec<u8> {
    let mut key = b"\x01conversation:".to_vec();
    key.extend_from_slice(conversation.as_bytes());
    key
}

/// The service URL of the latest Teams activity.
pub(super) const TEAMS_LATEST_SERVICE_URL: &[u8] = b"\x01latest_service_url";

pub(super) const AUDIT_HEAD: &[u8] = b"\x01audit_head";
/// Set once the live-requests index has been built from existing requests.
pub(super) const LIVE_INDEX_BUILT: &[u8] = b"\x01live_index_built";

/// Outbox queue index: the queue, a NUL, then the entry's sequence.
pub(super) fn queue_prefix(queue: &str) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key
}

pub(super) fn queue_entry(queue: &str, seq: u64) -> Vec<u8> {
    let mut key = queue_prefix(queue);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn queue(queue: &str) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(queue.as_bytes());
    key
}

/// Outbox readiness index: when the queue's head may be tried, then the
/// queue, so the first key is the queue ready longest.
pub(super) fn ready(ready_ms: i64, queue: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + queue.len());
    key.push(V1);
    key.extend_from_slice(&(ready_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(queue.as_bytes());
    key
}

/// The ready millis and queue of a readiness key.
pub(super) fn parse_ready(key: &[u8]) -> Option<(i64, String)> {
    if key.len() < 9 || key[0] != V1 {
        return None;
    }
    let ms = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let queue = String::from_utf8(key[9..].to_vec()).ok()?;
    Some((i64::try_from(ms).ok()?, queue))
}

/// A person's quota: their platform and id.
pub(super) fn quota(user: &Actor) -> Vec<u8> {
    let mut key = vec![V1];
    key.extend_from_slice(user.platform.to_string().as_bytes());
    key.push(b':');
    key.extend_from_slice(user.user.as_str().as_bytes());
    key
}

/// Set once every outbox entry is in the queue indexes.
pub(super) const OUTBOX_QUEUES_BUILT: &[u8] = b"\x01outbox_queues_built";
/// Set once every pending request counts in its requester's quota.
pub(super) const QUOTAS_BUILT: &[u8] = b"\x01quotas_built";
