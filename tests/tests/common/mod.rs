//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::Value;
use switchyard_tests::TestGateway;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// POSTs a JSON body and returns the response, unread.
pub async fn send(gw: &TestGateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .json(body)
        .send()
        .await
        .expect("request sent")
}

pub async fn post(gw: &TestGateway, path: &str, body: Value) -> (u16, HeaderMap, Value) {
    let r = send(gw, path, &body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body read");
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, headers, v)
}

pub async fn chat(gw: &TestGateway, body: Value) -> (u16, HeaderMap, Value) {
    post(gw, "/v1/chat/completions", body).await
}

/// Streams a chat completion and returns the headers, each `data:` payload, and whether `[DONE]` came.
pub async fn stream(gw: &TestGateway, body: Value) -> (u16, HeaderMap, Vec<Value>, bool) {
    let r = send(gw, "/v1/chat/completions", &body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let mut events = Vec::new();
    let mut done = false;
    let mut s = eventsource_stream::Eventsource::eventsource(r.bytes_stream());
    while let Some(ev) = s.next().await {
        let Ok(ev) = ev else { break };
        if ev.data == "[DONE]" {
            done = true;
            continue;
        }
        events.push(serde_json::from_str(&ev.data).unwrap_or_else(|_| panic!("bad chunk {}", ev.data)));
    }
    (status, headers, events, done)
}

/// GETs an admin API path (`/admin/v1/…`) with the test master key and returns the body's text.
pub async fn admin_text(gw: &TestGateway, path: &str) -> String {
    client()
        .get(gw.url(path))
        .bearer_auth(switchyard_tests::TEST_MASTER_KEY)
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("body read")
}

pub fn user(text: &str) -> Value {
    serde_json::json!([{"role": "user", "content": text}])
}

pub fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}
