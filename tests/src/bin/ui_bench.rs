//! Dashboard render benchmark: every page rendered on the server with a year of usage in the
//! ledger, timed from request to the last byte of the page.
//!
//! Fills a fresh SQLite ledger with a year of hourly traffic (`--per-hour N` events for each of
//! 10 keys × 3 models every hour, 2 by default: 525,600 events and 262,800 hourly rollups), some
//! tagged by environment and cost center, routed, some cached, some failed, then starts a gateway on it in this process, signs in with
//! the master key and fetches each page `--runs N` times (7 by default) after one warm-up. Prints
//! the median and the slowest time per page.
//!
//! `cargo run --release -p switchyard-tests --bin ui-bench`

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::records::usage::{Outcome, Tags, UsageEvent, UsageSource};
use switchyard::store::Store;
use switchyard_tests::{parse_config, Admin, MockUpstream, TestGateway, TEST_MASTER_KEY};

const HOUR: i64 = 3_600_000;
const MODELS: [&str; 3] = ["chat", "cached", "claude"];

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn event(i: u64, ts: i64, key: &str, model: &str, rng: &mut fastrand::Rng) -> UsageEvent {
    let mut e = UsageEvent::new(
        format!("evt_ui_{i:012}"),
        format!("req_{i}"),
        ts,
        "chat",
        model.to_string(),
    );
    e.key_id = Some(key.to_string());
    // Tags and cost centers as keys carry them: one of two environments, one of three centers.
    let k = key
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    e.tags = Tags(vec![["prod", "staging"][(k % 2) as usize].into(), "api".into()]);
    e.cost_center = Some(format!("cc-{}", k % 3));
    e.deployment = Some("oa/mock".into());
    e.provider = Some("oa".into());
    e.status = 200;
    e.prompt_tokens = rng.u64(20..2000);
    e.completion_tokens = rng.u64(10..800);
    e.usage_source = if rng.u8(..10) == 0 {
        UsageSource::Estimated
    } else {
        UsageSource::Reported
    };
    e.cost_nanos = (e.prompt_tokens * 1000 + e.completion_tokens * 2000) as i64;
    e.baseline_cost_nanos = e.cost_nanos * 3;
    e.latency_ms = rng.u64(50..4000);
    e.stream = rng.bool();
    e.ttft_ms = e.stream.then(|| rng.u64(20..600));
    e.attempts = 1;
    if rng.u8(..20) == 0 {
        e.outcome = Outcome::UpstreamError;
        e.status = 502;
        e.error_kind = Some(Cow::Borrowed("upstream_unavailable"));
    }
    if rng.u8(..3) == 0 {
        e.route = Some("auto".into());
        e.tier = Some(Cow::Borrowed(if rng.u8(..4) == 0 { "strong" } else { "cheap" }));
        e.intent = Some(["chat", "code", "math", "writing"][rng.usize(..4)].to_string());
        e.route_reason = Some("difficulty p0.42 < threshold 0.70".into());
    }
    if rng.u8(..8) == 0 {
        e.cache = Some(Cow::Borrowed("hit"));
        e.cache_entry = Some("ent_bench".into());
        e.cache_saved_nanos = e.cost_nanos;
        e.cost_nanos = 0;
    }
    e
}

#[tokio::main]
async fn main() {
    let per_hour = arg("--per-hour", 2);
    let runs = arg("--runs", 7).max(1);
    let dir = std::env::temp_dir().join(format!("switchyard-ui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let mock = MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n[database]\nurl = \"{url}\"\n{}",
        switchyard_tests::standard_config(&mock.base_url())
    );
    let gw = TestGateway::start_with_ledger(parse_config(&toml)).await;
    let admin = Admin::new(&gw);
    let mut keys = Vec::new();
    for t in 0..3 {
        let (_, team) = admin.post("/teams", json!({"name": format!("team-{t}")})).await;
        for k in 0..4 {
            if keys.len() == 10 {
                break;
            }
            let (id, _) = admin
                .key(json!({"name": format!("key-{t}-{k}"), "team_id": team["id"],
                    "limits": {"budget": {"limit_usd": "100", "period": "monthly"}}}))
                .await;
            keys.push(id);
        }
    }

    // A year of hours, ending with the current one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let last = now - now.rem_euclid(HOUR);
    let store = Store::connect(&url, 2).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(4096);
    let mut n = 0u64;
    for h in 0..8760i64 {
        let hour = last - (8759 - h) * HOUR;
        for key in &keys {
            for model in MODELS {
                for _ in 0..per_hour {
                    batch.push(event(n, hour + rng.i64(0..HOUR), key, model, &mut rng));
                    n += 1;
                }
            }
        }
        if batch.len() >= 4000 {
            store.write_usage(&batch, false).await.unwrap();
            batch.clear();
        }
    }
    store.write_usage(&batch, false).await.unwrap();
    eprintln!("wrote {n} events in {:.1} s", started.elapsed().as_secs_f64());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(gw.url("/ui/login"))
        .form(&[("user", ""), ("password", TEST_MASTER_KEY), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let year_ago = switchyard::clock::iso8601(last - 8759 * HOUR);
    let pages = [
        "/ui?period=24h".to_string(),
        "/ui?period=30d".to_string(),
        "/ui?period=365d".to_string(),
        "/ui/keys".to_string(),
        format!("/ui/keys/{}", keys[0]),
        "/ui/teams".to_string(),
        format!("/ui/usage?from={}&group_by=day", &year_ago[..10]),
        format!("/ui/usage?from={}&group_by=key", &year_ago[..10]),
        format!("/ui/usage?from={}&group_by=model&tag=prod", &year_ago[..10]),
        format!("/ui/usage?from={}&group_by=day&cost_center=cc-1", &year_ago[..10]),
        "/ui/requests".to_string(),
        format!("/ui/requests?key_id={}&outcome=failed", keys[3]),
        "/ui/routing?period=365d".to_string(),
        "/ui/providers".to_string(),
        "/ui/audit".to_string(),
    ];
    println!("| Page | Median | Slowest | Bytes |");
    println!("|---|---:|---:|---:|");
    let mut worst = Duration::ZERO;
    for p in &pages {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for i in 0..=runs {
            let t = Instant::now();
            let r = client.get(gw.url(p)).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(r.status(), 200, "{p}");
            let body = r.bytes().await.unwrap();
            let took = t.elapsed();
            assert!(!body.windows(12).any(|w| w == b"class=\"error"), "{p} shows an error");
            bytes = body.len();
            if i > 0 {
                times.push(took);
            }
        }
        times.sort();
        let median = times[times.len() / 2];
        let slowest = *times.last().unwrap();
        worst = worst.max(slowest);
        println!(
            "| `{p}` | {:.1} ms | {:.1} ms | {bytes} |",
            median.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3
        );
    }
    println!(
        "\n{n} events, {} hourly rollups; slowest page {:.1} ms",
        8760 * keys.len() * MODELS.len(),
        worst.as_secs_f64() * 1e3
    );
    gw.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
