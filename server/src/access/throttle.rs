//! Slows down guessing: after a few failures from one address (or for one user name), each
//! further attempt must wait, twice as long after every failure, up to a ceiling. A subject
//! quiet for twice the ceiling starts afresh. The dashboard's sign-in and the API's keys each
//! have one, with their own [`Policy`].

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most; the oldest are forgotten first.
const MAX_ENTRIES: usize = 100_000;

/// How many failures are free, and how long the waits after them are.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before attempts have to wait.
    pub free_failures: u32,
    /// The first wait, doubled after every further failure.
    pub first_wait_ms: i64,
    /// The longest wait.
    pub max_wait_ms: i64,
}

/// The dashboard's sign-in: 3 free failures, then 1 s doubling up to 5 minutes.
pub const SIGN_IN: Policy = Policy {
    free_failures: 3,
    first_wait_ms: 1_000,
    max_wait_ms: 5 * 60_000,
};

/// Unknown or refused API keys from one address: 20 free failures (a client retrying with a
/// wrong key), then 1 s doubling up to a minute.
pub const API_KEYS: Policy = Policy {
    free_failures: 20,
    first_wait_ms: 1_000,
    max_wait_ms: 60_000,
};

pub struct Throttle {
    policy: Policy,
    by: Mutex<HashMap<String, (u32, i64)>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(SIGN_IN)
    }
}

impl Throttle {
    pub fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            by: Mutex::new(HashMap::new()),
        }
    }

    /// A subject quiet this long starts afresh.
    fn forget_after_ms(&self) -> i64 {
        self.policy.max_wait_ms.saturating_mul(2)
    }

    /// How long (ms) an attempt for any of `subjects` must still wait at `now_ms`; 0: go ahead.
    pub fn wait_ms(&self, subjects: &[&str], now_ms: i64) -> i64 {
        let by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        subjects
            .iter()
            .filter_map(|s| by.get(*s))
            .filter(|&&(_, last)| now_ms - last < self.forget_after_ms())
            .map(|&(failures, last)| (last + self.wait_after(failures) - now_ms).max(0))
            .max()
            .unwrap_or(0)
    }

    pub fn failed(&self, subjects: &[&str], now_ms: i64) {
        let forget = self.forget_after_ms();
        let mut by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        if by.len() >= MAX_ENTRIES {
            let cutoff = now_ms - self.policy.max_wait_ms;
            by.retain(|_, (_, last)| *last > cutoff);
            if by.len() >= MAX_ENTRIES {
                by.clear();
            }
        }
        for s in subjects {
            let e = by.entry((*s).to_string()).or_insert((0, now_ms));
            if now_ms - e.1 >= forget {
                e.0 = 0;
            }
            e.0 = e.0.saturating_add(1);
            e.1 = now_ms;
        }
    }

    pub fn succeeded(&self, subjects: &[&str]) {
        let mut by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        for s in subjects {
            by.remove(*s);
        }
    }
}

impl Throttle {
    /// The wait after `failures` consecutive failures.
    fn wait_after(&self, failures: u32) -> i64 {
        let p = &self.policy;
        if failures < p.free_failures {
            return 0;
        }
        let doublings = (failures - p.free_failures).min(20);
        (p.first_wait_ms << doublings).min(p.max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures_and_reset_on_success() {
        let t = Throttle::default();
        for _ in 0..SIGN_IN.free_failures - 1 {
            t.failed(&["ip:1", "user:a"], 0);
        }
        assert_eq!(t.wait_ms(&["ip:1"], 0), 0);
        t.failed(&["ip:1", "user:a"], 0);
        assert_eq!(t.wait_ms(&["ip:1"], 0), 1_000);
        assert_eq!(t.wait_ms(&["ip:2", "user:a"], 400), 600);
        t.failed(&["ip:1"], 10_000);
        assert_eq!(t.wait_ms(&["ip:1"], 10_000), 2_000);
        for _ in 0..40 {
            t.failed(&["ip:1"], 10_000);
        }
        assert_eq!(t.wait_ms(&["ip:1"], 10_000), SIGN_IN.max_wait_ms);
        t.succeeded(&["ip:1"]);
        assert_eq!(t.wait_ms(&["ip:1"], 10_000), 0);
        assert_eq!(t.wait_ms(&["user:a"], 1_000), 0);
    }

    #[test]
    fn a_quiet_subject_starts_afresh() {
        let t = Throttle::new(API_KEYS);
        for _ in 0..API_KEYS.free_failures + 5 {
            t.failed(&["ip:9"], 0);
        }
        assert_eq!(t.wait_ms(&["ip:9"], 0), 32_000);
        let later = 2 * API_KEYS.max_wait_ms;
        assert_eq!(t.wait_ms(&["ip:9"], later), 0, "forgotten");
        t.failed(&["ip:9"], later);
        assert_eq!(
            t.wait_ms(&["ip:9"], later),
            0,
            "one failure after a quiet spell is free again"
        );
    }
}
