//! Slows down guessing: after a few failed sign-ins from one address or for one user name, each
//! further attempt must wait, twice as long after every failure, up to a ceiling.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures allowed before attempts have to wait.
pub const FREE_FAILURES: u32 = 3;
/// The first wait, doubled after every further failure.
const FIRST_WAIT_MS: i64 = 1_000;
/// The longest wait.
pub const MAX_WAIT_MS: i64 = 5 * 60_000;
/// Entries kept at most; the oldest are forgotten first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    by: Mutex<HashMap<String, (u32, i64)>>,
}

impl Throttle {
    /// How long (ms) an attempt for any of `subjects` must still wait at `now_ms`; 0: go ahead.
    pub fn wait_ms(&self, subjects: &[&str], now_ms: i64) -> i64 {
        let by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        subjects
            .iter()
            .filter_map(|s| by.get(*s))
            .map(|&(failures, last)| (last + wait_after(failures) - now_ms).max(0))
            .max()
            .unwrap_or(0)
    }

    pub fn failed(&self, subjects: &[&str], now_ms: i64) {
        let mut by = self.by.lock().unwrap_or_else(|p| p.into_inner());
        if by.len() >= MAX_ENTRIES {
            let cutoff = now_ms - MAX_WAIT_MS;
            by.retain(|_, (_, last)| *last > cutoff);
            if by.len() >= MAX_ENTRIES {
                by.clear();
            }
        }
        for s in subjects {
            let e = by.entry((*s).to_string()).or_insert((0, now_ms));
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

/// The wait after `failures` consecutive failures.
fn wait_after(failures: u32) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(20);
    (FIRST_WAIT_MS << doublings).min(MAX_WAIT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures_and_reset_on_success() {
        let t = Throttle::default();
        for _ in 0..FREE_FAILURES - 1 {
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
        assert_eq!(t.wait_ms(&["ip:1"], 10_000), MAX_WAIT_MS);
        t.succeeded(&["ip:1"]);
        assert_eq!(t.wait_ms(&["ip:1"], 10_000), 0);
        assert_eq!(t.wait_ms(&["user:a"], 1_000), 0);
    }
}
