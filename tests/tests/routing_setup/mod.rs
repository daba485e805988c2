//! What the routing tests share: a config with tiers and specialists, and request helpers.
#![allow(dead_code)]

use serde_json::{json, Value};
use switchyard_tests::{parse_config, TestGateway};

pub const CONFIG: &str = r#"
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

pub const HARD: &str = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24. Then derive the \
    generalisation to p^4 - 1 and explain step by step which modular arithmetic facts each step uses, \
    without skipping any case, and compare two different proofs.";

pub async fn chat(gw: &TestGateway, body: Value, prefer: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = reqwest::Client::new().post(gw.url("/v1/chat/completions")).json(&body);
    if let Some(p) = prefer {
        rb = rb.header("x-switchyard-prefer", p);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

pub fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub fn with_master(toml: &str) -> switchyard::config::Config {
    let mut cfg = parse_config(toml);
    cfg.auth.master_key = Some(switchyard::config::Secret::new(switchyard_tests::TEST_MASTER_KEY));
    cfg
}

pub async fn model_for(gw: &TestGateway, route: &str) -> String {
    let (s, headers, v) = chat(
        gw,
        json!({"model": route, "messages": [{"role": "user", "content": "hi!"}]}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    h(&headers, "x-switchyard-model").to_string()
}
