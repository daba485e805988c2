//! What the cache did, per scope and route: lookups, hits, savings, entries and bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::exact::Exact;
use crate::money::pricing::Nanos;

/// Scope and route pairs counted separately at most; beyond, new pairs count under `other`.
const MAX_PAIRS: usize = 10_000;

/// One thing that happened.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// An exact hit, saving what the answer cost.
    Hit(Nanos),
    SemanticHit(Nanos),
    Miss,
    Bypass,
    Stored,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    hits: u64,
    semantic_hits: u64,
    misses: u64,
    bypasses: u64,
    stored: u64,
    saved_nanos: i64,
}

/// A scope and a route (or model).
type Pair = (Arc<str>, Arc<str>);

/// Counters per scope and route.
#[derive(Default)]
pub struct Stats {
    pairs: Mutex<HashMap<Pair, Counts>>,
}

/// The cache's figures for one scope and route.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScopeStats {
    pub scope: String,
    /// The route or model asked for.
    pub target: String,
    pub hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub stored: u64,
    /// Hits over lookups (hits and misses), 0 before any lookup.
    pub hit_rate: f64,
    /// What the hits would have cost, in USD.
    pub saved_usd: String,
    /// Entries held now, and their bytes.
    pub entries: u64,
    pub bytes: u64,
}

fn status_label(e: Event) -> &'static str {
    match e {
        Event::Hit(_) => "hit",
        Event::SemanticHit(_) => "semantic_hit",
        Event::Miss => "miss",
        Event::Bypass => "bypass",
        Event::Stored => "stored",
    }
}

impl Stats {
    pub fn count(&self, scope: &Arc<str>, target: &Arc<str>, e: Event) {
        metrics::counter!("switchyard_cache_events_total", "event" => status_label(e)).increment(1);
        if let Event::Hit(saved) | Event::SemanticHit(saved) = e {
            metrics::counter!("switchyard_cache_saved_nanodollars_total").increment(saved.0.max(0) as u64);
        }
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let full = pairs.len() >= MAX_PAIRS;
        let key = (scope.clone(), target.clone());
        let c = if full && !pairs.contains_key(&key) {
            pairs.entry(("other".into(), "other".into())).or_default()
        } else {
            pairs.entry(key).or_default()
        };
        match e {
            Event::Hit(s) => {
                c.hits += 1;
                c.saved_nanos = c.saved_nanos.saturating_add(s.0);
            }
            Event::SemanticHit(s) => {
                c.semantic_hits += 1;
                c.saved_nanos = c.saved_nanos.saturating_add(s.0);
            }
            Event::Miss => c.misses += 1,
            Event::Bypass => c.bypasses += 1,
            Event::Stored => c.stored += 1,
        }
    }

    /// Every pair's figures, with the entries each holds now, ordered by scope and route.
    pub fn report(&self, exact: &Exact) -> Vec<ScopeStats> {
        let mut held: HashMap<Pair, (u64, u64)> = HashMap::new();
        for e in exact.entries() {
            let h = held.entry((e.scope.clone(), e.target.clone())).or_default();
            h.0 += 1;
            h.1 += u64::from(e.weight());
        }
        let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut keys: Vec<Pair> = pairs.keys().chain(held.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let c = pairs.get(&k).copied().unwrap_or_default();
                let (entries, bytes) = held.get(&k).copied().unwrap_or_default();
                let lookups = c.hits + c.semantic_hits + c.misses;
                ScopeStats {
                    scope: k.0.to_string(),
                    target: k.1.to_string(),
                    hits: c.hits,
                    semantic_hits: c.semantic_hits,
                    misses: c.misses,
                    bypasses: c.bypasses,
                    stored: c.stored,
                    hit_rate: if lookups == 0 {
                        0.0
                    } else {
                        (c.hits + c.semantic_hits) as f64 / lookups as f64
                    },
                    saved_usd: Nanos(c.saved_nanos).to_string(),
                    entries,
                    bytes,
                }
            })
            .collect()
    }
}
