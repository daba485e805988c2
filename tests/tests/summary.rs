//! The usage summary the dashboard's overview reads: the hourly rollups and the raw events give
//! the same answer, and both agree with what the events say when counted here by hand. Then
//! through the gateway: a routed request's baseline and a cache hit's saving reach
//! `GET /admin/v1/usage/summary`. On SQLite and, when `SWITCHYARD_TEST_POSTGRES_URL` is set,
//! Postgres.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchyard::records::usage::{Outcome, Tags, UsageEvent, UsageSource};
use switchyard::store::{GroupBy, Store, UsageFilter};
use switchyard_tests::{parse_config, test_databases, Admin, TestGateway};

const HOUR: i64 = 3_600_000;
/// An hour boundary in 2026 (not a midnight).
const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR;
/// The hours the generated events span.
const SPAN_HOURS: i64 = 80;

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn events(n: usize) -> Vec<UsageEvent> {
    let mut r = Lcg(7);
    (0..n)
        .map(|i| {
            // Three days and more: reports read whole days from the daily rollups, the hours at
            // either end from the hourly ones.
            let ts = T0 + (r.next(SPAN_HOURS as u64) as i64) * HOUR + r.next(HOUR as u64) as i64;
            let mut e = UsageEvent::new(format!("evt_sum_{i}"), format!("req_{i}"), ts, "chat", "m".into());
            e.key_id = Some(format!("key_{}", r.next(3)));
            e.cost_center = Some("cc".into());
            // Every event has the tag `t`, some twice (it counts once), some another one too.
            e.tags = Tags(match r.next(4) {
                0 => vec!["t".into(), "t".into()],
                1 => vec!["u".into(), "t".into()],
                _ => vec!["t".into()],
            });
            e.prompt_tokens = 10 + r.next(100);
            e.completion_tokens = r.next(50);
            e.cost_nanos = r.next(10_000) as i64;
            e.baseline_cost_nanos = e.cost_nanos * 3;
            e.latency_ms = match r.next(4) {
                0 => r.next(16),
                1 => 100 + r.next(900),
                _ => 1_000 + r.next(60_000),
            };
            match r.next(10) {
                0 => {
                    e.outcome = Outcome::UpstreamError;
                    e.status = 502;
                    e.error_kind = Some(Cow::Borrowed("upstream_unavailable"));
                }
                1 => {
                    e.outcome = Outcome::Rejected;
                    e.status = 429;
                    e.error_kind = Some(Cow::Borrowed("rate_limit_exceeded"));
                }
                2 => {
                    e.outcome = Outcome::ClientDisconnect;
                    e.status = 499;
                }
                _ => e.status = 200,
            }
            if r.next(2) == 0 && e.outcome == Outcome::Success {
                e.stream = true;
                e.ttft_ms = Some(r.next(e.latency_ms.max(1)));
            }
            e.usage_source = if r.next(4) == 0 {
                UsageSource::Estimated
            } else {
                UsageSource::Reported
            };
            if r.next(5) == 0 {
                e.cache = Some(Cow::Borrowed("hit"));
                e.cache_entry = Some("ent".into());
                e.cache_saved_nanos = 500;
            }
            if r.next(3) > 0 {
                e.route = Some("auto".into());
                e.tier = Some(Cow::Borrowed(["cheap", "strong"][r.next(2) as usize]));
                e.intent = Some(["chat", "code", "math"][r.next(3) as usize].into());
            }
            e
        })
        .collect()
}

/// The true q-quantile (the smallest value with at least q of the samples at or below it).
fn quantile(mut v: Vec<u64>, q: f64) -> u64 {
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn close(got: Option<u64>, want: u64) -> bool {
    got.is_some_and(|g| (g as f64 - want as f64).abs() <= (want as f64 / 16.0).max(0.5))
}

#[tokio::test]
async fn rollups_and_raw_events_give_the_same_summary_and_it_is_right() {
    let all = events(3_000);
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 2).await.unwrap();
        for batch in all.chunks(500) {
            store.write_usage(batch, false).await.unwrap();
        }
        assert_ne!(T0 % (24 * HOUR), 0, "the range starts and ends inside a day");
        let hours = UsageFilter {
            from_ms: Some(T0),
            to_ms: Some(T0 + SPAN_HOURS * HOUR),
            ..UsageFilter::default()
        };
        // Grouped by day and by key over whole hours (rollups, daily in the middle) and over
        // raw events: the same rows. Also for a range that starts and ends mid-day, and for
        // one inside a single day.
        for (lo, hi) in [(0, SPAN_HOURS), (7, SPAN_HOURS - 3), (30, 34), (0, 1)] {
            let part = UsageFilter {
                from_ms: Some(T0 + lo * HOUR),
                to_ms: Some(T0 + hi * HOUR),
                ..UsageFilter::default()
            };
            // Both a tag and a cost center (each matches every event): raw events only. One of
            // them: the daily rollups per tag or cost center, raw events at either end.
            let by_raw = UsageFilter {
                cost_center: Some("cc".into()),
                tag: Some("t".into()),
                ..part.clone()
            };
            let by_tag = UsageFilter {
                tag: Some("t".into()),
                ..part.clone()
            };
            let by_cc = UsageFilter {
                cost_center: Some("cc".into()),
                ..part.clone()
            };
            // A start that is not even on an hour: only the facets and raw events can answer.
            let ragged = |f: &UsageFilter| UsageFilter {
                from_ms: f.from_ms.map(|v| v + 1_234),
                ..f.clone()
            };
            for g in [GroupBy::Day, GroupBy::Key, GroupBy::Hour] {
                let a = store.usage_grouped(&part, g).await.unwrap();
                let b = store.usage_grouped(&by_raw, g).await.unwrap();
                assert_eq!(a, b, "{backend}: {g:?} over hours {lo}..{hi}");
                assert_eq!(
                    a,
                    store.usage_grouped(&by_tag, g).await.unwrap(),
                    "{backend}: by tag, {g:?} {lo}..{hi}"
                );
                assert_eq!(
                    a,
                    store.usage_grouped(&by_cc, g).await.unwrap(),
                    "{backend}: by cost center, {g:?} {lo}..{hi}"
                );
                assert_eq!(
                    store.usage_grouped(&ragged(&by_raw), g).await.unwrap(),
                    store.usage_grouped(&ragged(&by_tag), g).await.unwrap(),
                    "{backend}: a ragged start, {g:?} {lo}..{hi}"
                );
            }
            let u = store
                .usage_totals(&UsageFilter {
                    tag: Some("u".into()),
                    ..part.clone()
                })
                .await
                .unwrap();
            let u_grouped: i64 = store
                .usage_grouped(
                    &UsageFilter {
                        tag: Some("u".into()),
                        ..part.clone()
                    },
                    GroupBy::Model,
                )
                .await
                .unwrap()
                .iter()
                .map(|(_, t)| t.requests)
                .sum();
            assert_eq!(u.requests, u_grouped, "{backend}: the other tag, {lo}..{hi}");
            // Per route arm: whole days from their rollups, the rest from raw events (a tag
            // filter reads raw events only); and the count by hand.
            for f in [&part, &ragged(&part)] {
                let stats = store.route_stats(f).await.unwrap();
                assert_eq!(
                    stats,
                    store
                        .route_stats(&UsageFilter {
                            tag: Some("t".into()),
                            ..f.clone()
                        })
                        .await
                        .unwrap(),
                    "{backend}: route arms over hours {lo}..{hi}"
                );
                let routed = all
                    .iter()
                    .filter(|e| e.route.is_some() && e.ts_ms >= f.from_ms.unwrap() && e.ts_ms < f.to_ms.unwrap())
                    .count() as i64;
                assert_eq!(
                    stats.iter().map(|r| r.requests).sum::<i64>(),
                    routed,
                    "{backend}: {lo}..{hi}"
                );
            }
            let in_range = all
                .iter()
                .filter(|e| e.ts_ms >= T0 + lo * HOUR && e.ts_ms < T0 + hi * HOUR)
                .count() as i64;
            let s = store.usage_summary(&part).await.unwrap();
            assert_eq!(s.totals.requests, in_range, "{backend}: hours {lo}..{hi}");
            assert_eq!(
                s,
                store.usage_summary(&by_raw).await.unwrap(),
                "{backend}: hours {lo}..{hi}"
            );
            let mix = store.mix_series(&part, GroupBy::Day).await.unwrap();
            let tiers: i64 = mix.iter().filter(|r| r.1 == "tier").map(|r| r.3).sum();
            let routed = all
                .iter()
                .filter(|e| e.tier.is_some() && e.ts_ms >= T0 + lo * HOUR && e.ts_ms < T0 + hi * HOUR)
                .count() as i64;
            assert_eq!(tiers, routed, "{backend}: the mix over hours {lo}..{hi}");
        }
        // By whole hours alone: from the rollups. The cost-center filter matches every event
        // but has no rollup column: from the raw events.
        let rolled = store.usage_summary(&hours).await.unwrap();
        let raw = store
            .usage_summary(&UsageFilter {
                cost_center: Some("cc".into()),
                ..hours.clone()
            })
            .await
            .unwrap();
        assert_eq!(rolled, raw, "{backend}: rollups and raw events agree");

        let t = &rolled.totals;
        assert_eq!(t.requests, all.len() as i64, "{backend}");
        assert_eq!(t.cost_nanos, all.iter().map(|e| e.cost_nanos).sum::<i64>());
        assert_eq!(t.baseline_nanos, all.iter().map(|e| e.baseline_cost_nanos).sum::<i64>());
        assert_eq!(t.cache_hits, all.iter().filter(|e| e.cache.is_some()).count() as i64);
        assert_eq!(t.saved_nanos, all.iter().map(|e| e.cache_saved_nanos).sum::<i64>());
        let estimated: i64 = all
            .iter()
            .filter(|e| e.usage_source == UsageSource::Estimated)
            .map(|e| e.cost_nanos)
            .sum();
        assert_eq!(t.estimated_cost_nanos, estimated, "{backend}");

        let ok: Vec<u64> = all
            .iter()
            .filter(|e| e.outcome == Outcome::Success)
            .map(|e| e.latency_ms)
            .collect();
        let ttft: Vec<u64> = all.iter().filter_map(|e| e.ttft_ms).collect();
        assert_eq!(rolled.latency.samples, ok.len() as i64, "{backend}: answers only");
        for (q, got) in [
            (0.5, rolled.latency.p50_ms),
            (0.95, rolled.latency.p95_ms),
            (0.99, rolled.latency.p99_ms),
        ] {
            let want = quantile(ok.clone(), q);
            assert!(close(got, want), "{backend}: latency q{q}: {got:?} vs {want}");
        }
        assert_eq!(rolled.ttft.samples, ttft.len() as i64);
        let want = quantile(ttft.clone(), 0.95);
        assert!(
            close(rolled.ttft.p95_ms, want),
            "{backend}: ttft p95 {:?} vs {want}",
            rolled.ttft.p95_ms
        );

        let mut errors: BTreeMap<String, i64> = BTreeMap::new();
        let mut tiers: BTreeMap<String, i64> = BTreeMap::new();
        for e in &all {
            if e.outcome != Outcome::Success {
                let kind = e.error_kind.as_deref().unwrap_or(e.outcome.as_str());
                *errors.entry(kind.to_string()).or_default() += 1;
            }
            if let Some(t) = e.tier.as_deref() {
                *tiers.entry(t.to_string()).or_default() += 1;
            }
        }
        let as_map = |v: &[(String, i64)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
        assert_eq!(as_map(&rolled.errors), errors, "{backend}");
        assert!(
            errors.contains_key("client_disconnect"),
            "an error without a kind is named by its outcome"
        );
        assert_eq!(as_map(&rolled.tiers), tiers, "{backend}");
        assert_eq!(
            rolled.intents.iter().map(|x| x.1).sum::<i64>(),
            tiers.values().sum::<i64>()
        );
        assert!(
            rolled.errors.windows(2).all(|w| w[0].1 >= w[1].1),
            "most first: {:?}",
            rolled.errors
        );

        // One hour, and one key: each path still agrees with a count by hand.
        let hour = UsageFilter {
            from_ms: Some(T0 + HOUR),
            to_ms: Some(T0 + 2 * HOUR),
            ..UsageFilter::default()
        };
        let s = store.usage_summary(&hour).await.unwrap();
        let in_hour = all
            .iter()
            .filter(|e| e.ts_ms >= T0 + HOUR && e.ts_ms < T0 + 2 * HOUR)
            .count();
        assert_eq!(s.totals.requests, in_hour as i64, "{backend}");
        let key = UsageFilter {
            key_id: Some("key_1".into()),
            ..UsageFilter::default()
        };
        let s = store.usage_summary(&key).await.unwrap();
        let of_key: Vec<&UsageEvent> = all.iter().filter(|e| e.key_id.as_deref() == Some("key_1")).collect();
        assert_eq!(s.totals.requests, of_key.len() as i64, "{backend}");
        assert_eq!(
            s.latency.samples,
            of_key.iter().filter(|e| e.outcome == Outcome::Success).count() as i64
        );
        store.close().await;
    }
}

const CONFIG: &str = r#"
[auth]
required = false
master_key_env = "TEST_MASTER_KEY"
[providers.m]
kind = "mock"

[models.small]
[[models.small.deployments]]
provider = "m"
model = "small"
input_per_mtok = "0.1"
output_per_mtok = "0.4"
context_window = 100000

[models.large]
[[models.large.deployments]]
provider = "m"
model = "large"
input_per_mtok = "5"
output_per_mtok = "15"
context_window = 100000

[routes.auto]
cheap = "small"
strong = "large"
strong_share = 0.3

[cache]
enabled = true
"#;

#[tokio::test]
async fn the_summary_shows_what_routing_and_the_cache_saved() {
    for (backend, url) in test_databases().await {
        let mut config = parse_config(CONFIG);
        config.database.url = url.clone();
        let gw = TestGateway::start_with_ledger(config).await;
        let admin = Admin::new(&gw);
        let c = reqwest::Client::new();
        let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi! how are you?"}]});
        for _ in 0..2 {
            let r = c.post(gw.url("/v1/chat/completions")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let store = Store::connect(&url, 2).await.unwrap();
        let stored = loop {
            let page = store.usage_page(&UsageFilter::default(), None, 10).await.unwrap();
            if page.len() == 2 {
                break page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let answered = stored
            .iter()
            .find(|e| !e.is_cache_hit())
            .expect("one answered by the model");
        let hit = stored
            .iter()
            .find(|e| e.is_cache_hit())
            .expect("one answered by the cache");
        assert_eq!(
            (answered.tier.as_deref(), answered.cache_entry.is_none()),
            (Some("cheap"), true)
        );
        assert_eq!(hit.cache_saved_nanos, answered.cost_nanos);

        let (s, sum) = admin
            .call(reqwest::Method::GET, "/usage/summary?from=2020-01-01", None)
            .await;
        assert_eq!(s, 200, "{backend}: {sum}");
        let t = &sum["totals"];
        let n = |v: &Value| v.as_i64().unwrap();
        assert_eq!(n(&t["requests"]), 2);
        assert_eq!(n(&t["cache_hits"]), 1);
        assert_eq!(n(&t["cost_nanos"]), answered.cost_nanos);
        assert_eq!(n(&t["cache_saved_nanos"]), answered.cost_nanos);
        assert_eq!(
            n(&t["baseline_nanos"]),
            answered.baseline_cost_nanos + hit.cost_nanos + hit.cache_saved_nanos
        );
        assert!(
            n(&t["baseline_nanos"]) > 10 * n(&t["cost_nanos"]),
            "{backend}: the strong model costs far more: {t}"
        );
        assert_eq!(sum["tiers"], json!([{"label": "cheap", "requests": 2}]), "{backend}");
        assert_eq!(sum["errors"], json!([]));
        assert_eq!(n(&sum["latency"]["samples"]), 2);
        assert!(sum["latency"]["p50_ms"].is_u64() && sum["latency"]["p95_ms"].is_u64());
        assert!(sum["time_to_first_token"]["p50_ms"].is_null(), "no stream: {sum}");

        // The routing page's views: the mix over time, the decision log, a decision explained,
        // and the deployments' record.
        let (s, mix) = admin
            .call(reqwest::Method::GET, "/routes/mix?from=2020-01-01", None)
            .await;
        assert_eq!(s, 200, "{mix}");
        let cheap: i64 = mix["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["label"] == "cheap")
            .map(|r| r["requests"].as_i64().unwrap())
            .sum();
        assert_eq!((cheap, mix["group_by"].as_str()), (2, Some("day")), "{backend}: {mix}");
        assert!(mix["tiers"][0]["group"].as_str().unwrap().ends_with("T00:00:00.000Z"));
        assert_eq!(
            mix["intents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["requests"].as_i64().unwrap())
                .sum::<i64>(),
            2
        );
        for (q, param) in [
            ("key_id=k", "key_id"),
            ("group_by=week", "group_by"),
            ("from=soon", "from"),
        ] {
            let (s, e) = admin
                .call(reqwest::Method::GET, &format!("/routes/mix?{q}"), None)
                .await;
            assert_eq!((s, e["error"]["param"].as_str()), (400, Some(param)), "{q}: {e}");
        }
        let (_, log) = admin.call(reqwest::Method::GET, "/requests?routed=true", None).await;
        assert_eq!(log["data"].as_array().unwrap().len(), 2);
        assert_eq!(log["data"][0]["tier"], "cheap");
        assert!(log["data"][0]["route_reason"].as_str().unwrap().contains("threshold"));
        let (s, d) = admin.post("/routes/explain?prefer=cost", body.clone()).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(
            (d["object"].as_str(), d["tier"].as_str(), d["model"].as_str()),
            (Some("route.decision"), Some("cheap"), Some("small"))
        );
        assert_eq!(d["prefer"], "cost");
        let (s, e) = admin
            .post(
                "/routes/explain",
                json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("model")), "{e}");
        let (s, e) = admin.post("/routes/explain?prefer=fast", body.clone()).await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("prefer")), "{e}");
        let (_, log) = admin.call(reqwest::Method::GET, "/requests?limit=1000", None).await;
        assert_eq!(
            log["data"].as_array().unwrap().len(),
            2,
            "{backend}: explaining records no event"
        );
        let (s, deps) = admin.call(reqwest::Method::GET, "/deployments", None).await;
        assert_eq!(s, 200, "{deps}");
        let small = deps["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["model"] == "small")
            .unwrap()
            .clone();
        assert_eq!(
            (small["requests"].as_i64(), small["failed"].as_i64()),
            (Some(1), Some(0)),
            "{small}"
        );
        assert_eq!(
            (small["breaker"].as_str(), small["inflight"].as_u64()),
            (Some("closed"), Some(0))
        );
        assert_eq!(small["latency"]["samples"], 1);
        let large = deps["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["model"] == "large")
            .unwrap()
            .clone();
        assert_eq!(large["requests"], 0, "nothing went to the strong model");

        // Bad input is refused with the parameter named.
        let (s, e) = admin
            .call(reqwest::Method::GET, "/usage/summary?from=yesterday", None)
            .await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some("from")));
        let (s, e) = admin
            .call(reqwest::Method::GET, "/usage/summary?colour=red", None)
            .await;
        assert_eq!(s, 400, "{e}");
        let r = c.get(gw.url("/admin/v1/usage/summary")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{backend}: the summary needs the master key");
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_request_log_filters_pages_and_finds_a_request_by_its_id() {
    let mock = switchyard_tests::MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = false\nmaster_key_env = \"TEST_MASTER_KEY\"\n{}",
        switchyard_tests::standard_config(&mock.base_url())
    );
    let gw = TestGateway::start_with_ledger(parse_config(&toml)).await;
    let admin = Admin::new(&gw);
    let c = reqwest::Client::new();
    let send = |model: &'static str, id: String| {
        c.post(gw.url("/v1/chat/completions"))
            .header("x-request-id", id)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    // Apart by a few milliseconds: the log orders by arrival time, to the millisecond.
    for i in 0..5 {
        assert_eq!(send("chat", format!("log-ok-{i}")).await.unwrap().status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    assert!(send("broken", "log-broken".into())
        .await
        .unwrap()
        .status()
        .is_server_error());
    let store_wait = || async {
        for _ in 0..200 {
            let (_, v) = admin.call(reqwest::Method::GET, "/requests?limit=1000", None).await;
            if v["data"].as_array().is_some_and(|d| d.len() == 6) {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("six requests in the log");
    };
    let all = store_wait().await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["log-broken", "log-ok-4", "log-ok-3", "log-ok-2", "log-ok-1", "log-ok-0"],
        "newest first"
    );
    let first = &all["data"][1];
    for field in [
        "event_id",
        "timestamp",
        "model",
        "deployment",
        "latency_ms",
        "cost_usd",
        "outcome",
        "usage_source",
    ] {
        assert!(!first[field].is_null(), "{field}: {first}");
    }
    assert!(all["next"].is_null(), "one page holds them all");

    // Pages of two, each continuing where the last stopped.
    let mut seen = Vec::new();
    let mut path = "/requests?limit=2".to_string();
    loop {
        let (s, v) = admin.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_string()),
        );
        match v["next"].as_str() {
            Some(n) => path = format!("/requests?limit=2&before={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // Filters: by request id, outcome, failures, model.
    let (_, v) = admin
        .call(reqwest::Method::GET, "/requests?request_id=log-ok-3", None)
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let event_id = v["data"][0]["event_id"].as_str().unwrap().to_string();
    let (_, v) = admin.call(reqwest::Method::GET, "/requests?outcome=failed", None).await;
    assert_eq!(v["data"][0]["request_id"], "log-broken");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert!(v["data"][0]["error_kind"].is_string(), "{v}");
    let (_, v) = admin
        .call(reqwest::Method::GET, "/requests?outcome=success&model=chat", None)
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    // One by its event id; an unknown one is a 404.
    let (s, v) = admin
        .call(reqwest::Method::GET, &format!("/requests/{event_id}"), None)
        .await;
    assert_eq!((s, v["request_id"].as_str()), (200, Some("log-ok-3")));
    let (s, v) = admin.call(reqwest::Method::GET, "/requests/evt_nope", None).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (404, Some("invalid_request_error")),
        "{v}"
    );
    // Bad input names the parameter.
    for (q, param) in [
        ("outcome=sideways", "outcome"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("before=yesterday", "before"),
        ("from=soon", "from"),
    ] {
        let (s, v) = admin.call(reqwest::Method::GET, &format!("/requests?{q}"), None).await;
        assert_eq!((s, v["error"]["param"].as_str()), (400, Some(param)), "{q}: {v}");
    }
    let (s, _) = admin.call(reqwest::Method::GET, "/requests?colour=red", None).await;
    assert_eq!(s, 400);
    let r = c.get(gw.url("/admin/v1/requests")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the log needs the master key");
    gw.stop().await.unwrap();
}
