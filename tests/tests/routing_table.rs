//! The routing table at run time: replaced through the admin API under load, reloaded from a
//! changed file, and A/B experiments and shadows with their statistics.

mod routing_setup;

use routing_setup::*;
use serde_json::json;
use switchyard_tests::{Admin, TestGateway};

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
