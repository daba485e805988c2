//! The response cache: the pipeline's lookup slot, filled.
//!
//! - [`key`]: the canonical fingerprint of a request and the scope (tenant) it belongs to;
//! - [`exact`]: the exact tier, answers by fingerprint in memory (moka, bounded by bytes, TTL);
//! - [`semantic`]: the semantic tier's index of kept questions, per scope and context;
//! - [`embed`]: the embedders behind one trait (local model, remote deployment, lexical);
//! - [`guard`]: the deterministic checks a semantic hit must also pass;
//! - [`stats`]: counts per scope and route, for the admin API and metrics;
//! - [`persist`]: entries kept in the database across restarts, when configured;
//! - [`eval`]: `switchyard cache eval`, hits and traps served on a labelled set of pairs.
//!
//! Every lookup stays inside one scope: the scope is part of every key, so one tenant can never
//! be answered with another's entry. Which requests are cached, for how long and per what scope
//! is set per model or route ([`Rules`]).

pub mod embed;
pub mod eval;
pub mod exact;
pub mod guard;
pub mod key;
pub mod persist;
pub mod semantic;
pub mod stats;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::{CacheConfig, ScopeBy};
use crate::proxy::lookup::{Answer, Directives, Finding, Found, Hit, HitKind, Keep, Lookup, Query, OFF};
use crate::proxy::request::ChatRequest;
use crate::records::cache::StoredEntry;
use crate::store::{EntryFilter, Store};
use embed::Embedder;
pub use exact::Purge;
use exact::{Entry, Exact};
use key::{fingerprint, scope_of, scoped, Digest256};
use semantic::Index;
pub use stats::ScopeStats;
use stats::{Event, Stats};

/// The settings that apply to one model or route.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub enabled: bool,
    pub ttl: Duration,
    pub scope: ScopeBy,
    pub allow_tool_calls: bool,
    pub semantic: bool,
    /// Unset: the embedder's default.
    pub threshold: Option<f32>,
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
            threshold: o.threshold.or(c.semantic.threshold),
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
    index: Index,
    embedder: Option<Arc<dyn Embedder>>,
    stats: Stats,
    clock: Arc<dyn Clock>,
    max_entry_bytes: usize,
    /// Where kept entries are also written, and the database they are in (`cache.persist`).
    persist: OnceLock<(mpsc::Sender<StoredEntry>, Store)>,
}

/// Neighbours checked by the guard at most, best first.
const NEIGHBOURS: usize = 4;

/// The response cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// A request's part in the semantic tier: its context group, its last user message and its vector.
struct SemanticPart {
    group: Digest256,
    text: Arc<str>,
    vector: Vec<f32>,
}

impl Cache {
    /// A cache; `embedder` serves the semantic tier where a rule turns it on (none: exact only).
    pub fn new(config: &CacheConfig, clock: Arc<dyn Clock>, embedder: Option<Arc<dyn Embedder>>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                rules: Rules::new(config),
                exact: Exact::new(config.max_bytes),
                index: Index::new(
                    config.semantic.max_entries_per_scope,
                    usize::try_from(config.semantic.max_bytes).unwrap_or(usize::MAX),
                ),
                embedder,
                stats: Stats::default(),
                clock,
                max_entry_bytes: config.max_entry_bytes,
                persist: OnceLock::new(),
            }),
        }
    }

    /// Writes every entry kept from now on to `store` too, through the returned queue (which
    /// [`persist::write_behind`] drains).
    pub fn persist_to(&self, store: Store) -> mpsc::Receiver<StoredEntry> {
        let (tx, rx) = mpsc::channel(persist::QUEUE);
        let _ = self.inner.persist.set((tx, store));
        rx
    }

    /// [`Cache::purge`], and the same entries from the database when they are persisted.
    pub async fn purge_everywhere(&self, p: &Purge) -> Result<u64, String> {
        let n = self.purge(p);
        let Some((_, store)) = self.inner.persist.get() else {
            return Ok(n);
        };
        let now = self.inner.clock.now_ms();
        let f = EntryFilter {
            scope: p.scope.as_deref(),
            target: p.target.as_deref(),
            model: p.model.as_deref(),
            created_before_ms: p
                .older_than_secs
                .map(|s| now.saturating_sub((s as i64).saturating_mul(1000)) + 1),
        };
        let stored = store.delete_cache_entries(&f).await.map_err(|e| e.to_string())?;
        Ok(n.max(stored))
    }

    /// Counts and sizes per scope and route.
    pub fn stats(&self) -> Vec<ScopeStats> {
        self.inner.stats.report(&self.inner.exact)
    }

    /// Removes the entries `purge` selects; returns how many. (Their questions leave the
    /// semantic index when next met: an item whose answer is gone is never served.)
    pub fn purge(&self, purge: &Purge) -> u64 {
        let now = self.inner.clock.now_ms();
        self.inner.exact.purge(purge, now)
    }

    /// Entries and their bytes, in all.
    pub fn size(&self) -> (u64, u64) {
        self.inner.exact.size()
    }

    /// Questions in the semantic index, and their bytes.
    pub fn semantic_size(&self) -> (usize, usize) {
        self.inner.index.size()
    }

    /// The semantic tier's embedder, if there is one.
    pub fn embedder(&self) -> Option<&str> {
        self.inner.embedder.as_deref().map(|e| e.name())
    }

    async fn look(&self, q: Query<'_>) -> Found {
        let rule = self.inner.rules.rule(q.target, q.model);
        if !rule.enabled {
            return Found::Bypass {
                keep: None,
                why: OFF.into(),
            };
        }
        let scope: Arc<str> = scope_of(q.principal, rule.scope).into();
        self.look_in(scope, q.target, q.request, q.directives, &rule).await
    }

    /// Looks a request up in `scope` under `rule`.
    async fn look_in(
        &self,
        scope: Arc<str>,
        target: &str,
        request: &ChatRequest,
        directives: Directives,
        rule: &Rule,
    ) -> Found {
        let inner = &self.inner;
        let fp = fingerprint(target, &request.body);
        let target: Arc<str> = target.into();
        let key = scoped(&scope, &fp.exact);
        let now = inner.clock.now_ms();
        if !directives.no_cache {
            if let Some(e) = inner.exact.get(&key, now) {
                if rule.allow_tool_calls || !e.answer.tool_calls {
                    inner.stats.count(&scope, &target, Event::Hit(e.answer.cost));
                    return Found::Hit(Hit {
                        answer: e.answer.clone(),
                        kind: HitKind::Exact,
                        entry: e.id.clone(),
                        age_secs: age_secs(now, e.created_ms),
                    });
                }
            }
        }
        let mut why = "not found".to_string();
        let mut part = None;
        if let Some(e) = self.semantic_embedder(rule, request) {
            if let (Some(group), Some(text)) = (fp.context, fp.last_user.as_deref()) {
                match embed::embed_off_executor(e, text).await {
                    Ok(vector) => {
                        part = Some(SemanticPart {
                            group,
                            text: text.into(),
                            vector,
                        })
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the cache could not embed a question; exact tier only");
                        why = "not found (embedding failed)".into();
                    }
                }
            }
        }
        if let (false, Some(p)) = (directives.no_cache, part.as_ref()) {
            let threshold = rule
                .threshold
                .unwrap_or_else(|| inner.embedder.as_ref().map_or(1.0, |e| e.default_threshold()));
            for n in inner.index.search(&scope, &p.group, &p.vector, threshold, NEIGHBOURS) {
                let Some(e) = inner.exact.get(&n.item.key, now) else {
                    inner.index.forget(&scope, &p.group, &n.item.key);
                    continue;
                };
                if e.answer.tool_calls && !rule.allow_tool_calls {
                    continue;
                }
                match guard::check(&p.text, &n.item.text) {
                    Ok(agreed) => {
                        inner.stats.count(&scope, &target, Event::SemanticHit(e.answer.cost));
                        return Found::Hit(Hit {
                            answer: e.answer.clone(),
                            kind: HitKind::Semantic {
                                similarity: n.similarity,
                                verdict: format!("similarity {:.4} >= {threshold}; {agreed}", n.similarity),
                            },
                            entry: e.id.clone(),
                            age_secs: age_secs(now, e.created_ms),
                        });
                    }
                    Err(refused) => {
                        why = format!("a neighbour at {:.4} was refused: {refused}", n.similarity);
                        break;
                    }
                }
            }
        }
        let keep = (!directives.no_store).then(|| {
            Box::new(Keeper {
                cache: self.clone(),
                key,
                scope: scope.clone(),
                target: target.clone(),
                rule: rule.clone(),
                semantic: part,
            }) as Box<dyn Keep>
        });
        if directives.no_cache {
            inner.stats.count(&scope, &target, Event::Bypass);
            return Found::Bypass {
                keep,
                why: "no-cache".into(),
            };
        }
        inner.stats.count(&scope, &target, Event::Miss);
        Found::Miss { keep, why }
    }

    /// The embedder, when this request may be answered semantically: the rule turns the tier
    /// on, the request is deterministic enough (its temperature, the model's default 1 when
    /// unset, at most the rule's ceiling) and asks for one choice.
    fn semantic_embedder(&self, rule: &Rule, request: &ChatRequest) -> Option<&Arc<dyn Embedder>> {
        let temperature = request.body.get("temperature").and_then(Value::as_f64).unwrap_or(1.0);
        (rule.semantic && temperature <= rule.max_temperature && request.n == 1)
            .then_some(self.inner.embedder.as_ref())
            .flatten()
    }
}

fn age_secs(now_ms: i64, created_ms: i64) -> u64 {
    (now_ms.saturating_sub(created_ms) / 1000).max(0) as u64
}

impl Lookup for Cache {
    fn find<'a>(&'a self, query: Query<'a>) -> Finding<'a> {
        Box::pin(self.look(query))
    }
}

/// Keeps one request's answer under its key (and its question in the semantic index).
struct Keeper {
    cache: Cache,
    key: Digest256,
    scope: Arc<str>,
    target: Arc<str>,
    rule: Rule,
    semantic: Option<SemanticPart>,
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
        let entry = Arc::new(Entry::new(
            self.scope.clone(),
            self.target.clone(),
            Arc::new(answer),
            inner.clock.now_ms(),
            self.rule.ttl,
        ));
        inner.exact.insert(self.key, entry.clone());
        if let Some((tx, _)) = inner.persist.get() {
            let part = self
                .semantic
                .as_ref()
                .map(|p| (&p.group, &*p.text, p.vector.as_slice()));
            let row = persist::row_of(&self.key, &entry, part, inner.embedder.as_deref().map(|e| e.name()));
            if tx.try_send(row).is_err() {
                metrics::counter!("switchyard_cache_persist_dropped_total").increment(1);
            }
        }
        if let Some(p) = self.semantic {
            let item = semantic::Item {
                key: self.key,
                text: p.text,
            };
            inner.index.insert(&self.scope, p.group, &p.vector, item);
        }
        inner.stats.count(&self.scope, &self.target, Event::Stored);
    }
}

#[cfg(test)]
mod tests;
