//! Graceful shutdown and circuit breakers, over real sockets.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use switchyard::records::usage::Outcome;
use switchyard_tests::{standard, standard_config, standard_config_with_server, MockUpstream, TestGateway};

#[tokio::test]
async fn shutdown_lets_inflight_streams_finish_and_refuses_new_work() {
    let (mock, mut gw) = standard().await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "slow-stream", "stream": true, "messages": user("finish me")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());

    gw.begin_shutdown();
    // Readiness flips to draining while the stream is still running.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match client().get(gw.url("/readyz")).send().await {
            Ok(r) if r.status() == 503 => break,
            Err(_) => break, // the listener is already closed: equally not ready
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "readyz never reported draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The in-flight stream runs to its end.
    let mut rest = Vec::new();
    while let Some(part) = body.next().await {
        rest.extend_from_slice(&part.unwrap());
    }
    let text = String::from_utf8(rest).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "stream completed: {text}");
    assert_eq!(mock.state.streams_completed.load(Ordering::Relaxed), 1);

    let addr = gw.addr;
    let events = gw.usage.clone();
    gw.stop().await.unwrap();
    assert_eq!(events.events().len(), 1);
    assert_eq!(events.events()[0].outcome, Outcome::Success);
    // After shutdown nothing listens.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn breaker_opens_after_repeated_failures_and_half_opens_after_cooldown() {
    let mock = MockUpstream::start().await;
    let cfg = standard_config(&mock.base_url())
        .replace("failure_threshold = 1000", "failure_threshold = 2")
        .replace("attempts_per_deployment = 2", "attempts_per_deployment = 1")
        // The breaker states in /readyz, without a master key.
        .replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 5\npublic_ops = true");
    let gw = TestGateway::start(&cfg).await;
    for _ in 0..2 {
        let (status, _, _) = chat(&gw, json!({"model": "broken", "messages": user("x")})).await;
        assert_eq!(status, 502);
    }
    let upstream_calls = mock.state.count_for("mock;error=500");
    assert_eq!(upstream_calls, 2);
    // Open: the deployment is skipped without an upstream call.
    let (status, h, v) = chat(&gw, json!({"model": "broken", "messages": user("x")})).await;
    assert_eq!(status, 503, "{v}");
    assert!(header(&h, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(mock.state.count_for("mock;error=500"), upstream_calls);
    let ready: serde_json::Value = client()
        .get(gw.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["deployments"]["oa/mock;error=500"]["breaker"], "open");
    // After the 1 s cooldown one trial call goes through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = chat(&gw, json!({"model": "broken", "messages": user("x")})).await;
    assert_eq!(status, 502);
    assert_eq!(mock.state.count_for("mock;error=500"), upstream_calls + 1);
    // Other models are unaffected.
    let (status, _, _) = chat(&gw, json!({"model": "chat", "messages": user("x")})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockUpstream::start().await;
    let cfg = standard_config_with_server(&mock.base_url(), "header_read_timeout_secs = 1");
    let gw = TestGateway::start(&cfg).await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    // The server gives up on the headers and closes: the read ends (EOF or reset), well before 5 s.
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    // Well-behaved clients are unaffected.
    let (status, _, _) = chat(&gw, json!({"model": "chat", "messages": user("x")})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockUpstream::start().await;
    let cfg = standard_config_with_server(&mock.base_url(), "max_connections = 2");
    let gw = TestGateway::start(&cfg).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    async fn answered(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        matches!(tokio::time::timeout(within, s.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
    }
    let mut a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(request).await.unwrap();
    b.write_all(request).await.unwrap();
    assert!(answered(&mut a, Duration::from_secs(5)).await);
    assert!(answered(&mut b, Duration::from_secs(5)).await);
    // Both slots are held by open keep-alive connections: a third is not served…
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(request).await.unwrap();
    assert!(
        !answered(&mut c, Duration::from_millis(500)).await,
        "served beyond the cap"
    );
    // …until one closes.
    drop(a);
    assert!(
        answered(&mut c, Duration::from_secs(5)).await,
        "not served after a slot freed"
    );
}

/// A stream still running when the grace period ends is closed: the gateway does not wait for it
/// (its state would keep the ledger from draining), and its usage event is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_after_the_grace_are_closed_and_their_events_written() {
    let mock = MockUpstream::start().await;
    let url = switchyard_tests::temp_sqlite_url();
    let cfg = standard_config(&mock.base_url()).replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 1");
    let mut config = switchyard_tests::parse_config(&cfg);
    config.database.url = url.clone();
    let mut gw = TestGateway::start_with_ledger(config).await;
    // About a minute of chunks: far longer than the grace.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "outlives-the-grace")
        .json(&json!({"model": "very-slow-stream", "stream": true, "messages": user("take your time")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(!body.next().await.unwrap().unwrap().is_empty());
    let reading = tokio::spawn(async move { while let Some(Ok(_)) = body.next().await {} });
    let started = std::time::Instant::now();
    gw.begin_shutdown();
    gw.stop().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "stopped in {took:?}: the grace, then a prompt drain"
    );
    reading.await.unwrap();
    let store = switchyard::store::Store::connect(&url, 1).await.unwrap();
    let f = switchyard::store::RequestFilter {
        request_id: Some("outlives-the-grace".into()),
        ..Default::default()
    };
    let events = store.latest_requests(&f, None, 10).await.unwrap();
    assert_eq!(events.len(), 1, "the cut stream's event is in the ledger");
    assert_eq!(events[0].outcome, Outcome::ClientDisconnect);
    store.close().await;
}
