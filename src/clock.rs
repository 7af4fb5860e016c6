//! Where "now" comes from. The engine and the scheduler ask a [`Clock`], so
//! tests can run them on tokio's paused time and move it forward at will.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time that advances with tokio's clock: with
/// `tokio::time::pause()`, it stands still until `advance()` moves it, and
/// the scheduler's sleeps move in step with it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall_at_start: DateTime<Utc>,
    instant_at_start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Self {
            wall_at_start: wall,
            instant_at_start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.instant_at_start;
        self.wall_at_start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// The wall clock, moved forward by hand: a whole server can be run on it,
/// and a test makes an hour pass at once instead of waiting for it (then
/// wakes the workers, which look at the time again). It never goes back.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    shift_ms: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.shift_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let shift = self.shift_ms.load(std::sync::atomic::Ordering::SeqCst);
        Utc::now() + chrono::Duration::milliseconds(shift)
    }
}
