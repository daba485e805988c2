//! Tests of [`super`]: the breaker, balancing, capability and context-window filtering.

use super::*;

#[test]
fn breaker_opens_after_threshold_and_half_opens_after_cooldown() {
    let cfg = BreakerConfig {
        failure_threshold: 3,
        cooldown_secs: 10,
    };
    let b = Breaker::default();
    assert!(!b.failure(&cfg, 1));
    assert!(!b.failure(&cfg, 2));
    assert!(b.failure(&cfg, 3));
    assert!(!b.allows(5_000));
    assert!(b.allows(10_003), "half-open after the cooldown");
    assert!(b.failure(&cfg, 10_004), "one failure while half-open re-opens");
    assert!(!b.allows(10_005));
    b.success();
    assert!(b.allows(10_006));
}

fn gateway(balance: &str) -> Gateway {
    let text = format!(
        r#"
        [providers.p]
        kind = "mock"
        [models.m]
        balance = "{balance}"
        [[models.m.deployments]]
        id = "heavy"
        provider = "p"
        model = "a"
        weight = 9
        input_per_mtok = 1
        output_per_mtok = 1
        context_window = 100
        [[models.m.deployments]]
        id = "light"
        provider = "p"
        model = "b"
        weight = 1
        input_per_mtok = 1
        output_per_mtok = 1
        context_window = 1000
        capabilities = ["tools"]
        "#
    );
    let c = Config::from_toml(&text, &|_| None, std::iter::empty()).unwrap();
    Gateway::new(&c)
}

#[test]
fn weighted_order_follows_weights() {
    let g = gateway("weighted");
    let m = g.model("m").unwrap().clone();
    let mut heavy_first = 0;
    for _ in 0..2000 {
        let o = Gateway::order(&m, m.deployments.clone());
        assert_eq!(o.len(), 2);
        if o[0].config.id == "heavy" {
            heavy_first += 1;
        }
    }
    assert!(
        (1650..=1950).contains(&heavy_first),
        "heavy first {heavy_first}/2000, expected ~1800"
    );
}

#[test]
fn least_busy_prefers_idle_deployments() {
    let g = gateway("least_busy");
    let m = g.model("m").unwrap().clone();
    let _busy = InflightGuard::new(&m.deployments[0]);
    let o = Gateway::order(&m, m.deployments.clone());
    assert_eq!(o[0].config.id, "light");
    drop(_busy);
    let o = Gateway::order(&m, m.deployments.clone());
    assert_eq!(o[0].config.id, "heavy", "equal load: larger weight first");
}

fn chat(v: serde_json::Value) -> ChatRequest {
    let serde_json::Value::Object(m) = v else { panic!() };
    ChatRequest::from_body(m).unwrap()
}

#[test]
fn candidates_respect_capabilities_and_context_windows() {
    let g = gateway("weighted");
    let m = g.model("m").unwrap().clone();
    let tools = chat(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}]}),
    );
    let c = g.chat_candidates(&m, &tools).unwrap();
    assert_eq!(
        c.iter().map(|d| d.config.id.as_str()).collect::<Vec<_>>(),
        vec!["light"]
    );

    // About 200 tokens: too long for the 100-token window, fine for the 1000-token one.
    let long = "word ".repeat(200);
    let req = chat(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": long}]}));
    let c = g.chat_candidates(&m, &req).unwrap();
    assert_eq!(
        c.iter().map(|d| d.config.id.as_str()).collect::<Vec<_>>(),
        vec!["light"]
    );

    let huge = "word ".repeat(2000);
    let req = chat(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": huge}]}));
    let err = g.chat_candidates(&m, &req).unwrap_err();
    assert_eq!(err.code, Some("context_length_exceeded"));

    let vision = chat(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}),
    );
    let err = g.chat_candidates(&m, &vision).unwrap_err();
    assert!(err.message.contains("image"), "{}", err.message);
}
