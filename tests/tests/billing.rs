//! Money out of the gateway: billing events delivered at least once to a Lago-format receiver
//! that fails half the time (and across a restart), the versioned price table and re-pricing,
//! and stored budget alerts. Every test runs on SQLite and, when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set, on Postgres.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use switchyard::records::usage::UsageEvent;
use switchyard::store::{Store, UsageFilter};
use switchyard_tests::{parse_config, test_databases, Admin, TestGateway};

/// A billing API stand-in that behaves like Lago: an event whose `transaction_id` it already
/// has is refused with 422 `value_already_exist` (a batch with one such event is refused whole).
/// With probability `fail_pct`, a request fails: half of those before the events are stored
/// (500), half after (503: stored, but the sender cannot know). With `reject`, every request
/// gets a validation error (400).
#[derive(Default)]
struct Receiver {
    fail_pct: AtomicU32,
    reject: std::sync::atomic::AtomicBool,
    /// Every request fails with 503 before anything is stored.
    down: std::sync::atomic::AtomicBool,
    requests: AtomicU64,
    failures: AtomicU64,
    duplicates: AtomicU64,
    /// Every event stored, duplicates included.
    events: Mutex<Vec<Value>>,
    paths: Mutex<HashSet<String>>,
    auth: Mutex<HashSet<String>>,
}

impl Receiver {
    async fn start() -> (Arc<Receiver>, SocketAddr) {
        let r = Arc::new(Receiver::default());
        async fn one(State(r): State<Arc<Receiver>>, h: axum::http::HeaderMap, body: String) -> (StatusCode, String) {
            r.take(&h, "/api/v1/events", &body, |v| vec![v["event"].clone()])
        }
        async fn batch(State(r): State<Arc<Receiver>>, h: axum::http::HeaderMap, body: String) -> (StatusCode, String) {
            r.take(&h, "/api/v1/events/batch", &body, |v| {
                v["events"].as_array().cloned().unwrap_or_default()
            })
        }
        let app = Router::new()
            .route("/api/v1/events", post(one))
            .route("/api/v1/events/batch", post(batch))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, addr)
    }

    fn take(
        &self,
        h: &axum::http::HeaderMap,
        path: &str,
        body: &str,
        events: impl Fn(&Value) -> Vec<Value>,
    ) -> (StatusCode, String) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.paths.lock().unwrap().insert(path.to_string());
        if let Some(a) = h.get("authorization").and_then(|v| v.to_str().ok()) {
            self.auth.lock().unwrap().insert(a.to_string());
        }
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return (StatusCode::BAD_REQUEST, String::new());
        };
        if self.down.load(Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
        }
        if self.reject.load(Ordering::Relaxed) {
            return (StatusCode::BAD_REQUEST, r#"{"status":400,"error":"BadRequest"}"#.into());
        }
        let fail = fastrand::u32(0..100) < self.fail_pct.load(Ordering::Relaxed);
        if fail && fastrand::bool() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
        let incoming = events(&v);
        let mut stored = self.events.lock().unwrap();
        let known: HashSet<&str> = stored.iter().filter_map(|e| e["transaction_id"].as_str()).collect();
        if incoming
            .iter()
            .any(|e| e["transaction_id"].as_str().is_some_and(|id| known.contains(id)))
        {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"status":422,"error":"Unprocessable Entity","code":"validation_errors","error_details":{"transaction_id":["value_already_exist"]}}"#.into(),
            );
        }
        stored.extend(incoming);
        if fail {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
        }
        (StatusCode::OK, "{}".into())
    }

    fn by_id(&self) -> (usize, HashMap<String, Value>) {
        let all = self.events.lock().unwrap();
        let mut map = HashMap::new();
        for e in all.iter() {
            map.insert(e["transaction_id"].as_str().unwrap().to_string(), e.clone());
        }
        (all.len(), map)
    }
}

fn config(db_url: &str, extra: &str) -> String {
    format!(
        r#"
[auth]
required = true
master_key_env = "TEST_MASTER_KEY"
[database]
url = "{db_url}"
[ledger]
flush_interval_ms = 20
budget_flush_ms = 50
{extra}
[providers.m]
kind = "mock"
latency_ms = 1
chunk_delay_ms = 0

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

async fn chat(client: &reqwest::Client, gw: &TestGateway, key: &str, i: usize) -> u16 {
    client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "cheap",
            "messages": [{"role": "user", "content": format!("question number {i}")}],
            "max_tokens": 20,
            "stream": i.is_multiple_of(2),
        }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn all_events(store: &Store) -> Vec<UsageEvent> {
    store.usage_page(&UsageFilter::default(), None, 10_000).await.unwrap()
}

async fn pending(admin: &Admin) -> i64 {
    let (s, v) = admin.call(reqwest::Method::GET, "/billing", None).await;
    assert_eq!(s, 200, "{v}");
    v["pending"].as_i64().unwrap()
}

/// Every ledger event arrives at least once, each id once after deduplication, with the
/// ledger's tokens and cost, whatever the receiver does and across a restart.
async fn deliver_all(batch_size: usize, requests: usize) {
    for (backend, url) in test_databases().await {
        let (receiver, addr) = Receiver::start().await;
        receiver.down.store(true, Ordering::Relaxed);
        let billing = format!(
            "[billing]\nurl = \"http://{addr}\"\napi_key_env = \"TEST_MASTER_KEY\"\nbatch_size = {batch_size}\n\
             concurrency = 4\nbackoff_ms = 10\nmax_backoff_secs = 1\ntimeout_ms = 2000\ncode = \"tokens\""
        );
        let start = || async {
            let cfg = parse_config(&config(&url, &billing));
            TestGateway::start_with_ledger(cfg).await
        };
        let gw = start().await;
        let admin = Admin::new(&gw);
        let (s, team) = admin
            .post("/teams", json!({"name": format!("billing-{batch_size}")}))
            .await;
        assert_eq!(s, 201, "{team}");
        let team_id = team["id"].as_str().unwrap().to_string();
        let (_key_id, secret) = admin.key(json!({"name": "billed", "team_id": team_id})).await;
        let client = reqwest::Client::new();
        let statuses = futures_util::future::join_all((0..requests).map(|i| chat(&client, &gw, &secret, i))).await;
        assert!(statuses.iter().all(|s| *s == 200), "{backend}: {statuses:?}");
        // While the receiver is down, nothing is marked delivered.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pending(&admin).await, requests as i64, "{backend}: all pending");
        gw.stop().await.unwrap();
        assert!(
            receiver.failures.load(Ordering::Relaxed) > 0,
            "{backend}: deliveries were tried"
        );

        // The outbox survived the stop; after a restart, with the receiver failing half the
        // time, everything arrives.
        receiver.down.store(false, Ordering::Relaxed);
        receiver.fail_pct.store(50, Ordering::Relaxed);
        let gw = start().await;
        let admin = Admin::new(&gw);
        let deadline = Instant::now() + Duration::from_secs(60);
        while pending(&admin).await > 0 {
            assert!(
                Instant::now() < deadline,
                "{backend}: billing events still pending after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (s, status) = admin.call(reqwest::Method::GET, "/billing", None).await;
        assert_eq!(
            (s, status["delivered_retained"].as_i64()),
            (200, Some(requests as i64)),
            "{status}"
        );
        gw.stop().await.unwrap();

        let store = Store::connect(&url, 2).await.unwrap();
        let ledger = all_events(&store).await;
        assert_eq!(ledger.len(), requests, "{backend}");
        let (received, by_id) = receiver.by_id();
        let ids: HashSet<&String> = by_id.keys().collect();
        let ledger_ids: HashSet<&String> = ledger.iter().map(|e| &e.event_id).collect();
        assert_eq!(
            ids, ledger_ids,
            "{backend}: each ledger event arrived, nothing else did"
        );
        assert_eq!(received, requests, "{backend}: the receiver stored each event once");
        // One by one, 80 events each stored-then-failed with probability 1/4: duplicates are
        // certain in practice (with 6 batches they are not, so that run does not check).
        assert!(
            batch_size > 1 || receiver.duplicates.load(Ordering::Relaxed) > 0,
            "{backend}: events the receiver already had were sent again and taken as delivered"
        );
        for row in &ledger {
            let e = &by_id[&row.event_id];
            assert_eq!(e["code"], "tokens");
            assert_eq!(e["external_subscription_id"], team_id.as_str(), "{e}");
            let p = &e["properties"];
            assert_eq!(p["prompt_tokens"].as_i64(), Some(row.prompt_tokens as i64), "{e}");
            assert_eq!(
                p["completion_tokens"].as_i64(),
                Some(row.completion_tokens as i64),
                "{e}"
            );
            assert_eq!(
                p["cost_usd"].as_str(),
                Some(switchyard::money::pricing::Nanos(row.cost_nanos).to_string().as_str()),
                "{e}"
            );
            assert_eq!(p["price_version"], "config");
            let ts = e["timestamp"].as_f64().unwrap();
            assert!((ts * 1000.0 - row.ts_ms as f64).abs() < 1.0, "{e}");
        }
        let want_path = if batch_size == 1 {
            "/api/v1/events"
        } else {
            "/api/v1/events/batch"
        };
        assert_eq!(*receiver.paths.lock().unwrap(), HashSet::from([want_path.to_string()]));
        assert!(receiver
            .auth
            .lock()
            .unwrap()
            .contains(&format!("Bearer {}", switchyard_tests::TEST_MASTER_KEY)));
        eprintln!(
            "{backend}: {requests} events, {} duplicate sends refused, {} requests, {} failed",
            receiver.duplicates.load(Ordering::Relaxed),
            receiver.requests.load(Ordering::Relaxed),
            receiver.failures.load(Ordering::Relaxed)
        );
        store.close().await;
    }
}

#[tokio::test]
async fn billing_events_arrive_once_each_despite_failures_and_a_restart() {
    deliver_all(1, 80).await;
}

#[tokio::test]
async fn billing_events_are_batched_when_asked() {
    deliver_all(10, 60).await;
}

/// Events the receiver refuses as invalid stop being retried, are counted as rejected, and go
/// again when re-queued.
#[tokio::test]
async fn rejected_billing_events_wait_for_a_requeue() {
    for (backend, url) in test_databases().await {
        let (receiver, addr) = Receiver::start().await;
        receiver.reject.store(true, Ordering::Relaxed);
        let billing = format!("[billing]\nurl = \"http://{addr}\"\nbatch_size = 5\nbackoff_ms = 10");
        let gw = TestGateway::start_with_ledger(parse_config(&config(&url, &billing))).await;
        let admin = Admin::new(&gw);
        let (_, secret) = admin.key(json!({"name": "rejected"})).await;
        let client = reqwest::Client::new();
        for i in 0..7 {
            assert_eq!(chat(&client, &gw, &secret, i).await, 200);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            let (_, v) = admin.call(reqwest::Method::GET, "/billing", None).await;
            if v["rejected"] == 7 || Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (status["rejected"].as_i64(), status["pending"].as_i64()),
            (Some(7), Some(0)),
            "{backend}: {status}"
        );
        assert!(status["last_error"].as_str().unwrap().contains("HTTP 400"), "{status}");
        let tried = receiver.requests.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            receiver.requests.load(Ordering::Relaxed),
            tried,
            "{backend}: rejected events are not retried"
        );
        // A refused batch is sent again one event at a time.
        assert!(tried >= 8, "{backend}: {tried} requests");

        receiver.reject.store(false, Ordering::Relaxed);
        let (s, v) = admin.post("/billing/requeue", json!({})).await;
        assert_eq!((s, v["requeued"].as_i64()), (200, Some(7)), "{v}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while receiver.by_id().1.len() < 7 {
            assert!(
                Instant::now() < deadline,
                "{backend}: re-queued events were not delivered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw.stop().await.unwrap();
    }
}

/// A receiver that redirects every POST to a page that answers any GET with 200, and one whose
/// error page never ends: neither marks an event delivered, and neither holds the deliverer up.
#[tokio::test]
async fn a_redirect_or_an_endless_error_page_is_not_a_delivery() {
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;
    let gets = Arc::new(AtomicU64::new(0));
    let g = gets.clone();
    let app = Router::new()
        .route(
            "/api/v1/events",
            post(|| async { Redirect::to("/moved").into_response() }),
        )
        .route(
            "/moved",
            get(move || {
                g.fetch_add(1, Ordering::Relaxed);
                async { (StatusCode::OK, "{}") }
            }),
        )
        .route(
            "/endless/api/v1/events",
            post(|| async {
                let chunks = futures_util::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 65536]))
                });
                (StatusCode::INTERNAL_SERVER_ERROR, axum::body::Body::from_stream(chunks))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for base in [format!("http://{addr}"), format!("http://{addr}/endless")] {
        let url = switchyard_tests::temp_sqlite_url();
        let billing = format!("[billing]\nurl = \"{base}\"\nbackoff_ms = 10\nmax_backoff_secs = 1");
        let gw = TestGateway::start_with_ledger(parse_config(&config(&url, &billing))).await;
        let admin = Admin::new(&gw);
        let (_, secret) = admin.key(json!({"name": "moved"})).await;
        let client = reqwest::Client::new();
        for i in 0..3 {
            assert_eq!(chat(&client, &gw, &secret, i).await, 200);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            let (_, v) = admin.call(reqwest::Method::GET, "/billing", None).await;
            let failed = v["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("HTTP 3") || e.contains("HTTP 500"));
            if (failed && v["pending"] == 3) || Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status["pending"], 3, "{base}: nothing delivered: {status}");
        assert_eq!(status["delivered_retained"], 0, "{status}");
        let err = status["last_error"].as_str().unwrap();
        assert!(err.len() < 1000, "the error text is bounded: {} bytes", err.len());
        gw.stop().await.unwrap();
    }
    assert_eq!(gets.load(Ordering::Relaxed), 0, "the redirect was not followed");
}

fn price_dir(prices: &str) -> std::path::PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-billing-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prices.toml"), prices).unwrap();
    dir
}

fn priced_config(db_url: &str, dir: &std::path::Path) -> String {
    format!(
        r#"
[auth]
required = true
master_key_env = "TEST_MASTER_KEY"
[database]
url = "{db_url}"
[ledger]
flush_interval_ms = 20
[pricing]
file = "{}"
[providers.m]
kind = "mock"
latency_ms = 1
[models.tabled]
[[models.tabled.deployments]]
provider = "m"
model = "tabled"
context_window = 100000
max_output_tokens = 100
capabilities = ["json"]
[models.tabled-cheap]
[[models.tabled-cheap.deployments]]
provider = "m"
model = "cheap"
context_window = 100000
max_output_tokens = 100
capabilities = ["json"]
[routes.careful]
cheap = "tabled-cheap"
strong = "tabled"
strong_share = 0
cascade = {{ checks = ["json"] }}
"#,
        dir.join("prices.toml").display()
    )
}

/// Events carry the price version in force; a corrected table re-prices history, rollups follow.
#[tokio::test]
async fn price_versions_are_recorded_and_history_can_be_repriced() {
    for (backend, url) in test_databases().await {
        // v2 takes effect far in the future, so today's requests are priced with v1.
        let original = r#"
            [[versions]]
            id = "v1"
            effective = "2020-01-01"
            prices."m/tabled" = { input = "100", output = "200" }
            prices."m/cheap" = { input = "10", output = "20" }
            [[versions]]
            id = "v2"
            effective = "2099-01-01"
            prices."m/tabled" = { input = "1", output = "2" }
            prices."m/cheap" = { input = "1", output = "2" }
        "#;
        let dir = price_dir(original);
        let start = |dir: std::path::PathBuf| {
            let url = url.clone();
            async move {
                let cfg = parse_config(&priced_config(&url, &dir));
                TestGateway::start_with_ledger(cfg).await
            }
        };
        let gw = start(dir.clone()).await;
        let admin = Admin::new(&gw);
        let (key_id, secret) = admin.key(json!({"name": "priced"})).await;
        let client = reqwest::Client::new();
        for i in 0..12 {
            let r = client
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&secret)
                .json(&json!({"model": "tabled", "messages": [{"role": "user", "content": format!("price me {i}")}], "stream": i % 3 == 0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await;
        }
        // A cascade whose cheap answers miss the schema's field: the discarded attempts are billed too.
        for i in 0..3 {
            let r = client
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&secret)
                .json(
                    &json!({"model": "careful", "messages": [{"role": "user", "content": format!("city {i}")}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema":
                        {"type": "object", "required": ["city"]}}}}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-switchyard-cascade"], "escalated:invalid_json");
            assert_eq!(r.status(), 200);
        }
        let (s, prices) = admin.call(reqwest::Method::GET, "/prices", None).await;
        assert_eq!(s, 200);
        assert_eq!(prices["versions"].as_array().unwrap().len(), 2, "{prices}");
        let tabled = prices["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deployment"] == "m/tabled")
            .unwrap();
        assert_eq!(tabled["prices"][0]["input_per_mtok"], "100", "{tabled}");
        gw.stop().await.unwrap();

        let store = Store::connect(&url, 2).await.unwrap();
        let rows = all_events(&store).await;
        assert_eq!(rows.len(), 15);
        // The answer at the strong model's price, plus any discarded cheap attempt at its own.
        let price = |r: &UsageEvent, input: i64, output: i64| {
            let t = |v: u64| v as i64;
            t(r.prompt_tokens) * input
                + t(r.completion_tokens) * output
                + (t(r.escalation_prompt_tokens) * input + t(r.escalation_completion_tokens) * output) / 10
        };
        assert_eq!(
            rows.iter()
                .filter(|r| r.cascade.as_deref() == Some("escalated"))
                .count(),
            3
        );
        for r in &rows {
            assert_eq!(r.price_version.as_deref(), Some("v1"), "{backend}");
            // 100 USD/Mtok = 100,000 nanodollars a token.
            assert_eq!(r.cost_nanos, price(r, 100_000, 200_000), "{backend}");
            if r.cascade.is_some() {
                assert_eq!(r.escalated_deployment.as_deref(), Some("m/cheap"), "{backend}");
                assert!(
                    r.escalation_cost_nanos > 0 && r.escalation_prompt_tokens > 0,
                    "{backend}"
                );
            }
        }

        // v1 was wrong: correct it and restart with the new table.
        let corrected = original
            .replace(r#"input = "100", output = "200""#, r#"input = "50", output = "400""#)
            .replace(r#"input = "10", output = "20""#, r#"input = "5", output = "40""#);
        std::fs::write(dir.join("prices.toml"), corrected).unwrap();
        let gw = start(dir.clone()).await;
        let admin = Admin::new(&gw);
        let (s, dry) = admin.post("/usage/reprice", json!({"dry_run": true})).await;
        assert_eq!(s, 200, "{dry}");
        assert_eq!(
            (dry["events"].as_u64(), dry["changed"].as_u64()),
            (Some(15), Some(15)),
            "{dry}"
        );
        let want: i64 = rows.iter().map(|r| price(r, 50_000, 400_000)).sum();
        assert_eq!(dry["cost_after_nanos"].as_i64(), Some(want), "{dry}");
        assert_eq!(
            store.usage_totals(&UsageFilter::default()).await.unwrap().cost_nanos,
            rows.iter().map(|r| r.cost_nanos).sum::<i64>(),
            "{backend}: a dry run changes nothing"
        );
        let (s, done) = admin
            .post("/usage/reprice", json!({"from": "2020-01-01", "to": "2098-01-01"}))
            .await;
        assert_eq!((s, done["changed"].as_u64()), (200, Some(15)), "{done}");
        let after = all_events(&store).await;
        for r in &after {
            assert_eq!(r.cost_nanos, price(r, 50_000, 400_000), "{backend}");
        }
        // Reports read the hourly rollups: they moved with the events.
        let (_, report) = admin
            .call(
                reqwest::Method::GET,
                &format!("/usage?key_id={key_id}&group_by=model"),
                None,
            )
            .await;
        assert_eq!(
            report["totals"]["cost_nanos"].as_i64(),
            Some(want),
            "{backend}: {report}"
        );
        // Running it again finds nothing to change.
        let (_, again) = admin.post("/usage/reprice", json!({})).await;
        assert_eq!(again["changed"].as_u64(), Some(0), "{again}");
        let (s, bad) = admin.post("/usage/reprice", json!({"from": "yesterday"})).await;
        assert_eq!((s, bad["error"]["param"].as_str()), (400, Some("from")), "{bad}");
        let (s, bad) = admin.post("/usage/reprice", json!({"dry": true})).await;
        assert_eq!(s, 400, "{bad}");
        gw.stop().await.unwrap();
        store.close().await;
    }
}

/// Crossing the soft threshold and hitting the hard limit each leave one stored alert.
#[tokio::test]
async fn budget_alerts_are_stored_once_per_period() {
    for (backend, url) in test_databases().await {
        let gw = TestGateway::start_with_ledger(parse_config(&config(&url, ""))).await;
        let admin = Admin::new(&gw);
        // Each request reserves at most ~0.2 USD (prompt bound x 1000/Mtok + 20 x 2000/Mtok).
        let (key_id, secret) = admin
            .key(json!({"name": "alerting", "limits": {"budget": {"limit_usd": "0.25", "period": "daily", "soft_limit_pct": 10}}}))
            .await;
        let client = reqwest::Client::new();
        let mut refused = 0;
        for i in 0..40 {
            if chat(&client, &gw, &secret, i).await == 429 {
                refused += 1;
            }
        }
        assert!(refused > 0, "{backend}: the budget ran out");
        let deadline = Instant::now() + Duration::from_secs(10);
        let alerts = loop {
            let (s, v) = admin.call(reqwest::Method::GET, "/alerts", None).await;
            assert_eq!(s, 200, "{v}");
            let list = v["data"].as_array().unwrap().clone();
            if list.len() >= 2 || Instant::now() > deadline {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let scope = format!("key:{key_id}");
        let kinds: Vec<&str> = alerts
            .iter()
            .filter(|a| a["scope"] == scope.as_str())
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.len(), 2, "{backend}: one soft and one hard alert: {alerts:?}");
        assert!(kinds.contains(&"soft") && kinds.contains(&"hard"), "{alerts:?}");
        let hard = alerts.iter().find(|a| a["kind"] == "hard").unwrap();
        assert_eq!(hard["limit_usd"], "0.250000000");
        let (s, bad) = admin.call(reqwest::Method::GET, "/alerts?limit=0", None).await;
        assert_eq!((s, bad["error"]["param"].as_str()), (400, Some("limit")));
        gw.stop().await.unwrap();
    }
}
