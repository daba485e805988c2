//! Limits of a key or a team: a budget per period, rates and concurrency; and budget alerts.

use serde::{Deserialize, Serialize};

use time::{Date, Duration, Month};

use crate::clock::{midnight_ms, utc, DAY_MS};
use crate::money::pricing::Nanos;

/// A budget period, in UTC: `daily` resets at 00:00, `weekly` on Monday 00:00 (ISO weeks),
/// `monthly` on the 1st at 00:00, `total` never resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    /// ISO weeks, Monday 00:00 UTC.
    Weekly,
    Monthly,
    /// Never resets.
    Total,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Result<Period, String> {
        Ok(match s {
            "daily" => Period::Daily,
            "weekly" => Period::Weekly,
            "monthly" => Period::Monthly,
            "total" => Period::Total,
            _ => return Err(format!("unknown budget period `{s}` (daily, weekly, monthly, total)")),
        })
    }

    /// Start (UTC, ms) of the period that contains `now_ms`.
    pub fn start_of(self, now_ms: i64) -> i64 {
        let day = utc(now_ms).date();
        match self {
            Period::Daily => midnight_ms(day),
            Period::Weekly => midnight_ms(day - Duration::days(day.weekday().number_days_from_monday().into())),
            Period::Monthly => midnight_ms(day.replace_day(1).unwrap_or(day)),
            Period::Total => 0,
        }
    }

    /// Start of the next period, or `None` for a total budget (or past the year 9999).
    pub fn next_start(self, start_ms: i64) -> Option<i64> {
        match self {
            Period::Daily => Some(start_ms + DAY_MS),
            Period::Weekly => Some(start_ms + 7 * DAY_MS),
            Period::Monthly => {
                let day = utc(start_ms).date();
                let (y, m) = match day.month() {
                    Month::December => (day.year() + 1, Month::January),
                    m => (day.year(), m.next()),
                };
                Date::from_calendar_date(y, m, 1).ok().map(midnight_ms)
            }
            Period::Total => None,
        }
    }
}

/// A spending limit in USD per period, with a soft threshold that warns before the hard stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: Nanos,
    pub period: Period,
    /// Percentage of the limit at which responses carry a warning and an alert is raised.
    pub soft_pct: u8,
}

/// What a key or a team may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub budget: Option<Budget>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.budget.is_none() && self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }
}

/// A budget crossing its soft threshold (`soft`) or refusing its first request (`hard`) in a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BudgetAlert {
    pub scope: String,
    pub period_start: i64,
    pub kind: &'static str,
    pub ts_ms: i64,
    pub spent_nanos: i64,
    pub limit_nanos: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_time;

    #[test]
    fn period_starts() {
        let t = parse_time("2026-11-25T13:14:15Z").unwrap(); // a Wednesday
        assert_eq!(Period::Daily.start_of(t), parse_time("2026-11-25").unwrap());
        assert_eq!(Period::Weekly.start_of(t), parse_time("2026-11-23").unwrap());
        assert_eq!(Period::Monthly.start_of(t), parse_time("2026-11-01").unwrap());
        assert_eq!(Period::Total.start_of(t), 0);
        let monday = parse_time("2026-11-23").unwrap();
        assert_eq!(Period::Weekly.start_of(monday), monday);
        assert_eq!(Period::Weekly.start_of(monday - 1), parse_time("2026-11-16").unwrap());
        let dec = parse_time("2026-12-01").unwrap();
        assert_eq!(Period::Monthly.next_start(Period::Monthly.start_of(t)), Some(dec));
        assert_eq!(Period::Monthly.next_start(dec), Some(parse_time("2027-01-01").unwrap()));
        assert_eq!(Period::Total.next_start(0), None);
    }
}
