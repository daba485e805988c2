//! Two `switchyard` processes on one database share a budget: each leases slices of it from the
//! store and spends them in memory, and together they never overshoot. Runs on an SQLite file
//! and, when `SWITCHYARD_TEST_POSTGRES_URL` is set, on a fresh Postgres schema.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::store::{Store, UsageFilter};

mod common;

const MASTER: &str = "processes-master-key-0123";
const LIMIT_NANOS: i64 = 2_000_000_000;

fn config(db_url: &str) -> String {
    format!(
        r#"
[auth]
required = true
[database]
url = "{db_url}"
[ledger]
budget_flush_ms = 50
flush_interval_ms = 20
[providers.m]
kind = "mock"
latency_ms = 5
[models.cheap]
[[models.cheap.deployments]]
provider = "m"
model = "cheap"
input_per_mtok = "1000"
output_per_mtok = "2000"
context_window = 100000
max_output_tokens = 100
"#
    )
}

struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Gateway {
    fn start(config: &std::path::Path) -> Gateway {
        let (child, base) = common::spawn(config, MASTER, "info");
        Gateway { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for the process to exit cleanly after a signal.
    fn wait_exit(mut self, within: Duration) {
        common::wait_exit(&mut self.child, within);
    }

    /// SIGTERM, then waits for a clean exit (ledger drained, spend written, leases returned).
    fn stop(self) {
        common::sigterm(&self.child);
        self.wait_exit(Duration::from_secs(30));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// `n` requests, 24 at a time, alternating between the gateways; the statuses per gateway.
async fn burst(client: &reqwest::Client, gws: [&Gateway; 2], key: &str, n: usize) -> [Vec<u16>; 2] {
    let calls = (0..n).map(|i| {
        let r = client
            .post(gws[i % 2].url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({
                "model": "cheap",
                "messages": [{"role": "user", "content": format!("hello {i}")}],
                "max_tokens": 40,
                // Each gateway gets streams and JSON calls alike.
                "stream": (i / 2) % 2 == 0,
            }))
            .send();
        async move {
            let r = r.await.unwrap();
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            (i % 2, s)
        }
    });
    use futures_util::StreamExt;
    let done: Vec<(usize, u16)> = futures_util::stream::iter(calls).buffer_unordered(24).collect().await;
    let mut out = [Vec::new(), Vec::new()];
    for (g, s) in done {
        out[g].push(s);
    }
    out
}

/// Writes `text` as a config file of its own; its path.
fn config_file(what: &str, backend: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{what}-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("switchyard.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// A database per backend for the test `what`: an SQLite file of its own, and a fresh Postgres
/// schema when one is configured.
async fn databases(what: &str) -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("switchyard-procs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join(format!("{what}.db")).display()),
    )];
    match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Err(_) => eprintln!("SKIP postgres: SWITCHYARD_TEST_POSTGRES_URL is not set; running the SQLite half only"),
        Ok(base) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("SWITCHYARD_TEST_POSTGRES_URL={base} cannot be reached: {e}"));
            let schema = format!("procs_{}_{}", std::process::id(), fastrand::u32(..));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            out.push(("postgres", format!("{base}{sep}options=-c%20search_path%3D{schema}")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_never_overshoot_a_budget() {
    for (backend, url) in databases("shared").await {
        let cfg = config_file("procs", backend, &config(&url));
        let a = Gateway::start(&cfg);
        let b = Gateway::start(&cfg);
        let client = reqwest::Client::new();
        let created: Value = client
            .post(a.url("/admin/v1/keys"))
            .bearer_auth(MASTER)
            .json(&json!({"name": "shared", "limits": {"budget": {"limit_usd": "2.00", "period": "total"}}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = created["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_string();
        let key_id = created["id"].as_str().unwrap().to_string();
        // Each process serves the key once (both hold a lease from then on), then both at once,
        // far past the budget. Without the warm-up one process may lease the whole budget in
        // its first burst, which is correct but leaves the other nothing to show.
        let [wa, _] = burst(&client, [&a, &b], &key, 1).await;
        let [wb, _] = burst(&client, [&b, &a], &key, 1).await;
        assert_eq!(
            (wa.as_slice(), wb.as_slice()),
            ([200].as_slice(), [200].as_slice()),
            "{backend}: warm-up"
        );
        let [mut ra, mut rb] = burst(&client, [&a, &b], &key, 238).await;
        ra.extend(wa);
        rb.extend(wb);
        let ok = |v: &[u16]| v.iter().filter(|s| **s == 200).count();
        let refused = ra.iter().chain(&rb).filter(|s| **s == 429).count();
        assert_eq!(
            ok(&ra) + ok(&rb) + refused,
            240,
            "{backend}: only 200 or 429: {ra:?} {rb:?}"
        );
        assert!(refused > 0, "{backend}: the budget ran out");
        assert!(
            ok(&ra) > 0 && ok(&rb) > 0,
            "{backend}: both processes served: {ra:?} {rb:?}"
        );
        a.stop();
        b.stop();

        let store = Store::connect(&url, 2).await.unwrap();
        let ledger = store
            .usage_totals(&UsageFilter {
                key_id: Some(key_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            ledger.requests, 240,
            "{backend}: one event per request, from both processes"
        );
        assert!(
            ledger.cost_nanos <= LIMIT_NANOS,
            "{backend}: spent {} of {LIMIT_NANOS}",
            ledger.cost_nanos
        );
        assert!(
            // A request costs about 60 % of its reservation, so at least half the budget is used
            // even if every later request arrives while the first wave still holds its reservations.
            ledger.cost_nanos >= LIMIT_NANOS / 2,
            "{backend}: only {} of {LIMIT_NANOS} used",
            ledger.cost_nanos
        );
        assert_eq!(
            store.spent(&format!("key:{key_id}"), 0).await.unwrap(),
            ledger.cost_nanos,
            "{backend}: the budget's spend equals the ledger"
        );
        eprintln!(
            "{backend}: {} + {} served, {refused} refused, spent {} of {LIMIT_NANOS}",
            ok(&ra),
            ok(&rb),
            ledger.cost_nanos
        );
        store.close().await;
    }
}

/// One request with its own id; whether it got a whole answer (`[DONE]` for a stream).
/// `started` counts the requests whose answer has begun (its headers came).
async fn one(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    stream: bool,
    started: &std::sync::atomic::AtomicUsize,
) -> bool {
    let sent = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&json!({
            "model": "slow",
            "messages": [{"role": "user", "content": format!("tell me about {id}")}],
            "max_tokens": 40,
            "stream": stream,
        }))
        .send()
        .await;
    let Ok(r) = sent else { return false };
    if r.status() != 200 {
        return false;
    }
    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    match r.text().await {
        Ok(body) => !stream || body.contains("data: [DONE]"),
        Err(_) => false,
    }
}

fn crash_config(db_url: &str) -> String {
    format!(
        r#"
[auth]
required = true
[server]
shutdown_grace_secs = 10
[database]
url = "{db_url}"
[ledger]
budget_flush_ms = 50
flush_interval_ms = 20
lease_pct = 100
lease_ttl_secs = 5
[providers.m]
kind = "mock"
latency_ms = 20
chunk_delay_ms = 60
[models.slow]
[[models.slow.deployments]]
provider = "m"
model = "slow"
input_per_mtok = "1000"
output_per_mtok = "2000"
context_window = 100000
max_output_tokens = 100
"#
    )
}

async fn new_key(client: &reqwest::Client, gw: &Gateway, budget_usd: &str) -> (String, String) {
    let created: Value = client
        .post(gw.url("/admin/v1/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"name": "k", "limits": {"budget": {"limit_usd": budget_usd, "period": "total"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        created["id"].as_str().unwrap().to_string(),
        created["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_string(),
    )
}

/// The request ids of the key's events (the SQLite file is shared by this file's tests).
async fn ids_in_ledger(store: &Store, key_id: &str) -> std::collections::HashSet<String> {
    let f = UsageFilter {
        key_id: Some(key_id.to_string()),
        ..Default::default()
    };
    let rows = store.usage_page(&f, None, 10_000).await.unwrap();
    rows.into_iter().map(|e| e.request_id).collect()
}

/// SIGTERM while 48 streams are running: every one of them is finished, the
/// process exits cleanly, and the ledger holds exactly one event per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_heavy_streaming_finishes_every_request_and_loses_no_event() {
    for (backend, url) in databases("term").await {
        let cfg = config_file("term", backend, &crash_config(&url));
        let gw = Gateway::start(&cfg);
        let client = reqwest::Client::new();
        let (key_id, key) = new_key(&client, &gw, "1000.00").await;
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..48)
            .map(|i| {
                let (client, url, key, started) = (client.clone(), gw.url(""), key.clone(), started.clone());
                tokio::spawn(async move { one(&client, &url, &key, &format!("term-{i}"), true, &started).await })
            })
            .collect();
        // Once all 48 streams have begun (each lasts over a second), stop the process.
        let deadline = Instant::now() + Duration::from_secs(20);
        while started.load(std::sync::atomic::Ordering::SeqCst) < 48 {
            assert!(Instant::now() < deadline, "{backend}: the streams did not all begin");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        common::sigterm(&gw.child);
        let mut finished = 0;
        for c in calls {
            finished += usize::from(c.await.unwrap());
        }
        assert_eq!(finished, 48, "{backend}: every running request was finished");
        gw.wait_exit(Duration::from_secs(30));
        let store = Store::connect(&url, 2).await.unwrap();
        let ids = ids_in_ledger(&store, &key_id).await;
        let ours = (0..48).filter(|i| ids.contains(&format!("term-{i}"))).count();
        assert_eq!(ours, 48, "{backend}: one event per request");
        assert_eq!(ids.len(), 48, "{backend}: and no other");
        store.close().await;
    }
}

/// kill -9 under load: every request answered more than the ledger's flush window before the
/// kill is in the ledger (what is lost is bounded by that window and the requests in flight),
/// and the budget the dead process had leased comes back once its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_flush_window_and_its_leases_come_back() {
    for (backend, url) in databases("kill").await {
        let cfg = config_file("kill", backend, &crash_config(&url));
        let mut a = Gateway::start(&cfg);
        let client = reqwest::Client::new();
        let (key_id, key) = new_key(&client, &a, "50.00").await;
        // With lease_pct = 100, A's first request leases the whole budget.
        assert!(one(&client, &a.url(""), &key, "warm", false, &Default::default()).await);
        let started = Instant::now();
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Duration)>::new()));
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (client, url, key, done) = (client.clone(), a.url(""), key.clone(), done.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let id = format!("kill-{w}-{i}");
                        if !one(&client, &url, &key, &id, i % 2 == 0, &Default::default()).await {
                            return;
                        }
                        done.lock().unwrap().push((id, started.elapsed()));
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let killed_at = started.elapsed();
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        let done = done.lock().unwrap().clone();
        assert!(done.len() > 20, "{backend}: load ran: {}", done.len());
        let store = Store::connect(&url, 2).await.unwrap();
        let ids = ids_in_ledger(&store, &key_id).await;
        // The writer flushes every 20 ms; half a second is the margin for a loaded machine.
        let window = Duration::from_millis(500);
        let must: Vec<&String> = done
            .iter()
            .filter(|(_, at)| *at + window < killed_at)
            .map(|(id, _)| id)
            .collect();
        let missing: Vec<&&String> = must.iter().filter(|id| !ids.contains(**id)).collect();
        assert!(
            missing.is_empty(),
            "{backend}: answered well before the kill, not in the ledger: {missing:?}"
        );
        let lost = done.iter().filter(|(id, _)| !ids.contains(id)).count();
        eprintln!(
            "{backend}: {} answered, {} in the ledger, {lost} lost (all within {window:?} of the kill)",
            done.len(),
            ids.len()
        );

        let spent = store.spent(&format!("key:{key_id}"), 0).await.unwrap();
        assert!(spent > 0, "{backend}: A's settled spend was written before the kill");

        // A held the whole budget: B is refused until A's lease expires, then serves.
        let b = Gateway::start(&cfg);
        let refused_from = Instant::now();
        let first = client
            .post(b.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 429, "{backend}: the budget is held by the dead lease");
        let mut recovered = false;
        while !recovered {
            assert!(
                refused_from.elapsed() < Duration::from_secs(15),
                "{backend}: the dead process's lease never came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            recovered = one(&client, &b.url(""), &key, "after", false, &Default::default()).await;
        }
        eprintln!(
            "{backend}: the lease came back {:?} after B started",
            refused_from.elapsed()
        );
        b.stop();
        store.close().await;
    }
}
