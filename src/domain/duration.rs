//! Durations as people write them in chat and in the policy: `90s`, `30m`,
//! `2h`, `1h30m`, `1d`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A whole number of seconds, written and read in the `1h30m` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration {
    seconds: u64,
}

/// Nobody needs access for longer than a year; the cap keeps arithmetic on
/// millisecond timestamps far from overflow.
const MAX_SECONDS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration (write it like 90s, 30m, 2h, 1h30m or 1d)")]
pub struct DurationError(pub String);

impl HumanDuration {
    pub const fn from_secs(seconds: u64) -> Self {
        Self { seconds }
    }

    pub fn parse(raw: &str) -> Result<Self, DurationError> {
        let text = raw.trim().to_ascii_lowercase();
        let bad = || DurationError(raw.trim().to_string());
        if text.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut number: Option<u64> = None;
        let mut last_unit_rank = usize::MAX;
        for c in text.chars() {
            if let Some(digit) = c.to_digit(10) {
                let so_far = number.unwrap_or(0);
                number = Some(
                    so_far
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(digit)))
                        .ok_or_else(bad)?,
                );
                continue;
            }
            // Units must come largest first and at most once each: `1h30m`, not `30m1h`.
            let (rank, unit_seconds) = match c {
                'd' => (0, 86_400),
                'h' => (1, 3_600),
                'm' => (2, 60),
                's' => (3, 1),
                _ => return Err(bad()),
            };
            if last_unit_rank != usize::MAX && rank <= last_unit_rank {
                return Err(bad());
            }
            last_unit_rank = rank;
            let n = number.take().ok_or_else(bad)?;
            total = n
                .checked_mul(unit_seconds)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(bad)?;
        }
        if number.is_some() || total == 0 || total > MAX_SECONDS {
            return Err(bad());
        }
        Ok(Self { seconds: total })
    }

    pub fn as_secs(self) -> u64 {
        self.seconds
    }

    pub fn as_millis(self) -> i64 {
        // Bounded by MAX_SECONDS, so this cannot overflow.
        (self.seconds * 1000) as i64
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.seconds as i64)
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    /// Sum of two durations, saturating at the one-year cap.
    pub fn saturating_add(self, other: HumanDuration) -> HumanDuration {
        Self {
            seconds: (self.seconds + other.seconds).min(MAX_SECONDS),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        let mut wrote = false;
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            let n = rest / size;
            rest %= size;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = DurationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<HumanDuration> for String {
    fn from(value: HumanDuration) -> String {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1d", 86_400),
            ("1D2H", 93_600),
            (" 45m ", 2700),
        ] {
            assert_eq!(
                HumanDuration::parse(text).unwrap().as_secs(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in [
            "",
            "2",
            "h",
            "2x",
            "30m1h",
            "1h1h",
            "0m",
            "-5m",
            "1.5h",
            "400d",
            "99999999999999999999s",
        ] {
            assert!(HumanDuration::parse(text).is_err(), "{text} accepted");
        }
    }

    #[test]
    fn displays_in_canonical_form() {
        assert_eq!(HumanDuration::parse("90m").unwrap().to_string(), "1h30m");
        assert_eq!(HumanDuration::parse("3600s").unwrap().to_string(), "1h");
        assert_eq!(HumanDuration::parse("1d1s").unwrap().to_string(), "1d1s");
    }
}
