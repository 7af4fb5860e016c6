//! The outbox worker: delivers the messages the engine wrote to the durable
//! outbox, through the chat platforms.
//!
//! Messages wait in queues ([`crate::domain::message::Outgoing::queue_key`]:
//! one card, one person's DMs, one channel's notices). A queue is delivered
//! in order; a queue that must wait — a `429 Retry-After`, an outage of the
//! API it needs — holds back only itself. The worker works like the
//! scheduler: it takes the queues that are ready (from an index ordered by
//! readiness, so queues waiting out a rate limit cost nothing to pass),
//! delivers several at once, and starts more as soon as one finishes, so
//! one slow destination never delays another. A rate limit met in one
//! conversation is remembered, so the other queues bound for it wait too
//! instead of each being refused in turn. A chat outage delays messages; it
//! never loses them.

mod deliver;
mod mail;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::directory::CachedDirectory;
use crate::chat::ChatPlatform;
use crate::clock::Clock;
use crate::domain::ids::Platform;
use crate::domain::message::Outgoing;
use crate::domain::policy::Policy;
use crate::store::{Claimed, OutboxEntry, Store, StoreError};
use crate::telemetry::{Health, Metrics};

pub(crate) use deliver::current_card;
use deliver::Delivery;

/// Queues delivered at once (each delivery is one or two API calls).
const MAX_CONCURRENT_QUEUES: usize = 16;
/// Entries of one queue delivered in one go before it goes to the back of
/// the line: a long queue must not starve the others.
const PER_QUEUE: usize = 8;
/// A home waits this long after the change that asked for it, so a burst
/// of changes publishes it once (well within the 5 s it may lag).
const HOME_SETTLE: Duration = Duration::from_secs(1);
/// Even when idle, look again this often.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// After a storage error, wait this long before trying again.
const ERROR_COOLDOWN: Duration = Duration::from_secs(5);

pub struct OutboxWorker {
    store: Arc<dyn Store>,
    homes: Option<Arc<dyn crate::chat::home::HomeSource>>,
    policy: Arc<Policy>,
    platforms: HashMap<Platform, Arc<dyn ChatPlatform>>,
    /// Email, when set up: approval emails and notices by email.
    mailer: Option<Arc<crate::email::Mailer>>,
    /// Chat profiles, for the address of someone chat cannot reach.
    directories: HashMap<Platform, Arc<CachedDirectory>>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Queues being delivered now.
    running: Mutex<HashSet<String>>,
    /// Conversations a chat API told us to leave alone, until when.
    throttled: Mutex<HashMap<String, DateTime<Utc>>>,
    finished: Notify,
    tracker: TaskTracker,
}

/// What one dispatch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatched {
    pub started: usize,
    /// When the next queue not started becomes ready.
    pub next_ready: Option<DateTime<Utc>>,
}

/// What the worker is built from.
pub struct OutboxParts {
    pub store: Arc<dyn Store>,
    /// Builds the homes it publishes.
    pub homes: Option<Arc<dyn crate::chat::home::HomeSource>>,
    pub policy: Arc<Policy>,
    pub platforms: HashMap<Platform, Arc<dyn ChatPlatform>>,
    pub mailer: Option<Arc<crate::email::Mailer>>,
    pub directories: HashMap<Platform, Arc<CachedDirectory>>,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl OutboxWorker {
    pub fn new(parts: OutboxParts) -> Arc<OutboxWorker> {
        Arc::new(OutboxWorker {
            store: parts.store,
            homes: parts.homes,
            policy: parts.policy,
            platforms: parts.platforms,
            mailer: parts.mailer,
            directories: parts.directories,
            clock: parts.clock,
            wake: parts.wake,
            metrics: parts.metrics,
            health: parts.health,
            running: Mutex::new(HashSet::new()),
            throttled: Mutex::new(HashMap::new()),
            finished: Notify::new(),
            tracker: TaskTracker::new(),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start delivering every ready queue there is room for.
    pub async fn dispatch(self: &Arc<Self>) -> Result<Dispatched, StoreError> {
        let room = MAX_CONCURRENT_QUEUES.saturating_sub(self.running().len());
        if room == 0 {
            return Ok(Dispatched {
                started: 0,
                next_ready: None,
            });
        }
        // A snapshot of what is being delivered: no lock is held across
        // the store's await.
        let running = self.running().clone();
        let batch = self
            .store
            .outbox_ready(self.now(), room, PER_QUEUE, &|queue| {
                running.contains(queue)
            })
            .await?;
        if !batch.queues.is_empty() {
            // What is about to be announced must be durable first.
            self.store.sync().await?;
        }
        let started = batch.queues.len();
        for Claimed { item: queue, lease } in batch.queues {
            let Some(key) = queue.first().map(|entry| entry.queue.clone()) else {
                continue;
            };
            self.running().insert(key.clone());
            let worker = self.clone();
            self.tracker.spawn(async move {
                tokio::select! {
                    delivered = worker.deliver_queue(queue) => {
                        if let Err(error) = delivered {
                            tracing::error!(%error, queue = %key, "outbox bookkeeping failed");
                            tokio::time::sleep(ERROR_COOLDOWN).await;
                        }
                    }
                    // Another replica may deliver this queue now: stop, so
                    // its messages are not sent twice at once.
                    _ = lease.lost() => {
                        tracing::warn!(queue = %key, "stopped delivering a queue whose claim was lost");
                    }
                }
                drop(lease);
                worker.running().remove(&key);
                worker.finished.notify_one();
            });
        }
        Ok(Dispatched {
            started,
            next_ready: batch.next_ready,
        })
    }

    /// When a conversation may be posted to again, if a chat API asked for
    /// a pause.
    /// When a home publish may go: a moment after it was written.
    fn home_settles_at(entry: &OutboxEntry) -> Option<DateTime<Utc>> {
        matches!(entry.message, Outgoing::PublishHome { .. })
            .then(|| entry.created_at + chrono::Duration::from_std(HOME_SETTLE).unwrap_or_default())
    }

    fn throttled_until(&self, entry: &OutboxEntry) -> Option<DateTime<Utc>> {
        let conversation = entry.message.conversation()?;
        let now = self.now();
        let mut throttled = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
        throttled.retain(|_, until| *until > now);
        throttled.get(&conversation).copied()
    }

    fn throttle(&self, entry: &OutboxEntry, until: DateTime<Utc>) {
        if let Some(conversation) = entry.message.conversation() {
            let mut throttled = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
            let at = throttled.entry(conversation).or_insert(until);
            *at = (*at).max(until);
        }
    }

    /// Deliver a queue's entries in order, stopping at the first that must
    /// wait (recorded with the time it may be tried again).
    async fn deliver_queue(&self, queue: Vec<OutboxEntry>) -> Result<(), StoreError> {
        let mut finished = 0;
        let mut entries = queue.into_iter().peekable();
        while let Some(mut entry) = entries.next() {
            // Alive, even in a long pass through a slow chat API.
            self.health.outbox_alive(false);
            // A home is published as it stands when delivered: one more
            // waiting behind this one would show the same, so this one is
            // done without a call (a burst of changes publishes once).
            let superseded = matches!(entry.message, Outgoing::PublishHome { .. })
                && entries
                    .peek()
                    .is_some_and(|next| next.message == entry.message);
            if superseded {
                self.store.outbox_done(&entry).await?;
                finished += 1;
                continue;
            }
            // And it settles a moment first, so the changes of a burst
            // queue up behind it and are published together.
            if let Some(settled) = Self::home_settles_at(&entry).filter(|at| *at > self.now()) {
                entry.next_attempt_at = settled;
                self.store.outbox_retry(&entry).await?;
                break;
            }
            if let Some(until) = self.throttled_until(&entry) {
                // Wait with the rest of the conversation; not a failure.
                entry.next_attempt_at = until;
                self.store.outbox_retry(&entry).await?;
                break;
            }
            match self.deliver(&entry).await {
                Delivery::Done => {
                    self.store.outbox_done(&entry).await?;
                    finished += 1;
                }
                Delivery::Retry {
                    wait,
                    error,
                    rate_limited,
                } => {
                    entry.attempts += 1;
                    entry.next_attempt_at = self.now() + wait;
                    entry.last_error = Some(error);
                    if rate_limited {
                        self.throttle(&entry, entry.next_attempt_at);
                    }
                    self.store.outbox_retry(&entry).await?;
                    break;
                }
            }
        }
        if finished > 0 {
            self.health.outbox_alive(true);
            // Make the bookkeeping (entries done, card message ids) durable,
            // so a crash does not send again what was delivered.
            self.store.sync().await?;
        }
        Ok(())
    }

    /// Deliver until `cancel`; then let the deliveries under way finish.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let wait = match self.dispatch().await {
                Ok(dispatched) => {
                    let idle = dispatched.started == 0 && self.running().is_empty();
                    let nothing_waits = idle && dispatched.next_ready.is_none();
                    self.health.outbox_alive(nothing_waits);
                    // Other replicas write messages for queues this one
                    // may claim: with them, look again at the watch
                    // interval.
                    let longest = self.store.watch_interval().unwrap_or(MAX_SLEEP);
                    dispatched
                        .next_ready
                        .map(|at| (at - self.now()).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(longest)
                        .min(longest)
                }
                Err(error) => {
                    tracing::error!(%error, "outbox pass failed");
                    self.health.outbox_alive(false);
                    ERROR_COOLDOWN
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = self.finished.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!("outbox worker stopped");
    }
}
