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

mod budget;
mod rate;

pub use budget::Settlement;
pub use rate::{fmt_reset, RateHeaders};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::money::pricing::Nanos;
use budget::{BudgetState, ReserveError, Reserved, SettlementInner};
use rate::Bucket;

use crate::records::limits::{BudgetAlert, Limits};
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
}
