//! End to end over real sockets: client → gateway (port 0) → mock OpenAI-compatible upstream (port 0).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchyard::records::usage::{Outcome, UsageSource};
use switchyard_tests::{standard, standard_config, Admin, MockUpstream, TestGateway};

#[tokio::test]
async fn json_completion_passes_through_with_usage_and_cost_headers() {
    let (mock, gw) = standard().await;
    let (status, h, v) = chat(
        &gw,
        json!({"model": "chat", "messages": user("hello gateway"), "temperature": 0.2,
               "some_new_param": {"nested": [1, 2]}, "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hello gateway"));
    assert_eq!(header(&h, "x-switchyard-deployment"), "oa/mock");
    assert_eq!(header(&h, "x-switchyard-provider"), "oa");
    let tin: u64 = header(&h, "x-switchyard-tokens-in").parse().unwrap();
    let tout: u64 = header(&h, "x-switchyard-tokens-out").parse().unwrap();
    assert_eq!(tin, v["usage"]["prompt_tokens"].as_u64().unwrap());
    assert_eq!(tout, v["usage"]["completion_tokens"].as_u64().unwrap());
    // $1/Mtok in, $2/Mtok out: cost = tin + 2*tout micro-dollars.
    let want = switchyard::money::pricing::Nanos(((tin + 2 * tout) * 1000) as i64).to_string();
    assert_eq!(header(&h, "x-switchyard-cost-usd"), want);
    assert_eq!(header(&h, "x-switchyard-usage-source"), "reported");
    assert!(header(&h, "x-request-id").starts_with("req_"));
    assert!(header(&h, "x-switchyard-process-ms").parse::<f64>().unwrap() >= 0.0);

    // Unknown fields reached the upstream untouched; the model was rewritten.
    let sent = mock.state.recent();
    let last = sent.last().unwrap();
    assert_eq!(last["model"], "mock");
    assert_eq!(last["some_new_param"], json!({"nested": [1, 2]}));
    assert_eq!(last["metadata"], json!({"k": "v"}));
    assert_eq!(last["temperature"], json!(0.2));

    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, Outcome::Success);
    assert_eq!(ev[0].prompt_tokens, tin);
    assert_eq!(ev[0].usage_source, UsageSource::Reported);
    assert_eq!(ev[0].cost_nanos, ((tin + 2 * tout) * 1000) as i64);
}

#[tokio::test]
async fn client_request_id_is_kept() {
    let (_mock, gw) = standard().await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "my-trace-123")
        .json(&json!({"model": "chat", "messages": user("x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-trace-123");
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0].request_id, "my-trace-123");
}

#[tokio::test]
async fn stream_relays_chunks_strips_forced_usage_and_carries_cost() {
    let (mock, gw) = standard().await;
    let (status, h, chunks, done) = stream(
        &gw,
        json!({"model": "chat", "stream": true, "messages": user("stream please")}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(done, "ends with [DONE]");
    assert_eq!(header(&h, "content-type"), "text/event-stream");
    assert_eq!(header(&h, "x-switchyard-deployment"), "oa/mock");
    assert!(content_of(&chunks).contains("stream please"));
    assert!(chunks.len() >= 4, "relayed chunk by chunk: {}", chunks.len());
    // The client did not ask for usage: no usage-only chunk (every chunk has a choice).
    assert!(chunks.iter().all(|c| !c["choices"].as_array().unwrap().is_empty()));
    // The gateway asked the upstream for usage anyway.
    assert_eq!(
        mock.state.recent().last().unwrap()["stream_options"]["include_usage"],
        true
    );
    // The cost rides on the last chunk (the finish chunk).
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let ext = &last["switchyard"];
    assert_eq!(ext["usage_source"], "reported");
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0].outcome, Outcome::Success);
    assert_eq!(ev[0].completion_tokens, ext["completion_tokens"].as_u64().unwrap());
    assert_eq!(
        switchyard::money::pricing::Nanos(ev[0].cost_nanos).to_string(),
        ext["cost_usd"].as_str().unwrap()
    );
    assert!(ev[0].ttft_ms.is_some());
}

#[tokio::test]
async fn stream_with_include_usage_gets_the_usage_chunk() {
    let (_mock, gw) = standard().await;
    let (_, _, chunks, done) = stream(
        &gw,
        json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true}, "messages": user("u")}),
    )
    .await;
    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(last["switchyard"]["usage_source"], "reported");
}

#[tokio::test]
async fn missing_upstream_usage_is_estimated_and_flagged() {
    let (_mock, gw) = standard().await;
    let (status, h, _v) = chat(
        &gw,
        json!({"model": "chat-nousage", "messages": user("count me please")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-switchyard-usage-source"), "estimated");
    assert!(header(&h, "x-switchyard-tokens-in").parse::<u64>().unwrap() > 3);
    let (_, _, chunks, _) = stream(
        &gw,
        json!({"model": "chat-nousage", "stream": true, "stream_options": {"include_usage": true}, "messages": user("x")}),
    )
    .await;
    let last = chunks.last().unwrap();
    assert_eq!(last["switchyard"]["usage_source"], "estimated");
    assert!(last["switchyard"]["completion_tokens"].as_u64().unwrap() > 0, "{last}");
    let ev = gw.wait_for_events(2, Duration::from_secs(2)).await;
    assert!(
        ev.iter()
            .all(|e| e.usage_source == UsageSource::Estimated && e.cost_nanos > 0),
        "{ev:?}"
    );
}

#[tokio::test]
async fn tools_json_mode_and_n_pass_through() {
    let (_mock, gw) = standard().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let (status, _, v) = chat(
        &gw,
        json!({"model": "chat", "messages": user("weather?"), "tools": tools}),
    )
    .await;
    assert_eq!(status, 200);
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    // Tool result round trip.
    let msgs = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    ]);
    let (status, _, v) = chat(&gw, json!({"model": "chat", "messages": msgs, "tools": tools})).await;
    assert_eq!(status, 200);
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("sunny"));

    // Streamed tool call arguments reassemble.
    let (_, _, chunks, _) = stream(
        &gw,
        json!({"model": "chat", "stream": true, "messages": user("w"), "tools": tools}),
    )
    .await;
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "demo"}));

    let (_, _, v) = chat(
        &gw,
        json!({"model": "chat", "messages": user("j"), "response_format": {"type": "json_object"}}),
    )
    .await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(content).unwrap().is_object());

    let (_, _, v) = chat(&gw, json!({"model": "chat", "messages": user("n"), "n": 3})).await;
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn capability_and_context_checks_happen_before_any_upstream_call() {
    let (mock, gw) = standard().await;
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let (status, _, v) = chat(&gw, json!({"model": "no-tools", "messages": user("x"), "tools": tools})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "tools");
    let long = "many words here ".repeat(40);
    let (status, _, v) = chat(&gw, json!({"model": "tiny-context", "messages": user(&long)})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(mock.state.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn bad_input_gets_openai_shaped_errors() {
    let (mock, gw) = standard().await;
    let c = client();
    // Malformed JSON.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"].as_object().unwrap().contains_key("param"));
    // Wrong content type.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Body over the limit (65536 in the test config).
    let big = "x".repeat(70_000);
    let (status, _, v) = chat(&gw, json!({"model": "chat", "messages": user(&big)})).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "request_too_large");
    // Missing and invalid fields name the param.
    let (status, _, v) = chat(
        &gw,
        json!({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "messages[0].role");
    let (status, _, v) = chat(&gw, json!({"messages": user("x")})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "model");
    // Unknown model.
    let (status, _, v) = chat(&gw, json!({"model": "gpt-17", "messages": user("x")})).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    // Unknown path and wrong method.
    let r = c.get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let r = c.get(gw.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    // Nothing reached the upstream, and rejected input yields no usage event.
    assert_eq!(mock.state.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(gw.usage.events().is_empty());
}

#[tokio::test]
async fn upstream_429_passes_on_with_retry_after() {
    let (_mock, gw) = standard().await;
    let (status, h, v) = chat(&gw, json!({"model": "rate-limited", "messages": user("x")})).await;
    assert_eq!(status, 429);
    assert_eq!(header(&h, "retry-after"), "3");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0].outcome, Outcome::UpstreamError);
    assert_eq!(ev[0].status, 429);
}

#[tokio::test]
async fn upstream_5xx_is_retried_then_502_never_200() {
    let (mock, gw) = standard().await;
    let (status, h, v) = chat(&gw, json!({"model": "broken", "messages": user("x")})).await;
    assert_eq!(status, 502);
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(header(&h, "x-switchyard-attempts"), "2");
    assert_eq!(mock.state.count_for("mock;error=500"), 2);
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev.len(), 1, "one event for both attempts");
    assert_eq!(
        (ev[0].outcome, ev[0].status, ev[0].attempts),
        (Outcome::UpstreamError, 502, 2)
    );
    assert_eq!(ev[0].error_kind.as_deref(), Some("upstream_5xx"));
    // An error sent with a 200 status is still a failure: retried, then 502, never 200.
    let (status, _, v) = chat(&gw, json!({"model": "error-as-200", "messages": user("x")})).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(mock.state.count_for("mock;error_body"), 2);
    // Anthropic's own shape of it, `{"type":"error"}` with a 200: overloaded, so retried, then 502.
    let (status, _, v) = chat(&gw, json!({"model": "claude-error-as-200", "messages": user("x")})).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    assert_eq!(mock.state.count_for("claude-mock;error_body"), 2);
    // A 400 from the upstream is the client's to fix: passed on, not retried.
    let (status, _, _) = chat(&gw, json!({"model": "bad-request", "messages": user("x")})).await;
    assert_eq!(status, 400);
    assert_eq!(mock.state.count_for("mock;error=400"), 1);
}

#[tokio::test]
async fn transient_failure_is_retried_transparently() {
    let (mock, gw) = standard().await;
    let (status, h, _) = chat(&gw, json!({"model": "flaky", "messages": user("x")})).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-switchyard-attempts"), "2");
    assert_eq!(mock.state.count_for("mock;fail_first=1;error=503"), 2);
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev.len(), 1, "one event per request, not per attempt");
    assert_eq!(ev[0].attempts, 2);
}

#[tokio::test]
async fn falls_back_to_the_next_model_before_the_first_byte() {
    let (_mock, gw) = standard().await;
    let (status, h, _) = chat(&gw, json!({"model": "primary-down", "messages": user("x")})).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-switchyard-deployment"), "oa/mock");
    assert_eq!(header(&h, "x-switchyard-attempts"), "3");
    let (status, _, chunks, done) = stream(
        &gw,
        json!({"model": "primary-down", "stream": true, "messages": user("s")}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(done && !chunks.is_empty());
    // Within one model, the failing deployment is skipped for the healthy one.
    let (status, h, _) = chat(&gw, json!({"model": "balanced", "messages": user("x")})).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-switchyard-deployment"), "good");
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let (_mock, gw) = standard().await;
    let (status, _, v) = chat(&gw, json!({"model": "hangs", "messages": user("x")})).await;
    assert_eq!(status, 504);
    assert_eq!(v["error"]["code"], "upstream_timeout");
    let (status, _, _, _) = stream(&gw, json!({"model": "hangs", "stream": true, "messages": user("x")})).await;
    assert_eq!(status, 504);
    let ev = gw.wait_for_events(2, Duration::from_secs(2)).await;
    assert_eq!(ev.len(), 2, "one event each");
    for e in &ev {
        assert_eq!((e.outcome, e.status), (Outcome::UpstreamError, 504), "{e:?}");
        assert_eq!(e.error_kind.as_deref(), Some("upstream_timeout"));
        assert_eq!(e.cost_nanos, 0, "nothing came back, nothing billed");
    }
}

#[tokio::test]
async fn failure_after_the_first_byte_ends_the_stream_with_an_error_event() {
    let (mock, gw) = standard().await;
    for model in ["cut", "stream-error"] {
        let (status, _, chunks, done) =
            stream(&gw, json!({"model": model, "stream": true, "messages": user("x")})).await;
        assert_eq!(status, 200, "{model}");
        assert!(!done, "{model}: no [DONE] after a failure");
        let last = chunks.last().unwrap();
        assert!(last["error"]["message"].is_string(), "{model}: {last}");
        assert_eq!(last["error"]["type"], "server_error");
    }
    // No silent retry mid-stream: one upstream call each.
    assert_eq!(mock.state.count_for("mock;cut=3"), 1);
    let ev = gw.wait_for_events(2, Duration::from_secs(2)).await;
    assert!(ev.iter().all(|e| e.outcome == Outcome::UpstreamError), "{ev:?}");
    // A stream cut before its first chunk is retried like any pre-byte failure.
    let (status, _, _, _) = stream(
        &gw,
        json!({"model": "cut-early", "stream": true, "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(mock.state.count_for("mock;cut=0"), 2);
}

#[tokio::test]
async fn client_disconnect_cancels_upstream_and_records_one_event() {
    let (mock, gw) = standard().await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "slow-stream", "stream": true, "messages": user("long story")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    use futures_util::StreamExt;
    // Read until some generated text has arrived, then go away.
    let mut seen = String::new();
    while seen.matches("\"content\":\"").count() < 3 {
        let b = s.next().await.expect("the stream goes on").unwrap();
        seen.push_str(&String::from_utf8_lossy(&b));
    }
    drop(s);
    let ev = gw.wait_for_events(1, Duration::from_secs(5)).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, Outcome::ClientDisconnect);
    assert_eq!(
        ev[0].usage_source,
        UsageSource::Estimated,
        "billed from what was streamed"
    );
    assert!(ev[0].prompt_tokens > 0);
    assert!(
        ev[0].completion_tokens > 0,
        "the text streamed before the disconnect is billed: {:?}",
        ev[0]
    );
    assert!(ev[0].cost_nanos > 0);
    // The upstream stream was dropped too, long before its ~1 s of chunks ran out.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while mock.state.streams_cancelled.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        mock.state.streams_completed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn models_embeddings_health_and_metrics() {
    let mock = MockUpstream::start().await;
    let toml = format!(
        "[auth]\nrequired = false\nmaster_key_env = \"TEST_MASTER_KEY\"\n{}",
        standard_config(&mock.base_url())
    );
    let gw = TestGateway::start(&toml).await;
    let c = client();
    let v: Value = c.get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == "chat"));
    // A key with an allow-list sees only what it may call; an unknown key is refused.
    let (_, secret) = Admin::new(&gw)
        .key(json!({"name": "narrow", "allowed_models": ["chat", "auto"]}))
        .await;
    let v: Value = c
        .get(gw.url("/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat", "auto"], "{v}");
    let r = c
        .get(gw.url("/v1/models/claude"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a model the key may not call is not shown");
    let r = c
        .get(gw.url("/v1/models"))
        .bearer_auth("sk-sy-notakey000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(gw.url("/v1/models/chat")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, h, v) = post(&gw, "/v1/embeddings", json!({"model": "embed", "input": ["a", "b"]})).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(header(&h, "x-switchyard-usage-source"), "reported");
    let (status, _, _) = post(&gw, "/v1/embeddings", json!({"model": "chat", "input": "a"})).await;
    assert_eq!(status, 400);
    assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    // Readiness for anyone, its details (deployments, breakers, load) and the metrics only with
    // the master key.
    let ready: Value = c.get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"status": "ready"}));
    let ready: Value = c
        .get(gw.url("/readyz"))
        .bearer_auth(switchyard_tests::TEST_MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["deployments"]["oa/mock"]["breaker"], "closed", "{ready}");
    let r = c.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("master key"), "{e}");
    let m = c
        .get(gw.url("/metrics"))
        .bearer_auth(switchyard_tests::TEST_MASTER_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("switchyard_http_requests_total"), "{m}");
    assert!(
        m.contains("switchyard_gateway_overhead_seconds_bucket{le=\"0.00001\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_slow_reader_holds_the_upstream_back() {
    use futures_util::StreamExt;
    let (mock, gw) = standard().await;
    // About 44 MB of chunks (~110 pieces of 400 KB): far more than the socket buffers in between.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "huge-stream", "stream": true, "messages": user("big")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut got = s.next().await.unwrap().unwrap().len();
    // The client pauses. Without backpressure the gateway would drain the whole upstream stream
    // into memory within milliseconds; with it, the mock stays blocked mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mock.state.streams_completed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        mock.state.streams_cancelled.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let mut tail = Vec::new();
    while let Some(part) = s.next().await {
        let part = part.unwrap();
        got += part.len();
        tail.extend_from_slice(&part[part.len().saturating_sub(32)..]);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    assert!(got > 40_000_000, "read {got} bytes");
    assert!(tail.ends_with(b"data: [DONE]\n\n"));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while mock.state.streams_completed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "upstream stream never completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn upstream_connections_are_reused_for_json_and_streams() {
    let (mock, gw) = standard().await;
    for i in 0..10 {
        let (status, _, _) = chat(&gw, json!({"model": "chat", "messages": user(&format!("json {i}"))})).await;
        assert_eq!(status, 200);
        let (status, _, _, done) = stream(
            &gw,
            json!({"model": "chat", "stream": true, "messages": user(&format!("s {i}"))}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(done);
    }
    let conns = mock.state.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(conns <= 2, "20 sequential calls opened {conns} upstream connections");
}

#[tokio::test]
async fn overhead_header_excludes_the_upstream_wait() {
    let (_mock, gw) = standard().await;
    let (status, h, _) = chat(&gw, json!({"model": "slow-json", "messages": user("x")})).await;
    assert_eq!(status, 200);
    let process_ms: f64 = header(&h, "x-switchyard-process-ms").parse().unwrap();
    let overhead_us: u64 = header(&h, "x-switchyard-overhead-us").parse().unwrap();
    assert!(process_ms >= 200.0, "the mock waits 200 ms: {process_ms}");
    assert!(
        overhead_us < 100_000,
        "the upstream's 200 ms are not overhead: {overhead_us} µs"
    );
    assert!((overhead_us as f64) <= process_ms * 1000.0);
    let (_, h, _, _) = stream(&gw, json!({"model": "chat", "stream": true, "messages": user("x")})).await;
    assert!(header(&h, "x-switchyard-overhead-us").parse::<u64>().is_ok());
}

#[tokio::test]
async fn http2_clients_are_served_json_and_streams() {
    use futures_util::StreamExt;
    let (_mock, gw) = standard().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "chat", "messages": user("over h2")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("over h2"));
    let r = h2
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "chat", "stream": true, "messages": user("h2 stream")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let mut body = Vec::new();
    let mut s = r.bytes_stream();
    while let Some(part) = s.next().await {
        body.extend_from_slice(&part.unwrap());
    }
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_after_retries() {
    // A port that was just free: connecting to it is refused at once.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = format!(
        r#"
        [server.retry]
        attempts_per_deployment = 2
        backoff_ms = 1
        max_backoff_ms = 2
        [providers.gone]
        kind = "openai"
        base_url = "http://{closed}/v1"
        connect_timeout_ms = 500
        [[models.m.deployments]]
        provider = "gone"
        model = "x"
        input_per_mtok = 1
        output_per_mtok = 1
        context_window = 1000
        "#
    );
    let gw = switchyard_tests::TestGateway::start(&cfg).await;
    let (status, h, v) = chat(&gw, json!({"model": "m", "messages": user("x")})).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_error");
    assert_eq!(header(&h, "x-switchyard-attempts"), "2");
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0].error_kind.as_deref(), Some("upstream_connect"));
}
