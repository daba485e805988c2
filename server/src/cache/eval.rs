//! `switchyard cache eval FILE`: how often the cache serves a kept answer to a pair's second
//! request, on a labelled set of pairs (`tests/data/cache_eval/pairs.jsonl`).
//!
//! Each pair is a request whose answer is kept (`a`, in `scope_a`) and a new request (`b`, in
//! `scope_b`), labelled `paraphrase` (it should be served) or `trap` (it must not be). Each pair
//! runs in scopes of its own, through the same lookup the gateway runs, with the default rule
//! of the given configuration (the semantic tier on).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::embed::Embedder;
use super::{Cache, Found};
use crate::clock::SystemClock;
use crate::config::CacheConfig;
use crate::money::pricing::Nanos;
use crate::proxy::lookup::{Answer, Directives};
use crate::proxy::request::ChatRequest;

/// One labelled pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Pair {
    pub id: String,
    pub split: String,
    pub kind: String,
    pub category: String,
    pub a: Vec<Value>,
    pub b: Vec<Value>,
    pub scope_a: String,
    pub scope_b: String,
}

/// Reads a JSON-lines file of pairs.
pub fn read_pairs(path: &std::path::Path) -> Result<Vec<Pair>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Served pairs per kind and category.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub embedder: String,
    pub threshold: f32,
    pub split: String,
    /// (kind, category) → (pairs, served)
    pub rows: BTreeMap<(String, String), (usize, usize)>,
    /// Ids of traps that were served.
    pub traps_served: Vec<String>,
    /// Pairs that should have been served and were not, with why.
    pub missed: Vec<(String, String)>,
}

impl Report {
    /// (pairs, served) of one kind.
    pub fn kind(&self, kind: &str) -> (usize, usize) {
        self.rows
            .iter()
            .filter(|((k, _), _)| k == kind)
            .fold((0, 0), |(n, s), (_, (pn, ps))| (n + pn, s + ps))
    }

    /// (pairs, served) of one category.
    pub fn category(&self, category: &str) -> (usize, usize) {
        self.rows
            .iter()
            .filter(|((_, c), _)| c == category)
            .fold((0, 0), |(n, s), (_, (pn, ps))| (n + pn, s + ps))
    }

    pub fn to_json(&self) -> Value {
        let rate = |(n, s): (usize, usize)| if n == 0 { 0.0 } else { s as f64 / n as f64 };
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|((k, c), (n, s))| json!({"kind": k, "category": c, "pairs": n, "served": s, "rate": rate((*n, *s))}))
            .collect();
        json!({
            "embedder": self.embedder, "threshold": self.threshold, "split": self.split,
            "should_hit_served": rate(self.kind("paraphrase")), "traps_served": rate(self.kind("trap")),
            "multi_turn_traps_served": self.category("multi_turn_trap").1,
            "rows": rows, "trap_ids_served": self.traps_served,
            "missed": self.missed.iter().map(|(id, why)| json!({"id": id, "why": why})).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |(n, s): (usize, usize)| if n == 0 { 0.0 } else { 100.0 * s as f64 / n as f64 };
        writeln!(
            f,
            "embedder {} (threshold {}), split {}",
            self.embedder, self.threshold, self.split
        )?;
        for kind in ["paraphrase", "trap"] {
            let t = self.kind(kind);
            let label = if kind == "paraphrase" {
                "should-hit served"
            } else {
                "traps served"
            };
            writeln!(f, "{label:<24} {:>4} / {:<4} {:>6.1} %", t.1, t.0, pct(t))?;
            for ((k, c), (n, s)) in &self.rows {
                if k == kind {
                    writeln!(f, "  {c:<22} {s:>4} / {n:<4} {:>6.1} %", pct((*n, *s)))?;
                }
            }
        }
        if !self.traps_served.is_empty() {
            writeln!(f, "traps served: {}", self.traps_served.join(", "))?;
        }
        Ok(())
    }
}

fn request(messages: &[Value]) -> Result<ChatRequest, String> {
    let Value::Object(body) = json!({"model": "eval", "messages": messages}) else {
        unreachable!("a JSON object literal is an object")
    };
    ChatRequest::from_body(body).map_err(|e| e.message)
}

fn answer() -> Answer {
    let body = json!({"id": "chatcmpl-eval", "object": "chat.completion", "created": 0, "model": "eval",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "kept answer"}, "finish_reason": "stop"}]});
    Answer {
        body: Bytes::from(body.to_string()),
        model: "eval".into(),
        usage: Default::default(),
        cost: Nanos(1),
        tool_calls: false,
    }
}

/// Runs the pairs of `split` (`all` for every pair) through a cache with `config`'s rules.
pub async fn run(
    pairs: &[Pair],
    split: &str,
    config: &CacheConfig,
    embedder: Arc<dyn Embedder>,
) -> Result<Report, String> {
    let mut config = config.clone();
    config.enabled = true;
    config.semantic.enabled = true;
    let threshold = config
        .semantic
        .threshold
        .unwrap_or_else(|| embedder.default_threshold());
    let name = embedder.name().to_string();
    let cache = Cache::new(&config, Arc::new(SystemClock), Some(embedder));
    let rule = cache.inner.rules.rule("eval", "eval");
    let mut report = Report {
        embedder: name,
        threshold,
        split: split.to_string(),
        ..Report::default()
    };
    for p in pairs.iter().filter(|p| split == "all" || p.split == split) {
        let (a, b) = (request(&p.a)?, request(&p.b)?);
        let scope = |s: &str| -> Arc<str> { format!("{}/{s}", p.id).into() };
        match cache
            .look_in(scope(&p.scope_a), "eval", &a, Directives::default(), &rule)
            .await
        {
            Found::Miss { keep: Some(k), .. } => k.keep(answer()),
            _ => return Err(format!("{}: the first request was not a plain miss", p.id)),
        }
        let (served, why) = match cache
            .look_in(scope(&p.scope_b), "eval", &b, Directives::default(), &rule)
            .await
        {
            Found::Hit(_) => (true, String::new()),
            Found::Miss { why, .. } | Found::Bypass { why, .. } => (false, why),
        };
        if !served && p.kind == "paraphrase" {
            report.missed.push((p.id.clone(), why));
        }
        let row = report.rows.entry((p.kind.clone(), p.category.clone())).or_default();
        row.0 += 1;
        row.1 += usize::from(served);
        if served && p.kind == "trap" {
            report.traps_served.push(p.id.clone());
        }
    }
    Ok(report)
}
