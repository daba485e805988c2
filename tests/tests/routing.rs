//! Routes end to end: a virtual model picks the cheap or the strong model per request, says why
//! in headers, records the route in the usage event, and explains itself at `POST /v1/route`.

use serde_json::{json, Value};
use switchyard_tests::{parse_config, Admin, TestGateway};

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
capabilities = ["json"]

[models.large]
[[models.large.deployments]]
provider = "m"
model = "large"
input_per_mtok = "5"
output_per_mtok = "15"
context_window = 100000
capabilities = ["tools", "json"]

[models.coder]
[[models.coder.deployments]]
provider = "m"
model = "coder"
input_per_mtok = "1"
output_per_mtok = "2"
context_window = 100000
capabilities = ["tools", "json"]

[models.emb]
kind = "embedding"
[[models.emb.deployments]]
provider = "m"
model = "emb"
input_per_mtok = "0.02"
context_window = 8000

[routes.auto]
description = "cheap unless hard"
cheap = "small"
strong = "large"
strong_share = 0.3

[routes.dev]
cheap = "small"
strong = "large"
intents = { code = "coder" }
"#;

const HARD: &str = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24. Then derive the \
    generalisation to p^4 - 1 and explain step by step which modular arithmetic facts each step uses, \
    without skipping any case, and compare two different proofs.";

async fn chat(gw: &TestGateway, body: Value, prefer: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&body);
    if let Some(p) = prefer {
        rb = rb.header("x-switchyard-prefer", p);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

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
    assert!(
        v["error"]["message"].as_str().unwrap().contains("Unknown route `nope`"),
        "{v}"
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
    assert!(
        v["error"]["message"].as_str().unwrap().contains("routes: auto, dev"),
        "{v}"
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

fn with_master(toml: &str) -> switchyard::config::Config {
    let mut cfg = parse_config(toml);
    cfg.auth.master_key = Some(switchyard::config::Secret::new(switchyard_tests::TEST_MASTER_KEY));
    cfg
}

async fn model_for(gw: &TestGateway, route: &str) -> String {
    let (s, headers, v) = chat(
        gw,
        json!({"model": route, "messages": [{"role": "user", "content": "hi!"}]}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    h(&headers, "x-switchyard-model").to_string()
}

/// The admin API replaces the routing table under load: a good table takes over at once, a bad
/// one is refused whole and the old one keeps serving, and no request fails meanwhile.
#[tokio::test]
async fn the_routing_table_is_replaced_under_load_without_a_failed_request() {
    let gw = TestGateway::start_config(with_master(CONFIG)).await;
    let admin = Admin::new(&gw);
    assert_eq!(model_for(&gw, "auto").await, "small");

    let load = {
        let url = gw.url("/v1/chat/completions");
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut statuses = Vec::new();
            for i in 0..300 {
                let r = c
                    .post(&url)
                    .json(&json!({"model": "auto", "messages": [{"role": "user", "content": format!("question {i}")}]}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
                let _ = r.bytes().await;
            }
            statuses
        })
    };
    let good = json!({"routes": {"auto": {"cheap": "coder", "strong": "large"}, "extra": {"cheap": "small", "strong": "large", "strong_share": 0.5}}});
    let bad = json!({"routes": {"auto": {"cheap": "missing", "strong": "large", "strong_share": 7}}});
    for i in 0..10 {
        let (s, v) = admin
            .call(
                reqwest::Method::PUT,
                "/routes",
                Some(if i % 2 == 0 { good.clone() } else { bad.clone() }),
            )
            .await;
        if i % 2 == 0 {
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
        } else {
            assert_eq!(s, 400, "{v}");
            assert_eq!(v["error"]["param"], "routes.auto.cheap", "{v}");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("unknown model `missing`") && msg.contains("strong_share"),
                "{msg}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The last good table serves; the bad ones changed nothing.
    assert_eq!(model_for(&gw, "auto").await, "coder");
    assert_eq!(model_for(&gw, "extra").await, "small");
    let (_, list) = admin.call(reqwest::Method::GET, "/routes", None).await;
    assert_eq!(list["data"][0]["name"], "auto");
    assert_eq!(list["data"][0]["cheap"], "coder");
    let (s, _) = admin
        .call(reqwest::Method::PUT, "/routes", Some(json!({"routez": {}})))
        .await;
    assert_eq!(s, 400);
    gw.stop().await.unwrap();
}

/// A changed config file reloads the routing table; a broken file is refused.
#[tokio::test]
async fn the_routing_table_reloads_when_the_file_changes() {
    let dir = std::env::temp_dir().join(format!("switchyard-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    let db = switchyard_tests::temp_sqlite_url();
    let text = format!("[database]\nurl = \"{db}\"\n{CONFIG}");
    std::fs::write(&path, &text).unwrap();
    let env = |k: &str| (k == "TEST_MASTER_KEY").then(|| switchyard_tests::TEST_MASTER_KEY.to_string());
    let cfg = switchyard::config::Config::load(Some(&path), &env, std::iter::empty()).unwrap();
    assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    let gw = TestGateway::start_config(cfg).await;
    assert_eq!(model_for(&gw, "auto").await, "small");

    let wait_for = |want: &'static str| {
        let gw = &gw;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let got = model_for(gw, "auto").await;
                if got == want || std::time::Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    // mtime resolution can be coarse: make sure the change is seen as one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    std::fs::write(
        &path,
        text.replace(
            "cheap = \"small\"\nstrong = \"large\"\nstrong_share = 0.3",
            "cheap = \"coder\"\nstrong = \"large\"\nstrong_share = 0.3",
        ),
    )
    .unwrap();
    assert_eq!(wait_for("coder").await, "coder");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    std::fs::write(
        &path,
        text.replace(
            "cheap = \"small\"\nstrong = \"large\"\nstrong_share = 0.3",
            "cheap = \"nope\"\nstrong = \"large\"\nstrong_share = 0.3",
        ),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(model_for(&gw, "auto").await, "coder", "a broken file changes nothing");
    // A route to a model the file adds is refused: models change only on restart.
    let fresh_model = "\n[models.fresh]\n[[models.fresh.deployments]]\nprovider = \"m\"\nmodel = \"fresh\"\ninput_per_mtok = \"1\"\noutput_per_mtok = \"1\"\ncontext_window = 1000\n";
    std::fs::write(
        &path,
        text.replace(
            "cheap = \"small\"\nstrong = \"large\"\nstrong_share = 0.3",
            "cheap = \"fresh\"\nstrong = \"large\"\nstrong_share = 0.3",
        ) + fresh_model,
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        model_for(&gw, "auto").await,
        "coder",
        "a route to a model the gateway does not run is refused"
    );
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

const AB: &str = r#"
[routes.ab]
cheap = "small"
strong = "large"
strong_share = 0.0
experiment = { candidate = "ab-v2", percent = 50, by = "key" }
shadow = "ab-v2"

[routes.ab-v2]
cheap = "small"
strong = "large"
strong_share = 1.0
intent_weights = { chat = 1.0 }
"#;

/// An A/B split keeps each key in one arm; a shadow policy's choices are recorded and compared.
#[tokio::test]
async fn experiments_split_by_key_and_shadows_are_compared() {
    let gw = TestGateway::start_config(with_master(&format!("{CONFIG}{AB}"))).await;
    let admin = Admin::new(&gw);
    let c = reqwest::Client::new();
    let mut arms = std::collections::BTreeMap::new();
    for k in 0..40 {
        let (_, secret) = admin.key(json!({"name": format!("ab-{k}")})).await;
        let mut seen = Vec::new();
        for q in ["hi!", "and hello again"] {
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(&secret)
                .json(&json!({"model": "ab", "messages": [{"role": "user", "content": q}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let variant = r.headers()["x-switchyard-variant"].to_str().unwrap().to_string();
            let model = r.headers()["x-switchyard-model"].to_str().unwrap().to_string();
            assert_eq!(model, if variant == "ab-v2" { "large" } else { "small" }, "{variant}");
            seen.push(variant);
        }
        assert_eq!(seen[0], seen[1], "a key stays in its arm");
        *arms.entry(seen[0].clone()).or_insert(0) += 1;
    }
    let v2 = arms.get("ab-v2").copied().unwrap_or(0);
    assert!((8..=32).contains(&v2), "{arms:?}");

    let events = gw.wait_for_events(80, std::time::Duration::from_secs(5)).await;
    assert!(
        events.iter().all(|e| e.shadow_model.as_deref() == Some("large")),
        "the shadow always picks large"
    );
    let (s, stats) = admin.call(reqwest::Method::GET, "/routes/stats", None).await;
    assert_eq!(s, 200, "{stats}");
    // The in-memory sink keeps events off the ledger here: stats come from the database.
    assert_eq!(stats["data"].as_array().map(Vec::len), Some(0), "{stats}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn experiment_stats_come_from_the_ledger() {
    let cfg = with_master(&format!(
        "[database]\nurl = \"{}\"\n{CONFIG}{AB}",
        switchyard_tests::temp_sqlite_url()
    ));
    let gw = TestGateway::start_with_ledger(cfg).await;
    let admin = Admin::new(&gw);
    let c = reqwest::Client::new();
    let mut served_large = 0;
    for k in 0..20 {
        let (_, secret) = admin.key(json!({"name": format!("st-{k}")})).await;
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "ab", "messages": [{"role": "user", "content": "hi there"}]}))
            .send()
            .await
            .unwrap();
        served_large += usize::from(r.headers()["x-switchyard-model"] == "large");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let (_, v) = admin.call(reqwest::Method::GET, "/routes/stats", None).await;
        if v["data"][0]["requests"] == 20 || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let ab = &stats["data"][0];
    assert_eq!(
        (ab["route"].as_str(), ab["requests"].as_i64()),
        (Some("ab"), Some(20)),
        "{stats}"
    );
    let by_variant = ab["by_variant"].as_object().unwrap();
    let total: i64 = by_variant.values().map(|v| v["requests"].as_i64().unwrap()).sum();
    assert_eq!(total, 20, "{ab}");
    assert_eq!(ab["shadow"]["requests"], 20);
    assert_eq!(ab["shadow"]["agreed"].as_i64(), Some(served_large as i64), "{ab}");
    let actual = ab["shadow"]["actual_cost_nanos"].as_i64().unwrap();
    let projected = ab["shadow"]["projected_cost_nanos"].as_i64().unwrap();
    assert!(
        projected > actual || served_large == 20,
        "the all-large shadow costs more: {ab}"
    );
    gw.stop().await.unwrap();

    // Experiments and shadows must name other routes.
    let bad = format!("{CONFIG}{AB}")
        .replace("candidate = \"ab-v2\"", "candidate = \"nope\"")
        .replace("shadow = \"ab-v2\"", "shadow = \"ab\"");
    let err = switchyard::config::Config::from_toml(&bad, &|_| None, std::iter::empty())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes.ab.experiment.candidate: `nope` must be another route"),
        "{err}"
    );
    assert!(err.contains("routes.ab.shadow: `ab` must be another route"), "{err}");
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
