//! The ledger's backlog: how many accepted usage events wait to be written, and since when the
//! database refuses them. Admission reads it so that no accepted request can lose its event:
//! while the database is down, events are buffered up to a bound, and once the buffer is nearly
//! full new model requests are refused (503) with room left for every request already running.
//! `/readyz` and the metrics report it.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// Shared between the sink (which counts events in), the ledger writer (which counts them out
/// and says whether its writes succeed) and admission.
#[derive(Debug)]
pub struct Backlog {
    buffered: AtomicUsize,
    /// Unix ms of the first failed write since the last good one; 0 while writes succeed.
    failing_since_ms: AtomicI64,
    capacity: usize,
    headroom: usize,
}

/// What `/readyz` says of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    /// Writes succeed.
    Writing,
    /// Writes fail; events are kept in memory and requests are still admitted.
    Buffering,
    /// The buffer is at its bound (the database is down, or slower than the traffic): new model
    /// requests are refused.
    Refusing,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Writing => "writing",
            LedgerState::Buffering => "buffering",
            LedgerState::Refusing => "refusing",
        }
    }
}

impl Backlog {
    /// A backlog of at most `capacity` events, of which `headroom` are kept for requests that
    /// were admitted before admission closed.
    pub fn new(capacity: usize, headroom: usize) -> Backlog {
        Backlog {
            buffered: AtomicUsize::new(0),
            failing_since_ms: AtomicI64::new(0),
            capacity,
            headroom: headroom.min(capacity),
        }
    }

    /// Events the buffer holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Accepted events not yet written (or given up on).
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// An event entered the buffer.
    pub fn entered(&self) {
        self.buffered.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` events left the buffer: written, or counted as dropped.
    pub fn left(&self, n: usize) {
        let _ = self
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }

    /// Publishes the backlog as `switchyard_ledger_buffered_events` (the writer does, once a
    /// tick, rather than every request).
    pub fn publish(&self) {
        metrics::gauge!("switchyard_ledger_buffered_events").set(self.buffered() as f64);
    }

    /// A write failed at `now_ms`.
    pub fn write_failed(&self, now_ms: i64) {
        let _ = self
            .failing_since_ms
            .compare_exchange(0, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed);
        metrics::gauge!("switchyard_ledger_failing").set(1.0);
    }

    /// A write succeeded.
    pub fn write_succeeded(&self) {
        if self.failing_since_ms.swap(0, Ordering::Relaxed) != 0 {
            metrics::gauge!("switchyard_ledger_failing").set(0.0);
            tracing::info!(buffered = self.buffered(), "the usage ledger is written again");
        }
    }

    /// Since when writes fail, if they do.
    pub fn failing_since_ms(&self) -> Option<i64> {
        Some(self.failing_since_ms.load(Ordering::Relaxed)).filter(|t| *t != 0)
    }

    /// Whether new model requests must be refused: the buffer has no more room than the
    /// headroom kept for requests already admitted.
    pub fn refuses(&self) -> bool {
        self.buffered().saturating_add(self.headroom) >= self.capacity
    }

    pub fn state(&self) -> LedgerState {
        if self.refuses() {
            LedgerState::Refusing
        } else if self.failing_since_ms().is_some() {
            LedgerState::Buffering
        } else {
            LedgerState::Writing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_closes_with_the_headroom_left_and_reopens_as_events_leave() {
        let b = Backlog::new(10, 4);
        for _ in 0..5 {
            b.entered();
        }
        assert_eq!(b.state(), LedgerState::Writing);
        b.write_failed(1_000);
        b.write_failed(2_000);
        assert_eq!(b.failing_since_ms(), Some(1_000), "the first failure is kept");
        assert_eq!(b.state(), LedgerState::Buffering);
        b.entered();
        assert!(b.refuses(), "6 buffered + 4 kept for running requests = the capacity");
        assert_eq!(b.state(), LedgerState::Refusing);
        b.left(100);
        assert_eq!(b.buffered(), 0, "never below zero");
        b.write_succeeded();
        assert_eq!(b.state(), LedgerState::Writing);
        assert!(
            Backlog::new(3, 9).refuses(),
            "headroom beyond the capacity refuses at once"
        );
    }
}
