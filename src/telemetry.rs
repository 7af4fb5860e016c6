//! What operators watch: Prometheus metrics (`GET /metrics`) and the
//! liveness of the background workers (`GET /readyz`). Each server has its
//! own registry (prometheus-client), so several servers in one process —
//! the tests — never mix their numbers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, SystemClock};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatFailure {
    pub platform: &'static str,
    /// `rate_limited`, `unreachable` or `failed`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    pub source: &'static str,
}

/// How long the values read from the store serve scrapes and probes: a
/// few seconds, so that however often `/metrics` and `/readyz` are asked
/// (by anyone, when they are open), the store is read at most this often.
pub const STORE_GAUGES_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// What was last read from the store for the gauges and the readiness
/// check, and when; or why it could not be read.
#[derive(Debug, Clone)]
pub struct StoreReading {
    pub read_at: tokio::time::Instant,
    pub outcome: Result<StoreGauges, String>,
}

/// The store's side of the gauges and of readiness.
#[derive(Debug, Clone, Copy)]
pub struct StoreGauges {
    pub active_grants: usize,
    pub expiring_soon: usize,
    pub outbox_waiting: usize,
    pub outbox_oldest: Option<DateTime<Utc>>,
}

/// Values read from the store when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub active_grants: i64,
    pub expiring_soon: i64,
    pub outbox_depth: i64,
    pub outbox_oldest_seconds: i64,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests filed or refused: `filed`, `auto_approved`, `break_glass`,
    /// `refused`, `limited`, `error`.
    pub requests: Family<Outcome, Counter>,
    /// Decisions recorded: `approved`, `denied`, `approval_recorded`, `refused`.
    pub decisions: Family<Outcome, Counter>,
    /// Provider revokes: `ok`, `failed`.
    pub revocations: Family<Outcome, Counter>,
    /// Seconds from a grant's end to its confirmed revoke.
    pub revocation_lag: Histogram,
    pub chat_errors: Family<ChatFailure, Counter>,
    /// Requests to us whose signature or token did not check out.
    pub auth_failures: Family<Source, Counter>,
    /// Requests answered "busy, try again" because more came in than the
    /// server could take on, by route family (`slack`, `teams`, `api`).
    pub busy: Family<Source, Counter>,
    /// Activity samples: `in_use`, `unused`, `unknown` (the provider
    /// failed or answered in the wrong shape).
    pub activity_samples: Family<Outcome, Counter>,
    /// Grants released early because nobody used them.
    pub idle_releases: Counter,
    /// Standing holders (no grant, not allowed) unused for the group's
    /// `sweep_unused`, as last sampled.
    pub unused_holders: Family<GroupLabel, Gauge>,
    /// Who-is-on-call look-ups: `ok`, `unknown_schedule` (a 404: the
    /// policy names a schedule the service does not have), `failed`,
    /// `timed_out`, `not_configured`.
    pub on_call_lookups: Family<Outcome, Counter>,
    /// Slack Socket Mode connections: `opened`, `refreshed` (Slack asked
    /// for a new one), `dropped`, `failed` (could not open one).
    pub socket_connections: Family<Outcome, Counter>,
    active_grants: Gauge,
    expiring_soon: Gauge,
    outbox_depth: Gauge,
    outbox_oldest: Gauge,
    /// Reads of the store for the gauges: at most one per
    /// [`STORE_GAUGES_FRESH_FOR`], however often they are scraped.
    pub store_gauge_reads: Counter,
    /// The last such read; its lock is held while reading, so scrapes that
    /// come together wait for one read instead of each making one.
    pub store_reading: tokio::sync::Mutex<Option<StoreReading>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("jitbot");
        let requests = Family::<Outcome, Counter>::default();
        let decisions = Family::<Outcome, Counter>::default();
        let revocations = Family::<Outcome, Counter>::default();
        let revocation_lag =
            Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let chat_errors = Family::<ChatFailure, Counter>::default();
        let auth_failures = Family::<Source, Counter>::default();
        let busy = Family::<Source, Counter>::default();
        let activity_samples = Family::<Outcome, Counter>::default();
        let idle_releases = Counter::default();
        let unused_holders = Family::<GroupLabel, Gauge>::default();
        let on_call_lookups = Family::<Outcome, Counter>::default();
        let socket_connections = Family::<Outcome, Counter>::default();
        let active_grants = Gauge::default();
        let expiring_soon = Gauge::default();
        let outbox_depth = Gauge::default();
        let outbox_oldest = Gauge::default();
        let store_gauge_reads = Counter::default();
        registry.register("requests", "Access requests by outcome", requests.clone());
        registry.register(
            "decisions",
            "Approval decisions by outcome",
            decisions.clone(),
        );
        registry.register(
            "revocations",
            "Provider revokes by outcome",
            revocations.clone(),
        );
        registry.register(
            "revocation_lag_seconds",
            "Time from a grant's end to its confirmed revoke",
            revocation_lag.clone(),
        );
        registry.register(
            "chat_api_errors",
            "Failed chat API calls by platform and kind (rate_limited is a 429)",
            chat_errors.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests rejected for a bad signature (slack, teams) or token (api, metrics)",
            auth_failures.clone(),
        );
        registry.register(
            "busy_answers",
            "Requests answered busy (try again) under overload",
            busy.clone(),
        );
        registry.register(
            "activity_samples",
            "Samples of whether watched access is used, by outcome (unknown: the provider could not say)",
            activity_samples.clone(),
        );
        registry.register(
            "idle_releases",
            "Grants released early because nobody used them for the group's idle_release",
            idle_releases.clone(),
        );
        registry.register(
            "unused_holders",
            "Standing holders unused for the group's sweep_unused, as last sampled",
            unused_holders.clone(),
        );
        registry.register(
            "on_call_lookups",
            "Who-is-on-call look-ups by outcome (unknown_schedule: the paging service has no such schedule)",
            on_call_lookups.clone(),
        );
        registry.register(
            "slack_socket_connections",
            "Slack Socket Mode connections by outcome (opened, refreshed, dropped, failed)",
            socket_connections.clone(),
        );
        registry.register("active_grants", "Grants active now", active_grants.clone());
        registry.register(
            "grants_expiring_soon",
            "Active grants that end within 15 minutes",
            expiring_soon.clone(),
        );
        registry.register(
            "outbox_depth",
            "Chat messages waiting to be delivered",
            outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_seconds",
            "Age of the oldest chat message waiting to be delivered",
            outbox_oldest.clone(),
        );
        registry.register(
            "store_gauge_reads",
            "Reads of the store for the gauges and readiness (at most one every few seconds)",
            store_gauge_reads.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            decisions,
            revocations,
            revocation_lag,
            chat_errors,
            auth_failures,
            busy,
            activity_samples,
            idle_releases,
            unused_holders,
            on_call_lookups,
            socket_connections,
            active_grants,
            expiring_soon,
            outbox_depth,
            outbox_oldest,
            store_gauge_reads,
            store_reading: tokio::sync::Mutex::new(None),
        }
    }

    pub fn count_busy(&self, source: &'static str) {
        self.busy.get_or_create(&Source { source }).inc();
    }

    pub fn count(family: &Family<Outcome, Counter>, outcome: &'static str) {
        family.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn count_auth_failure(&self, source: &'static str) {
        self.auth_failures.get_or_create(&Source { source }).inc();
    }

    pub fn count_chat_error(&self, platform: &'static str, kind: &'static str) {
        self.chat_errors
            .get_or_create(&ChatFailure { platform, kind })
            .inc();
    }

    /// The Prometheus text exposition, with the store-derived values set.
    pub fn render(&self, snapshot: Snapshot) -> String {
        self.active_grants.set(snapshot.active_grants);
        self.expiring_soon.set(snapshot.expiring_soon);
        self.outbox_depth.set(snapshot.outbox_depth);
        self.outbox_oldest.set(snapshot.outbox_oldest_seconds);
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

/// Heartbeats of the background workers, for `/readyz`, on the engine's
/// clock (so that readiness and the work it watches agree on the time).
pub struct Health {
    clock: Arc<dyn Clock>,
    scheduler_beat: AtomicI64,
    outbox_beat: AtomicI64,
    /// When the outbox last delivered (or dropped) something.
    outbox_progress: AtomicI64,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("scheduler_seen", &self.scheduler_seen())
            .field("outbox_seen", &self.outbox_seen())
            .field("outbox_progressed", &self.outbox_progressed())
            .finish()
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new(Arc::new(SystemClock))
    }
}

fn at(millis: i64) -> Option<DateTime<Utc>> {
    (millis > 0)
        .then(|| DateTime::from_timestamp_millis(millis))
        .flatten()
}

impl Health {
    pub fn new(clock: Arc<dyn Clock>) -> Health {
        let now = clock.now().timestamp_millis();
        Health {
            clock,
            scheduler_beat: AtomicI64::new(0),
            outbox_beat: AtomicI64::new(0),
            outbox_progress: AtomicI64::new(now),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn scheduler_alive(&self) {
        self.scheduler_beat
            .store(self.clock.now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn outbox_alive(&self, progressed: bool) {
        let now = self.clock.now().timestamp_millis();
        self.outbox_beat.store(now, Ordering::Relaxed);
        if progressed {
            self.outbox_progress.store(now, Ordering::Relaxed);
        }
    }

    pub fn scheduler_seen(&self) -> Option<DateTime<Utc>> {
        at(self.scheduler_beat.load(Ordering::Relaxed))
    }

    pub fn outbox_seen(&self) -> Option<DateTime<Utc>> {
        at(self.outbox_beat.load(Ordering::Relaxed))
    }

    pub fn outbox_progressed(&self) -> Option<DateTime<Utc>> {
        at(self.outbox_progress.load(Ordering::Relaxed))
    }
}

/// The scheduler looks at the due-index at least every 30 s; three times
/// that without a pass means it is not running. The same for the outbox.
const WORKER_STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(90);
/// Messages may wait out rate limits, but nothing delivered for this long
/// while messages wait means the outbox is stuck.
const OUTBOX_STUCK_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// What `/readyz` looks at.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    pub store_ok: bool,
    pub scheduler_seen: Option<DateTime<Utc>>,
    pub outbox_seen: Option<DateTime<Utc>>,
    pub outbox_progressed: Option<DateTime<Utc>>,
    pub outbox_waiting: usize,
    pub outbox_oldest: Option<DateTime<Utc>>,
}

/// Whether the server is ready, with one line per check.
pub fn readiness(observed: &Observed) -> (bool, Vec<String>) {
    let now = observed.now;
    let ago = |at: DateTime<Utc>| (now - at).num_seconds();
    let mut lines = Vec::new();
    let store_ok = observed.store_ok;
    lines.push(
        if store_ok {
            "store: ok"
        } else {
            "store: not answering"
        }
        .to_string(),
    );
    let scheduler_ok = match observed.scheduler_seen {
        Some(at) if now - at < WORKER_STALE_AFTER => {
            lines.push(format!("scheduler: ok (last pass {}s ago)", ago(at)));
            true
        }
        Some(at) => {
            lines.push(format!("scheduler: stalled (last pass {}s ago)", ago(at)));
            false
        }
        None => {
            lines.push("scheduler: not started".to_string());
            false
        }
    };
    let waiting = observed.outbox_waiting;
    let age = observed.outbox_oldest.map_or(0, ago);
    let progressed = observed.outbox_progressed.unwrap_or(now);
    let running = observed
        .outbox_seen
        .is_some_and(|at| now - at < WORKER_STALE_AFTER);
    let stuck = observed
        .outbox_oldest
        .is_some_and(|oldest| now - oldest > OUTBOX_STUCK_AFTER)
        && now - progressed > OUTBOX_STUCK_AFTER;
    let outbox_ok = running && !stuck;
    lines.push(if !running {
        "outbox: not running".to_string()
    } else if stuck {
        format!(
            "outbox: stuck ({waiting} waiting, oldest {age}s, nothing delivered for {}s)",
            ago(progressed)
        )
    } else {
        format!("outbox: ok ({waiting} waiting, oldest {age}s)")
    });
    (store_ok && scheduler_ok && outbox_ok, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(now: DateTime<Utc>) -> Observed {
        Observed {
            now,
            store_ok: true,
            scheduler_seen: Some(now - chrono::TimeDelta::seconds(2)),
            outbox_seen: Some(now - chrono::TimeDelta::seconds(1)),
            outbox_progressed: Some(now - chrono::TimeDelta::seconds(1)),
            outbox_waiting: 3,
            outbox_oldest: Some(now - chrono::TimeDelta::seconds(4)),
        }
    }

    #[test]
    fn ready_when_every_part_works() {
        let now = Utc::now();
        let (ready, lines) = readiness(&healthy(now));
        assert!(ready);
        assert_eq!(
            lines,
            [
                "store: ok",
                "scheduler: ok (last pass 2s ago)",
                "outbox: ok (3 waiting, oldest 4s)"
            ]
        );
    }

    #[test]
    fn not_ready_when_a_part_is_stuck_or_stalled() {
        let now = Utc::now();
        let minutes = |m| now - chrono::TimeDelta::minutes(m);
        let stalled = Observed {
            scheduler_seen: Some(minutes(5)),
            ..healthy(now)
        };
        let (ready, lines) = readiness(&stalled);
        assert!(!ready);
        assert_eq!(lines[1], "scheduler: stalled (last pass 300s ago)");

        // Messages waiting for 20 minutes and nothing delivered for 16.
        let stuck = Observed {
            outbox_oldest: Some(minutes(20)),
            outbox_progressed: Some(minutes(16)),
            ..healthy(now)
        };
        let (ready, lines) = readiness(&stuck);
        assert!(!ready);
        assert_eq!(
            lines[2],
            "outbox: stuck (3 waiting, oldest 1200s, nothing delivered for 960s)"
        );

        // An old message behind a rate limit is fine while others get through.
        let slow = Observed {
            outbox_oldest: Some(minutes(20)),
            ..healthy(now)
        };
        assert!(readiness(&slow).0);

        let broken_store = Observed {
            store_ok: false,
            ..healthy(now)
        };
        assert!(!readiness(&broken_store).0);
    }

    #[test]
    fn the_exposition_names_every_metric() {
        let metrics = Metrics::new();
        Metrics::count(&metrics.requests, "filed");
        metrics.revocation_lag.observe(0.3);
        let text = metrics.render(Snapshot {
            active_grants: 2,
            ..Snapshot::default()
        });
        assert!(
            text.contains("jitbot_requests_total{outcome=\"filed\"} 1"),
            "{text}"
        );
        assert!(text.contains("jitbot_active_grants 2"), "{text}");
        assert!(
            text.contains("jitbot_revocation_lag_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
