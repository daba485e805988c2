//! Keys, budgets and limits end to end: the admin API creates keys and teams, `/v1` enforces
//! them, and budgets hold under concurrency, with one gateway and with two on one database.
//! Every test runs on SQLite and, when `SWITCHYARD_TEST_POSTGRES_URL` is set, on Postgres.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::records::usage::Outcome;
use switchyard::store::{Store, UsageFilter};
mod common;
use switchyard_tests::{parse_config, test_databases, Admin, TestGateway, TEST_MASTER_KEY};

/// An in-process mock model with large prices, so costs are easy to reason about:
/// 1,000 USD per million input tokens = 1,000,000 nanodollars a token.
fn config(db_url: &str, extra: &str) -> String {
    format!(
        r#"
[auth]
required = true
master_key_env = "TEST_MASTER_KEY"
key_cache_ttl_secs = 30
[database]
url = "{db_url}"
[ledger]
budget_flush_ms = 50
flush_interval_ms = 20
{extra}
[providers.m]
kind = "mock"
latency_ms = 5
chunk_delay_ms = 0

[models.cheap]
[[models.cheap.deployments]]
provider = "m"
model = "cheap"
input_per_mtok = "1000"
output_per_mtok = "2000"
context_window = 100000
max_output_tokens = 100

[providers.slow]
kind = "mock"
latency_ms = 0
chunk_delay_ms = 50

[models.slow]
[[models.slow.deployments]]
provider = "slow"
model = "slow"
input_per_mtok = "1000"
output_per_mtok = "2000"
context_window = 100000
max_output_tokens = 100

[providers.down]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
timeout_ms = 2000

[models.down]
[[models.down.deployments]]
provider = "down"
model = "down"
input_per_mtok = "1000"
output_per_mtok = "2000"
context_window = 100000
max_output_tokens = 100

[models.free]
[[models.free.deployments]]
provider = "m"
model = "free"
input_per_mtok = "0"
output_per_mtok = "0"
context_window = 100000

[models.other]
[[models.other.deployments]]
provider = "m"
model = "other"
input_per_mtok = "1"
output_per_mtok = "1"
context_window = 100000
"#
    )
}

async fn gateway(db_url: &str) -> TestGateway {
    TestGateway::start_config(parse_config(&config(db_url, ""))).await
}

async fn chat(client: &reqwest::Client, gw: &TestGateway, key: Option<&str>, model: &str) -> reqwest::Response {
    let mut rb = client.post(gw.url("/v1/chat/completions")).json(&json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
    }));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    rb.send().await.unwrap()
}

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (s, v["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn keys_authenticate_rotate_revoke_and_restrict_models() {
    for (backend, url) in test_databases().await {
        let gw = gateway(&url).await;
        let admin = Admin::new(&gw);
        let c = reqwest::Client::new();

        // No key, a foreign key, an unknown sk-sy key: 401 invalid_api_key.
        assert_eq!(
            error_code(chat(&c, &gw, None, "cheap").await).await,
            (401, "invalid_api_key".into())
        );
        assert_eq!(
            error_code(chat(&c, &gw, Some("sk-openai-something"), "cheap").await).await,
            (401, "invalid_api_key".into())
        );
        let unknown = format!("sk-sy-{}", "a".repeat(40));
        assert_eq!(error_code(chat(&c, &gw, Some(&unknown), "cheap").await).await.0, 401);

        let (id, secret) = admin
            .key(json!({"name": "svc", "allowed_models": ["cheap", "free"], "tags": ["prod"]}))
            .await;
        assert!(secret.starts_with("sk-sy-"), "{backend}");
        let r = chat(&c, &gw, Some(&secret), "cheap").await;
        assert_eq!(r.status(), 200, "{backend}");
        // A configured model outside the allow-list: 403; an unknown model: 404.
        assert_eq!(
            error_code(chat(&c, &gw, Some(&secret), "other").await).await,
            (403, "model_not_allowed".into())
        );
        assert_eq!(error_code(chat(&c, &gw, Some(&secret), "nope").await).await.0, 404);

        // The secret is never shown again; listing shows only the prefix.
        let (_, listed) = admin.call(reqwest::Method::GET, "/keys", None).await;
        let text = listed.to_string();
        assert!(!text.contains(&secret), "{backend}: the secret leaked into a listing");
        assert!(text.contains(&secret[..12]));

        // Rotation: same id, new secret; the old one stops working at once.
        let (s, rotated) = admin.post(&format!("/keys/{id}/rotate"), json!({})).await;
        assert_eq!(s, 200, "{rotated}");
        assert_eq!(rotated["id"], id.as_str());
        let new_secret = rotated["key"].as_str().unwrap().to_string();
        assert_eq!(error_code(chat(&c, &gw, Some(&secret), "cheap").await).await.0, 401);
        assert_eq!(chat(&c, &gw, Some(&new_secret), "cheap").await.status(), 200);

        // Disable, enable, revoke.
        let (s, _) = admin
            .call(
                reqwest::Method::PATCH,
                &format!("/keys/{id}"),
                Some(json!({"status": "disabled"})),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(error_code(chat(&c, &gw, Some(&new_secret), "cheap").await).await.0, 401);
        admin
            .call(
                reqwest::Method::PATCH,
                &format!("/keys/{id}"),
                Some(json!({"status": "active"})),
            )
            .await;
        assert_eq!(chat(&c, &gw, Some(&new_secret), "cheap").await.status(), 200);
        let (s, _) = admin.post(&format!("/keys/{id}/revoke"), json!({})).await;
        assert_eq!(s, 200);
        let r = chat(&c, &gw, Some(&new_secret), "cheap").await;
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("revoked"), "{v}");

        // Usage events carry the key and its tags.
        let events = gw.wait_for_events(4, Duration::from_secs(5)).await;
        assert!(events.iter().filter(|e| e.key_id.as_deref() == Some(&id)).count() >= 3);
        assert!(events
            .iter()
            .filter(|e| e.key_id.is_some())
            .all(|e| e.tags.0 == vec!["prod".to_string()]));
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = gateway(&url).await;
    let admin = Admin::new(&gw);
    let (s, v) = admin
        .post("/keys", json!({"name": "old", "expires_at": "2001-01-01"}))
        .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("expires_at")));
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 300;
    let (_, secret) = admin.key(json!({"name": "brief", "expires_at": soon})).await;
    let c = reqwest::Client::new();
    assert_eq!(chat(&c, &gw, Some(&secret), "cheap").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = chat(&c, &gw, Some(&secret), "cheap").await;
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limits_answer_429_with_openai_headers() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = gateway(&url).await;
    let admin = Admin::new(&gw);
    let (_, secret) = admin.key(json!({"name": "rl", "limits": {"rpm": 2}})).await;
    let c = reqwest::Client::new();
    let r = chat(&c, &gw, Some(&secret), "cheap").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
    assert!(r.headers().contains_key("x-ratelimit-reset-requests"));
    assert_eq!(chat(&c, &gw, Some(&secret), "cheap").await.status(), 200);
    let r = chat(&c, &gw, Some(&secret), "cheap").await;
    assert_eq!(r.status(), 429);
    let ra: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=31).contains(&ra), "retry-after {ra}");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");

    // Concurrency: one slot; a slow request holds it.
    let (_, one) = admin.key(json!({"name": "c1", "limits": {"max_concurrent": 1}})).await;
    let slow = {
        let (c, url, one) = (c.clone(), gw.url("/v1/chat/completions"), one.clone());
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth(one)
                .json(&json!({"model": "slow", "stream": true, "max_tokens": 100,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
        })
    };
    let held = slow.await.unwrap(); // headers arrived: the stream holds the slot until read
    let r = chat(&c, &gw, Some(&one), "cheap").await;
    assert_eq!(error_code(r).await, (429, "rate_limit_exceeded".into()));
    let _ = held.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(chat(&c, &gw, Some(&one), "cheap").await.status(), 200);
    gw.stop().await.unwrap();
}

/// Sends `n` requests at once with `key`; returns (status counts, responses' costs).
async fn burst(gw: &TestGateway, key: &str, n: usize) -> Vec<u16> {
    let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (c, url, key) = (c.clone(), gw.url("/v1/chat/completions"), key.to_string());
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth(key)
                .json(&json!({"model": "cheap", "max_tokens": 100,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

const LIMIT_NANOS: i64 = 1_000_000_000; // $1.00

#[tokio::test]
async fn concurrent_requests_never_overshoot_a_budget() {
    for (backend, url) in test_databases().await {
        let gw = gateway(&url).await;
        let admin = Admin::new(&gw);
        let (key_id, secret) = admin
            .key(json!({"name": "small", "limits": {"budget": {"limit_usd": "1.00", "period": "daily"}}}))
            .await;
        let statuses = burst(&gw, &secret, 500).await;
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let quota = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(ok + quota, 500, "{backend}: unexpected statuses {statuses:?}");
        assert!(ok >= 5 && quota > 0, "{backend}: {ok} ok, {quota} refused");

        let events = gw.wait_for_events(500, Duration::from_secs(10)).await;
        assert_eq!(events.len(), 500, "{backend}: one usage event per request");
        let spent: i64 = events
            .iter()
            .filter(|e| e.key_id.as_deref() == Some(&key_id))
            .map(|e| e.cost_nanos)
            .sum();
        assert!(
            spent <= LIMIT_NANOS,
            "{backend}: spent {spent} nanos over a {LIMIT_NANOS} budget"
        );
        // The budget is used, not just guarded: at least 75 % of it went to answers.
        assert!(
            spent >= LIMIT_NANOS * 3 / 4,
            "{backend}: only {spent} of {LIMIT_NANOS} spent"
        );
        let refused = events.iter().filter(|e| e.outcome == Outcome::Rejected).count();
        assert_eq!(refused, quota, "{backend}");
        // Free models still answer when the budget is gone.
        let c = reqwest::Client::new();
        assert_eq!(chat(&c, &gw, Some(&secret), "free").await.status(), 200);
        gw.stop().await.unwrap();

        // The settled spend reached the store.
        let store = Store::connect(&url, 2).await.unwrap();
        let day = switchyard::records::limits::Period::Daily.start_of(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        );
        assert_eq!(
            store.spent(&format!("key:{key_id}"), day).await.unwrap(),
            spent,
            "{backend}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn two_gateways_on_one_database_share_a_budget() {
    const LIMIT: i64 = 3_000_000_000; // $3.00; a request reserves $0.208 and costs about $0.055
    for (backend, url) in test_databases().await {
        let a = gateway(&url).await;
        let b = gateway(&url).await;
        let admin = Admin::new(&a);
        let (key_id, secret) = admin
            .key(json!({"name": "shared", "limits": {"budget": {"limit_usd": "3.00", "period": "total"}}}))
            .await;
        // Each gateway leases what it needs; an idle gateway hands its lease back.
        let first = burst(&a, &secret, 10).await;
        assert!(first.iter().all(|s| *s == 200), "{backend}: {first:?}");
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let second = burst(&b, &secret, 10).await;
        assert!(
            second.iter().all(|s| *s == 200),
            "{backend}: b gets the budget a returned: {second:?}"
        );
        // Then both at once, far past the budget.
        let (ra, rb) = tokio::join!(burst(&a, &secret, 150), burst(&b, &secret, 150));
        let refused = ra.iter().chain(rb.iter()).filter(|s| **s == 429).count();
        assert!(refused > 0, "{backend}");
        let ea = a.wait_for_events(160, Duration::from_secs(10)).await;
        let eb = b.wait_for_events(160, Duration::from_secs(10)).await;
        assert_eq!((ea.len(), eb.len()), (160, 160), "{backend}");
        let spent: i64 = ea.iter().chain(eb.iter()).map(|e| e.cost_nanos).sum();
        assert!(spent <= LIMIT, "{backend}: two gateways spent {spent} of {LIMIT}");
        assert!(spent >= LIMIT * 7 / 10, "{backend}: only {spent} of {LIMIT} used");
        a.stop().await.unwrap();
        b.stop().await.unwrap();
        let store = Store::connect(&url, 2).await.unwrap();
        assert_eq!(
            store.spent(&format!("key:{key_id}"), 0).await.unwrap(),
            spent,
            "{backend}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn team_budgets_cover_all_their_keys() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = gateway(&url).await;
    let admin = Admin::new(&gw);
    let (s, team) = admin
        .post(
            "/teams",
            json!({"name": "research", "cost_center": "cc-42",
                   "limits": {"budget": {"limit_usd": 0.5, "period": "monthly", "soft_limit_pct": 50}}}),
        )
        .await;
    assert_eq!(s, 201, "{team}");
    assert_eq!(team["limits"]["budget"]["limit_usd"], "0.500000000");
    let team_id = team["id"].as_str().unwrap();
    let (_, k1) = admin.key(json!({"name": "a", "team_id": team_id})).await;
    let (_, k2) = admin.key(json!({"name": "b", "team_id": team_id})).await;
    let c = reqwest::Client::new();
    let mut warned = false;
    let mut refused = 0;
    for i in 0..30 {
        let key = if i % 2 == 0 { &k1 } else { &k2 };
        let r = chat(&c, &gw, Some(key), "cheap").await;
        warned |= r.headers().contains_key("x-switchyard-budget-warning");
        if r.status() == 429 {
            refused += 1;
        }
    }
    assert!(warned, "the soft threshold was announced");
    assert!(refused > 10, "the team budget stopped both keys ({refused})");
    let events = gw.wait_for_events(30, Duration::from_secs(5)).await;
    let spent: i64 = events.iter().map(|e| e.cost_nanos).sum();
    assert!(spent <= 500_000_000, "{spent}");
    assert!(events
        .iter()
        .all(|e| e.team_id.as_deref() == Some(team_id) && e.cost_center.as_deref() == Some("cc-42")));
    // A team with keys cannot be deleted.
    let (s, _) = admin
        .call(reqwest::Method::DELETE, &format!("/teams/{team_id}"), None)
        .await;
    assert_eq!(s, 409);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn bad_admin_input_is_refused_and_changes_nothing() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = gateway(&url).await;
    let admin = Admin::new(&gw);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": 5}), "name"),
        (json!({"name": ""}), "name"),
        (
            json!({"name": "x", "limits": {"budget": {"limit_usd": "-5", "period": "daily"}}}),
            "limits.budget.limit_usd",
        ),
        (
            json!({"name": "x", "limits": {"budget": {"limit_usd": "5", "period": "fortnightly"}}}),
            "limits.budget.period",
        ),
        (json!({"name": "x", "limits": {"rpm": -1}}), "limits.rpm"),
        (json!({"name": "x", "limits": {"rpm": 0}}), "limits.rpm"),
        (
            json!({"name": "x", "limits": {"max_concurrent": 0}}),
            "limits.max_concurrent",
        ),
        (
            json!({"name": "x", "limits": {"budget": {"limit_usd": "5", "period": "daily", "soft_limit_pct": 101}}}),
            "limits.budget.soft_limit_pct",
        ),
        (json!({"name": "x", "team_id": "team_nope"}), "team_id"),
        (json!({"name": "x", "allowed_models": ["gpt-99"]}), "allowed_models[0]"),
        (json!({"name": "x", "tags": ["has space"]}), "tags[0]"),
        (json!({"name": "x", "colour": "blue"}), ""),
    ];
    for (body, param) in cases {
        let (s, v) = admin.post("/keys", body.clone()).await;
        assert_eq!(s, 400, "{body} → {v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{body} → {v}");
        }
    }
    // Not JSON, wrong content type, too large, no master key, unknown ids.
    let c = reqwest::Client::new();
    let r = c
        .post(gw.url("/admin/v1/keys"))
        .bearer_auth(TEST_MASTER_KEY)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(gw.url("/admin/v1/keys"))
        .bearer_auth(TEST_MASTER_KEY)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = json!({"name": "x".repeat(100_000)});
    assert_eq!(admin.post("/keys", big).await.0, 413);
    let r = c.get(gw.url("/admin/v1/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(gw.url("/admin/v1/keys"))
        .bearer_auth("sk-sy-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(admin.call(reqwest::Method::GET, "/keys/key_nope", None).await.0, 404);
    assert_eq!(
        admin
            .call(reqwest::Method::PATCH, "/teams/team_nope", Some(json!({"name": "y"})))
            .await
            .0,
        404
    );
    assert_eq!(admin.post("/keys/key_nope/rotate", json!({})).await.0, 404);
    let (s, v) = admin.call(reqwest::Method::GET, "/usage?from=yesterday", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("from")));
    let (s, _) = admin.call(reqwest::Method::GET, "/usage?group_by=colour", None).await;
    assert_eq!(s, 400);
    // Nothing was created.
    let (_, keys) = admin.call(reqwest::Method::GET, "/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 0, "{keys}");
    // A duplicate team name is a conflict.
    assert_eq!(admin.post("/teams", json!({"name": "t"})).await.0, 201);
    assert_eq!(admin.post("/teams", json!({"name": "t"})).await.0, 409);
    gw.stop().await.unwrap();
}

/// The real ledger writer: events reach the database, survive a restart, and reports and
/// exports agree with the ledger to the nanodollar.
#[tokio::test]
async fn ledger_survives_restart_and_reports_agree() {
    for (backend, url) in test_databases().await {
        let start = || async {
            let cfg = parse_config(&config(&url, "batch_size = 16"));
            TestGateway::start_with_ledger(cfg).await
        };
        let gw = start().await;
        let admin = Admin::new(&gw);
        let (key_id, secret) = admin.key(json!({"name": "ledger", "tags": ["batch"]})).await;
        let statuses = burst(&gw, &secret, 120).await;
        assert!(statuses.iter().all(|s| *s == 200), "{backend}: {statuses:?}");
        gw.stop().await.unwrap();

        // Restart on the same database: everything accepted before shutdown is there.
        let gw = start().await;
        let admin = Admin::new(&gw);
        let (s, usage) = admin
            .call(
                reqwest::Method::GET,
                &format!("/usage?key_id={key_id}&group_by=model"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{usage}");
        assert_eq!(usage["totals"]["requests"], 120, "{backend}: {usage}");
        let total_nanos = usage["totals"]["cost_nanos"].as_i64().unwrap();
        assert!(total_nanos > 0);

        let store = Store::connect(&url, 2).await.unwrap();
        let raw = store
            .usage_totals(&UsageFilter {
                key_id: Some(key_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(raw.cost_nanos, total_nanos, "{backend}: rollups equal raw events");
        assert_eq!(raw.requests, 120);

        // Tag filter (raw path) and the streamed exports agree too.
        let (_, by_tag) = admin
            .call(reqwest::Method::GET, "/usage?tag=batch&group_by=day", None)
            .await;
        assert_eq!(by_tag["totals"]["cost_nanos"].as_i64(), Some(total_nanos), "{by_tag}");
        let csv = common::admin_text(&gw, &format!("/admin/v1/usage/export?format=csv&key_id={key_id}")).await;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "cost_nanos").unwrap();
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 120, "{backend}");
        let csv_sum: i64 = rows
            .iter()
            .map(|l| l.split(',').nth(col).unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(csv_sum, total_nanos, "{backend}: CSV export totals equal the ledger");
        let (_, json_export) = admin
            .call(
                reqwest::Method::GET,
                &format!("/usage/export?format=json&key_id={key_id}"),
                None,
            )
            .await;
        assert_eq!(json_export["data"].as_array().unwrap().len(), 120);
        assert_eq!(json_export["totals"]["cost_nanos"].as_i64(), Some(total_nanos));
        store.close().await;
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn reservations_are_released_on_every_outcome() {
    for (backend, url) in test_databases().await {
        let gw = gateway(&url).await;
        let admin = Admin::new(&gw);
        // $0.25 holds one worst case ($0.208) at a time.
        let (_, secret) = admin
            .key(json!({"name": "tight", "limits": {"budget": {"limit_usd": "0.25", "period": "daily"}}}))
            .await;
        let c = reqwest::Client::new();
        // Upstream failures cost nothing and give the reservation back.
        for _ in 0..3 {
            assert_eq!(chat(&c, &gw, Some(&secret), "down").await.status(), 502, "{backend}");
        }
        // A client that leaves mid-stream: charged an estimate, the rest given back.
        let mut resp = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "slow", "stream": true, "max_tokens": 100,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{backend}");
        let _ = resp.chunk().await.unwrap();
        drop(resp);
        let events = gw.wait_for_events(4, Duration::from_secs(5)).await;
        assert_eq!(events[3].outcome, Outcome::ClientDisconnect, "{backend}");
        // A success settles to its real cost ($0.055 here)…
        let r = chat(&c, &gw, Some(&secret), "cheap").await;
        assert_eq!(r.status(), 200, "{backend}: every earlier reservation was released");
        let cost: f64 = r.headers()["x-switchyard-cost-usd"].to_str().unwrap().parse().unwrap();
        assert!(cost > 0.01 && cost < 0.1, "{cost}");
        // …and what is left no longer covers a worst case.
        assert_eq!(
            error_code(chat(&c, &gw, Some(&secret), "cheap").await).await,
            (429, "insufficient_quota".into()),
            "{backend}"
        );
        let events = gw.wait_for_events(6, Duration::from_secs(5)).await;
        let outcomes: Vec<Outcome> = events.iter().map(|e| e.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::UpstreamError,
                Outcome::UpstreamError,
                Outcome::UpstreamError,
                Outcome::ClientDisconnect,
                Outcome::Success,
                Outcome::Rejected
            ],
            "{backend}"
        );
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_openapi_document_covers_every_admin_route() {
    let gw = gateway(&switchyard_tests::temp_sqlite_url()).await;
    let admin = Admin::new(&gw);
    let (s, doc) = admin.call(reqwest::Method::GET, "/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, methods) in [
        ("/admin/v1/teams", &["post", "get"][..]),
        ("/admin/v1/teams/{id}", &["get", "patch", "delete"][..]),
        ("/admin/v1/keys", &["post", "get"][..]),
        ("/admin/v1/keys/{id}", &["get", "patch"][..]),
        ("/admin/v1/keys/{id}/revoke", &["post"][..]),
        ("/admin/v1/keys/{id}/rotate", &["post"][..]),
        ("/admin/v1/usage", &["get"][..]),
        ("/admin/v1/usage/export", &["get"][..]),
        ("/admin/v1/usage/reprice", &["post"][..]),
        ("/admin/v1/prices", &["get"][..]),
        ("/admin/v1/alerts", &["get"][..]),
        ("/admin/v1/billing", &["get"][..]),
        ("/admin/v1/billing/requeue", &["post"][..]),
        ("/admin/v1/routes", &["get", "put"][..]),
        ("/admin/v1/routes/stats", &["get"][..]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path} is not documented");
        }
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_budget_given_another_period_admits_at_once() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = gateway(&url).await;
    let admin = Admin::new(&gw);
    let client = reqwest::Client::new();
    let (id, key) = admin
        .key(json!({"name": "b", "limits": {"budget": {"limit_usd": "5", "period": "daily"}}}))
        .await;
    assert_eq!(chat(&client, &gw, Some(&key), "cheap").await.status(), 200);
    // A total budget's period began long before today's: the key's budget starts over there.
    let (s, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"limits": {"budget": {"limit_usd": "12.50", "period": "total"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Once the idle lease of the old period has been handed back, the next request needs a
    // lease of the new period.
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    for _ in 0..2 {
        let r = chat(&client, &gw, Some(&key), "cheap").await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    gw.stop().await.unwrap();
}

/// An address that keeps presenting unknown keys is slowed down before more of them reach the
/// database; a key it already used (cached) still works, and so does every other address.
#[tokio::test]
async fn unknown_keys_from_one_address_are_throttled_before_the_database() {
    let url = switchyard_tests::temp_sqlite_url();
    let gw = TestGateway::start(&config(&url, "")).await;
    let admin = Admin::new(&gw);
    let (_, secret) = admin.key(json!({"name": "good"})).await;
    let c = reqwest::Client::new();
    let ask = |key: String| {
        c.post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(ask(secret.clone()).await.unwrap().status(), 200);
    for i in 0..switchyard::access::throttle::API_KEYS.free_failures {
        let r = ask(format!("sk-sy-{i:040}")).await.unwrap();
        assert_eq!(r.status(), 401, "failure {i} is free");
    }
    let r = ask(format!("sk-sy-{:040}", 999)).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("unknown API keys"),
        "{v}"
    );
    // The key this address used before is answered from the cache.
    assert_eq!(ask(secret).await.unwrap().status(), 200);
    // Another address is not slowed down.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(format!("sk-sy-{:040}", 1000))
        .json(&json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another address");
    gw.stop().await.unwrap();
}
