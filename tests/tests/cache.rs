//! The response cache end to end: real HTTP against the mock upstream, the ledger on SQLite and
//! Postgres, keys for scopes, and the cache's headers, replay, directives and accounting.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::records::usage::UsageEvent;
use switchyard::store::{Store, UsageFilter};
use switchyard_tests::{parse_config, standard_config, test_databases, Admin, MockUpstream, TestGateway};

mod common;
use common::{chat, content_of, header, stream, user};

/// A prompt no other test sends (entries are per gateway, but tests share nothing anyway).
fn unique(text: &str) -> String {
    format!("{text} {}", switchyard::access::keys::new_id("q"))
}

fn text_of(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_repeat_is_answered_from_the_cache_at_no_cost() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    let body = json!({"model": "cached", "messages": user(&unique("what is a cache?"))});
    let (s, h, first) = chat(&gw, body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    let upstream_calls = mock.state.count_for("mock");
    let (s, h, second) = chat(&gw, body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-switchyard-cache"), "hit");
    assert_eq!(mock.state.count_for("mock"), upstream_calls, "no upstream call");
    assert_eq!(second, first, "the same answer, byte for byte");
    assert!(h.get("x-switchyard-deployment").is_none());
    assert_eq!(header(&h, "x-switchyard-cost-usd"), "0.000000000");
    assert!(header(&h, "x-switchyard-cache-entry").starts_with("ce_"));
    assert!(header(&h, "age").parse::<u64>().is_ok());
    // Key order and whitespace do not make another request.
    let reordered = format!(
        r#"{{ "messages" : {}, "model" : "cached" }}"#,
        serde_json::to_string(&body["messages"]).unwrap()
    );
    let r = common::client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "x-switchyard-cache"), "hit");

    let events = gw.wait_for_events(3, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 3, "one event per request, hits included");
    let (miss, hit) = (&events[0], &events[1]);
    assert_eq!(miss.cache.as_deref(), Some("miss"));
    assert!(miss.cost_nanos > 0);
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    assert_eq!(
        (hit.cost_nanos, hit.prompt_tokens, hit.deployment.as_deref()),
        (0, 0, None)
    );
    assert_eq!(
        hit.cache_saved_nanos, miss.cost_nanos,
        "a hit saves what the answer cost"
    );
    assert_eq!(hit.cache_entry.as_deref(), Some(header(&h, "x-switchyard-cache-entry")));
    // Models the cache is off for say nothing about it.
    let (_, h, _) = chat(&gw, json!({"model": "chat", "messages": user("not cached")})).await;
    assert!(h.get("x-switchyard-cache").is_none());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn answers_replay_across_shapes_and_only_whole_streams_are_kept() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    // A JSON answer, replayed as a stream with the usage chunk.
    let q = unique("replay me as a stream");
    let (_, _, json_answer) = chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
    let (s, h, chunks, done) = stream(
        &gw,
        json!({"model": "cached", "messages": user(&q), "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!((s, done), (200, true));
    assert_eq!(header(&h, "x-switchyard-cache"), "hit");
    assert_eq!(header(&h, "content-type"), "text/event-stream");
    assert!(chunks.len() > 3, "chunk by chunk, not one: {}", chunks.len());
    assert_eq!(content_of(&chunks), text_of(&json_answer));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json_answer["usage"]);
    assert_eq!(last["switchyard"]["cache"], "hit");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");

    // A stream, kept once whole, answers JSON and streams.
    let q = unique("stream first");
    let (_, h, streamed, _) = stream(&gw, json!({"model": "cached", "messages": user(&q), "stream": true})).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    gw.wait_for_events(4, Duration::from_secs(5)).await;
    let (_, h, answer) = chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "hit");
    assert_eq!(text_of(&answer), content_of(&streamed));
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    // A cut stream is never kept.
    let q = unique("cut me");
    for _ in 0..2 {
        let (_, h, _, done) = stream(
            &gw,
            json!({"model": "cached-cut", "messages": user(&q), "stream": true}),
        )
        .await;
        assert!(!done);
        assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn tool_call_answers_replay_where_a_route_allows_them() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let q = unique("weather in Paris?");
    for model in ["cached", "cached-tools"] {
        let body = json!({"model": model, "messages": user(&q), "tools": tools});
        let (_, _, first) = chat(&gw, body.clone()).await;
        assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let (_, h, chunks, done) = stream(&gw, streamed).await;
        assert!(done);
        if model == "cached" {
            assert_eq!(header(&h, "x-switchyard-cache"), "miss", "not reused by default");
            continue;
        }
        assert_eq!(header(&h, "x-switchyard-cache"), "hit");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        let names: Vec<&str> = calls.iter().filter_map(|c| c["function"]["name"].as_str()).collect();
        assert_eq!(names, ["get_weather"], "the name once");
        let args: String = calls
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            serde_json::from_str::<Value>(
                first["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
            )
            .unwrap()
        );
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    }
    // The tool choice is part of the key: forbidding tools is another request.
    let (_, h, _) = chat(
        &gw,
        json!({"model": "cached-tools", "messages": user(&q), "tools": tools, "tool_choice": "none"}),
    )
    .await;
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn cache_control_and_bad_headers() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;
    let c = common::client();
    let send = |q: String, cc: Option<&'static str>| {
        let mut rb = c
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "cached", "messages": user(&q)}));
        if let Some(v) = cc {
            rb = rb.header("cache-control", v);
        }
        async move {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            header(r.headers(), "x-switchyard-cache").to_string()
        }
    };
    let q = unique("directives");
    assert_eq!(send(q.clone(), Some("no-store")).await, "miss");
    assert_eq!(send(q.clone(), None).await, "miss", "no-store kept nothing");
    assert_eq!(send(q.clone(), None).await, "hit");
    assert_eq!(send(q.clone(), Some("no-cache")).await, "bypass");
    assert_eq!(send(q.clone(), Some("NO-STORE, no-cache")).await, "bypass");
    assert_eq!(
        send(q.clone(), Some("max-age=0, private")).await,
        "hit",
        "other directives change nothing"
    );
    // A header that is not text is ignored, not an error.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header(
            "cache-control",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .json(&json!({"model": "cached", "messages": user(&q)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), header(r.headers(), "x-switchyard-cache")),
        (200, "hit")
    );
    // Bad bodies are refused before the cache, as before.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "cached", "messages": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn keys_and_teams_see_only_their_own_entries() {
    let mock = MockUpstream::start().await;
    let text = format!(
        "[auth]\nrequired = true\nmaster_key_env = \"TEST_MASTER_KEY\"\n{}\n[cache.models.cached-team]\nenabled = true\nscope = \"team\"\n[models.cached-team]\n[[models.cached-team.deployments]]\nprovider = \"oa\"\nmodel = \"mock\"\ninput_per_mtok = 1\noutput_per_mtok = 1\ncontext_window = 100000\n",
        standard_config(&mock.base_url())
    );
    let gw = TestGateway::start(&text).await;
    let admin = Admin::new(&gw);
    let (_, team) = admin.post("/teams", json!({"name": "t"})).await;
    let team_id = team["id"].as_str().unwrap();
    let (_, a) = admin.key(json!({"name": "a", "team_id": team_id})).await;
    let (_, b) = admin.key(json!({"name": "b", "team_id": team_id})).await;
    let (_, other) = admin.key(json!({"name": "other"})).await;
    let c = common::client();
    let ask = |key: String, model: &'static str, q: String| {
        let rb = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": user(&q)}));
        async move {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            header(r.headers(), "x-switchyard-cache").to_string()
        }
    };
    let q = unique("tenant question");
    assert_eq!(ask(a.clone(), "cached", q.clone()).await, "miss");
    assert_eq!(ask(a.clone(), "cached", q.clone()).await, "hit");
    assert_eq!(ask(b.clone(), "cached", q.clone()).await, "miss", "per key by default");
    assert_eq!(ask(other.clone(), "cached", q.clone()).await, "miss");
    // Scoped by team: the team's keys share, a key of no team does not.
    assert_eq!(ask(a.clone(), "cached-team", q.clone()).await, "miss");
    assert_eq!(ask(b.clone(), "cached-team", q.clone()).await, "hit");
    assert_eq!(ask(other.clone(), "cached-team", q.clone()).await, "miss");
    let (_, stats) = admin.call(reqwest::Method::GET, "/cache/stats", None).await;
    let scopes: Vec<&str> = stats["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["scope"].as_str())
        .collect();
    assert!(
        scopes.iter().any(|s| s.starts_with("team:")) && scopes.iter().any(|s| s.starts_with("key:")),
        "{stats}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn hits_and_savings_reach_the_ledger_and_the_export() {
    let mock = MockUpstream::start().await;
    for (backend, url) in test_databases().await {
        let text = format!(
            "[database]\nurl = \"{url}\"\n[ledger]\nflush_interval_ms = 20\n[auth]\nrequired = false\nmaster_key_env = \"TEST_MASTER_KEY\"\n{}",
            standard_config(&mock.base_url())
        );
        let gw = TestGateway::start_with_ledger(parse_config(&text)).await;
        let q = unique("ledger me");
        for _ in 0..3 {
            let (s, _, _) = chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
            assert_eq!(s, 200);
        }
        let store = Store::connect(&url, 2).await.unwrap();
        let mut events: Vec<UsageEvent> = Vec::new();
        for _ in 0..200 {
            events = store
                .usage_page(&UsageFilter::default(), None, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.model == "cached")
                .collect();
            if events.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        events.sort_by_key(|e| e.ts_ms);
        let hits: Vec<&UsageEvent> = events.iter().filter(|e| e.cache.as_deref() == Some("hit")).collect();
        assert_eq!(hits.len(), 2, "{backend}: {events:?}");
        let miss = events.iter().find(|e| e.cache.as_deref() == Some("miss")).unwrap();
        assert!(hits
            .iter()
            .all(|h| h.cache_saved_nanos == miss.cost_nanos && h.cost_nanos == 0));
        let csv = common::admin_text(&gw, "/admin/v1/usage/export?format=csv&model=cached").await;
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let col = |n: &str| {
            head.iter()
                .position(|h| h == n)
                .unwrap_or_else(|| panic!("{backend}: no {n} column"))
        };
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        let saved: i64 = rows
            .iter()
            .filter(|row| &row[col("cache")] == "hit")
            .map(|row| row[col("cache_saved_nanos")].parse::<i64>().unwrap())
            .sum();
        assert_eq!(saved, 2 * miss.cost_nanos, "{backend}: the export carries the savings");
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn persisted_entries_survive_a_restart_in_both_tiers() {
    let mock = MockUpstream::start().await;
    for (backend, url) in test_databases().await {
        let text = format!(
            "[database]\nurl = \"{url}\"\n[auth]\nrequired = false\nmaster_key_env = \"TEST_MASTER_KEY\"\n{}",
            standard_config(&mock.base_url()).replace(
                "[cache]\nenabled = false\n",
                "[cache]\nenabled = false\npersist = true\n"
            )
        );
        let cfg = parse_config(&text);
        let (exact_q, semantic_q) = (unique("kept across a restart"), unique("How do I export my invoices"));
        let exact = json!({"model": "cached", "messages": user(&exact_q)});
        let semantic = |t: &str| json!({"model": "cached-semantic", "messages": user(t)});
        let gw = TestGateway::start_config(cfg.clone()).await;
        let (_, _, first) = chat(&gw, exact.clone()).await;
        chat(&gw, semantic(&semantic_q)).await;
        gw.stop().await.unwrap();

        let gw = TestGateway::start_config(cfg.clone()).await;
        let (_, h, again) = chat(&gw, exact.clone()).await;
        assert_eq!(
            header(&h, "x-switchyard-cache"),
            "hit",
            "{backend}: warm after the restart"
        );
        assert_eq!(again, first);
        let (_, h, _) = chat(&gw, semantic(&format!("{}??", semantic_q.to_lowercase()))).await;
        assert_eq!(
            header(&h, "x-switchyard-cache"),
            "semantic-hit",
            "{backend}: the question's vector came back"
        );
        // A purge reaches the database too.
        let (s, v) = Admin::new(&gw).post("/cache/purge", json!({"route": "cached"})).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["purged"].as_u64() >= Some(1), "{v}");
        gw.stop().await.unwrap();

        let gw = TestGateway::start_config(cfg).await;
        let (_, h, _) = chat(&gw, exact).await;
        assert_eq!(header(&h, "x-switchyard-cache"), "miss", "{backend}: purged for good");
        let (_, h, _) = chat(&gw, semantic(&semantic_q)).await;
        assert_eq!(header(&h, "x-switchyard-cache"), "hit", "{backend}: the rest stays");
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_gateway_starts_cold() {
    let mock = MockUpstream::start().await;
    let text = standard_config(&mock.base_url());
    let cfg = parse_config(&text);
    let q = unique("before the restart");
    let gw = TestGateway::start_config(cfg.clone()).await;
    chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
    let (_, h, _) = chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "hit");
    gw.stop().await.unwrap();
    // Unless persisted, entries live in memory: the same database, a new process, no entry.
    let gw = TestGateway::start_config(cfg).await;
    let (_, h, _) = chat(&gw, json!({"model": "cached", "messages": user(&q)})).await;
    assert_eq!(header(&h, "x-switchyard-cache"), "miss");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn stored_entries_expire_replace_and_purge_on_both_backends() {
    use switchyard::records::cache::StoredEntry;
    use switchyard::store::EntryFilter;
    let row = |key: &str, scope: &str, created_ms: i64, expires_ms: i64| StoredEntry {
        key: key.into(),
        id: format!("ce_{key}"),
        scope: scope.into(),
        target: "t".into(),
        model: "m".into(),
        body: "{}".into(),
        cost_nanos: 5,
        prompt_tokens: 1,
        completion_tokens: 2,
        tool_calls: false,
        created_ms,
        expires_ms,
        group: None,
        question: None,
        embedder: None,
        vector: None,
    };
    for (backend, url) in test_databases().await {
        let store = Store::connect(&url, 2).await.unwrap();
        let now = 1_000_000;
        store
            .put_cache_entries(
                &[
                    row("a", "key:1", 10, now + 60_000),
                    row("b", "key:2", 20, now + 60_000),
                    row("gone", "key:1", 0, now - 1),
                ],
                now,
            )
            .await
            .unwrap();
        let keys = |rows: Vec<StoredEntry>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.live_cache_entries(now, 100).await.unwrap()),
            ["a", "b"],
            "{backend}: expired rows are not live"
        );
        // The same key again replaces its row.
        let mut newer = row("a", "key:1", 30, now + 60_000);
        newer.body = "{\"newer\":true}".into();
        store.put_cache_entries(&[newer], now).await.unwrap();
        let live = store.live_cache_entries(now, 100).await.unwrap();
        assert_eq!(live.len(), 2, "{backend}");
        assert!(
            live.iter().any(|r| r.key == "a" && r.body.contains("newer")),
            "{backend}"
        );
        let f = EntryFilter {
            scope: Some("key:2"),
            ..EntryFilter::default()
        };
        assert_eq!(store.delete_cache_entries(&f).await.unwrap(), 1, "{backend}");
        let f = EntryFilter {
            created_before_ms: Some(30),
            ..EntryFilter::default()
        };
        assert_eq!(
            store.delete_cache_entries(&f).await.unwrap(),
            0,
            "{backend}: a is newer"
        );
        assert_eq!(
            store.delete_cache_entries(&EntryFilter::default()).await.unwrap(),
            1,
            "{backend}"
        );
        assert!(store.live_cache_entries(now, 100).await.unwrap().is_empty());
    }
}
