//! Hostile clients and upstreams meet a bound each (the README's bounds table): nesting, invalid
//! UTF-8, huge `n` and `max_tokens`, oversized bodies, odd request ids, control characters in
//! headers, idle connections, slow bodies, readers that stop reading, the in-flight cap, CORS,
//! and upstream error pages that never end; every refusal the gateway itself writes is
//! OpenAI-shaped.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchyard::records::usage::Outcome;
use switchyard_tests::{standard_config, standard_config_with_server, MockUpstream, TestGateway};
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
    let cfg = standard_config_with_server(&mock.base_url(), "header_read_timeout_secs = 1");
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

/// An upstream whose error page never ends, or holds a forged log line: the client gets its
/// error at once (the body is read only up to a bound) with the message on one line.
#[tokio::test]
async fn an_endless_or_forged_upstream_error_page_is_bounded() {
    use axum::routing::post as on_post;
    let app = axum::Router::new()
        .route(
            "/endless/v1/chat/completions",
            on_post(|| async {
                use futures_util::StreamExt;
                let head = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    br#"{"error":{"message":"busy "#,
                ))]);
                let rest = futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from(vec![b'x'; 65536])));
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::body::Body::from_stream(head.chain(rest)),
                )
            }),
        )
        .route(
            "/forged/v1/chat/completions",
            on_post(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    r#"{"error":{"message":"no\nERROR switchyard: admin key leaked"}}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let toml = format!(
        "[providers.e]\nkind = \"openai\"\nbase_url = \"http://{addr}/endless/v1\"\n\
         [providers.f]\nkind = \"openai\"\nbase_url = \"http://{addr}/forged/v1\"\n\
         [models.endless]\n[[models.endless.deployments]]\nprovider = \"e\"\nmodel = \"m\"\n\
         input_per_mtok = 1\noutput_per_mtok = 1\ncontext_window = 10000\n\
         [models.forged]\n[[models.forged.deployments]]\nprovider = \"f\"\nmodel = \"m\"\n\
         input_per_mtok = 1\noutput_per_mtok = 1\ncontext_window = 10000\n"
    );
    let gw = TestGateway::start(&toml).await;
    let started = std::time::Instant::now();
    let (status, _, v) = chat(&gw, json!({"model": "endless", "messages": user("x")})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the endless page was not waited for"
    );
    let (status, _, v) = chat(&gw, json!({"model": "forged", "messages": user("x")})).await;
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("admin key leaked") && !msg.contains('\n'), "{msg}");
}

/// A client that sends its headers and then its body a trickle at a time is answered 408 once
/// `server.body_read_timeout_secs` has passed, in OpenAI's error shape.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockUpstream::start().await;
    let cfg = standard_config_with_server(&mock.base_url(), "body_read_timeout_secs = 1");
    let gw = TestGateway::start(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

/// At `server.max_in_flight` model requests (a stream counts until its last byte), the next is
/// refused at once with 503 and `retry-after`; the slot comes back when the stream's client goes.
#[tokio::test]
async fn requests_over_the_in_flight_cap_are_refused_at_once() {
    use futures_util::StreamExt;
    let mock = MockUpstream::start().await;
    let cfg = standard_config_with_server(&mock.base_url(), "max_in_flight = 1");
    let gw = TestGateway::start(&cfg).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "very-slow-stream", "stream": true, "messages": user("hold on")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(!body.next().await.unwrap().unwrap().is_empty());
    let (status, h, v) = chat(&gw, json!({"model": "chat", "messages": user("me too")})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "server_overloaded", "{v}");
    assert_eq!(header(&h, "retry-after"), "1");
    // Models and health are not model calls.
    assert_eq!(client().get(gw.url("/v1/models")).send().await.unwrap().status(), 200);
    drop(body);
    let mut last = 0;
    for _ in 0..100 {
        last = chat(&gw, json!({"model": "chat", "messages": user("now?")})).await.0;
        if last == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last, 200, "the slot came back");
}

/// A client that stops reading a stream (but keeps its connection open) is disconnected once its
/// writes have made no progress for `server.write_stall_timeout_secs`; the request is recorded
/// as a client disconnect and its slots come back.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    use futures_util::StreamExt;
    let mock = MockUpstream::start().await;
    let cfg = standard_config_with_server(&mock.base_url(), "write_stall_timeout_secs = 1\nmax_in_flight = 1");
    let gw = TestGateway::start(&cfg).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "never-reads")
        .json(&json!({"model": "huge-stream", "stream": true, "messages": user("big")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(!body.next().await.unwrap().unwrap().is_empty());
    // Not reading any more, the connection still open.
    let events = gw.wait_for_events(1, std::time::Duration::from_secs(15)).await;
    let e = events
        .iter()
        .find(|e| e.request_id == "never-reads")
        .expect("the stalled stream was ended and recorded");
    assert_eq!(e.outcome, Outcome::ClientDisconnect);
    let (status, _, _) = chat(&gw, json!({"model": "chat", "messages": user("my turn")})).await;
    assert_eq!(status, 200, "its in-flight slot came back");
    drop(body);
}
