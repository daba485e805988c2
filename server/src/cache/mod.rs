//! The response cache: the pipeline's lookup slot, filled.
//!
//! - [`key`]: the canonical fingerprint of a request and the scope (tenant) it belongs to;
//! - [`exact`]: the exact tier, answers by fingerprint in memory (moka, bounded by bytes, TTL);
//! - [`stats`]: counts per scope and route, for the admin API and metrics.
//!
//! Every lookup stays inside one scope: the scope is part of every key, so one tenant can never
//! be answered with another's entry. Which requests are cached, for how long and per what scope
//! is set per model or route ([`Rules`]).

pub mod exact;
pub mod key;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::clock::Clock;
use crate::config::{CacheConfig, ScopeBy};
use crate::proxy::lookup::{Answer, Finding, Found, Hit, HitKind, Keep, Lookup, Query, OFF};
use exact::{Entry, Exact};
use key::{fingerprint, scope_of, scoped, Digest256};
use stats::{Event, Stats};
pub use stats::{Purge, ScopeStats};

/// The settings that apply to one model or route.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub enabled: bool,
    pub ttl: Duration,
    pub scope: ScopeBy,
    pub allow_tool_calls: bool,
    pub semantic: bool,
    pub threshold: f32,
    pub max_temperature: f64,
}

/// `[cache]` and its overrides, resolved per name.
#[derive(Debug, Clone)]
pub struct Rules {
    config: CacheConfig,
}

impl Rules {
    pub fn new(config: &CacheConfig) -> Rules {
        Rules { config: config.clone() }
    }

    /// The rule for a request: the target's (the route or model asked for), else the answering
    /// model's, over the defaults.
    pub fn rule(&self, target: &str, model: &str) -> Rule {
        let c = &self.config;
        let own = c.models.get(target).or_else(|| c.models.get(model));
        let o = own.cloned().unwrap_or_default();
        Rule {
            enabled: o.enabled.unwrap_or(c.enabled),
            ttl: Duration::from_secs(o.ttl_secs.unwrap_or(c.ttl_secs)),
            scope: o.scope.unwrap_or(c.scope),
            allow_tool_calls: o.allow_tool_calls.unwrap_or(c.allow_tool_calls),
            semantic: o.semantic.unwrap_or(c.semantic.enabled),
            threshold: o.threshold.unwrap_or(c.semantic.threshold),
            max_temperature: o.max_temperature.unwrap_or(c.semantic.max_temperature),
        }
    }
}

/// Whether a `chat.completion` body calls tools (or the legacy `function_call`).
pub fn calls_tools(body: &[u8]) -> bool {
    if memchr::memmem::find(body, b"\"tool_calls\"").is_none()
        && memchr::memmem::find(body, b"\"function_call\"").is_none()
    {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return true;
    };
    v["choices"].as_array().into_iter().flatten().any(|c| {
        let m = &c["message"];
        m["tool_calls"].as_array().is_some_and(|a| !a.is_empty()) || m["function_call"].is_object()
    })
}

struct Inner {
    rules: Rules,
    exact: Exact,
    stats: Stats,
    clock: Arc<dyn Clock>,
    max_entry_bytes: usize,
}

/// The response cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    pub fn new(config: &CacheConfig, clock: Arc<dyn Clock>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                rules: Rules::new(config),
                exact: Exact::new(config.max_bytes),
                stats: Stats::default(),
                clock,
                max_entry_bytes: config.max_entry_bytes,
            }),
        }
    }

    /// Counts and sizes per scope and route.
    pub fn stats(&self) -> Vec<ScopeStats> {
        self.inner.stats.report(&self.inner.exact)
    }

    /// Removes the entries `purge` selects; returns how many.
    pub fn purge(&self, purge: &Purge) -> u64 {
        let now = self.inner.clock.now_ms();
        self.inner.exact.purge(purge, now)
    }

    /// Entries and their bytes, in all.
    pub fn size(&self) -> (u64, u64) {
        self.inner.exact.size()
    }

    fn look(&self, q: Query<'_>) -> Found {
        let inner = &self.inner;
        let rule = inner.rules.rule(q.target, q.model);
        if !rule.enabled {
            return Found::Bypass { keep: None, why: OFF };
        }
        let fp = fingerprint(q.target, &q.request.body);
        let scope: Arc<str> = scope_of(q.principal, rule.scope).into();
        let target: Arc<str> = q.target.into();
        let key = scoped(&scope, &fp.exact);
        let keep = (!q.directives.no_store).then(|| {
            Box::new(Keeper {
                cache: self.clone(),
                key,
                scope: scope.clone(),
                target: target.clone(),
                rule: rule.clone(),
            }) as Box<dyn Keep>
        });
        if q.directives.no_cache {
            inner.stats.count(&scope, &target, Event::Bypass);
            return Found::Bypass { keep, why: "no-cache" };
        }
        let now = inner.clock.now_ms();
        if let Some(e) = inner.exact.get(&key, now) {
            if rule.allow_tool_calls || !e.answer.tool_calls {
                inner.stats.count(&scope, &target, Event::Hit(e.answer.cost));
                return Found::Hit(Hit {
                    answer: e.answer.clone(),
                    kind: HitKind::Exact,
                    entry: e.id.clone(),
                    age_secs: (now.saturating_sub(e.created_ms) / 1000).max(0) as u64,
                });
            }
        }
        inner.stats.count(&scope, &target, Event::Miss);
        Found::Miss { keep, why: "not found" }
    }
}

impl Lookup for Cache {
    fn find<'a>(&'a self, query: Query<'a>) -> Finding<'a> {
        Box::pin(std::future::ready(self.look(query)))
    }
}

/// Keeps one request's answer under its key.
struct Keeper {
    cache: Cache,
    key: Digest256,
    scope: Arc<str>,
    target: Arc<str>,
    rule: Rule,
}

impl Keep for Keeper {
    fn max_bytes(&self) -> usize {
        self.cache.inner.max_entry_bytes
    }

    fn keep(self: Box<Self>, mut answer: Answer) {
        let inner = &self.cache.inner;
        if answer.body.len() > inner.max_entry_bytes {
            return;
        }
        answer.tool_calls = calls_tools(&answer.body);
        if answer.tool_calls && !self.rule.allow_tool_calls {
            return;
        }
        let entry = Entry::new(
            self.scope.clone(),
            self.target.clone(),
            Arc::new(answer),
            inner.clock.now_ms(),
            self.rule.ttl,
        );
        inner.exact.insert(self.key, Arc::new(entry));
        inner.stats.count(&self.scope, &self.target, Event::Stored);
    }
}

#[cfg(test)]
mod tests;
