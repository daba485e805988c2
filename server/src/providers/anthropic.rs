//! Anthropic's Messages API, translated both ways: OpenAI request → Messages request, Messages response/events → OpenAI.
//!
//! Request: system and developer messages become `system`; consecutive same-role turns merge
//! (Anthropic requires alternation); assistant `tool_calls` become `tool_use` blocks and `tool`
//! messages become `tool_result` blocks in a user turn; images become base64 or URL sources;
//! tools, `tool_choice`, `stop`, `max_tokens` (required there) map across.
//! Response: text and `tool_use` blocks become `content` and `tool_calls`; `stop_reason` becomes
//! `finish_reason`; usage counts cache reads and writes as prompt tokens.
//! Stream: `message_start`, `content_block_*`, `message_delta`, `message_stop` become
//! `chat.completion.chunk`s, tool-call arguments streamed as they arrive.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{read_limited, send, sse, CallLimits, ChatOutcome, Chunk, Complete, Provider, UpstreamError};
use crate::config::{DeploymentConfig, ProviderConfig};
use crate::proxy::request::{ChatRequest, EmbeddingsRequest};
use crate::records::usage::{Reported, Usage};

/// `max_tokens` is required by Anthropic; this is sent when the client set none and the deployment has no cap.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Added to the system prompt for `response_format` JSON requests.
pub const JSON_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else.";

pub struct Anthropic {
    client: reqwest::Client,
    config: Arc<ProviderConfig>,
}

impl Anthropic {
    pub fn new(client: reqwest::Client, config: Arc<ProviderConfig>) -> Self {
        Anthropic { client, config }
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Converts OpenAI content (string or parts) into Anthropic content blocks.
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => vec![],
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str() {
                Some("text") => Some(json!({"type": "text", "text": p["text"].as_str().unwrap_or("")})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    image_source(url).map(|source| json!({"type": "image", "source": source}))
                }
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// `data:image/png;base64,AAAA` → a base64 source; `https://…` → a URL source.
fn image_source(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        Some(json!({"type": "base64", "media_type": media_type, "data": data}))
    } else {
        Some(json!({"type": "url", "url": url}))
    }
}

/// Appends blocks to the last turn if it has the same role, else starts a new turn.
fn push_turn(turns: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut() {
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.extend(blocks);
                return;
            }
        }
    }
    turns.push(json!({"role": role, "content": blocks}));
}

/// Builds the Anthropic Messages request body for an OpenAI chat request.
pub fn translate_request(body: &Map<String, Value>, model: &str, max_tokens: u32, stream: bool) -> Value {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        match m["role"].as_str().unwrap_or("") {
            "system" | "developer" => system.push(text_of(&m["content"])),
            "user" => push_turn(&mut turns, "user", content_blocks(&m["content"])),
            "assistant" => {
                let mut blocks = content_blocks(&m["content"]);
                for tc in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = tc["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use", "id": tc["id"], "name": tc["function"]["name"], "input": input
                    }));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" => push_turn(
                &mut turns,
                "user",
                vec![json!({
                    "type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text_of(&m["content"])
                })],
            ),
            "function" => push_turn(&mut turns, "user", content_blocks(&m["content"])),
            _ => {}
        }
    }
    // Anthropic has no JSON mode: the instruction goes into the system prompt instead.
    match body
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => system.push(JSON_INSTRUCTION.to_string()),
        Some("json_schema") => {
            let schema = &body["response_format"]["json_schema"]["schema"];
            system.push(format!("{JSON_INSTRUCTION} It must match this JSON schema: {schema}"));
        }
        _ => {}
    }
    let mut out = json!({"model": model, "max_tokens": max_tokens, "messages": turns});
    if !system.is_empty() {
        out["system"] = Value::String(system.join("\n\n"));
    }
    if stream {
        out["stream"] = Value::Bool(true);
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out[to] = v.clone();
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => out["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) => out["stop_sequences"] = Value::Array(a.clone()),
        _ => {}
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                let mut tool = json!({
                    "name": f["name"],
                    "input_schema": if f["parameters"].is_object() { f["parameters"].clone() } else { json!({"type": "object", "properties": {}}) },
                });
                if let Some(d) = f["description"].as_str() {
                    tool["description"] = Value::String(d.to_string());
                }
                tool
            })
            .collect();
        if !tools.is_empty() {
            out["tools"] = Value::Array(tools);
        }
    }
    let parallel_off = body.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"type": "tool", "name": name})),
        _ => None,
    };
    match (choice, parallel_off && out.get("tools").is_some()) {
        (Some(mut c), off) => {
            if off && c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
            out["tool_choice"] = c;
        }
        (None, true) => out["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true}),
        (None, false) => {}
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out["metadata"] = json!({"user_id": user});
    }
    out
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn usage_from(u: &Value) -> Usage {
    let get = |k: &str| u[k].as_u64().unwrap_or(0);
    let cache_read = get("cache_read_input_tokens");
    Usage {
        // Absurd counts are judged later (money::accounting); here they must not overflow.
        prompt_tokens: get("input_tokens")
            .saturating_add(cache_read)
            .saturating_add(get("cache_creation_input_tokens")),
        completion_tokens: get("output_tokens"),
        cached_tokens: cache_read,
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Converts a complete Messages response into a `chat.completion` body.
pub fn translate_response(msg: &Value) -> (Value, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}
            })),
            _ => {}
        }
    }
    let usage = usage_from(&msg["usage"]);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) }, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let body = json!({
        "id": msg["id"].as_str().map(|id| format!("chatcmpl-{id}")).unwrap_or_else(|| "chatcmpl-anthropic".into()),
        "object": "chat.completion",
        "created": now_secs(),
        "model": msg["model"],
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(msg["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": usage_json(&usage),
    });
    (body, usage)
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: Vec<(u64, u64)>,
    next_tool: u64,
    finished: bool,
}

impl StreamTranslator {
    pub fn new() -> Self {
        StreamTranslator {
            created: now_secs(),
            ..Default::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    /// Translates one event (its `type` and JSON data). Returns chunks to emit, or an error, and
    /// `true` in the last position when the message is over.
    pub fn on_event(&mut self, data: &Value) -> Result<(Vec<Value>, bool), UpstreamError> {
        let mut out = Vec::new();
        match data["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &data["message"];
                self.id = format!("chatcmpl-{}", m["id"].as_str().unwrap_or("anthropic"));
                self.model = m["model"].as_str().unwrap_or("").to_string();
                self.usage = usage_from(&m["usage"]);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let block = &data["content_block"];
                if block["type"] == "tool_use" {
                    let idx = self.next_tool;
                    self.next_tool += 1;
                    self.tool_index.push((data["index"].as_u64().unwrap_or(0), idx));
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": idx, "id": block["id"], "type": "function",
                                               "function": {"name": block["name"], "arguments": ""}}]}),
                        None,
                    ));
                } else if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(self.chunk(json!({"content": t}), None));
                }
            }
            "content_block_delta" => {
                let d = &data["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => out.push(self.chunk(json!({"content": d["text"]}), None)),
                    Some("input_json_delta") => {
                        let block = data["index"].as_u64().unwrap_or(0);
                        let idx = self
                            .tool_index
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map(|(_, i)| *i)
                            .unwrap_or(0);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": idx, "function": {"arguments": d["partial_json"]}}]}),
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                let u = usage_from(&data["usage"]);
                if u.completion_tokens > 0 {
                    self.usage.completion_tokens = u.completion_tokens;
                }
                if u.prompt_tokens > 0 {
                    self.usage.prompt_tokens = u.prompt_tokens;
                    self.usage.cached_tokens = u.cached_tokens;
                }
                if let Some(sr) = data["delta"]["stop_reason"].as_str() {
                    out.push(self.chunk(json!({}), Some(finish_reason(sr))));
                }
            }
            "message_stop" => {
                self.finished = true;
                let mut u = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [],
                });
                u["usage"] = usage_json(&self.usage);
                out.push(u);
                return Ok((out, true));
            }
            "error" => return Err(error_of(&data["error"])),
            _ => {} // ping, content_block_stop, and event types added later
        }
        Ok((out, false))
    }
}

/// An Anthropic error object (`{"type": "overloaded_error", "message": …}`) as the upstream
/// error it stands for, whether it came in a stream or, with a 200, as the whole answer.
fn error_of(e: &Value) -> UpstreamError {
    let status = match e["type"].as_str() {
        Some("overloaded_error") => 529,
        Some("rate_limit_error") => 429,
        Some("invalid_request_error") => 400,
        _ => 500,
    };
    UpstreamError::Status {
        status,
        message: e["message"].as_str().unwrap_or("upstream error").to_string(),
        retry_after: None,
    }
}

impl Provider for Anthropic {
    fn chat(
        &self,
        deployment: &DeploymentConfig,
        request: &ChatRequest,
        limits: CallLimits,
    ) -> BoxFuture<'static, Result<ChatOutcome, UpstreamError>> {
        let max_tokens = request
            .max_output_tokens
            .or(deployment.max_output_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let body = translate_request(&request.body, &deployment.model, max_tokens, request.stream);
        let mut rb = self
            .client
            .post(format!("{}/messages", self.config.base_url))
            .header("anthropic-version", self.config.anthropic_version.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            rb = rb.header("x-api-key", key.expose());
        }
        for (k, v) in &self.config.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let stream = request.stream;
        Box::pin(async move {
            if !stream {
                let resp = send(rb.timeout(limits.timeout)).await?;
                let raw = read_limited(resp, limits.max_response_bytes).await?;
                let msg: Value =
                    serde_json::from_slice(&raw).map_err(|_| UpstreamError::Protocol("response is not JSON".into()))?;
                // An error sent with a 200 status is still an error (retried or passed on as one).
                if msg["type"] == "error" {
                    return Err(error_of(&msg["error"]));
                }
                let (body, usage) = translate_response(&msg);
                return Ok(ChatOutcome::Complete(Complete {
                    body: Bytes::from(body.to_string()),
                    usage: Some(Reported::from(usage)),
                }));
            }
            let resp = tokio::time::timeout(limits.timeout, send(rb))
                .await
                .map_err(|_| UpstreamError::Timeout)??;
            let events = Box::pin(sse::events(resp, limits));
            let state = (
                events,
                StreamTranslator::new(),
                std::collections::VecDeque::<Value>::new(),
                false,
            );
            let s = futures_util::stream::unfold(Some(state), |state| async move {
                let (mut events, mut tr, mut pending, mut ended) = state?;
                loop {
                    if let Some(v) = pending.pop_front() {
                        return Some((Ok(Chunk::from_value(&v)), Some((events, tr, pending, ended))));
                    }
                    if ended {
                        return None;
                    }
                    match events.next().await {
                        None => return Some((Err(UpstreamError::Cut), None)),
                        Some(Err(e)) => return Some((Err(e), None)),
                        Some(Ok(ev)) => {
                            if ev.data.is_empty() {
                                continue;
                            }
                            let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                                return Some((Err(UpstreamError::Protocol("unparsable stream event".into())), None));
                            };
                            match tr.on_event(&data) {
                                Err(e) => return Some((Err(e), None)),
                                Ok((chunks, done)) => {
                                    pending.extend(chunks);
                                    ended = done;
                                }
                            }
                        }
                    }
                }
            });
            Ok(ChatOutcome::Stream(Box::pin(s)))
        })
    }

    fn embeddings(
        &self,
        _deployment: &DeploymentConfig,
        _request: &EmbeddingsRequest,
        _limits: CallLimits,
    ) -> BoxFuture<'static, Result<Complete, UpstreamError>> {
        Box::pin(async {
            Err(UpstreamError::Status {
                status: 400,
                message: "Anthropic has no embeddings API".into(),
                retry_after: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { panic!() };
        m
    }

    #[test]
    fn translates_a_tool_conversation() {
        let body = obj(json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "use tools"},
                {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"},
                                              {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "t2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "t2", "content": "noon"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "stop": "END", "temperature": 0.5
        }));
        let out = translate_request(&body, "claude-sonnet-4-5", 100, true);
        assert_eq!(out["system"], "be brief\n\nuse tools");
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stream"], true);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "tool results and the next user turn merge: {msgs:?}");
        assert_eq!(
            msgs[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "QUJD"})
        );
        assert_eq!(msgs[1]["content"][0]["input"], json!({"city": "Paris"}));
        assert_eq!(msgs[1]["content"][1]["name"], "get_time");
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(msgs[2]["content"][2]["text"], "thanks");
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(out["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
    }

    #[test]
    fn json_mode_becomes_a_system_instruction() {
        let body = obj(json!({"model": "c", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}));
        let out = translate_request(&body, "c", 10, false);
        assert_eq!(out["system"], JSON_INSTRUCTION);
        let body = obj(
            json!({"model": "c", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "required": ["k"]}}}}),
        );
        let out = translate_request(&body, "c", 10, false);
        let system = out["system"].as_str().unwrap();
        assert!(system.starts_with("Be kind.\n\n"), "{system}");
        assert!(system.contains(r#""required":["k"]"#), "{system}");
        assert!(out.get("response_format").is_none());
    }

    #[test]
    fn absurd_usage_saturates_instead_of_overflowing() {
        let msg = json!({"type": "message", "content": [], "stop_reason": "end_turn",
            "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "output_tokens": u64::MAX}});
        let (body, usage) = translate_response(&msg);
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (u64::MAX, u64::MAX));
        assert_eq!(body["usage"]["total_tokens"], u64::MAX);
    }

    #[test]
    fn translates_a_response_with_tool_use() {
        let msg = json!({
            "id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 5}
        });
        let (body, usage) = translate_response(&msg);
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["choices"][0]["message"]["content"], "Let me check.");
        let tc = &body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(tc["function"]["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(tc["function"]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 15,
                completion_tokens: 7,
                cached_tokens: 5
            }
        );
        for (sr, fr) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
        ] {
            assert_eq!(finish_reason(sr), fr);
        }
    }

    #[test]
    fn translates_stream_events_with_tool_arguments() {
        let mut tr = StreamTranslator::new();
        let events = [
            json!({"type": "message_start", "message": {"id": "m1", "model": "claude-x", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu_9", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let mut chunks = Vec::new();
        let mut done = false;
        for e in &events {
            let (c, d) = tr.on_event(e).unwrap();
            chunks.extend(c);
            done = d;
        }
        assert!(done);
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"] == "tu_9"));
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        let last = chunks.last().unwrap();
        assert_eq!(last["usage"]["prompt_tokens"], 12);
        assert_eq!(last["usage"]["completion_tokens"], 9);
        let err = tr.on_event(&json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}));
        assert!(matches!(err, Err(UpstreamError::Status { status: 529, .. })));
    }
}
