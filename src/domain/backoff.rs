//! How long to wait before trying again something that failed: a revoke, a
//! grant, a chat message.

use std::time::Duration;

/// Upper bound on the pause between two retries: a failing revoke is
/// retried at least this often, forever.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Exponential backoff from one second, capped at [`MAX_BACKOFF`], scaled
/// by `jitter` (the caller draws it from 0.8..1.2) so that many failing
/// jobs do not retry in lock-step.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(16)).min(MAX_BACKOFF);
    base.mul_f64(jitter.clamp(0.5, 1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(8));
        assert!(backoff(3, 0.8) >= Duration::from_millis(6400));
        assert_eq!(backoff(30, 1.0), MAX_BACKOFF);
        assert!(backoff(30, 1.2) <= MAX_BACKOFF.mul_f64(1.2));
    }
}
