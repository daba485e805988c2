//! OpenAI-compatible servers that are not OpenAI, made to look like OpenAI: the mock with
//! `quirks` behaves like llama.cpp's server (no usage chunk, `max_completion_tokens` ignored,
//! tool names repeated in every delta); `quirky` reaches it with the gateway's default fixes,
//! `quirky-raw` without them, so each quirk is shown to exist and to be fixed.

use serde_json::{json, Value};
use switchyard_tests::standard;

mod common;
use common::{chat, stream, user};

#[tokio::test]
async fn a_usage_chunk_is_sent_when_asked_even_if_the_server_ignores_the_option() {
    let (_mock, gw) = standard().await;
    for model in ["quirky", "quirky-raw"] {
        let (status, _, chunks, done) = stream(
            &gw,
            json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                   "messages": user("count me")}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(done);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]), "{model}: {last}");
        assert_eq!(last["object"], "chat.completion.chunk");
        assert_eq!(last["id"], chunks[0]["id"], "{model}: the stream's id");
        let u = &last["usage"];
        assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{model}: {last}");
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
        );
        assert_eq!(last["switchyard"]["usage_source"], "estimated");
        // Exactly one usage chunk.
        assert_eq!(
            chunks
                .iter()
                .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
                .count(),
            1
        );
    }
    // Without the option, no usage chunk: every chunk has a choice.
    let (_, _, chunks, _) = stream(&gw, json!({"model": "quirky", "stream": true, "messages": user("x")})).await;
    assert!(chunks.iter().all(|c| !c["choices"].as_array().unwrap().is_empty()));
}

#[tokio::test]
async fn max_completion_tokens_reaches_servers_that_read_only_max_tokens() {
    let (mock, gw) = standard().await;
    let ask = |model: &str| {
        json!({"model": model, "max_completion_tokens": 3,
               "messages": user("please write a very long answer about everything")})
    };
    let (_, _, fixed) = chat(&gw, ask("quirky")).await;
    assert_eq!(fixed["choices"][0]["finish_reason"], "length", "{fixed}");
    let sent = mock.state.recent();
    let body = sent.last().unwrap();
    assert_eq!(
        (body["max_tokens"].as_u64(), body["max_completion_tokens"].as_u64()),
        (Some(3), Some(3))
    );
    // Without the fix the server generates past the cap.
    let (_, _, raw) = chat(&gw, ask("quirky-raw")).await;
    assert_eq!(raw["choices"][0]["finish_reason"], "stop", "{raw}");
}

/// The deltas of the stream's first tool call that carry a name, and the name and id assembled
/// the way the SDKs assemble them (concatenating strings).
fn tool_deltas(chunks: &[Value]) -> (usize, String, String) {
    let (mut named, mut name, mut id) = (0, String::new(), String::new());
    for c in chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
            if let Some(n) = tc["function"]["name"].as_str() {
                named += 1;
                name.push_str(n);
            }
            id.push_str(tc["id"].as_str().unwrap_or(""));
        }
    }
    (named, name, id)
}

#[tokio::test]
async fn a_streamed_tool_call_names_itself_once() {
    let (_mock, gw) = standard().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let ask = |model: &str| json!({"model": model, "stream": true, "tools": tools, "messages": user("weather?")});
    let (_, _, chunks, done) = stream(&gw, ask("quirky")).await;
    assert!(done);
    let (named, name, id) = tool_deltas(&chunks);
    assert_eq!((named, name.as_str()), (1, "get_weather"));
    assert_eq!(id.matches("call_").count(), 1, "{id}");
    let (_, _, raw, _) = stream(&gw, ask("quirky-raw")).await;
    let (named, name, _) = tool_deltas(&raw);
    assert!(named > 1, "the server repeats the name: {raw:?}");
    assert!(name.starts_with("get_weatherget_weather"), "{name}");
}

#[tokio::test]
async fn a_json_schema_request_gets_an_answer_that_fits() {
    let (_mock, gw) = standard().await;
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "tags"],
        "additionalProperties": false});
    let (status, _, v) = chat(
        &gw,
        json!({"model": "chat", "messages": user("who?"),
               "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": schema}}}),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    let mut keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["age", "name", "tags"]);
    assert!(answer["age"].is_i64() && answer["tags"].is_array() && answer["name"].is_string());
}
