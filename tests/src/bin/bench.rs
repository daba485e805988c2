//! Overhead benchmark: the same load straight to the mock upstream and through Switchyard, in one run.
//!
//! Starts `mock-upstream` and `switchyard` (release builds next to this binary) as separate
//! processes on ephemeral ports, then for JSON and streaming chat completions at 1 and 64
//! concurrent clients runs a closed loop against each target and prints latency percentiles,
//! the latency the gateway adds, and throughput as a ratio of going direct. Last, it holds
//! 1,000 slow streams open through the gateway at once and reports the gateway's peak RSS.
//!
//! Usage: `scripts/bench.sh` (builds in release, raises the open-file limit, runs this).
//! Options: `--seconds N` per scenario (default 5), `--streams N` (default 1000), `--tokens-only`
//! (just the token-counting cost). `BENCH_GATEWAY_THREADS=N` sets the gateway's tokio worker threads.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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

struct Stats {
    p50: u64,
    p99: u64,
    rps: f64,
    errors: u64,
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
async fn one_request(client: &reqwest::Client, url: &str, body: &str, stream: bool) -> Result<Option<u64>, String> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
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

/// A closed loop: `concurrency` clients send back to back for `secs` after a short warm-up.
async fn closed_loop(url: &str, body: &str, stream: bool, concurrency: usize, secs: u64) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    for _ in 0..50 {
        let _ = one_request(&client, url, body, stream).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, stop) = (client.clone(), url.to_string(), body.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut over = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match one_request(&client, &url, &body, stream).await {
                    Ok(o) => {
                        lat.push(t.elapsed().as_micros() as u64);
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
    for t in tasks {
        let (l, o, e) = t.await.expect("load task");
        all.extend(l);
        over.extend(o);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    over.sort_unstable();
    Stats {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        rps: all.len() as f64 / elapsed,
        errors,
        overhead: (!over.is_empty()).then(|| (percentile(&over, 0.50), percentile(&over, 0.99))),
    }
}

/// One table row: direct (`d`), the bare proxy (`b`, when measured) and Switchyard (`v`).
fn row(name: &str, c: usize, d: &Stats, b: Option<&Stats>, v: &Stats) {
    let dash = || "–".to_string();
    let bare = |f: &dyn Fn(&Stats) -> String| b.map(f).unwrap_or_else(dash);
    println!(
        "| {name} | {c} | {} | {} | {} | {} / {} | {} | {} | {} | {:.0} | {} | {:.0} | {:.2} / {} | {} | {} |",
        d.p50,
        bare(&|b| b.p50.to_string()),
        v.p50,
        v.p50 as i64 - d.p50 as i64,
        bare(&|b| (v.p50 as i64 - b.p50 as i64).to_string()),
        d.p99,
        v.p99,
        v.p99 as i64 - d.p99 as i64,
        d.rps,
        bare(&|b| format!("{:.0}", b.rps)),
        v.rps,
        v.rps / d.rps.max(1e-9),
        bare(&|b| format!("{:.2}", v.rps / b.rps.max(1e-9))),
        overhead_cell(v),
        d.errors + v.errors + b.map_or(0, |b| b.errors)
    );
}

fn overhead_cell(s: &Stats) -> String {
    match s.overhead {
        Some((p50, p99)) => format!("{p50} / {p99}"),
        None => "–".into(),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--tokens-only") {
        token_counting_cost();
        return;
    }
    let secs = arg("--seconds", 5);
    let streams = arg("--streams", 1000) as usize;
    let dir = exe_dir();
    let mock = start(Command::new(dir.join("mock-upstream")).args(["--listen", "127.0.0.1:0"]));
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[providers.mock]
kind = "openai"
base_url = "http://{mock}/v1"
[models.bench]
[[models.bench.deployments]]
provider = "mock"
model = "mock"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
[models.bench-stream]
[[models.bench-stream.deployments]]
provider = "mock"
model = "mock;chunks=20"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
[providers.inproc]
kind = "mock"
[models.bench-inproc]
[[models.bench-inproc.deployments]]
provider = "inproc"
model = "mock"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
[models.bench-slow]
[[models.bench-slow.deployments]]
provider = "mock"
model = "mock;chunks=20;delay=100"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
context_window = 128000
"#,
        mock = mock.addr
    );
    let bare = start(Command::new(dir.join("bare-forwarder")).args([
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{}/v1/chat/completions", mock.addr),
    ]));
    let cfg_path = std::env::temp_dir().join(format!("switchyard-bench-{}.toml", std::process::id()));
    std::fs::write(&cfg_path, config).expect("write bench config");
    let gw = start(
        Command::new(dir.join("switchyard"))
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,switchyard=info")
            .envs(
                std::env::var("BENCH_GATEWAY_THREADS")
                    .ok()
                    .map(|n| ("TOKIO_WORKER_THREADS", n)),
            ),
    );
    let gw_pid = gw.child.id();
    token_counting_cost();
    println!();
    println!(
        "Switchyard overhead benchmark: {secs} s per scenario, {} CPUs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "mock at {}, gateway at {} (pid {gw_pid}), idle RSS {} KiB",
        mock.addr,
        gw.addr,
        rss_kib(gw_pid, "VmRSS:")
    );
    println!();
    println!("| scenario | clients | direct p50 µs | bare proxy p50 µs | Switchyard p50 µs | added p50 µs (vs direct / vs bare proxy) | direct p99 µs | Switchyard p99 µs | added p99 µs | direct req/s | bare proxy req/s | Switchyard req/s | throughput ratio (vs direct / vs bare proxy) | in-band overhead p50 / p99 µs | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let prompt = r#"[{"role":"user","content":"Summarise the plot of a short story about a lighthouse keeper in two sentences."}]"#;
    let chat_url = |addr: &str| format!("http://{addr}/v1/chat/completions");
    for (name, stream) in [("JSON", false), ("stream (20 chunks)", true)] {
        for c in [1usize, 64] {
            let (direct_model, via_model) = if stream {
                ("mock;chunks=20", "bench-stream")
            } else {
                ("mock", "bench")
            };
            let s = if stream { ",\"stream\":true" } else { "" };
            let direct_body = format!(r#"{{"model":"{direct_model}","messages":{prompt}{s}}}"#);
            let via_body = format!(r#"{{"model":"{via_model}","messages":{prompt}{s}}}"#);
            let d = closed_loop(&chat_url(&mock.addr), &direct_body, stream, c, secs).await;
            let b = closed_loop(&chat_url(&bare.addr), &direct_body, stream, c, secs).await;
            let v = closed_loop(&chat_url(&gw.addr), &via_body, stream, c, secs).await;
            row(name, c, &d, Some(&b), &v);
        }
    }

    // Switchyard answering from its in-process mock: its own server-side cost, no upstream hop.
    for c in [1usize, 64] {
        let direct_body = format!(r#"{{"model":"mock","messages":{prompt}}}"#);
        let via_body = format!(r#"{{"model":"bench-inproc","messages":{prompt}}}"#);
        let d = closed_loop(&chat_url(&mock.addr), &direct_body, false, c, secs).await;
        let v = closed_loop(&chat_url(&gw.addr), &via_body, false, c, secs).await;
        row(
            "JSON, Switchyard answering from its in-process mock (no upstream hop)",
            c,
            &d,
            None,
            &v,
        );
    }

    // Many slow streams at once: memory must stay flat.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams)
        .build()
        .expect("client");
    let body = format!(r#"{{"model":"bench-slow","messages":{prompt},"stream":true}}"#);
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let before = rss_kib(gw_pid, "VmRSS:");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(
            async move { one_request(&client, &url, &body, true).await },
        ));
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
    let _ = std::fs::remove_file(cfg_path);
}
