//! The Anthropic translation end to end: OpenAI-shaped client ↔ gateway ↔ mock Messages API.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use switchyard::records::usage::{Outcome, UsageSource};
use switchyard_tests::standard;

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn json_completion_is_translated_both_ways() {
    let (mock, gw) = standard().await;
    let (status, h, v) = chat(
        &gw,
        json!({"model": "claude", "max_tokens": 77, "stop": ["END"], "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello claude"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hello claude"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(header(&h, "x-switchyard-provider"), "an");
    assert_eq!(header(&h, "x-switchyard-usage-source"), "reported");
    let sent = mock.state.recent();
    let req = sent.last().unwrap();
    assert_eq!(req["system"], "You are terse.");
    assert_eq!(req["max_tokens"], 77);
    assert_eq!(req["stop_sequences"], json!(["END"]));
    assert_eq!(req["model"], "claude-mock");
    assert!(
        req.get("stop").is_none(),
        "OpenAI-only fields are not sent to Anthropic"
    );
}

#[tokio::test]
async fn tool_call_round_trip_json() {
    let (mock, gw) = standard().await;
    let (status, _, v) = chat(
        &gw,
        json!({"model": "claude", "messages": user("weather in Paris?"), "tools": weather_tool()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let msg = &v["choices"][0]["message"];
    let call = &msg["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "demo"}));

    // Send the tool result back: the mock rejects it unless it answers the earlier tool_use.
    let msgs = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": msg["content"], "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}
    ]);
    let (status, _, v) = chat(
        &gw,
        json!({"model": "claude", "messages": msgs, "tools": weather_tool()}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("18C and sunny"));
    let req = mock.state.recent().last().unwrap().clone();
    assert_eq!(req["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(req["tools"][0]["input_schema"]["required"], json!(["city"]));
}

#[tokio::test]
async fn stream_text_and_usage() {
    let (_mock, gw) = standard().await;
    let (status, _, chunks, done) = stream(
        &gw,
        json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true}, "messages": user("stream it")}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(done);
    assert!(content_of(&chunks).contains("stream it"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let last = chunks.last().unwrap();
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(last["switchyard"]["usage_source"], "reported");
    let ev = gw.wait_for_events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0].usage_source, UsageSource::Reported);
    assert_eq!(
        ev[0].completion_tokens,
        last["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn stream_tool_call_arguments_arrive_in_pieces() {
    let (_mock, gw) = standard().await;
    let (status, _, chunks, done) = stream(
        &gw,
        json!({"model": "claude", "stream": true, "messages": user("weather?"), "tools": weather_tool()}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(done);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(pieces.len() > 1, "arguments streamed in several pieces: {pieces:?}");
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args, json!({"city": "demo"}));
    let first_call = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .expect("a chunk opens the tool call with its id and name");
    assert_eq!(
        first_call["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn overloaded_is_retried_and_midstream_errors_end_the_stream() {
    let (mock, gw) = standard().await;
    let (status, h, _) = chat(&gw, json!({"model": "claude-overloaded-once", "messages": user("x")})).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-switchyard-attempts"), "2");
    assert_eq!(mock.state.count_for("claude-mock;fail_first=1;error=529"), 2);

    let (status, _, chunks, done) = stream(
        &gw,
        json!({"model": "claude-stream-error", "stream": true, "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!done);
    assert!(chunks.last().unwrap()["error"]["message"].is_string());
    let ev = gw.wait_for_events(2, Duration::from_secs(2)).await;
    assert_eq!(ev[1].outcome, Outcome::UpstreamError);
}

#[tokio::test]
async fn missing_anthropic_usage_is_estimated() {
    let (_mock, gw) = standard().await;
    let (status, h, _) = chat(
        &gw,
        json!({"model": "claude-nousage", "messages": user("estimate this please")}),
    )
    .await;
    assert_eq!(status, 200);
    // A report of zero prompt tokens is not believable: estimated instead of billed at $0.
    assert_eq!(header(&h, "x-switchyard-usage-source"), "estimated");
    assert!(header(&h, "x-switchyard-tokens-in").parse::<u64>().unwrap() > 3);
    assert_ne!(header(&h, "x-switchyard-cost-usd"), "0.000000000");
    let (_, _, chunks, _) = stream(
        &gw,
        json!({"model": "claude-nousage", "stream": true, "stream_options": {"include_usage": true}, "messages": user("x")}),
    )
    .await;
    assert_eq!(chunks.last().unwrap()["switchyard"]["usage_source"], "estimated");
}

#[tokio::test]
async fn json_mode_is_instructed_and_n_above_one_is_refused() {
    let (mock, gw) = standard().await;
    let (status, _, _) = chat(
        &gw,
        json!({"model": "claude", "messages": user("x"), "response_format": {"type": "json_object"}}),
    )
    .await;
    assert_eq!(status, 200);
    let req = mock.state.recent().last().unwrap().clone();
    assert_eq!(req["system"], switchyard::providers::anthropic::JSON_INSTRUCTION);
    // Anthropic returns one choice per call: asking for three is refused, not silently cut to one.
    let calls = mock.state.requests.load(std::sync::atomic::Ordering::Relaxed);
    let (status, _, v) = chat(&gw, json!({"model": "claude", "messages": user("x"), "n": 3})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "n");
    assert_eq!(mock.state.requests.load(std::sync::atomic::Ordering::Relaxed), calls);
}
