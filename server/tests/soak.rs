//! The soak: a `switchyard` process under mixed streaming and JSON load for a while, with keys,
//! budgets (some run out and are refused), the cache (exact and semantic, at its byte bound) and
//! the ledger on SQLite. Its resident memory is sampled throughout and must stay flat once warm;
//! at the end the ledger must hold exactly one event per answered request.
//!
//! Two minutes by default (the suite); `SWITCHYARD_SOAK_SECS` sets the length, and
//! `SWITCHYARD_SOAK_OUT=path/name` writes `name.csv` and `name.svg` (the README's graph):
//!
//! ```text
//! SWITCHYARD_SOAK_SECS=1800 SWITCHYARD_SOAK_OUT=docs/soak \
//!   cargo test -p switchyard --test soak -- --nocapture
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::store::{Store, UsageFilter};

mod common;

const MASTER: &str = "soak-master-key-0123456789";
const WORKERS: usize = 12;

fn config(db_url: &str) -> String {
    format!(
        r#"
[auth]
required = true
[database]
url = "{db_url}"
[ledger]
budget_flush_ms = 200
[providers.m]
kind = "mock"
latency_ms = 10
chunk_delay_ms = 3
[models.chat]
[[models.chat.deployments]]
provider = "m"
model = "chat"
input_per_mtok = "100"
output_per_mtok = "200"
context_window = 100000
max_output_tokens = 200
[cache]
enabled = true
max_bytes = 4194304
ttl_secs = 600
persist = true
[cache.semantic]
enabled = true
embedder = "lexical"
max_bytes = 4194304
"#
    )
}

/// A line of a process's `/proc/PID/status`, in KiB (`VmRSS`, `RssAnon`…).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Sample {
    t: f64,
    rss_mib: f64,
    /// The heap and other anonymous memory: what a leak would grow.
    anon_mib: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
    /// Latencies (µs) since the last sample.
    latencies: Mutex<Vec<u64>>,
}

async fn key(client: &reqwest::Client, base: &str, name: &str, budget_usd: &str) -> String {
    let v: Value = client
        .post(format!("{base}/admin/v1/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"name": name, "limits": {"budget": {"limit_usd": budget_usd, "period": "total"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["key"].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

/// One worker: requests until `until`, half streams, half repeats of a small set of questions
/// (exact hits), some reworded (semantic candidates), the rest new.
async fn worker(
    client: reqwest::Client,
    base: String,
    keys: Arc<Vec<String>>,
    tally: Arc<Tally>,
    until: Instant,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = &keys[rng.usize(..keys.len())];
        let question = match rng.u8(..10) {
            0..=3 => format!("What is the capital of country number {}?", rng.u8(..40)),
            4 => format!("Tell me, what is the capital of country number {}?", rng.u8(..40)),
            _ => format!("Summarise note {seed}-{n} in {} words.", rng.u8(5..50)),
        };
        let stream = rng.bool();
        let mut body = json!({
            "model": "chat",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": rng.u32(8..64),
            "temperature": 0,
            "stream": stream,
        });
        if stream && rng.bool() {
            body["stream_options"] = json!({"include_usage": true});
        }
        let started = Instant::now();
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await;
        let status = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                let whole = r
                    .text()
                    .await
                    .is_ok_and(|t| s != 200 || !stream || t.contains("[DONE]"));
                if whole {
                    s
                } else {
                    0
                }
            }
            Err(_) => 0,
        };
        match status {
            200 => tally.ok.fetch_add(1, Ordering::Relaxed),
            429 => tally.refused.fetch_add(1, Ordering::Relaxed),
            _ => tally.other.fetch_add(1, Ordering::Relaxed),
        };
        tally
            .latencies
            .lock()
            .unwrap()
            .push(started.elapsed().as_micros() as u64);
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// The graph: resident memory (left axis) and requests per second (right axis) over time.
fn svg(samples: &[Sample], title: &str) -> String {
    let (w, h, pad) = (800.0, 320.0, 50.0);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let rss_max = (samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max) * 1.25).max(1.0);
    let rps_max = (samples.iter().map(|s| s.rps).fold(0.0, f64::max) * 1.25).max(1.0);
    let x = |t: f64| pad + (w - 2.0 * pad) * t / t_max;
    let y = |v: f64, max: f64| h - pad - (h - 2.0 * pad) * v / max;
    let line = |f: &dyn Fn(&Sample) -> f64, max: f64| {
        samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t), y(f(s), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\" font-size=\"14\">{title}</text>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#888\"/>\n\
         <line x1=\"{r}\" y1=\"{pad}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\n",
        b = h - pad,
        r = w - pad
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        out.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\" fill=\"#1f5fbf\">{:.0} MiB</text>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" fill=\"#bf5f1f\">{:.0}/s</text>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{:.0} min</text>\n",
            pad - 4.0,
            y(rss_max * f, 1.0 * rss_max) + 4.0,
            rss_max * f,
            w - pad + 4.0,
            y(rps_max * f, rps_max) + 4.0,
            rps_max * f,
            x(t_max * f),
            h - pad + 16.0,
            t_max * f / 60.0
        ));
    }
    out.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#bf5f1f\" stroke-width=\"1\" points=\"{}\"/>\n\
         <polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"{}\"/>\n\
         <text x=\"{pad}\" y=\"{:.0}\" fill=\"#1f5fbf\">resident memory</text>\n\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\" fill=\"#bf5f1f\">requests per second</text>\n</svg>\n",
        line(&|s| s.rps, rps_max),
        line(&|s| s.rss_mib, rss_max),
        h - 8.0,
        w - pad,
        h - 8.0
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_keeps_memory_flat_and_the_ledger_whole() {
    let secs: u64 = std::env::var("SWITCHYARD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let every = Duration::from_secs(if secs >= 600 { 10 } else { 2 });
    let dir = std::env::temp_dir().join(format!("switchyard-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("soak.db").display());
    let cfg = dir.join("switchyard.toml");
    std::fs::write(&cfg, config(&db)).unwrap();
    let (mut child, base) = common::spawn(&cfg, MASTER, "warn,switchyard=info");
    let pid = child.id();
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for i in 0..9 {
        keys.push(key(&client, &base, &format!("big-{i}"), "100000.00").await);
    }
    for i in 0..3 {
        // These run out within seconds and are refused from then on.
        keys.push(key(&client, &base, &format!("small-{i}"), "0.02").await);
    }
    let keys = Arc::new(keys);
    let tally = Arc::new(Tally::default());
    let begun = Instant::now();
    let until = begun + Duration::from_secs(secs);
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            tokio::spawn(worker(
                client.clone(),
                base.clone(),
                keys.clone(),
                tally.clone(),
                until,
                i as u64 + 1,
            ))
        })
        .collect();
    let mut samples = Vec::new();
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < until {
        tokio::time::sleep(every).await;
        let done = tally.ok.load(Ordering::Relaxed)
            + tally.refused.load(Ordering::Relaxed)
            + tally.other.load(Ordering::Relaxed);
        let mut lat = std::mem::take(&mut *tally.latencies.lock().unwrap());
        lat.sort_unstable();
        samples.push(Sample {
            t: begun.elapsed().as_secs_f64(),
            rss_mib: status_kib(pid, "VmRSS") as f64 / 1024.0,
            anon_mib: status_kib(pid, "RssAnon") as f64 / 1024.0,
            rps: (done - last.1) as f64 / last.0.elapsed().as_secs_f64(),
            p50_ms: pct(&lat, 0.5),
            p99_ms: pct(&lat, 0.99),
        });
        last = (Instant::now(), done);
    }
    for w in workers {
        w.await.unwrap();
    }
    common::sigterm(&child);
    common::wait_exit(&mut child, Duration::from_secs(60));

    let (ok, refused, other) = (
        tally.ok.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
    );
    let store = Store::connect(&db, 2).await.unwrap();
    let totals = store.usage_totals(&UsageFilter::default()).await.unwrap();
    let hits = totals.cache_hits;
    store.close().await;

    // Memory once warm: the first 20 % (at least 30 s) fills the cache to its bound and the
    // pools to their size; from then on the second half may not grow past the first.
    let warm = (secs as f64 * 0.2).max(30.0);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= warm).collect();
    let mid = after.len() / 2;
    let peak = |s: &[&Sample]| s.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let (first, second) = (peak(&after[..mid]), peak(&after[mid..]));
    let rps: Vec<f64> = samples.iter().map(|s| s.rps).collect();
    let mean_rps = rps.iter().sum::<f64>() / rps.len() as f64;
    let summary = format!(
        "soak {secs} s, {WORKERS} clients: {ok} answered, {refused} refused (budgets), {other} other; \
         {mean_rps:.0} requests/s on average; ledger {} events, {hits} cache hits; resident memory \
         {:.1} MiB when warm, peak {first:.1} MiB in the first half after it, \
         {second:.1} MiB in the second, {:.1} MiB at the end; p50 {:.1} ms, p99 {:.1} ms in the last interval",
        totals.requests,
        after.first().map_or(0.0, |s| s.rss_mib),
        samples.last().map_or(0.0, |s| s.rss_mib),
        samples.last().map_or(0.0, |s| s.p50_ms),
        samples.last().map_or(0.0, |s| s.p99_ms),
    );
    eprintln!("{summary}");
    if let Ok(out) = std::env::var("SWITCHYARD_SOAK_OUT") {
        let mut csv = String::from("t_secs,rss_mib,anon_mib,requests_per_sec,p50_ms,p99_ms\n");
        for s in &samples {
            csv.push_str(&format!(
                "{:.0},{:.2},{:.2},{:.1},{:.2},{:.2}\n",
                s.t, s.rss_mib, s.anon_mib, s.rps, s.p50_ms, s.p99_ms
            ));
        }
        std::fs::write(format!("{out}.csv"), csv).unwrap();
        let title = format!(
            "switchyard soak: {} min, {WORKERS} clients, {mean_rps:.0} requests/s",
            secs / 60
        );
        std::fs::write(format!("{out}.svg"), svg(&samples, &title)).unwrap();
    }
    assert_eq!(other, 0, "only answers and budget refusals");
    assert!(ok > 1000 && refused > 0, "{summary}");
    assert_eq!(
        totals.requests as u64,
        ok + refused,
        "one event per request, refused ones too: {summary}"
    );
    assert!(hits > 0, "the cache answered: {summary}");
    assert!(
        second <= first * 1.05 + 4.0,
        "resident memory grew after warm-up: {summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
