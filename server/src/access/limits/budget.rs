//! Budgets: reservations from this process's lease, settlement to the real cost, and the
//! flusher that writes settled spend, renews leases and hands surpluses back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{lock, Limiter, ScopeState, Subject};
use crate::money::pricing::Nanos;
use crate::records::limits::{Budget, BudgetAlert, Period};

/// Budget state of one scope in this process.
#[derive(Debug, Default)]
pub(super) struct BudgetState {
    period_start: i64,
    /// The kind of period `period_start` begins: a budget changed to another kind starts over.
    period: Option<Period>,
    limit: i64,
    /// Nanodollars leased to this process for `period_start` and not yet written as spent.
    lease: i64,
    /// Worst cases of requests in flight in this period.
    reserved: i64,
    /// Settled spend not yet written to the store.
    unflushed: i64,
    /// Settled spend of every process, as of the last store contact.
    known_spent: i64,
    /// Spend of earlier periods settled after the period turned, still to be written.
    late: Vec<(i64, i64)>,
    last_activity_ms: i64,
    last_renewal_ms: i64,
    soft_pct: u8,
    /// The largest worst case reserved in this period: a lease keeps room for one more.
    largest_reservation: i64,
    soft_alerted: bool,
    hard_alerted: bool,
    initialized: bool,
}

impl BudgetState {
    /// The soft-threshold alert, the first time settled spend reaches it in this period.
    fn soft_alert(&mut self, scope: &str, now: i64) -> Option<BudgetAlert> {
        let spent = self.known_spent + self.unflushed;
        // Not yet in a period (only free requests so far): nothing to compare with.
        if !self.initialized || self.soft_alerted {
            return None;
        }
        if i128::from(spent) * 100 < i128::from(self.limit.max(1)) * i128::from(self.soft_pct) {
            return None;
        }
        self.soft_alerted = true;
        metrics::counter!("switchyard_budget_alerts_total", "kind" => "soft").increment(1);
        tracing::warn!(scope, spent = %Nanos(spent), limit = %Nanos(self.limit), soft_pct = self.soft_pct,
            "budget soft threshold reached");
        Some(BudgetAlert {
            scope: scope.to_string(),
            period_start: self.period_start,
            kind: "soft",
            ts_ms: now,
            spent_nanos: spent,
            limit_nanos: self.limit,
        })
    }

    fn available(&self) -> i64 {
        self.lease - self.reserved - self.unflushed
    }

    /// Records spend of an earlier period, to be written by the next flush.
    fn add_late(&mut self, period_start: i64, used: i64) {
        match self.late.iter_mut().find(|(p, _)| *p == period_start) {
            Some((_, u)) => *u += used,
            None => self.late.push((period_start, used)),
        }
    }

    /// Reserves `amount` from the lease if it fits.
    fn try_reserve(&mut self, amount: i64) -> bool {
        // A worst case beyond the whole budget is refused either way: it sizes no lease.
        self.largest_reservation = self.largest_reservation.max(amount.min(self.limit));
        let fits = self.available() >= amount;
        if fits {
            self.reserved += amount;
        }
        fits
    }

    /// Moves to the period starting at `ps` if the clock has passed into it, or if the budget
    /// now has another kind of period (whose start may lie before the old one's: a daily budget
    /// made monthly).
    fn roll(&mut self, ps: i64, b: Budget) {
        self.limit = b.limit.0;
        self.soft_pct = b.soft_pct;
        if !self.initialized || ps > self.period_start || self.period != Some(b.period) {
            if self.initialized && (self.unflushed > 0 || self.lease > 0) {
                // The old period's spend must still be written; its lease is simply dropped
                // (the row expires and belongs to a period nobody reads any more).
                let (ps, used) = (self.period_start, self.unflushed);
                self.add_late(ps, used);
            }
            self.period_start = ps;
            self.period = Some(b.period);
            self.lease = 0;
            self.reserved = 0;
            self.unflushed = 0;
            self.known_spent = 0;
            self.soft_alerted = false;
            self.hard_alerted = false;
            self.largest_reservation = 0;
            self.initialized = true;
        }
    }
}

pub(super) struct Reserved {
    scope: Arc<ScopeState>,
    period_start: i64,
    amount: i64,
}

impl Reserved {
    fn new(scope: &Arc<ScopeState>, period_start: i64, amount: i64) -> Reserved {
        Reserved {
            scope: scope.clone(),
            period_start,
            amount,
        }
    }
}

pub(super) struct SettlementInner {
    pub(super) limiter: Arc<Limiter>,
    pub(super) reserved: Vec<Reserved>,
    pub(super) token_buckets: Vec<Arc<ScopeState>>,
    pub(super) estimated_tokens: u64,
}

/// The budget reservations and token estimate of one request, settled once to the real cost.
/// If it is dropped unsettled (its usage event was lost), it settles at the worst case.
pub struct Settlement(pub(super) Mutex<Option<SettlementInner>>);

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settlement")
    }
}

impl Settlement {
    /// Settles every reservation to `cost` and corrects the token buckets to `tokens`.
    pub fn settle(&self, cost: Nanos, tokens: u64) {
        let inner = lock(&self.0).take();
        if let Some(inner) = inner {
            inner.limiter.settle(&inner, cost.0.max(0), Some(tokens));
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let inner = lock(&self.0).take();
        if let Some(inner) = inner {
            let worst = inner.reserved.iter().map(|r| r.amount).max().unwrap_or(0);
            if worst > 0 {
                tracing::warn!("a budget reservation was released without its usage event; charged at its worst case");
            }
            inner.limiter.settle(&inner, worst, None);
        }
    }
}

impl Limiter {
    pub(super) fn remaining_fraction(&self, st: &ScopeState, b: Budget) -> (f64, bool) {
        let mut g = lock(&st.budget);
        let spent = g.known_spent + g.unflushed;
        let limit = b.limit.0.max(1);
        let frac = ((limit - spent).max(0) as f64 / limit as f64).clamp(0.0, 1.0);
        let over = i128::from(spent) * 100 >= i128::from(limit) * i128::from(b.soft_pct);
        let alert = g.soft_alert(&st.scope, self.clock.now_ms());
        drop(g);
        if let Some(a) = alert {
            lock(&self.alerts).push(a);
        }
        (frac, over)
    }

    /// Records the first refusal of a scope in a period as a hard alert.
    pub(super) fn hard_alert(&self, st: &ScopeState, b: Budget, now: i64) {
        let mut g = lock(&st.budget);
        if g.hard_alerted {
            return;
        }
        g.hard_alerted = true;
        metrics::counter!("switchyard_budget_alerts_total", "kind" => "hard").increment(1);
        tracing::warn!(scope = %st.scope, limit = %b.limit, "budget cannot cover a request: refusing (first refusal this period)");
        let alert = BudgetAlert {
            scope: st.scope.clone(),
            period_start: g.period_start,
            kind: "hard",
            ts_ms: now,
            spent_nanos: g.known_spent + g.unflushed,
            limit_nanos: b.limit.0,
        };
        drop(g);
        lock(&self.alerts).push(alert);
    }

    pub(super) async fn reserve(
        &self,
        st: &Arc<ScopeState>,
        b: Budget,
        worst: i64,
        now: i64,
    ) -> Result<Reserved, ReserveError> {
        let ps = b.period.start_of(now);
        {
            let mut g = lock(&st.budget);
            g.roll(ps, b);
            g.last_activity_ms = now;
            if g.try_reserve(worst) {
                return Ok(Reserved::new(st, ps, worst));
            }
        }
        // The lease is short: take more from the store (rare: one call per lease slice).
        let _op = st.store_op.lock().await;
        let want = {
            let mut g = lock(&st.budget);
            g.roll(ps, b);
            if g.try_reserve(worst) {
                return Ok(Reserved::new(st, ps, worst));
            }
            let slice = b.limit.0 / 100 * i64::from(self.settings.lease_pct.clamp(1, 100));
            worst.saturating_sub(g.available()).max(0).saturating_add(slice)
        };
        let (granted, spent) = self
            .store
            .acquire_lease(
                &st.scope,
                ps,
                b.limit.0,
                want,
                &self.holder,
                now,
                self.settings.lease_ttl.as_millis() as i64,
            )
            .await
            .map_err(|e| ReserveError::Store(e.to_string()))?;
        let mut g = lock(&st.budget);
        if g.period_start == ps {
            g.lease += granted;
            g.known_spent = spent;
            g.last_renewal_ms = now;
            if g.try_reserve(worst) {
                return Ok(Reserved::new(st, ps, worst));
            }
        }
        Err(ReserveError::Insufficient)
    }

    /// Gives reservations back unused (a later subject refused the request).
    pub(super) fn release(reserved: &[Reserved]) {
        for r in reserved {
            let mut g = lock(&r.scope.budget);
            if g.period_start == r.period_start {
                g.reserved -= r.amount;
            }
        }
    }

    pub(super) fn settle(&self, inner: &SettlementInner, cost: i64, tokens: Option<u64>) {
        for r in &inner.reserved {
            let mut g = lock(&r.scope.budget);
            if g.period_start == r.period_start {
                g.reserved -= r.amount;
                g.unflushed += cost;
                // Spend grows here, not at admission: a burst can cross the threshold unseen there.
                if let Some(a) = g.soft_alert(&r.scope.scope, self.clock.now_ms()) {
                    drop(g);
                    lock(&self.alerts).push(a);
                }
            } else if cost > 0 {
                g.add_late(r.period_start, cost);
            }
        }
        if let Some(actual) = tokens {
            let now = self.clock.now_ms();
            // The bucket was charged the estimate; charge or refund the difference.
            let delta = inner.estimated_tokens as f64 - actual as f64;
            for st in &inner.token_buckets {
                if let Some(b) = lock(&st.tokens).as_mut() {
                    let cap = b.capacity as u64;
                    b.refill(cap, now);
                    b.level = (b.level + delta).min(b.capacity);
                }
            }
        }
    }

    /// Writes settled spend, renews live leases and returns idle ones. Run periodically and at
    /// shutdown (`final_flush` returns every lease).
    pub async fn flush(&self, final_flush: bool) {
        let alerts: Vec<BudgetAlert> = std::mem::take(&mut *lock(&self.alerts));
        if !alerts.is_empty() {
            if let Err(e) = self.store.insert_alerts(&alerts).await {
                tracing::error!(error = %e, "cannot store budget alerts; will retry");
                let mut pending = lock(&self.alerts);
                if pending.len() < 10_000 {
                    pending.extend(alerts);
                }
            }
        }
        let scopes: Vec<Arc<ScopeState>> = self
            .scopes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.has_budget.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let now = self.clock.now_ms();
        let ttl = self.settings.lease_ttl.as_millis() as i64;
        for st in scopes {
            let _op = st.store_op.lock().await;
            // Spend that belongs to earlier periods.
            let late: Vec<(i64, i64)> = std::mem::take(&mut lock(&st.budget).late);
            for (ps, used) in late {
                if let Err(e) = self
                    .store
                    .settle_lease(&st.scope, ps, &self.holder, used, 0, now, ttl)
                    .await
                {
                    tracing::error!(scope = %st.scope, error = %e, "cannot write budget spend; will retry");
                    lock(&st.budget).add_late(ps, used);
                }
            }
            let (ps, used, old_lease, new_lease) = {
                let mut g = lock(&st.budget);
                if !g.initialized {
                    continue;
                }
                let idle = g.reserved == 0 && now - g.last_activity_ms >= self.settings.idle_return.as_millis() as i64;
                let renew_due = g.lease > 0 && now - g.last_renewal_ms >= ttl / 3;
                // Beyond what requests in flight reserved plus some room, a lease only keeps
                // budget from other processes: settled requests usually cost far less than the
                // worst case they reserved, so hand the surplus back.
                let slice = g.limit / 100 * i64::from(self.settings.lease_pct.clamp(1, 100));
                // Room for one more request as large as any seen this period, so a steady
                // stream of big requests does not go to the database after every flush.
                let room = slice.max(g.largest_reservation);
                let keep = if idle || final_flush {
                    g.reserved
                } else {
                    g.reserved.saturating_add(room)
                };
                let surplus = g.lease - g.unflushed > keep;
                if g.unflushed == 0 && !(g.lease > 0 && (idle || final_flush || renew_due || surplus)) {
                    continue;
                }
                let used = g.unflushed;
                let old = g.lease;
                let left = (g.lease - used).max(0).min(keep);
                g.unflushed = 0;
                g.lease = left;
                g.last_renewal_ms = now;
                (g.period_start, used, old, left)
            };
            match self
                .store
                .settle_lease(&st.scope, ps, &self.holder, used, new_lease, now, ttl)
                .await
            {
                Ok(spent) => {
                    let mut g = lock(&st.budget);
                    if g.period_start == ps {
                        g.known_spent = spent;
                    }
                }
                Err(e) => {
                    tracing::error!(scope = %st.scope, error = %e, "cannot write budget spend; will retry");
                    let mut g = lock(&st.budget);
                    if g.period_start == ps {
                        g.unflushed += used;
                        g.lease += old_lease - new_lease;
                    } else {
                        g.add_late(ps, used);
                    }
                }
            }
        }
    }

    /// Runs [`Limiter::flush`] every `flush_every` until `stop` resolves, then a final flush.
    pub async fn run_flusher(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.settings.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(false).await,
                _ = &mut stop => break,
            }
        }
        self.flush(true).await;
    }

    /// The smallest remaining budget fraction among `subjects` as this process knows it (settled
    /// and in-flight spend), without reserving anything: what the router steps down by.
    pub fn budget_remaining(&self, subjects: &[Subject<'_>]) -> Option<f64> {
        let now = self.clock.now_ms();
        let scopes = self.scopes.read().unwrap_or_else(|p| p.into_inner());
        subjects
            .iter()
            .filter_map(|s| {
                let b = s.limits.budget?;
                let limit = b.limit.0.max(1) as f64;
                let used = scopes.get(s.scope).map_or(0, |st| {
                    let g = lock(&st.budget);
                    if g.initialized && g.period_start == b.period.start_of(now) {
                        g.known_spent + g.unflushed + g.reserved
                    } else {
                        0
                    }
                });
                Some(((limit - used as f64) / limit).clamp(0.0, 1.0))
            })
            .reduce(f64::min)
    }

    /// Settled plus unflushed spend of a scope in the current period, as this process knows it.
    pub fn local_view(&self, scope: &str) -> Option<(i64, i64, i64)> {
        let s = self
            .scopes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .cloned()?;
        let g = lock(&s.budget);
        Some((g.known_spent + g.unflushed, g.reserved, g.lease))
    }
}

pub(super) enum ReserveError {
    Insufficient,
    Store(String),
}
