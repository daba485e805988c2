//! The fault matrix, the faults no other test covers: the database down and back (events
//! buffered within their bound, admission closed before it, all written once the database
//! returns, `/readyz` saying so), a 429 storm, a TLS failure, an endless and a slow-drip
//! stream, a client gone before admission and while waiting for the first byte, and a config
//! file reloaded broken. The README's fault matrix names the test of every row.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard::records::usage::Outcome;
use switchyard::store::{Store, UsageFilter};
use switchyard_tests::cut::{through, Cuttable};
use switchyard_tests::{parse_config, Admin, MockUpstream, TestGateway, TEST_MASTER_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn chat(gw: &TestGateway, key: &str, model: &str) -> (u16, Value) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `/readyz` as an anonymous probe sees it, and with the master key.
async fn readyz(gw: &TestGateway) -> (u16, Value, Value) {
    let anon = client().get(gw.url("/readyz")).send().await.unwrap();
    let status = anon.status().as_u16();
    let anon: Value = anon.json().await.unwrap();
    let detail: Value = client()
        .get(gw.url("/readyz"))
        .bearer_auth(TEST_MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (status, anon, detail)
}

async fn events_in(store: &Store) -> usize {
    store
        .usage_page(&UsageFilter::default(), None, 10_000)
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

fn outage_config(db: &str, mock: &str) -> String {
    format!(
        r#"
[server]
max_in_flight = 4
[auth]
required = true
master_key_env = "TEST_MASTER_KEY"
key_cache_ttl_secs = 600
[database]
url = "{db}"
[ledger]
flush_interval_ms = 20
budget_flush_ms = 50
max_buffered_events = 40
[providers.oa]
kind = "openai"
base_url = "{mock}"
[models.chat]
[[models.chat.deployments]]
provider = "oa"
model = "mock"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
context_window = 100000
"#
    )
}

/// Takes the database away from the gateway and gives it back.
enum Outage {
    /// PostgreSQL behind a relay that is cut: every connection closed, new ones refused.
    Postgres(Cuttable),
    /// SQLite with another process's write lock held (a backup, a migration): writes time out.
    Sqlite(String, Option<sqlx::SqliteConnection>),
}

impl Outage {
    async fn begin(&mut self) {
        use sqlx::Connection;
        match self {
            Outage::Postgres(c) => c.cut(),
            Outage::Sqlite(url, held) => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
                sqlx::query("CREATE TABLE outage_lock (x INTEGER)")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                *held = Some(conn);
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Outage::Postgres(c) => c.restore(),
            Outage::Sqlite(_, held) => {
                let mut conn = held.take().unwrap();
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// The database goes away under load: requests keep being served while the events are
/// buffered, `/readyz` turns `degraded`, then, with the buffer at its bound less the room kept
/// for running requests, model requests are refused with a 503 and `/readyz` turns 503. When
/// the database returns every buffered event is written, none is dropped, and all is ready again.
#[tokio::test]
async fn the_database_down_and_back_loses_no_usage_event() {
    let mut backends = vec![("sqlite", switchyard_tests::temp_sqlite_url())];
    match switchyard_tests::fresh_postgres_schema().await {
        Some(url) => backends.push(("postgres", url)),
        None => eprintln!("SKIP postgres half: {} is not set", switchyard_tests::POSTGRES_ENV),
    }
    for (backend, real_url) in backends {
        let mock = MockUpstream::start().await;
        let (gateway_url, mut outage) = if backend == "postgres" {
            let (_, target) = through(&real_url, "127.0.0.1:1".parse().unwrap());
            let relay = Cuttable::start(target).await;
            let (url, _) = through(&real_url, relay.addr);
            (url, Outage::Postgres(relay))
        } else {
            (real_url.clone(), Outage::Sqlite(real_url.clone(), None))
        };
        let gw = TestGateway::start_with_ledger(parse_config(&outage_config(&gateway_url, &mock.base_url()))).await;
        let store = Store::connect(&real_url, 2).await.unwrap();
        let (_, key) = Admin::new(&gw)
            .key(json!({"name": "k", "limits": {"budget": {"limit_usd": "100.00", "period": "daily"}}}))
            .await;
        for _ in 0..5 {
            assert_eq!(chat(&gw, &key, "chat").await.0, 200);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while events_in(&store).await < 5 {
            assert!(Instant::now() < deadline, "{backend}: the first events are written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(readyz(&gw).await.0, 200);

        outage.begin().await;
        let mut served = 0;
        let mut refused = None;
        let mut saw_degraded = false;
        for i in 0..100 {
            let (status, v) = chat(&gw, &key, "chat").await;
            match status {
                200 => served += 1,
                503 => {
                    assert_eq!(v["error"]["code"], "service_unavailable", "{backend}: {v}");
                    assert!(
                        v["error"]["message"].as_str().unwrap().contains("cannot record usage"),
                        "{v}"
                    );
                    refused = Some(i);
                    break;
                }
                other => panic!("{backend}: request {i} during the outage got {other}: {v}"),
            }
            if i == 3 {
                // Once a write has failed, the readiness probe says so, and still admits.
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let (status, anon, detail) = readyz(&gw).await;
                    if anon["status"] == "degraded" {
                        assert_eq!(status, 200, "buffering is still ready for traffic");
                        assert_eq!(detail["ledger"]["state"], "buffering", "{detail}");
                        assert!(detail["ledger"]["failing_since_ms"].is_i64(), "{detail}");
                        saw_degraded = true;
                        break;
                    }
                    assert!(Instant::now() < deadline, "{backend}: never degraded: {detail}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert!(saw_degraded);
        assert!(
            refused.is_some(),
            "{backend}: admission closes before the buffer overflows"
        );
        // 40 buffered at most, less twice max_in_flight kept for requests already running (one
        // more if an event entered the buffer just after its answer was read).
        assert!(
            (32..=33).contains(&served),
            "{backend}: served until the bound: {served}"
        );
        let (status, anon, detail) = readyz(&gw).await;
        assert_eq!(
            (status, anon["status"].as_str()),
            (503, Some("ledger_full")),
            "{detail}"
        );
        assert_eq!(detail["ledger"]["state"], "refusing");
        assert_eq!(detail["ledger"]["buffered_events"], served);
        assert_eq!(detail["ledger"]["max_buffered_events"], 40);
        assert_eq!(events_in(&store).await, 5, "{backend}: nothing written while down");

        outage.end().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while events_in(&store).await < 5 + served {
            assert!(Instant::now() < deadline, "{backend}: the buffered events are written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, anon, detail) = readyz(&gw).await;
            if status == 200 && anon["status"] == "ready" {
                assert_eq!(detail["ledger"]["state"], "writing");
                assert_eq!(detail["ledger"]["buffered_events"], 0);
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: ready again: {detail}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(chat(&gw, &key, "chat").await.0, 200, "{backend}: served again");
        let deadline = Instant::now() + Duration::from_secs(10);
        while events_in(&store).await < 6 + served {
            assert!(Instant::now() < deadline, "{backend}: written again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let metrics = client()
            .get(gw.url("/metrics"))
            .bearer_auth(TEST_MASTER_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = metrics
            .lines()
            .find(|l| l.starts_with("switchyard_usage_events_dropped_total"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string());
        assert!(
            dropped.is_none() || dropped.as_deref() == Some("0"),
            "{backend}: {dropped:?}"
        );
        assert_eq!(events_in(&store).await, 6 + served, "{backend}: each event once");
        gw.stop().await.unwrap();
    }
}

fn one_model(provider: &str, upstream: &str, extra_server: &str) -> String {
    format!(
        r#"
[server]
{extra_server}
[server.retry]
attempts_per_deployment = 1
backoff_ms = 1
max_backoff_ms = 2
{provider}
[models.m]
[[models.m.deployments]]
provider = "p"
model = "{upstream}"
input_per_mtok = "1.00"
output_per_mtok = "2.00"
context_window = 100000
"#
    )
}

/// An upstream that does not speak TLS where the gateway expects it: a 502 that says TLS, and
/// one event.
#[tokio::test]
async fn a_tls_failure_is_a_502_that_says_so() {
    let mock = MockUpstream::start().await;
    let https = mock.base_url().replace("http://", "https://");
    let provider = format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{https}\"\nconnect_timeout_ms = 2000\n");
    let gw = TestGateway::start(&one_model(&provider, "mock", "")).await;
    let (status, v) = chat(&gw, "sk-anything", "m").await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("TLS"), "{v}");
    let ev = gw.wait_for_events(1, Duration::from_secs(3)).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, Outcome::UpstreamError);
    assert_eq!(ev[0].error_kind.as_deref(), Some("upstream_connect"));
}

/// Reads an SSE response to its end; the data lines and when each arrived.
async fn sse(gw: &TestGateway, model: &str) -> (u16, Vec<(Duration, String)>) {
    let started = Instant::now();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "go on"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let mut lines = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    while let Some(Ok(part)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&part));
        while let Some(i) = buf.find("\n\n") {
            let frame: String = buf.drain(..i + 2).collect();
            if let Some(data) = frame.trim().strip_prefix("data: ") {
                lines.push((started.elapsed(), data.to_string()));
            }
        }
    }
    (status, lines)
}

/// An upstream that streams forever is cut at the provider's `stream_max_secs`, or at
/// `server.max_response_bytes` when it is fast; the client gets an error event, and the event
/// bills what was streamed.
#[tokio::test]
async fn an_endless_stream_is_cut_at_its_bounds_and_billed() {
    let mock = MockUpstream::start().await;
    let base = mock.base_url();
    let slow = format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{base}\"\nstream_max_secs = 2\n");
    let gw = TestGateway::start(&one_model(&slow, "mock;endless;delay=50", "")).await;
    let (status, lines) = sse(&gw, "m").await;
    assert_eq!(status, 200);
    let (at, last) = lines.last().unwrap();
    assert!(last.contains("stream_max_secs"), "{last}");
    assert!(*at >= Duration::from_secs(2) && *at < Duration::from_secs(6), "{at:?}");
    assert!(lines.len() > 20, "chunks flowed until the cut: {}", lines.len());
    let ev = gw.wait_for_events(1, Duration::from_secs(3)).await;
    assert_eq!(ev[0].outcome, Outcome::UpstreamError);
    assert_eq!(ev[0].error_kind.as_deref(), Some("upstream_over_bound"));
    assert!(ev[0].completion_tokens > 20, "{:?}", ev[0]);
    assert!(ev[0].cost_nanos > 0);
    gw.stop().await.unwrap();

    let fast = format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{base}\"\n");
    let gw = TestGateway::start(&one_model(
        &fast,
        "mock;endless;pad=2000",
        "max_response_bytes = 200000",
    ))
    .await;
    let (status, lines) = sse(&gw, "m").await;
    assert_eq!(status, 200);
    let (_, last) = lines.last().unwrap();
    assert!(last.contains("max_response_bytes"), "{last}");
    assert!(
        (80..=110).contains(&lines.len()),
        "about 100 chunks of 2 KB: {}",
        lines.len()
    );
    let ev = gw.wait_for_events(1, Duration::from_secs(3)).await;
    assert_eq!(ev[0].outcome, Outcome::UpstreamError);
    assert!(ev[0].completion_tokens > 0);
}

/// A slow drip is relayed chunk by chunk as it comes, not held back; a drip slower than the
/// idle timeout ends in an error event, billed for what came.
#[tokio::test]
async fn a_slow_drip_is_relayed_as_it_comes_and_a_stalled_one_ends() {
    let mock = MockUpstream::start().await;
    let base = mock.base_url();
    let p = format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{base}\"\nstream_idle_timeout_ms = 1000\n");
    let gw = TestGateway::start(&one_model(&p, "mock;chunks=5;delay=300", "")).await;
    let (status, lines) = sse(&gw, "m").await;
    assert_eq!(status, 200);
    assert_eq!(lines.last().unwrap().1, "[DONE]");
    let content: Vec<Duration> = lines
        .iter()
        .filter(|(_, l)| l.contains("\"content\":\"") && !l.contains("\"content\":\"\""))
        .map(|(t, _)| *t)
        .collect();
    assert!(content.len() >= 4, "{lines:?}");
    for w in content.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(200),
            "each chunk when it came: {content:?}"
        );
    }
    gw.stop().await.unwrap();

    let gw = TestGateway::start(&one_model(&p, "mock;chunks=5;delay=1500", "")).await;
    let (status, lines) = sse(&gw, "m").await;
    assert_eq!(status, 200);
    let last = &lines.last().unwrap().1;
    assert!(last.contains("\"error\""), "{last}");
    let ev = gw.wait_for_events(1, Duration::from_secs(3)).await;
    assert_eq!(ev[0].outcome, Outcome::UpstreamError);
    assert_eq!(ev[0].error_kind.as_deref(), Some("upstream_timeout"));
}

/// A client gone before admission (its body never finished) costs nothing and holds nothing; one
/// gone while the upstream has not answered yet is one event, and the upstream call is dropped.
#[tokio::test]
async fn a_client_gone_before_admission_or_before_the_first_byte() {
    let mock = MockUpstream::start().await;
    let base = mock.base_url();
    let p = format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{base}\"\n");
    let gw = TestGateway::start(&one_model(&p, "mock;latency=3000", "max_in_flight = 1")).await;
    // Before admission: headers and half a body, then gone.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.state.count_for("mock;latency=3000"),
        0,
        "nothing was sent upstream"
    );
    assert!(gw.usage.events().is_empty(), "not accepted, not counted");

    // Waiting for the first byte: the only in-flight slot is taken, then given back.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.state.count_for("mock;latency=3000") == 0 {
        assert!(Instant::now() < deadline, "the upstream was called");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut nothing = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut nothing))
            .await
            .is_err(),
        "no byte yet"
    );
    drop(s);
    let ev = gw.wait_for_events(1, Duration::from_secs(3)).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].outcome, Outcome::ClientDisconnect);
    assert_eq!(ev[0].completion_tokens, 0, "nothing was generated for it");
    assert!(ev[0].prompt_tokens > 0, "the prompt was sent");
    // The slot is free again at once, long before the upstream would have answered.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the in-flight slot came back");
    assert_eq!(gw.usage.events().len(), 2);
}

/// A config file changed into one that does not parse, or removed, changes nothing: the running
/// table stays, `/readyz` tells operators the reload was refused and why, and a good file later
/// is taken.
#[tokio::test]
async fn a_broken_config_reload_changes_nothing_and_is_reported() {
    let mock = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    let text = format!(
        "[auth]\nrequired = false\nmaster_key_env = \"TEST_MASTER_KEY\"\n[database]\nurl = \"{}\"\n{}\n[routes.auto]\ncheap = \"m\"\nstrong = \"m\"\n",
        switchyard_tests::temp_sqlite_url(),
        one_model(
            &format!("[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\n", mock.base_url()),
            "mock",
            ""
        )
    );
    std::fs::write(&path, &text).unwrap();
    let env = |k: &str| (k == "TEST_MASTER_KEY").then(|| TEST_MASTER_KEY.to_string());
    let cfg = switchyard::config::Config::load(Some(&path), &env, std::iter::empty()).unwrap();
    let gw = TestGateway::start_config(cfg).await;
    assert_eq!(chat(&gw, "sk-x", "auto").await.0, 200);
    let reload = |want_applied: bool| {
        let gw = &gw;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (status, _, detail) = readyz(gw).await;
                assert_eq!(status, 200, "a refused reload keeps the gateway ready");
                if detail["config_reload"]["applied"] == want_applied {
                    return detail["config_reload"].clone();
                }
                assert!(Instant::now() < deadline, "no reload seen: {detail}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // mtime resolution can be coarse: each change is at least a second apart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, format!("{text}\n[routes.broken\ncheap = \"m\"\n")).unwrap();
    let r = reload(false).await;
    assert!(r["problems"].as_str().unwrap().contains("TOML"), "{r}");
    assert_eq!(chat(&gw, "sk-x", "auto").await.0, 200, "the running table stays");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, &text).unwrap();
    reload(true).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::remove_file(&path).unwrap();
    reload(false).await;
    assert_eq!(chat(&gw, "sk-x", "auto").await.0, 200, "a removed file changes nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A storm of 429s: every client is told to wait as the upstream said, with one event each; the
/// gateway adds no retry storm of its own (one attempt per request on a rate-limited
/// deployment), and the breaker stays closed, since a 429 is not a sick deployment.
#[tokio::test]
async fn a_429_storm_is_passed_on_without_amplification() {
    let mock = MockUpstream::start().await;
    let p = format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"{}\"\n[server.breaker]\nfailure_threshold = 3\ncooldown_secs = 30\n",
        mock.base_url()
    );
    let gw = TestGateway::start(&one_model(&p, "mock;error=429;retry_after=7", "public_ops = true")).await;
    let calls = (0..40).map(|_| chat(&gw, "sk-x", "m"));
    let answers = futures_util::future::join_all(calls).await;
    for (status, v) in &answers {
        assert_eq!(*status, 429, "{v}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(
        mock.state.count_for("mock;error=429;retry_after=7"),
        40,
        "one upstream call each"
    );
    let ev = gw.wait_for_events(40, Duration::from_secs(3)).await;
    assert_eq!(ev.len(), 40);
    assert!(ev
        .iter()
        .all(|e| e.status == 429 && e.error_kind.as_deref() == Some("upstream_rate_limited")));
    let (_, _, detail) = readyz(&gw).await;
    let breakers: Vec<&Value> = detail["deployments"].as_object().unwrap().values().collect();
    assert!(breakers.iter().all(|d| d["breaker"] == "closed"), "{detail}");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "7", "the upstream's wait, passed on");
}
