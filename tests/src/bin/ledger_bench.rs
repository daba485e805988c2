//! Benchmarks the money path: the per-request cost of authentication, rate limits and a budget
//! reservation (cache hit, lease available), and the usage ledger's batched write throughput on
//! SQLite and, when `SWITCHYARD_TEST_POSTGRES_URL` is set, Postgres.
//!
//! `cargo run --release -p switchyard-tests --bin ledger-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::access::keys::{hash_secret, new_secret, Keys};
use switchyard::access::limits::{LedgerSettings, Limiter, Subject};
use switchyard::clock::SystemClock;
use switchyard::money::pricing::Nanos;
use switchyard::records::keys::{KeyRecord, KeyStatus};
use switchyard::records::limits::{Budget, Limits, Period};
use switchyard::records::usage::{Outcome, UsageEvent, UsageSource};
use switchyard::store::Store;

fn event(i: usize) -> UsageEvent {
    let mut e = UsageEvent::new(
        format!("evt_bench_{i:012}_{}", std::process::id()),
        format!("req_{i}"),
        1_790_000_000_000 + (i as i64 % 7_200_000),
        "chat",
        ["gpt-4o-mini", "gpt-4o", "claude"][i % 3].to_string(),
    );
    e.deployment = Some("d1".into());
    e.provider = Some("openai".into());
    e.stream = i.is_multiple_of(2);
    e.status = 200;
    e.outcome = Outcome::Success;
    e.prompt_tokens = 120;
    e.completion_tokens = 40;
    e.usage_source = UsageSource::Reported;
    e.cost_nanos = 12_345;
    e.latency_ms = 300;
    e.ttft_ms = Some(90);
    e.attempts = 1;
    e.request_bytes = 800;
    e.response_bytes = 1500;
    e.key_id = Some(format!("key_{}", i % 50));
    e.team_id = Some(format!("team_{}", i % 5));
    e
}

async fn hot_path(url: &str) {
    let store = Store::connect(url, 4).await.expect("open the store");
    let (secret, prefix) = new_secret();
    let limits = Limits {
        budget: Some(Budget {
            limit: Nanos(1_000_000_000_000_000),
            period: Period::Monthly,
            soft_pct: 80,
        }),
        rpm: Some(u64::MAX / 4),
        tpm: Some(u64::MAX / 4),
        max_concurrent: Some(1000),
    };
    let key = KeyRecord {
        id: "key_bench".into(),
        name: "bench".into(),
        prefix,
        team_id: None,
        cost_center: None,
        tags: vec![],
        allowed_models: None,
        route_prefer: None,
        expires_ms: None,
        status: KeyStatus::Active,
        limits,
        store_bodies: false,
        created_ms: 0,
        updated_ms: 0,
        rotated_ms: None,
    };
    store
        .insert_key(&key, &hash_secret(&secret))
        .await
        .expect("insert a key");
    let keys = Keys::new(store.clone(), Duration::from_secs(600));
    let limiter = Limiter::new(store.clone(), Arc::new(SystemClock), LedgerSettings::default());
    let clock = SystemClock;
    use switchyard::clock::Clock;
    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 1000 {
        let t = Instant::now();
        let p = keys.authenticate(&secret, clock.now_ms()).await.expect("valid key");
        let subjects = [Subject {
            scope: &p.key_scope,
            limits: &p.key.limits,
        }];
        let a = limiter.admit(&subjects, 300, Nanos(50_000)).await.expect("admitted");
        if let Some(s) = &a.settlement {
            s.settle(Nanos(12_345), 160);
        }
        drop(a);
        if i >= 1000 {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "hot path (auth + rpm + tpm + concurrency + budget reserve/settle), {n} requests on one task: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6
    );
    store.close().await;
}

/// An event as a tagged key behind a route sends it: two tags and a cost center (the daily
/// rollups per tag and cost center) and a route's tier and intent (per route arm, the mix).
fn labelled(i: usize) -> UsageEvent {
    let mut e = event(i);
    e.tags = switchyard::records::usage::Tags(vec![["prod", "staging"][i % 2].into(), "api".into()]);
    e.cost_center = Some(format!("cc-{}", i % 3));
    e.route = Some("auto".into());
    e.tier = Some(std::borrow::Cow::Borrowed(["cheap", "strong"][i % 2]));
    e.intent = Some("chat".into());
    e
}

/// Ledger write throughput; with `billing`, each event's billing event goes into the outbox
/// too; with `labels`, each event has tags, a cost center and a route.
async fn ledger(name: &str, url: &str, billing: bool, labels: bool) {
    let store = Store::connect(url, 4).await.expect("open the store");
    let batch = 2000;
    let total = 100_000;
    let events: Vec<UsageEvent> = (0..total).map(if labels { labelled } else { event }).collect();
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        store.write_usage(chunk, billing).await.expect("write a batch");
    }
    let secs = t.elapsed().as_secs_f64();
    let what = match (billing, labels) {
        (true, _) => " + billing outbox",
        (false, true) => ", tagged and routed",
        _ => "",
    };
    println!(
        "ledger write {name}{what}: {total} events in batches of {batch}: {:.0} events/s ({:.1} ms per batch)",
        total as f64 / secs,
        secs * 1000.0 / (total / batch) as f64
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let sqlite = switchyard_tests::temp_sqlite_url();
    hot_path(&sqlite).await;
    for (billing, labels) in [(false, false), (true, false), (false, true)] {
        ledger("sqlite", &switchyard_tests::temp_sqlite_url(), billing, labels).await;
    }
    match switchyard_tests::fresh_postgres_schema().await {
        Some(_) => {
            for (billing, labels) in [(false, false), (true, false), (false, true)] {
                let pg = switchyard_tests::fresh_postgres_schema()
                    .await
                    .expect("the server answered just now");
                ledger("postgres", &pg, billing, labels).await;
            }
        }
        None => println!(
            "ledger write postgres: skipped ({} not set)",
            switchyard_tests::POSTGRES_ENV
        ),
    }
}
