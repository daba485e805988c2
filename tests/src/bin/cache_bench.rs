//! Benchmarks the response cache: exact lookups at 100,000 entries, semantic lookups (embedding
//! included) at 10,000 entries in one scope, memory per entry, and a hit served end to end over
//! HTTP against the mock upstream's own answer.
//!
//! `cargo run --release -p switchyard-tests --bin cache-bench -- [--model-dir DIR]`
//! (`RAYON_NUM_THREADS=1` as the gateway runs the model; without a model folder the semantic
//! figures use the lexical embedder.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard::cache::embed::{self, Embedder};
use switchyard::cache::Cache;
use switchyard::clock::SystemClock;
use switchyard::config::CacheConfig;
use switchyard::money::pricing::Nanos;
use switchyard::proxy::lookup::{Answer, Directives, Found, Lookup, Query};
use switchyard::proxy::request::ChatRequest;
use switchyard_tests::{standard_config, MockUpstream, TestGateway};

fn request(text: &str) -> ChatRequest {
    let Value::Object(body) = json!({"model": "m", "temperature": 0, "messages": [
        {"role": "system", "content": "You are a helpful support assistant for an online shop."},
        {"role": "user", "content": text}]})
    else {
        unreachable!()
    };
    ChatRequest::from_body(body).expect("a valid request")
}

/// An answer of about 1 KB, a typical short chat answer.
fn answer(i: usize) -> Answer {
    let text = format!("Answer {i}: ").to_string() + &"words of a typical answer ".repeat(36);
    let body = json!({"id": format!("chatcmpl-{i}"), "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 200, "total_tokens": 240}});
    Answer {
        body: Bytes::from(body.to_string()),
        model: "m".into(),
        usage: Default::default(),
        cost: Nanos(1000),
        tool_calls: false,
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn look(cache: &Cache, r: &ChatRequest) -> Found {
    cache
        .find(Query {
            target: "m",
            model: "m",
            request: r,
            principal: None,
            directives: Directives::default(),
        })
        .await
}

async fn fill(cache: &Cache, n: usize, text: impl Fn(usize) -> String) {
    for i in 0..n {
        if let Found::Miss { keep: Some(k), .. } = look(cache, &request(&text(i))).await {
            k.keep(answer(i));
        }
    }
}

async fn exact(n: usize) {
    let config = CacheConfig {
        enabled: true,
        max_bytes: 4 << 30,
        ..CacheConfig::default()
    };
    let before = rss_kib();
    let cache = Cache::new(&config, Arc::new(SystemClock), None);
    let question = |i: usize| format!("Where is my order number {i}? It has not arrived yet.");
    fill(&cache, n, question).await;
    let (entries, bytes) = cache.size();
    let grew = rss_kib().saturating_sub(before) * 1024;
    let mut times = Vec::with_capacity(20_000);
    let requests: Vec<ChatRequest> = (0..20_000).map(|i| request(&question((i * 7919) % n))).collect();
    for r in &requests {
        let t = Instant::now();
        let hit = matches!(look(&cache, r).await, Found::Hit(_));
        times.push(t.elapsed());
        assert!(hit);
    }
    println!(
        "exact: {entries} entries, {:.0} B each as weighed, {:.0} B each in RSS; lookup (fingerprint + scope + get) p50 {:.1} µs, p99 {:.1} µs",
        bytes as f64 / entries as f64,
        grew as f64 / n as f64,
        percentile(&mut times, 0.5).as_secs_f64() * 1e6,
        percentile(&mut times, 0.99).as_secs_f64() * 1e6,
    );
}

/// Fills with random unit vectors (the search costs the same whatever they say), then looks
/// real questions up with the real embedder.
struct Filling {
    filling: AtomicBool,
    real: Arc<dyn Embedder>,
    dim: usize,
}

impl Embedder for Filling {
    fn name(&self) -> &str {
        self.real.name()
    }
    fn default_threshold(&self) -> f32 {
        self.real.default_threshold()
    }
    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        if !self.filling.load(Ordering::Relaxed) {
            return self.real.embed(text);
        }
        let mut v: Vec<f32> = (0..self.dim).map(|_| fastrand::f32() - 0.5).collect();
        embed::normalize(&mut v);
        Ok(v)
    }
}

async fn semantic(n: usize, real: Arc<dyn Embedder>) {
    let dim = real.embed("probe").map(|v| v.len()).unwrap_or(384);
    let filling = Arc::new(Filling {
        filling: AtomicBool::new(true),
        real,
        dim,
    });
    let mut config = CacheConfig {
        enabled: true,
        max_bytes: 4 << 30,
        ..CacheConfig::default()
    };
    config.semantic.enabled = true;
    config.semantic.max_entries_per_scope = n;
    config.semantic.max_bytes = 4 << 30;
    let e: Arc<dyn Embedder> = filling.clone();
    let cache = Cache::new(&config, Arc::new(SystemClock), Some(e));
    fill(&cache, n, |i| {
        format!("Question {i} about an order, a refund or an account?")
    })
    .await;
    let (items, index_bytes) = cache.semantic_size();
    let (_, exact_bytes) = cache.size();
    filling.filling.store(false, Ordering::Relaxed);
    let kept = "How do I reset my password on the portal?";
    if let Found::Miss { keep: Some(k), .. } = look(&cache, &request(kept)).await {
        k.keep(answer(0));
    }
    // Rewordings: a hit is not kept again, so each of these reaches the semantic tier every time.
    let asks = [
        "how do I reset my password on the portal?",
        "How do I reset my password on the portal, please?",
        "How can I reset my password on the portal?",
        "Hi! How do I reset my password on the portal?",
    ];
    let (mut times, mut hits) = (Vec::new(), 0);
    for i in 0..400 {
        let r = request(asks[i % asks.len()]);
        let t = Instant::now();
        hits += usize::from(matches!(look(&cache, &r).await, Found::Hit(_)));
        times.push(t.elapsed());
    }
    println!(
        "semantic ({}): {items} questions in one scope, {:.0} B each in the index (+ {:.0} B of answer in the exact tier); lookup with embedding p50 {:.2} ms, p99 {:.2} ms ({hits} of {} served)",
        filling.name(),
        index_bytes as f64 / items as f64,
        exact_bytes as f64 / items as f64,
        percentile(&mut times, 0.5).as_secs_f64() * 1e3,
        percentile(&mut times, 0.99).as_secs_f64() * 1e3,
        times.len()
    );
    let mut embed_only = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let _ = filling.embed(asks[i % asks.len()]);
        embed_only.push(t.elapsed());
    }
    let mut blocking = Vec::new();
    let e: Arc<dyn Embedder> = filling.clone();
    for i in 0..200 {
        let t = Instant::now();
        let _ = embed::embed_off_executor(&e, asks[i % asks.len()]).await;
        blocking.push(t.elapsed());
    }
    println!(
        "  of which embedding alone: p50 {:.2} ms, p99 {:.2} ms inline; p50 {:.2} ms, p99 {:.2} ms on a blocking thread",
        percentile(&mut embed_only, 0.5).as_secs_f64() * 1e3,
        percentile(&mut embed_only, 0.99).as_secs_f64() * 1e3,
        percentile(&mut blocking, 0.5).as_secs_f64() * 1e3,
        percentile(&mut blocking, 0.99).as_secs_f64() * 1e3
    );
}

async fn end_to_end() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    let client = reqwest::Client::new();
    let body =
        |i: usize| json!({"model": "cached", "messages": [{"role": "user", "content": format!("end to end {i}")}]});
    let time = |url: String, b: Value| {
        let c = client.clone();
        async move {
            let t = Instant::now();
            let r = c.post(url).json(&b).send().await.expect("sent");
            let cache = r
                .headers()
                .get("x-switchyard-cache")
                .map(|v| v.to_str().unwrap_or("").to_string());
            r.bytes().await.expect("read");
            (t.elapsed(), cache)
        }
    };
    let (mut direct, mut modelled, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..500 {
        let mut b = body(i);
        b["model"] = json!("mock");
        direct.push(time(format!("{}/chat/completions", mock.base_url()), b.clone()).await.0);
        if i < 50 {
            // The mock taking as long as the built-in demo models do (20 ms).
            b["model"] = json!("mock;latency=20");
            modelled.push(time(format!("{}/chat/completions", mock.base_url()), b).await.0);
        }
        let _ = time(gw.url("/v1/chat/completions"), body(i)).await;
        let (t, status) = time(gw.url("/v1/chat/completions"), body(i)).await;
        assert_eq!(status.as_deref(), Some("hit"));
        hits.push(t);
    }
    let (d, m, h) = (
        percentile(&mut direct, 0.5),
        percentile(&mut modelled, 0.5),
        percentile(&mut hits, 0.5),
    );
    println!(
        "end to end over HTTP (one client): a cache hit through the gateway p50 {:.0} µs; the mock answering directly p50 {:.0} µs with no delay ({:.2}x the hit), {:.1} ms with the demo's 20 ms ({:.0}x the hit)",
        h.as_secs_f64() * 1e6,
        d.as_secs_f64() * 1e6,
        d.as_secs_f64() / h.as_secs_f64(),
        m.as_secs_f64() * 1e3,
        m.as_secs_f64() / h.as_secs_f64()
    );
    gw.stop().await.expect("stopped");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = args
        .iter()
        .position(|a| a == "--model-dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| embed::DEFAULT_MODEL_DIR.into());
    exact(100_000).await;
    let real: Arc<dyn Embedder> = match embed::local::Local::load(&model_dir) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("no local model ({e}); the semantic figures use the lexical embedder");
            Arc::new(embed::lexical::Lexical)
        }
    };
    semantic(10_000, real).await;
    end_to_end().await;
}
