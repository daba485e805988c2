//! Hostile clients meet a bound each (the README's bounds table): nesting, invalid UTF-8, huge
//! `n` and `max_tokens`, oversized bodies, odd request ids, control characters in headers, and
//! idle connections; every refusal the gateway itself writes is OpenAI-shaped.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchyard_tests::{standard_config, MockUpstream, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_post(gw: &TestGateway, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Reads what the server sends until it closes the connection or `within` passes.
async fn read_until_closed(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_headers_are_refused_in_shape() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&standard_config(&mock.base_url())).await;

    // Nesting far past what a parser should follow.
    let deep = format!(
        r#"{{"model":"chat","messages":[{{"role":"user","content":"x"}}],"metadata":{}{}}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let (s, v) = raw_post(&gw, deep.into_bytes()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_json")), "{v}");

    // Invalid UTF-8 inside a string.
    let mut bad = br#"{"model":"chat","messages":[{"role":"user","content":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    bad.extend_from_slice(br#""}]}"#);
    let (s, v) = raw_post(&gw, bad).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_json")), "{v}");

    // Huge n and max_tokens name their parameter.
    for (field, value) in [("n", json!(1_000_000_000u64)), ("max_tokens", json!(1u64 << 40))] {
        let mut body = json!({"model": "chat", "messages": user("x")});
        body[field] = value;
        let (s, _, v) = chat(&gw, body).await;
        assert_eq!((s, v["error"]["param"].as_str()), (400, Some(field)), "{field}: {v}");
    }

    // Over server.max_body_bytes (64 KiB in this config), with and without a content-length.
    let big = json!({"model": "chat", "messages": user(&"x".repeat(100_000))}).to_string();
    let (s, v) = raw_post(&gw, big.clone().into_bytes()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("request_too_large")),
        "{v}"
    );
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "a chunked body is counted as it comes");

    // A request id the gateway will not echo or store: too long, or not plain ASCII.
    for id in ["x".repeat(500), "has space".to_string()] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", &id)
            .json(&json!({"model": "chat", "messages": user("x")}))
            .send()
            .await
            .unwrap();
        let got = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(got.starts_with("req_") && got != id, "{got}");
    }

    // A carriage return inside a header value never reaches the gateway: the HTTP parser
    // refuses the request and closes the connection.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-request-id: a\rb\r\n\r\n")
        .await
        .unwrap();
    let out = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("closed");
    let text = String::from_utf8_lossy(&out);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_gateway_keeps_serving() {
    let mock = MockUpstream::start().await;
    let cfg = standard_config(&mock.base_url()).replace(
        "shutdown_grace_secs = 5",
        "shutdown_grace_secs = 5\nheader_read_timeout_secs = 1",
    );
    let gw = TestGateway::start(&cfg).await;
    // Connections that send nothing, and one that sends its headers a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /v1/mo").await.unwrap();
    // Meanwhile the gateway serves.
    let (s, _, _) = chat(&gw, json!({"model": "chat", "messages": user("still there?")})).await;
    assert_eq!(s, 200);
    // After the header timeout every one of them is closed by the gateway.
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(5)).await.is_some(),
        "slowloris closed"
    );
    for c in idle.iter_mut().take(50) {
        assert!(
            read_until_closed(c, Duration::from_secs(5)).await.is_some(),
            "an idle connection closed"
        );
    }
    gw.stop().await.unwrap();
}

/// Browsers: cross-origin calls are refused unless the origin is configured; an allowed origin
/// gets its preflight answered and may read the answer's headers; the admin API never answers
/// cross-origin.
#[tokio::test]
async fn cross_origin_calls_are_closed_unless_configured() {
    let mock = MockUpstream::start().await;
    let preflight = |gw: &TestGateway, path: &str, origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let closed = TestGateway::start(&standard_config(&mock.base_url())).await;
    let r = preflight(&closed, "/v1/chat/completions", "https://app.example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = client()
        .post(closed.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .json(&json!({"model": "chat", "messages": user("x")}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no origin is allowed by default"
    );

    let cfg = standard_config(&mock.base_url()).replace(
        "shutdown_grace_secs = 5",
        "shutdown_grace_secs = 5\ncors_allow_origins = [\"https://app.example.com\"]",
    );
    let open = TestGateway::start(&cfg).await;
    let r = preflight(&open, "/v1/chat/completions", "https://app.example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let r = client()
        .post(open.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .json(&json!({"model": "chat", "messages": user("x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(r.headers()["access-control-expose-headers"], "*");
    let r = preflight(&open, "/v1/chat/completions", "https://evil.example")
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another origin");
    let r = preflight(&open, "/admin/v1/keys", "https://app.example.com")
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "never the admin API"
    );
}
