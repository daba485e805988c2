//! Overhead benchmark: the same load straight to an upstream, through a bare forwarder and
//! through Switchyard, in one run, with each process's CPU time per request.
//!
//! Starts an upstream (`fast-upstream`, a hand-written HTTP/1.1 responder that costs a few
//! microseconds a request; `--upstream mock` uses the heavier `mock-upstream` instead),
//! `bare-forwarder` (axum in, reqwest out, the body passed through: the least a proxy on this
//! stack can do) and `switchyard` (key auth and the SQLite ledger on) as separate processes on
//! ephemeral ports. For JSON and streamed chat completions at 1 and 64 concurrent clients it runs
//! a closed loop against each and prints throughput, latency percentiles, the CPU time the
//! measured process spent per request (user + system, from `/proc`), ratios to the bare
//! forwarder, and RSS after the load. Last, it holds 1,000 slow streams open through the gateway
//! and reports the gateway's peak RSS.
//!
//! Usage: `scripts/bench.sh` (builds in release, raises the open-file limit, runs this).
//! Options: `--seconds N` per scenario (default 5), `--streams N` (default 1000),
//! `--upstream fast|mock`, `--tokens-only` (the token-counting cost), `--print-config HOST:PORT
//! [--db PATH]` (only print the gateway config the benchmark uses, for that upstream), `--rss N` (N JSON requests
//! at 64 clients through the gateway, nothing scraping `/metrics`, RSS printed every N/10).
//! `BENCH_GATEWAY_THREADS=N` sets the gateway's tokio worker threads; `BENCH_GATEWAY_BIN=PATH`
//! measures another build of the gateway; `BENCH_BASELINE_BIN=PATH` measures an earlier build as
//! well, in the same run (a before/after comparison).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("exe has a directory")
        .to_path_buf()
}

/// Starts a process and waits for the line that names its address (`…listening on [http://]ADDR…`).
fn start(cmd: &mut Command) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("process printed its address").expect("utf-8 line");
        if let Some(i) = line.find("listening on ") {
            let rest = line[i + 13..].trim_start_matches("http://");
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in microseconds, from `/proc/PID/stat`.
fn cpu_us(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) * 1_000_000 / clock_ticks()
}

fn clock_ticks() -> u64 {
    static T: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

struct Stats {
    p50: u64,
    p99: u64,
    rps: f64,
    errors: u64,
    /// CPU time of the measured process per request, in microseconds.
    cpu_per_req: f64,
    rss_mb: f64,
    /// Percentiles of the gateway's own `x-switchyard-overhead-us` header, when present.
    overhead: Option<(u64, u64)>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Sends one request and reads the whole answer; returns the gateway's overhead header if any.
async fn one_request(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    key: Option<&str>,
    stream: bool,
) -> Result<Option<u64>, String> {
    let mut rb = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    let overhead = r
        .headers()
        .get("x-switchyard-overhead-us")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if stream {
        let mut s = r.bytes_stream();
        let mut tail = Vec::new();
        while let Some(part) = s.next().await {
            let part = part.map_err(|e| e.to_string())?;
            tail.extend_from_slice(&part);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
        if !tail.ends_with(b"data: [DONE]\n\n") {
            return Err("stream did not finish".into());
        }
    } else {
        r.bytes().await.map_err(|e| e.to_string())?;
    }
    Ok(overhead)
}

/// What one closed loop sends where, and which process it measures.
struct Target<'a> {
    url: String,
    body: &'a str,
    key: Option<&'a str>,
    stream: bool,
    pid: u32,
}

/// A closed loop: `concurrency` clients send back to back for `secs` after a short warm-up,
/// while the target process's CPU time is read before and after.
async fn closed_loop(t: &Target<'_>, concurrency: usize, secs: u64) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    for _ in 0..50 {
        let _ = one_request(&client, &t.url, t.body, t.key, t.stream).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_us(t.pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, key, stop) = (
            client.clone(),
            t.url.clone(),
            t.body.to_string(),
            t.key.map(str::to_string),
            stop.clone(),
        );
        let stream = t.stream;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut over = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                match one_request(&client, &url, &body, key.as_deref(), stream).await {
                    Ok(o) => {
                        lat.push(at.elapsed().as_micros() as u64);
                        over.extend(o);
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, over, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut over = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, o, e) = task.await.expect("load task");
        all.extend(l);
        over.extend(o);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_us(t.pid).saturating_sub(cpu_before);
    all.sort_unstable();
    over.sort_unstable();
    let requests = all.len() as u64 + errors;
    Stats {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        rps: all.len() as f64 / elapsed,
        errors,
        cpu_per_req: cpu as f64 / requests.max(1) as f64,
        rss_mb: rss_kib(t.pid, "VmRSS:") as f64 / 1024.0,
        overhead: (!over.is_empty()).then(|| (percentile(&over, 0.50), percentile(&over, 0.99))),
    }
}

/// One table row per target; ratios are to the bare forwarder.
fn row(scenario: &str, c: usize, target: &str, s: &Stats, bare: Option<&Stats>) {
    let ratio = |f: &dyn Fn(&Stats) -> f64| match bare {
        Some(b) => format!("{:.2}", f(s) / f(b).max(1e-9)),
        None => "–".into(),
    };
    println!(
        "| {scenario} | {c} | {target} | {:.0} | {} | {} | {:.1} | {} | {} | {:.1} | {} | {} |",
        s.rps,
        s.p50,
        s.p99,
        s.cpu_per_req,
        ratio(&|x| x.rps),
        ratio(&|x| x.cpu_per_req),
        s.rss_mb,
        s.overhead.map_or("–".into(), |(a, b)| format!("{a} / {b}")),
        s.errors,
    );
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

const MASTER_KEY: &str = "bench-master-key-0123456789";

/// The gateway's config for every measurement here (this benchmark and `scripts/callgrind.sh`,
/// through `--print-config`): key auth, the SQLite ledger at `db`, the model `bench` on
/// `upstream` and `bench-slow` on `slow_upstream`.
fn bench_config(db: &std::path::Path, upstream: &str, slow_upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[auth]
required = true
[database]
url = "sqlite://{db}"
[providers.up]
kind = "openai"
base_url = "http://{upstream}/v1"
[providers.slow]
kind = "openai"
base_url = "http://{slow_upstream}/v1"
[models.bench]
[[models.bench.deployments]]
provider = "up"
model = "bench"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
max_output_tokens = 16384
[models.bench-slow]
[[models.bench-slow.deployments]]
provider = "slow"
model = "mock;chunks=20;delay=100"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
"#,
        db = db.display()
    )
}

/// Starts the gateway binary `bin` on `upstream` with key auth and the SQLite ledger (a database
/// of its own, named after `tag`), and makes a key.
async fn gateway(bin: PathBuf, tag: &str, upstream: &str, slow_upstream: &str) -> (Proc, String, PathBuf) {
    let db = std::env::temp_dir().join(format!("switchyard-bench-{}-{tag}.db", std::process::id()));
    let config = bench_config(&db, upstream, slow_upstream);
    let cfg_path = std::env::temp_dir().join(format!("switchyard-bench-{}-{tag}.toml", std::process::id()));
    std::fs::write(&cfg_path, config).expect("write bench config");
    let gw = start(
        Command::new(bin)
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,switchyard=info")
            .env("SWITCHYARD_MASTER_KEY", MASTER_KEY)
            .envs(
                std::env::var("BENCH_GATEWAY_THREADS")
                    .ok()
                    .map(|n| ("TOKIO_WORKER_THREADS", n)),
            ),
    );
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/keys", gw.addr))
        .bearer_auth(MASTER_KEY)
        .json(&serde_json::json!({"name": "bench",
            "limits": {"budget": {"limit_usd": "1000000", "period": "daily"}}}))
        .send()
        .await
        .expect("create a key")
        .json()
        .await
        .expect("key JSON");
    let key = created["key"].as_str().expect("a key secret").to_string();
    let _ = std::fs::remove_file(&cfg_path);
    (gw, key, db)
}

/// `--rss N`: N JSON requests through the gateway, nobody scraping `/metrics`; RSS as it goes.
async fn rss_run(gw: &Proc, key: &str, total: u64) {
    let pid = gw.child.id();
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let body = format!(r#"{{"model":"bench","messages":{PROMPT}}}"#);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    println!("requests | gateway RSS MiB");
    println!("0 | {:.1}", rss_kib(pid, "VmRSS:") as f64 / 1024.0);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, body, key, done, errors) = (
            client.clone(),
            url.clone(),
            body.clone(),
            key.to_string(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while done.fetch_add(1, Ordering::Relaxed) < total {
                if one_request(&client, &url, &body, Some(&key), false).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let step = (total / 10).max(1);
    let mut next = step;
    let started = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = done.load(Ordering::Relaxed).min(total);
        if n >= next {
            println!("{n} | {:.1}", rss_kib(pid, "VmRSS:") as f64 / 1024.0);
            next += step;
        }
    }
    println!(
        "{total} requests in {:.0} s, {} errors; final RSS {:.1} MiB, high-water mark {:.1} MiB",
        started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}

const PROMPT: &str =
    r#"[{"role":"user","content":"Summarise the plot of a short story about a lighthouse keeper in two sentences."}]"#;

#[tokio::main]
async fn main() {
    if let Some(upstream) = arg_str("--print-config") {
        let db = arg_str("--db").unwrap_or_else(|| "switchyard-bench.db".into());
        print!("{}", bench_config(std::path::Path::new(&db), &upstream, &upstream));
        return;
    }
    if std::env::args().any(|a| a == "--tokens-only") {
        token_counting_cost();
        return;
    }
    let secs = arg("--seconds", 5);
    let streams = arg("--streams", 1000) as usize;
    let dir = exe_dir();
    let fast = arg_str("--upstream").as_deref() != Some("mock");
    let up = if fast {
        start(Command::new(dir.join("fast-upstream")).args(["--listen", "127.0.0.1:0"]))
    } else {
        start(Command::new(dir.join("mock-upstream")).args(["--listen", "127.0.0.1:0"]))
    };
    // Slow streams always come from the mock, which can pace them.
    let slow = start(Command::new(dir.join("mock-upstream")).args(["--listen", "127.0.0.1:0"]));
    let bare = start(Command::new(dir.join("bare-forwarder")).args([
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{}/v1/chat/completions", up.addr),
    ]));
    // `BENCH_GATEWAY_BIN` measures another build of the gateway (an allocator, say) in the same setup.
    let bin = std::env::var_os("BENCH_GATEWAY_BIN").map_or_else(|| dir.join("switchyard"), PathBuf::from);
    let (gw, key, db) = gateway(bin, "gateway", &up.addr, &slow.addr).await;
    let gw_pid = gw.child.id();
    // `BENCH_BASELINE_BIN` runs an earlier build beside it, measured in the same run.
    let baseline = match std::env::var_os("BENCH_BASELINE_BIN") {
        Some(b) => Some(gateway(PathBuf::from(b), "baseline", &up.addr, &slow.addr).await),
        None => None,
    };
    if let Some(n) = arg_str("--rss").and_then(|v| v.parse().ok()) {
        rss_run(&gw, &key, n).await;
        let _ = std::fs::remove_file(db);
        return;
    }
    token_counting_cost();
    println!();
    println!(
        "Switchyard overhead benchmark: {secs} s per scenario, {} CPUs, upstream {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if fast { "fast-upstream" } else { "mock-upstream" },
    );
    println!(
        "upstream at {}, bare forwarder at {}, gateway at {} (pid {gw_pid}), idle RSS {} KiB",
        up.addr,
        bare.addr,
        gw.addr,
        rss_kib(gw_pid, "VmRSS:")
    );
    println!();
    println!("| scenario | clients | target | req/s | p50 µs | p99 µs | CPU µs/req | req/s ÷ bare | CPU ÷ bare | RSS after MiB | in-band overhead p50 / p99 µs | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let chat_url = |addr: &str| format!("http://{addr}/v1/chat/completions");
    for (name, stream) in [("JSON", false), ("stream (24 chunks)", true)] {
        let s = if stream { ",\"stream\":true" } else { "" };
        // The mock takes its behaviour from the model name; the fast upstream ignores it.
        let direct_model = if fast || !stream { "bench" } else { "mock;chunks=24" };
        let direct_body = format!(r#"{{"model":"{direct_model}","messages":{PROMPT}{s}}}"#);
        let via_body = format!(r#"{{"model":"bench","messages":{PROMPT}{s}}}"#);
        for c in [1usize, 64] {
            let d = closed_loop(
                &Target {
                    url: chat_url(&up.addr),
                    body: &direct_body,
                    key: None,
                    stream,
                    pid: up.child.id(),
                },
                c,
                secs,
            )
            .await;
            let b = closed_loop(
                &Target {
                    url: chat_url(&bare.addr),
                    body: &direct_body,
                    key: None,
                    stream,
                    pid: bare.child.id(),
                },
                c,
                secs,
            )
            .await;
            let v = closed_loop(
                &Target {
                    url: chat_url(&gw.addr),
                    body: &via_body,
                    key: Some(&key),
                    stream,
                    pid: gw_pid,
                },
                c,
                secs,
            )
            .await;
            row(name, c, "direct (the upstream's CPU)", &d, None);
            row(name, c, "bare forwarder", &b, Some(&b));
            if let Some((base, base_key, _)) = &baseline {
                let target = Target {
                    url: chat_url(&base.addr),
                    body: &via_body,
                    key: Some(base_key),
                    stream,
                    pid: base.child.id(),
                };
                row(
                    name,
                    c,
                    "Switchyard, baseline build",
                    &closed_loop(&target, c, secs).await,
                    Some(&b),
                );
            }
            row(name, c, "Switchyard", &v, Some(&b));
        }
    }

    // Many slow streams at once: memory must stay flat.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams)
        .build()
        .expect("client");
    let body = format!(r#"{{"model":"bench-slow","messages":{PROMPT},"stream":true}}"#);
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let before = rss_kib(gw_pid, "VmRSS:");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (client, url, body, key) = (client.clone(), url.clone(), body.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            one_request(&client, &url, &body, Some(&key), true).await
        }));
    }
    let mut peak = 0;
    let sampler = async {
        loop {
            peak = peak.max(rss_kib(gw_pid, "VmRSS:"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let wait_all = async {
        let mut ok = 0;
        for t in tasks {
            if matches!(t.await, Ok(Ok(_))) {
                ok += 1;
            }
        }
        ok
    };
    let ok = tokio::select! {
        ok = wait_all => ok,
        _ = sampler => unreachable!("the sampler never ends"),
    };
    println!();
    println!(
        "{streams} concurrent slow streams (20 chunks, 100 ms apart) through the gateway: {ok} completed in {:.1} s; gateway RSS before {} KiB, peak {} KiB ({:.1} MB), high-water mark {} KiB",
        started.elapsed().as_secs_f64(),
        before,
        peak,
        peak as f64 / 1024.0,
        rss_kib(gw_pid, "VmHWM:")
    );
    let _ = std::fs::remove_file(db);
    if let Some((_, _, base_db)) = baseline {
        let _ = std::fs::remove_file(base_db);
    }
}

/// What exact token counting of a 2 KB prompt costs, against the free upper bound the request path uses.
fn token_counting_cost() {
    use switchyard::money::tokens::{Encoding, PromptText};
    let paragraph = "The gateway estimates tokens before the call and knows the real usage after it. \
        fn main() { let total: u64 = (1..=10).map(|x| x * x).sum(); println!(\"{total}\"); } ";
    let mut text = String::new();
    while text.len() < 2048 {
        text.push_str(paragraph);
    }
    text.truncate(2048);
    let prompt = PromptText::new(text, 2, 0);
    for enc in [Encoding::Cl100k, Encoding::O200k] {
        let built = Instant::now();
        let tokens = enc.count(&prompt.text);
        let first = built.elapsed();
        let n = 2000;
        let t = Instant::now();
        let mut sum = 0;
        // The text itself, every time: a prompt's own count is made once and then remembered.
        for _ in 0..n {
            sum += enc.count(std::hint::black_box(&prompt.text));
        }
        let per = t.elapsed() / n;
        assert_eq!(sum, tokens * u64::from(n));
        println!("exact count of a 2 KB prompt ({enc:?}): {tokens} tokens, {per:?} per count (first call incl. building the encoder: {first:?})");
    }
    let n = 100_000;
    let t = Instant::now();
    let mut sum = 0;
    for _ in 0..n {
        sum += std::hint::black_box(&prompt).upper_bound();
    }
    std::hint::black_box(sum);
    println!(
        "upper bound of the same prompt (what the request path uses): {:?} per call",
        t.elapsed() / n
    );
}
