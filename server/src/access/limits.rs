//! Budgets and rate limits per key and per team, enforced in memory.
//!
//! * **Rate limits** (requests and tokens per minute) are token buckets; **concurrency** is a
//!   counter with a permit that gives its slot back when the request ends.
//! * **Budgets** are spent from a *lease*: a slice of the budget this process took atomically
//!   from the store (`budget_leases`). A request *reserves* its worst-case cost from the lease
//!   before it is forwarded and *settles* to the real cost after; the store is touched only when
//!   the lease runs short, and by the background flush that writes settled spend and returns
//!   idle lease. Every process sees spend + all live leases ≤ limit, so even several gateways
//!   on one database cannot overshoot by more than requests that cost more than their
//!   reservation. A lost lease (a crashed process) expires after `lease_ttl`.
//!
//! Reservations are owned by the request's usage event: they are settled once when the event
//! is finalized, or at their worst case if the event is ever dropped, so a reservation cannot
//! leak.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::money::pricing::Nanos;
use crate::records::limits::{Budget, BudgetAlert, Limits};
use crate::store::Store;

/// Tunables of the budget ledger.
#[derive(Debug, Clone, Copy)]
pub struct LedgerSettings {
    /// Share of a budget one lease request asks for beyond the immediate need (1–100 %).
    pub lease_pct: u8,
    /// A lease not renewed for this long counts for nothing (a crashed holder's budget returns).
    pub lease_ttl: Duration,
    /// How often settled spend is written and idle leases are returned.
    pub flush_every: Duration,
    /// A lease idle (no reservation) for this long is returned for other processes to use.
    pub idle_return: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            lease_pct: 10,
            lease_ttl: Duration::from_secs(60),
            flush_every: Duration::from_millis(500),
            idle_return: Duration::from_secs(2),
        }
    }
}

/// A subject of limits: a key or a team, named `key:ID` or `team:ID`.
pub struct Subject<'a> {
    pub scope: &'a str,
    pub limits: &'a Limits,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Denied {
    /// Requests, tokens or concurrency over the limit; retry after the given time.
    RateLimited {
        scope: String,
        what: &'static str,
        retry_after: Duration,
        headers: RateHeaders,
    },
    /// The budget cannot cover the request's worst-case cost.
    Budget {
        scope: String,
        limit: Nanos,
        headers: RateHeaders,
    },
    /// The budget store could not be reached to extend a lease.
    StoreUnavailable(String),
}

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
struct Bucket {
    capacity: f64,
    level: f64,
    at_ms: i64,
}

impl Bucket {
    fn new(capacity: u64, now_ms: i64) -> Bucket {
        Bucket {
            capacity: capacity as f64,
            level: capacity as f64,
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, capacity: u64, now_ms: i64) {
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
    fn wait_for(&self, n: f64) -> Duration {
        if self.level >= n || self.capacity <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_millis(((n - self.level) * 60_000.0 / self.capacity).ceil() as u64)
    }

    /// Time until the bucket is full again.
    fn reset(&self) -> Duration {
        self.wait_for(self.capacity)
    }
}

/// Budget state of one scope in this process.
#[derive(Debug, Default)]
struct BudgetState {
    period_start: i64,
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
        self.largest_reservation = self.largest_reservation.max(amount);
        let fits = self.available() >= amount;
        if fits {
            self.reserved += amount;
        }
        fits
    }

    /// Moves to the period starting at `ps` if the clock has passed into it.
    fn roll(&mut self, ps: i64, b: Budget) {
        self.limit = b.limit.0;
        self.soft_pct = b.soft_pct;
        if !self.initialized || ps > self.period_start {
            if self.initialized && (self.unflushed > 0 || self.lease > 0) {
                // The old period's spend must still be written; its lease is simply dropped
                // (the row expires and belongs to a period nobody reads any more).
                let (ps, used) = (self.period_start, self.unflushed);
                self.add_late(ps, used);
            }
            self.period_start = ps;
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

/// Runtime state of one scope: rate buckets, in-flight count, budget.
struct ScopeState {
    scope: String,
    requests: Mutex<Option<Bucket>>,
    tokens: Mutex<Option<Bucket>>,
    inflight: AtomicU32,
    budget: Mutex<BudgetState>,
    /// Serializes this scope's store calls so the store's lease always equals the local one.
    store_op: tokio::sync::Mutex<()>,
    has_budget: AtomicBool,
}

impl ScopeState {
    fn new(scope: String) -> ScopeState {
        ScopeState {
            scope,
            requests: Mutex::new(None),
            tokens: Mutex::new(None),
            inflight: AtomicU32::new(0),
            budget: Mutex::new(BudgetState::default()),
            store_op: tokio::sync::Mutex::new(()),
            has_budget: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Budgets and rate limits of every key and team, in memory, backed by the store.
pub struct Limiter {
    scopes: RwLock<HashMap<String, Arc<ScopeState>>>,
    /// Alerts raised on the request path, written to the store by the next flush.
    alerts: Mutex<Vec<BudgetAlert>>,
    store: Store,
    clock: Arc<dyn Clock>,
    holder: String,
    settings: LedgerSettings,
}

/// Slots taken from concurrency limits; given back on drop.
pub struct ConcurrencyPermit(Vec<Arc<ScopeState>>);

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        for s in &self.0 {
            s.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Reserved {
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

struct SettlementInner {
    limiter: Arc<Limiter>,
    reserved: Vec<Reserved>,
    token_buckets: Vec<Arc<ScopeState>>,
    estimated_tokens: u64,
}

/// The budget reservations and token estimate of one request, settled once to the real cost.
/// If it is dropped unsettled (its usage event was lost), it settles at the worst case.
pub struct Settlement(Mutex<Option<SettlementInner>>);

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

/// What an admitted request carries: its concurrency slots, its settlement, and what the
/// response should tell the client.
pub struct Admission {
    pub permit: ConcurrencyPermit,
    pub settlement: Option<Arc<Settlement>>,
    pub headers: RateHeaders,
    /// Smallest remaining budget fraction among the subjects (1.0 = untouched), for routing.
    pub budget_remaining: Option<f64>,
    /// Set when a subject has passed its soft threshold.
    pub soft_limit_reached: bool,
}

impl Limiter {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: LedgerSettings) -> Arc<Limiter> {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Arc::new(Limiter {
            scopes: RwLock::new(HashMap::new()),
            alerts: Mutex::new(Vec::new()),
            store,
            clock,
            holder: format!("gw_{}", crate::access::keys::hex(&b)),
            settings,
        })
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn scope(&self, name: &str) -> Arc<ScopeState> {
        if let Some(s) = self.scopes.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return s.clone();
        }
        let mut w = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        w.entry(name.to_string())
            .or_insert_with(|| Arc::new(ScopeState::new(name.to_string())))
            .clone()
    }

    /// Admits a request for `subjects` (the key, then its team) or says why not.
    /// `est_tokens` feeds the token limit; `worst_cost` is reserved from every budget.
    pub async fn admit(
        self: &Arc<Self>,
        subjects: &[Subject<'_>],
        est_tokens: u64,
        worst_cost: Nanos,
    ) -> Result<Admission, Denied> {
        let now = self.clock.now_ms();
        let states: Vec<Arc<ScopeState>> = subjects.iter().map(|s| self.scope(s.scope)).collect();

        // Rate limits: check every subject first, then take, so a refusal takes nothing.
        let mut headers = RateHeaders::default();
        for (s, st) in subjects.iter().zip(&states) {
            if let Some(rpm) = s.limits.rpm {
                let mut b = lock(&st.requests);
                let b = b.get_or_insert_with(|| Bucket::new(rpm, now));
                b.refill(rpm, now);
                let wait = b.wait_for(1.0);
                let h = (rpm, b.level.max(0.0).floor() as u64, b.reset());
                if !wait.is_zero() {
                    return Err(Denied::RateLimited {
                        scope: s.scope.to_string(),
                        what: "requests",
                        retry_after: wait,
                        headers: RateHeaders {
                            requests: Some((rpm, 0, h.2)),
                            tokens: None,
                        },
                    });
                }
                if headers.requests.is_none_or(|(_, rem, _)| h.1 < rem) {
                    headers.requests = Some(h);
                }
            }
            if let Some(tpm) = s.limits.tpm {
                let mut b = lock(&st.tokens);
                let b = b.get_or_insert_with(|| Bucket::new(tpm, now));
                b.refill(tpm, now);
                let need = est_tokens as f64;
                let h = (tpm, b.level.max(0.0).floor() as u64, b.reset());
                if need > tpm as f64 {
                    return Err(Denied::RateLimited {
                        scope: s.scope.to_string(),
                        what: "tokens",
                        retry_after: Duration::from_secs(60),
                        headers: RateHeaders {
                            requests: None,
                            tokens: Some(h),
                        },
                    });
                }
                let wait = b.wait_for(need);
                if !wait.is_zero() {
                    return Err(Denied::RateLimited {
                        scope: s.scope.to_string(),
                        what: "tokens",
                        retry_after: wait,
                        headers: RateHeaders {
                            requests: None,
                            tokens: Some(h),
                        },
                    });
                }
                if headers.tokens.is_none_or(|(_, rem, _)| h.1 < rem) {
                    headers.tokens = Some(h);
                }
            }
        }
        // Concurrency: take a slot per subject, giving back all on refusal.
        let mut permit = ConcurrencyPermit(Vec::new());
        for (s, st) in subjects.iter().zip(&states) {
            if let Some(max) = s.limits.max_concurrent {
                let prev = st.inflight.fetch_add(1, Ordering::AcqRel);
                permit.0.push(st.clone());
                if prev >= max {
                    return Err(Denied::RateLimited {
                        scope: s.scope.to_string(),
                        what: "concurrent requests",
                        retry_after: Duration::from_secs(1),
                        headers,
                    });
                }
            }
        }
        // Budgets: reserve the worst case from each, giving back all on refusal.
        let mut reserved: Vec<Reserved> = Vec::new();
        let mut remaining: Option<f64> = None;
        let mut soft = false;
        for (s, st) in subjects.iter().zip(&states) {
            let Some(b) = s.limits.budget else { continue };
            st.has_budget.store(true, Ordering::Relaxed);
            if worst_cost.0 > 0 {
                match self.reserve(st, b, worst_cost.0, now).await {
                    Ok(r) => reserved.push(r),
                    Err(e) => {
                        Self::release(&reserved);
                        if matches!(e, ReserveError::Insufficient) {
                            self.hard_alert(st, b, now);
                        }
                        return Err(match e {
                            ReserveError::Insufficient => Denied::Budget {
                                scope: s.scope.to_string(),
                                limit: b.limit,
                                headers,
                            },
                            ReserveError::Store(m) => Denied::StoreUnavailable(m),
                        });
                    }
                }
            }
            let (frac, over_soft) = self.remaining_fraction(st, b);
            remaining = Some(remaining.map_or(frac, |r: f64| r.min(frac)));
            soft |= over_soft;
        }
        // Every check passed: take the rate units.
        for (s, st) in subjects.iter().zip(&states) {
            if let Some(rpm) = s.limits.rpm {
                if let Some(b) = lock(&st.requests).as_mut() {
                    b.refill(rpm, now);
                    b.level -= 1.0;
                }
            }
            if let Some(tpm) = s.limits.tpm {
                if let Some(b) = lock(&st.tokens).as_mut() {
                    b.refill(tpm, now);
                    b.level -= est_tokens as f64;
                }
            }
        }
        if let Some(r) = headers.requests.as_mut() {
            r.1 = r.1.saturating_sub(1);
        }
        if let Some(t) = headers.tokens.as_mut() {
            t.1 = t.1.saturating_sub(est_tokens);
        }
        let token_buckets: Vec<Arc<ScopeState>> = subjects
            .iter()
            .zip(&states)
            .filter(|(s, _)| s.limits.tpm.is_some())
            .map(|(_, st)| st.clone())
            .collect();
        let settlement = (!reserved.is_empty() || !token_buckets.is_empty()).then(|| {
            Arc::new(Settlement(Mutex::new(Some(SettlementInner {
                limiter: self.clone(),
                reserved,
                token_buckets,
                estimated_tokens: est_tokens,
            }))))
        });
        Ok(Admission {
            permit,
            settlement,
            headers,
            budget_remaining: remaining,
            soft_limit_reached: soft,
        })
    }

    fn remaining_fraction(&self, st: &ScopeState, b: Budget) -> (f64, bool) {
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
    fn hard_alert(&self, st: &ScopeState, b: Budget, now: i64) {
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

    async fn reserve(&self, st: &Arc<ScopeState>, b: Budget, worst: i64, now: i64) -> Result<Reserved, ReserveError> {
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
            (worst - g.available()).max(0) + slice
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
    fn release(reserved: &[Reserved]) {
        for r in reserved {
            let mut g = lock(&r.scope.budget);
            if g.period_start == r.period_start {
                g.reserved -= r.amount;
            }
        }
    }

    fn settle(&self, inner: &SettlementInner, cost: i64, tokens: Option<u64>) {
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
                    g.reserved + room
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

enum ReserveError {
    Insufficient,
    Store(String),
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
