//! Two `switchyard` processes on one database share a budget: each leases slices of it from the
//! store and spends them in memory, and together they never overshoot. Runs on an SQLite file
//! and, when `SWITCHYARD_TEST_POSTGRES_URL` is set, on a fresh Postgres schema.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::store::{Store, UsageFilter};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
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
    addr: String,
}

impl Gateway {
    fn start(config: &std::path::Path) -> Gateway {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("SWITCHYARD_MASTER_KEY", MASTER)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            assert!(Instant::now() < deadline, "no listening line");
            let line = lines.next().expect("a log line").unwrap();
            if let Some(i) = line.find("http://") {
                break line[i + 7..].split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then waits for a clean exit (ledger drained, spend written, leases returned).
    fn stop(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "exit status {s}");
                return;
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
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

async fn databases() -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("switchyard-procs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![("sqlite", format!("sqlite://{}", dir.join("shared.db").display()))];
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
    for (backend, url) in databases().await {
        let dir = std::env::temp_dir().join(format!("switchyard-procs-{}-{backend}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("switchyard.toml");
        std::fs::write(&cfg, config(&url)).unwrap();
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
