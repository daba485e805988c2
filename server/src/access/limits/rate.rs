//! Rate limits: token buckets refilled over a minute, and OpenAI's `x-ratelimit-*` values.

use std::time::Duration;

/// OpenAI's `x-ratelimit-*` values for the tightest scope.
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    pub requests: Option<(u64, u64, Duration)>,
    pub tokens: Option<(u64, u64, Duration)>,
}

impl RateHeaders {
    /// `(name, value)` pairs, for example `x-ratelimit-reset-requests: 1.5s`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some((limit, remaining, reset)) = self.requests {
            v.push(("x-ratelimit-limit-requests", limit.to_string()));
            v.push(("x-ratelimit-remaining-requests", remaining.to_string()));
            v.push(("x-ratelimit-reset-requests", fmt_reset(reset)));
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            v.push(("x-ratelimit-limit-tokens", limit.to_string()));
            v.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
            v.push(("x-ratelimit-reset-tokens", fmt_reset(reset)));
        }
        v
    }
}

/// OpenAI's duration style: `20ms`, `1.5s`, `6m0s`.
pub fn fmt_reset(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        let t = format!("{s:.3}");
        format!("{}s", t.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A token bucket: `capacity` units refilled evenly over a minute.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) capacity: f64,
    pub(super) level: f64,
    at_ms: i64,
}

impl Bucket {
    pub(super) fn new(capacity: u64, now_ms: i64) -> Bucket {
        Bucket {
            capacity: capacity as f64,
            level: capacity as f64,
            at_ms: now_ms,
        }
    }

    pub(super) fn refill(&mut self, capacity: u64, now_ms: i64) {
        let cap = capacity as f64;
        if cap != self.capacity {
            self.level = self.level.min(cap);
            self.capacity = cap;
        }
        let dt = (now_ms - self.at_ms).max(0) as f64;
        self.level = (self.level + dt * cap / 60_000.0).min(cap);
        self.at_ms = now_ms;
    }

    /// Time until `n` units are available (zero if they are).
    pub(super) fn wait_for(&self, n: f64) -> Duration {
        if self.level >= n || self.capacity <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_millis(((n - self.level) * 60_000.0 / self.capacity).ceil() as u64)
    }

    /// Time until the bucket is full again.
    pub(super) fn reset(&self) -> Duration {
        self.wait_for(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reset_durations_read_like_openai() {
        assert_eq!(fmt_reset(Duration::from_millis(20)), "20ms");
        assert_eq!(fmt_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_reset(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_reset(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn buckets_refill_over_a_minute() {
        let mut b = Bucket::new(60, 0);
        b.level = 0.0;
        assert_eq!(b.wait_for(1.0), Duration::from_secs(1));
        b.refill(60, 30_000);
        assert_eq!(b.level, 30.0);
        b.refill(60, 120_000);
        assert_eq!(b.level, 60.0);
        assert_eq!(b.reset(), Duration::ZERO);
    }
}
