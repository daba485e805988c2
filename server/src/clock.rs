//! Wall-clock time behind a trait, so budget periods and rate limits can be tested without waiting,
//! and the conversions between milliseconds and UTC calendar times (with the `time` crate).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The UTC time `ms` milliseconds after the epoch, clamped to the years 0000–9999.
pub fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(if ms < 0 {
        PrimitiveDateTime::MIN.assume_utc()
    } else {
        PrimitiveDateTime::MAX.assume_utc()
    })
}

/// Milliseconds since the epoch of a time.
pub fn ms_of(t: OffsetDateTime) -> i64 {
    // Years 0000–9999 are about ±3.2e14 ms: always within i64.
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds since the epoch of a date's 00:00 UTC.
pub fn midnight_ms(d: Date) -> i64 {
    ms_of(d.midnight().assume_utc())
}

/// `2026-11-23T18:45:40.123Z`.
pub fn iso8601(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc(ms).format(format).unwrap_or_default()
}

/// Parses `YYYY-MM-DD` (00:00 UTC), an RFC 3339 time (`2026-11-23T18:45:40.123Z`, any offset,
/// `T` or a space between date and time), the same without seconds, or integer milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| format!("`{t}` is out of range"));
    }
    let bad = || format!("`{t}` is not a date (YYYY-MM-DD), an RFC 3339 time or milliseconds since 1970");
    if t.len() == 10 {
        return Date::parse(t, format_description!("[year]-[month]-[day]"))
            .map(midnight_ms)
            .map_err(|_| bad());
    }
    let t = match t.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &t[..10], &t[11..]),
        _ => t.to_string(),
    };
    let no_seconds =
        format_description!("[year]-[month]-[day]T[hour]:[minute][offset_hour sign:mandatory]:[offset_minute]");
    OffsetDateTime::parse(&t, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&t.replace('Z', "+00:00"), no_seconds))
        .map(ms_of)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_times() {
        let ms = parse_time("2026-02-28T23:59:59.5Z").unwrap();
        assert_eq!(iso8601(ms), "2026-02-28T23:59:59.500Z");
        assert_eq!(parse_time("2026-03-01").unwrap(), ms + 500);
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("2024-02-29").unwrap(), 1_709_164_800_000);
        assert_eq!(parse_time("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(parse_time("2026-03-01 00:00:00.5Z").unwrap(), ms + 1000);
        assert_eq!(parse_time("2026-03-01T02:00:00.5+02:00").unwrap(), ms + 1000);
        assert_eq!(parse_time("2026-03-01T00:01Z").unwrap(), ms + 500 + 60_000);
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601(i64::MAX), "9999-12-31T23:59:59.999Z");
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "26-01-01",
            "2026-01-01T25:00Z",
            "yesterday",
            "",
            "2026-01-01T10:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} accepted");
        }
    }
}
