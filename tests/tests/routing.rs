//! Routes end to end: a virtual model picks the cheap or the strong model per request, says why
//! in headers, records the route in the usage event, and explains itself at `POST /v1/route`.

use serde_json::{json, Value};
use switchyard_tests::{parse_config, Admin, TestGateway};

mod routing_setup;

use routing_setup::*;

#[tokio::test]
async fn a_route_picks_a_tier_explains_it_and_records_it() {
    let gw = TestGateway::start(CONFIG).await;
    let easy = json!({"model": "auto", "messages": [{"role": "user", "content": "hi! how are you?"}]});
    let (s, headers, body) = chat(&gw, easy.clone(), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h(&headers, "x-switchyard-route"), "auto");
    assert_eq!(h(&headers, "x-switchyard-tier"), "cheap");
    assert_eq!(h(&headers, "x-switchyard-model"), "small");
    assert!(h(&headers, "x-switchyard-reason").contains("threshold"), "{headers:?}");

    // The hard prompt with a caller who prefers quality goes to the strong tier.
    let hard = json!({"model": "auto", "messages": [{"role": "user", "content": HARD}]});
    let (s, headers, _) = chat(&gw, hard.clone(), Some("quality")).await;
    assert_eq!(s, 200);
    assert_eq!(
        (h(&headers, "x-switchyard-tier"), h(&headers, "x-switchyard-model")),
        ("strong", "large"),
        "{headers:?}"
    );
    // ... and to the cheap one when the caller prefers cost enough (share 0 would be all cheap).
    let (_, headers, _) = chat(&gw, hard.clone(), Some("cost")).await;
    assert!(
        h(&headers, "x-switchyard-reason").contains("caller prefers cost"),
        "{headers:?}"
    );

    // Tools: the cheap model cannot serve them, so the strong one does.
    let tools = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    let (s, headers, _) = chat(&gw, tools, None).await;
    assert_eq!((s, h(&headers, "x-switchyard-model")), (200, "large"), "{headers:?}");
    assert!(
        h(&headers, "x-switchyard-reason").contains("cannot serve"),
        "{headers:?}"
    );

    // A specialist for code.
    let code = json!({"model": "dev", "messages": [{"role": "user", "content":
        "Write a Python function that parses this CSV and returns a dict:\n```python\ndef parse(path):\n    pass\n```"}]});
    let (s, headers, _) = chat(&gw, code, None).await;
    assert_eq!(
        (s, h(&headers, "x-switchyard-tier"), h(&headers, "x-switchyard-model")),
        (200, "specialist", "coder"),
        "{headers:?}"
    );

    // Usage events name the route and the model that served.
    let events = gw.wait_for_events(5, std::time::Duration::from_secs(5)).await;
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e.route.as_deref().is_some_and(|r| r == "auto" || r == "dev")));
    assert_eq!(events[0].model, "small");
    assert_eq!(events[1].model, "large");
    // Each names its tier, the intent seen and why, and counts its baseline: the same tokens
    // at the strong model's price ($5 / $15 per million), whichever tier served.
    let strong = |e: &switchyard::records::usage::UsageEvent| {
        ((e.prompt_tokens - e.cached_tokens) * 5_000 + e.completion_tokens * 15_000) as i64
    };
    for e in &events {
        assert!(e.prompt_tokens > 0 && e.completion_tokens > 0, "{e:?}");
        assert_eq!(e.baseline_cost_nanos, strong(e), "{e:?}");
        assert!(e.intent.as_deref().is_some_and(|i| !i.is_empty()), "{e:?}");
    }
    assert_eq!(events[0].tier.as_deref(), Some("cheap"));
    assert!(events[0].route_reason.as_deref().unwrap_or("").contains("threshold"));
    assert!(
        events[0].baseline_cost_nanos > events[0].cost_nanos * 10,
        "{:?}",
        events[0]
    );
    assert_eq!(events[1].tier.as_deref(), Some("strong"));
    assert_eq!(events[1].baseline_cost_nanos, events[1].cost_nanos);
    assert_eq!(events[4].tier.as_deref(), Some("specialist"));

    // The explanation, without a model call.
    let r = reqwest::Client::new()
        .post(gw.url("/v1/route"))
        .header("x-switchyard-prefer", "quality")
        .json(&hard)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-tier"], "strong");
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["object"], "route.decision");
    assert_eq!(
        (d["route"].as_str(), d["model"].as_str(), d["tier"].as_str()),
        (Some("auto"), Some("large"), Some("strong"))
    );
    for field in [
        "intent",
        "intent_confidence",
        "difficulty",
        "percentile",
        "threshold",
        "prefer",
        "reason",
    ] {
        assert!(!d[field].is_null(), "{field} in {d}");
    }
    assert_eq!(gw.usage.events().len(), 5, "explaining records no usage");

    // Routes are listed with the models.
    let models: Value = reqwest::get(gw.url("/v1/models")).await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"auto") && ids.contains(&"dev") && ids.contains(&"small"),
        "{ids:?}"
    );
    gw.stop().await.unwrap();
}

/// Under `/r/{route}/v1` the path's route decides, whatever the body names, so the official SDK
/// needs only a different base URL.
#[tokio::test]
async fn a_route_in_the_base_url_decides() {
    let gw = TestGateway::start(CONFIG).await;
    let c = reqwest::Client::new();
    let r = c
        .post(gw.url("/r/dev/v1/chat/completions"))
        .json(&json!({"model": "small", "messages": [{"role": "user", "content":
            "Fix this Rust function:\n```rust\nfn add(a: i32, b: i32) -> i32 { a - b }\n```"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-route"], "dev");
    assert_eq!(r.headers()["x-switchyard-model"], "coder", "{:?}", r.headers());
    let r = c
        .post(gw.url("/r/dev/v1/route"))
        .json(&json!({"model": "whatever", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["route"], "dev");
    let r = c
        .post(gw.url("/r/nope/v1/chat/completions"))
        .json(&json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Unknown route `nope`"), "{v}");
    assert!(
        !msg.contains("dev") && !msg.contains("auto"),
        "other routes are not listed: {v}"
    );
    // The rest of the API works under the same base URL.
    let m: Value = c
        .get(gw.url("/r/dev/v1/models/auto"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["id"], "auto", "{m}");
    let m: Value = c
        .get(gw.url("/r/dev/v1/models/small"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["id"], "small", "{m}");
    let r = c.get(gw.url("/r/nope/v1/models/small")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(gw.url("/r/dev/v1/embeddings"))
        .json(&json!({"model": "emb", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["data"].as_array().map(Vec::len), Some(2), "{e}");
    let r = c
        .post(gw.url("/r/nope/v1/embeddings"))
        .json(&json!({"model": "emb", "input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn bad_routing_input_gets_clear_errors() {
    let gw = TestGateway::start(CONFIG).await;
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let (s, _, v) = chat(&gw, body.clone(), Some("cheapest please")).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("x-switchyard-prefer"),
        "{v}"
    );
    let r = reqwest::Client::new()
        .post(gw.url("/v1/route"))
        .json(&json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "model", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("/v1/models") && !msg.contains("auto") && !msg.contains("dev"),
        "no route is named: {v}"
    );
    let (s, _, v) = chat(
        &gw,
        json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        None,
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("model_not_found")), "{v}");
    gw.stop().await.unwrap();

    // Bad tables are refused with the path of every problem.
    let bad = CONFIG.replace("strong_share = 0.3", "strong_share = 3").replace(
        "intents = { code = \"coder\" }",
        "intents = { code = \"missing\", poetry = \"small\" }",
    ) + "\n[routes.small]\ncheap = \"small\"\nstrong = \"large\"\n";
    let err = switchyard::config::Config::from_toml(&bad, &|_| None, std::iter::empty())
        .unwrap_err()
        .to_string();
    for want in [
        "routes.auto.strong_share",
        "routes.dev.intents.code: unknown model `missing`",
        "routes.dev.intents.poetry: the router model has no such intent",
        "routes.small: `small` is also a model",
    ] {
        assert!(err.contains(want), "missing {want} in {err}");
    }
}

#[tokio::test]
async fn a_key_limited_to_a_route_can_use_it() {
    let mut cfg = parse_config(CONFIG);
    cfg.auth.master_key = Some(switchyard::config::Secret::new(switchyard_tests::TEST_MASTER_KEY));
    let gw = TestGateway::start_config(cfg).await;
    let admin = Admin::new(&gw);
    let (_, secret) = admin
        .key(json!({"name": "route-only", "allowed_models": ["auto"]}))
        .await;
    let c = reqwest::Client::new();
    let ok = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": HARD}]}))
        .header("x-switchyard-prefer", "quality")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the route may pick a model the key does not name");
    let refused = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "large", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_has_a_default_preference_the_header_overrides() {
    let gw = TestGateway::start_config(with_master(CONFIG)).await;
    let admin = Admin::new(&gw);
    let (id, quality) = admin
        .key(json!({"name": "quality-first", "route_prefer": "quality"}))
        .await;
    let (_, plain) = admin.key(json!({"name": "plain"})).await;
    let c = reqwest::Client::new();
    let decide = |secret: String, prefer: Option<&'static str>| {
        let mut rb = c
            .post(gw.url("/v1/route"))
            .bearer_auth(secret)
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": HARD}]}));
        if let Some(p) = prefer {
            rb = rb.header("x-switchyard-prefer", p);
        }
        async move { rb.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let d = decide(quality.clone(), None).await;
    assert_eq!(
        (d["prefer"].as_str(), d["prefer_source"].as_str()),
        (Some("quality"), Some("key")),
        "{d}"
    );
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("the key's default prefers quality"),
        "{d}"
    );
    let base = decide(plain.clone(), None).await;
    assert_eq!(
        (base["prefer"].as_str(), base["prefer_source"].as_str()),
        (Some("balanced"), Some("default"))
    );
    // Preferring quality doubles the strong share: the threshold drops.
    assert!(
        d["threshold"].as_f64().unwrap() < base["threshold"].as_f64().unwrap(),
        "{d} {base}"
    );
    let d = decide(quality.clone(), Some("cost")).await;
    assert_eq!(
        (d["prefer"].as_str(), d["prefer_source"].as_str()),
        (Some("cost"), Some("header")),
        "{d}"
    );
    // The same default applies to chat requests.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&quality)
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": HARD}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-switchyard-reason"]
        .to_str()
        .unwrap()
        .contains("prefers quality"));

    // Shown, changed, cleared and validated through the admin API.
    let (_, k) = admin.call(reqwest::Method::GET, &format!("/keys/{id}"), None).await;
    assert_eq!(k["route_prefer"], "quality", "{k}");
    let (s, k) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"route_prefer": "cost"})),
        )
        .await;
    assert_eq!((s, k["route_prefer"].as_str()), (200, Some("cost")), "{k}");
    let d = decide(quality.clone(), None).await;
    assert_eq!(d["prefer"], "cost", "the key cache follows the change: {d}");
    let (s, k) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"route_prefer": null})),
        )
        .await;
    assert_eq!((s, k["route_prefer"].clone()), (200, Value::Null), "{k}");
    let (s, e) = admin.post("/keys", json!({"name": "x", "route_prefer": "speed"})).await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("route_prefer")), "{e}");
    gw.stop().await.unwrap();
}

/// A conversation the route sent to the strong model stays there on its next turns.
#[tokio::test]
async fn a_conversation_sticks_to_the_strong_tier() {
    let gw = TestGateway::start(CONFIG).await;
    let opening = json!({"role": "user", "content": HARD});
    let (_, headers, _) = chat(
        &gw,
        json!({"model": "auto", "messages": [opening.clone()]}),
        Some("quality"),
    )
    .await;
    assert_eq!(h(&headers, "x-switchyard-tier"), "strong");
    let follow_up = json!({"model": "auto", "messages": [
        opening,
        {"role": "assistant", "content": "Here is the proof."},
        {"role": "user", "content": "thanks!"}
    ]});
    let (s, headers, _) = chat(&gw, follow_up.clone(), None).await;
    assert_eq!((s, h(&headers, "x-switchyard-tier")), (200, "strong"), "{headers:?}");
    assert!(
        h(&headers, "x-switchyard-reason").contains("already on the strong tier"),
        "{headers:?}"
    );
    // A caller who asks for cost gets it, even mid-conversation.
    let (s, headers, _) = chat(&gw, follow_up, Some("cost")).await;
    assert_eq!((s, h(&headers, "x-switchyard-tier")), (200, "cheap"), "{headers:?}");
    // Another conversation with the same last message is decided on its own.
    let other = json!({"model": "auto", "messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "thanks!"}
    ]});
    let (_, headers, _) = chat(&gw, other, None).await;
    assert_eq!(h(&headers, "x-switchyard-tier"), "cheap", "{headers:?}");
    gw.stop().await.unwrap();
}

/// Routes may name the intents of the router model that decides them, whatever they are.
#[tokio::test]
async fn routes_name_the_intents_of_their_router_model() {
    use switchyard::router::train::{train, Options, Row};
    let rows: Vec<Row> = (0..120)
        .map(|i| {
            let legal = i % 2 == 0;
            serde_json::from_value(json!({
                "id": i.to_string(),
                "prompt": if legal { format!("draft a contract clause about liability {i}") } else { format!("hello friend how are you {i}") },
                "intent": if legal { "legal" } else { "smalltalk" },
                "weak_ok": i % 3 == 0, "strong_ok": true,
            }))
            .unwrap()
        })
        .collect();
    let opts = Options {
        hash_bits: 10,
        folds: 0,
        ..Options::default()
    };
    let (file, _) = train(&rows, &opts).unwrap();
    let path = std::env::temp_dir().join(format!("switchyard-intents-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
    let with_model = |routes: &str| {
        format!("{CONFIG}\n[router]\nmodel = \"{}\"\n{routes}", path.display())
            .replace("intents = { code = \"coder\" }", "")
    };
    let good = with_model("[routes.law]\ncheap = \"small\"\nstrong = \"large\"\nintents = { legal = \"coder\" }\n");
    let gw = TestGateway::start(&good).await;
    let c = reqwest::Client::new();
    let d: Value = c
        .post(gw.url("/v1/route"))
        .json(&json!({"model": "law", "messages": [{"role": "user", "content": "draft a contract clause about liability"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d["intent"].as_str(), d["model"].as_str()),
        (Some("legal"), Some("coder")),
        "{d}"
    );
    // The route sets no intent weights: the defaults name intents this model lacks, and they are
    // left out rather than refused (the gateway started).
    let routes: Value = c
        .get(gw.url("/v1/models/law"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(routes["id"], "law", "{routes}");
    // A replacement table is checked against the running model's intents.
    let mut cfg = parse_config(&good);
    cfg.auth.master_key = Some(switchyard::config::Secret::new(switchyard_tests::TEST_MASTER_KEY));
    gw.stop().await.unwrap();
    let gw = TestGateway::start_config(cfg).await;
    let admin = Admin::new(&gw);
    let (s, e) = admin
        .call(
            reqwest::Method::PUT,
            "/routes",
            Some(json!({"routes": {"law": {"cheap": "small", "strong": "large", "intents": {"code": "coder"}}}})),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("it knows: legal, smalltalk"),
        "{e}"
    );
    gw.stop().await.unwrap();
    // The shipped model has no `legal` intent.
    let bad = CONFIG.replace("intents = { code = \"coder\" }", "intents = { legal = \"coder\" }");
    let err = switchyard::config::Config::from_toml(&bad, &|_| None, std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes.dev.intents.legal: the router model has no such intent"),
        "{err}"
    );
    let _ = std::fs::remove_file(&path);
}

/// A request refused at admission does not put its conversation on the strong tier.
#[tokio::test]
async fn a_refused_request_does_not_make_its_conversation_sticky() {
    let gw = TestGateway::start_config(with_master(CONFIG)).await;
    let admin = Admin::new(&gw);
    let (_, secret) = admin.key(json!({"name": "tight", "limits": {"tpm": 2000}})).await;
    let c = reqwest::Client::new();
    let opening = json!({"role": "user", "content": HARD});
    let send = |body: Value, prefer: Option<&'static str>| {
        let mut rb = c.post(gw.url("/v1/chat/completions")).bearer_auth(&secret).json(&body);
        if let Some(p) = prefer {
            rb = rb.header("x-switchyard-prefer", p);
        }
        async move { rb.send().await.unwrap() }
    };
    // Strong by preference, but far more tokens than the key may use a minute: refused.
    let r = send(
        json!({"model": "auto", "messages": [opening.clone()], "max_tokens": 50000}),
        Some("quality"),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-switchyard-tier"], "strong");
    let follow_up = json!({"model": "auto", "messages": [
        opening,
        {"role": "assistant", "content": "Here is the proof."},
        {"role": "user", "content": "thanks!"}
    ]});
    let r = send(follow_up, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-tier"], "cheap", "{:?}", r.headers());
    gw.stop().await.unwrap();
}
