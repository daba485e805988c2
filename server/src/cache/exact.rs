//! The exact tier: answers by scoped fingerprint, in memory, bounded by bytes, each entry with
//! its rule's time to live.
//!
//! Entries live in a moka cache weighed by their size, evicting the least recently used when
//! the bytes run out. Expiry is checked on read against the gateway's clock (so it can be
//! tested without waiting); moka also drops expired entries on its own to free their memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache as Moka;
use moka::Expiry;
use serde::Deserialize;

use super::key::Digest256;
use crate::proxy::lookup::Answer;

/// What an entry costs beyond its body: the entry, its names and the map's own bookkeeping.
pub const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Which entries a purge removes: all that match every given field.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    /// A scope: `key:ID`, `team:ID` or `anonymous`.
    pub scope: Option<String>,
    /// The route or model the requests asked for.
    #[serde(alias = "route")]
    pub target: Option<String>,
    /// The logical model that produced the answer.
    pub model: Option<String>,
    /// Only entries at least this old.
    pub older_than_secs: Option<u64>,
}

/// One kept answer.
#[derive(Debug)]
pub struct Entry {
    pub id: Arc<str>,
    pub scope: Arc<str>,
    /// The route or model asked for.
    pub target: Arc<str>,
    pub answer: Arc<Answer>,
    pub created_ms: i64,
    pub ttl: Duration,
}

impl Entry {
    pub fn new(scope: Arc<str>, target: Arc<str>, answer: Arc<Answer>, created_ms: i64, ttl: Duration) -> Entry {
        Entry {
            id: crate::access::keys::new_id("ce").into(),
            scope,
            target,
            answer,
            created_ms,
            ttl,
        }
    }

    /// The bytes it holds, as the tier counts them.
    pub fn weight(&self) -> u32 {
        let bytes = self.answer.body.len()
            + self.answer.model.len()
            + self.scope.len()
            + self.target.len()
            + self.id.len()
            + ENTRY_OVERHEAD_BYTES;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(self.created_ms) >= ttl_ms
    }

    fn matches(&self, p: &Purge, now_ms: i64) -> bool {
        p.scope.as_deref().is_none_or(|s| *s == *self.scope)
            && p.target.as_deref().is_none_or(|t| *t == *self.target)
            && p.model.as_deref().is_none_or(|m| m == self.answer.model)
            && p.older_than_secs
                .is_none_or(|secs| now_ms.saturating_sub(self.created_ms) >= (secs as i64).saturating_mul(1000))
    }
}

struct ByTtl;

impl Expiry<Digest256, Arc<Entry>> for ByTtl {
    fn expire_after_create(&self, _: &Digest256, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// The exact tier.
pub struct Exact {
    map: Moka<Digest256, Arc<Entry>>,
}

impl Exact {
    pub fn new(max_bytes: u64) -> Exact {
        Exact {
            map: Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|_, e: &Arc<Entry>| e.weight())
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ByTtl)
                .build(),
        }
    }

    /// The live entry under `key`; an expired one is removed.
    pub fn get(&self, key: &Digest256, now_ms: i64) -> Option<Arc<Entry>> {
        let e = self.map.get(key)?;
        if e.expired(now_ms) {
            self.map.invalidate(key);
            return None;
        }
        Some(e)
    }

    pub fn insert(&self, key: Digest256, entry: Arc<Entry>) {
        self.map.insert(key, entry);
    }

    /// Removes what `p` selects; returns how many entries went.
    pub fn purge(&self, p: &Purge, now_ms: i64) -> u64 {
        let doomed: Vec<Arc<Digest256>> = self
            .map
            .iter()
            .filter(|(_, e)| e.matches(p, now_ms))
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            self.map.invalidate(&**k);
        }
        self.map.run_pending_tasks();
        doomed.len() as u64
    }

    /// Every live entry (for statistics).
    pub fn entries(&self) -> impl Iterator<Item = Arc<Entry>> + '_ {
        self.map.iter().map(|(_, e)| e)
    }

    /// Entries and their weighed bytes, after pending evictions are applied.
    pub fn size(&self) -> (u64, u64) {
        self.map.run_pending_tasks();
        (self.map.entry_count(), self.map.weighted_size())
    }
}
