//! Business hours, as `auto_approve.hours` writes them:
//! `"Mon-Fri 09:00-18:00 Europe/Berlin"` — days (ranges like `Mon-Fri` or
//! `Sat-Mon`, single days, comma lists), a time window `HH:MM-HH:MM` (one
//! that ends before it starts runs past midnight into the next day), and an
//! IANA time zone. Whether a moment falls inside is decided on the zone's
//! wall clock, so daylight-saving changes move the window with the clock.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

const EXAMPLE: &str = "like \"Mon-Fri 09:00-18:00 Europe/Berlin\"";

#[derive(Clone)]
pub struct Hours {
    source: String,
    /// Indexed by `Weekday::num_days_from_monday`.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: u32,
    end: u32,
    zone: Tz,
}

impl Hours {
    pub fn parse(text: &str) -> Result<Hours, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, window, zone] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not days, a time window and a time zone, {EXAMPLE}"
            ));
        };
        let days = parse_days(days)?;
        let (start, end) = window
            .split_once('-')
            .ok_or_else(|| format!("`{window}` is not a time window like 09:00-18:00"))?;
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if start == end {
            return Err(format!("`{window}` is an empty time window"));
        }
        let zone: Tz = zone.parse().map_err(|_| {
            format!("`{zone}` is not an IANA time zone (like Europe/Berlin or America/New_York)")
        })?;
        Ok(Hours {
            source: text.trim().to_string(),
            days,
            start,
            end,
            zone,
        })
    }

    /// As written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `at` falls inside the hours, on the zone's wall clock.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        let day_is = |day: Weekday| self.days[day.num_days_from_monday() as usize];
        if self.start < self.end {
            day_is(local.weekday()) && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: the window belongs to the day it starts on.
            let yesterday = (local - Duration::days(1)).weekday();
            (day_is(local.weekday()) && minute >= self.start)
                || (day_is(yesterday) && minute < self.end)
        }
    }
}

fn day(name: &str) -> Result<Weekday, String> {
    DAYS.iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map(|(_, day)| *day)
        .ok_or_else(|| format!("`{name}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (mut current, to) = (day(from)?, day(to)?);
                loop {
                    days[current.num_days_from_monday() as usize] = true;
                    if current == to {
                        break;
                    }
                    current = current.succ();
                }
            }
            None => days[day(item)?.num_days_from_monday() as usize] = true,
        }
    }
    Ok(days)
}

/// `HH:MM` as minutes after midnight; `24:00` is the end of the day.
fn parse_time(text: &str) -> Result<u32, String> {
    let bad = || format!("`{text}` is not a time like 09:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || !digits(minutes) {
        return Err(bad());
    }
    let (hours, minutes): (u32, u32) = (
        hours.parse().map_err(|_| bad())?,
        minutes.parse().map_err(|_| bad())?,
    );
    if minutes > 59 || hours > 24 || (hours == 24 && minutes > 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

impl PartialEq for Hours {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Hours {}

impl std::fmt::Debug for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hours({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn weekdays_inside_the_window_on_the_zone_s_clock() {
        let hours = Hours::parse("Mon-Fri 09:00-18:00 Europe/Berlin").unwrap();
        // Monday 2026-11-30, Berlin is UTC+1 in winter.
        assert!(!hours.contains(utc("2026-11-30T07:59:00Z")));
        assert!(hours.contains(utc("2026-11-30T08:00:00Z")));
        assert!(hours.contains(utc("2026-11-30T16:59:00Z")));
        assert!(!hours.contains(utc("2026-11-30T17:00:00Z")));
        // Saturday.
        assert!(!hours.contains(utc("2026-12-05T10:00:00Z")));
    }

    #[test]
    fn the_window_moves_with_daylight_saving_time() {
        let hours = Hours::parse("Mon-Sun 02:30-03:30 Europe/Berlin").unwrap();
        // 2027-03-28: clocks jump from 02:00 to 03:00 (UTC+1 → UTC+2).
        // 00:59 UTC is 01:59 local: outside.
        assert!(!hours.contains(utc("2027-03-28T00:59:00Z")));
        // 01:00 UTC is 03:00 local (02:30 never happens): inside.
        assert!(hours.contains(utc("2027-03-28T01:00:00Z")));
        assert!(hours.contains(utc("2027-03-28T01:29:00Z")));
        assert!(!hours.contains(utc("2027-03-28T01:30:00Z")));
        // In summer 09:00 Berlin is 07:00 UTC.
        let office = Hours::parse("Mon-Fri 09:00-18:00 Europe/Berlin").unwrap();
        assert!(office.contains(utc("2027-03-29T07:00:00Z")));
        assert!(!office.contains(utc("2027-03-29T06:59:00Z")));
    }

    #[test]
    fn lists_wrapping_ranges_and_overnight_windows() {
        let hours = Hours::parse("Sat-Mon,Wed 22:00-06:00 UTC").unwrap();
        // Sunday 23:00 and the Monday morning after it.
        assert!(hours.contains(utc("2026-12-06T23:00:00Z")));
        assert!(hours.contains(utc("2026-12-07T05:59:00Z")));
        // Tuesday 05:00 belongs to Monday night's window.
        assert!(hours.contains(utc("2026-12-08T05:00:00Z")));
        // Tuesday 23:00 does not (Tuesday is not listed); Thursday 05:00
        // belongs to Wednesday night.
        assert!(!hours.contains(utc("2026-12-08T23:00:00Z")));
        assert!(hours.contains(utc("2026-12-10T05:00:00Z")));
        assert!(!hours.contains(utc("2026-12-10T12:00:00Z")));
    }

    #[test]
    fn bad_hours_say_what_is_wrong() {
        for (text, wanted) in [
            (
                "Mon-Fri 09:00-18:00",
                "not days, a time window and a time zone",
            ),
            ("Mon-Fry 09:00-18:00 UTC", "`Fry` is not a day"),
            ("Mon-Fri 9:00-18:00 UTC", "`9:00` is not a time"),
            ("Mon-Fri 09:00-25:00 UTC", "`25:00` is not a time"),
            ("Mon-Fri 09:00-09:00 UTC", "empty time window"),
            ("Mon-Fri 09:00-18:00 Mars/Olympus", "not an IANA time zone"),
        ] {
            let error = Hours::parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
