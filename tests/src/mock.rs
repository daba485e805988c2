//! The mock upstream: an OpenAI- and Anthropic-compatible HTTP server with injectable behaviour.
//!
//! Behaviour is chosen per request through the upstream model name, so one mock serves every
//! scenario of a test run: `mock;latency=50;chunks=8;delay=5;usage=off;error=429;fail_first=2`.
//!
//! | directive | effect |
//! |---|---|
//! | `latency=MS` | wait before the response headers |
//! | `chunks=N` | split each streamed answer into about N pieces (default 6) |
//! | `delay=MS` | wait between streamed chunks |
//! | `usage=off` | report no usage (JSON body and stream) |
//! | `error=STATUS` | answer every request with this status (429 adds `retry-after`) |
//! | `fail_first=N` | fail the first N requests for this model name with `error` (default 500), then succeed |
//! | `retry_after=S` | the `retry-after` sent with a 429 |
//! | `hang` | never answer (for timeouts) |
//! | `cut=N` | stream N chunks, then close the connection without `[DONE]` |
//! | `stream_error=N` | stream N chunks, then an in-band error event |
//! | `endless` | stream the first content chunk over and over, never ending |
//! | `dims=N` | embedding dimensions |
//! | `pad=N` | add N bytes of filler to each streamed content piece (large streams) |
//! | `error_body` | answer 200 with an error object instead of a completion (OpenAI's shape, or Anthropic's `{"type":"error"}`) |
//! | `answer=KIND` | a poor answer: `empty`, `refusal`, `badjson` (broken JSON), `badtool` (unparsable tool arguments), `text` (text even where a tool call is required) |
//! | `logprob=X` | the log-probability reported per token when the request asks for `logprobs` |
//! | `quirks` | behave like llama.cpp's server: all three below |
//! | `no_stream_usage` | ignore `stream_options.include_usage` (a stream never has a usage chunk) |
//! | `no_max_completion_tokens` | ignore `max_completion_tokens` (only `max_tokens` caps the answer) |
//! | `repeat_tool_names` | repeat a streamed tool call's `id`, `type` and name in every delta |
//! | `bad_usage=KIND` | report absurd usage (JSON body and usage chunk): `huge` (2^62 prompt tokens), `negative`, `nulls` (every count `null`), `text` (counts as strings), `overcap` (a billion completion tokens) |
//!
//! Paths: `POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/messages` (Anthropic),
//! `GET /mock/stats`, `GET /mock/requests` (the last 200 request bodies).
//! Anthropic requests are checked for the rules Anthropic enforces (max_tokens present, turns
//! alternate starting with user, tool results answer an earlier tool_use), so a translation
//! mistake fails loudly.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use switchyard::providers::mock::{plan, render_chunks, render_completion, render_embeddings, Answer, Plan};
use tokio::net::TcpListener;

/// Directives parsed from a model name.
#[derive(Debug, Clone, Default)]
pub struct Directives {
    pub latency_ms: u64,
    pub chunks: usize,
    pub delay_ms: u64,
    pub usage: bool,
    pub error: Option<u16>,
    pub fail_first: u64,
    pub retry_after: Option<u64>,
    pub hang: bool,
    pub cut: Option<usize>,
    pub stream_error: Option<usize>,
    pub endless: bool,
    pub dims: usize,
    pub pad: usize,
    pub error_body: bool,
    pub answer: Option<String>,
    pub logprob: Option<f64>,
    pub bad_usage: Option<String>,
    pub no_stream_usage: bool,
    pub no_max_completion_tokens: bool,
    pub repeat_tool_names: bool,
}

impl Directives {
    pub fn parse(model: &str) -> Directives {
        let mut d = Directives {
            chunks: 6,
            usage: true,
            dims: 16,
            ..Default::default()
        };
        for part in model.split(';').skip(1) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let num = v.parse::<u64>().ok();
            match k {
                "latency" => d.latency_ms = num.unwrap_or(0),
                "chunks" => d.chunks = num.unwrap_or(6).max(1) as usize,
                "delay" => d.delay_ms = num.unwrap_or(0),
                "usage" => d.usage = v != "off",
                "error" => d.error = num.map(|n| n as u16),
                "fail_first" => d.fail_first = num.unwrap_or(0),
                "retry_after" => d.retry_after = num,
                "hang" => d.hang = true,
                "cut" => d.cut = num.map(|n| n as usize),
                "stream_error" => d.stream_error = num.map(|n| n as usize),
                "endless" => d.endless = true,
                "dims" => d.dims = num.unwrap_or(16).clamp(1, 4096) as usize,
                "pad" => d.pad = num.unwrap_or(0).min(4 << 20) as usize,
                "error_body" => d.error_body = true,
                "answer" => d.answer = Some(v.to_string()),
                "logprob" => d.logprob = v.parse().ok(),
                "bad_usage" => d.bad_usage = Some(v.to_string()),
                "quirks" => {
                    d.no_stream_usage = true;
                    d.no_max_completion_tokens = true;
                    d.repeat_tool_names = true;
                }
                "no_stream_usage" => d.no_stream_usage = true,
                "no_max_completion_tokens" => d.no_max_completion_tokens = true,
                "repeat_tool_names" => d.repeat_tool_names = true,
                _ => {}
            }
        }
        d
    }

    /// Replaces a usage object by the absurd report `bad_usage=` asks for.
    pub fn spoil_usage(&self, usage: &mut Value) {
        let Some(kind) = self.bad_usage.as_deref() else { return };
        if usage.is_null() {
            return;
        }
        *usage = match kind {
            "huge" => json!({"prompt_tokens": 1u64 << 62, "completion_tokens": 1u64 << 62, "total_tokens": u64::MAX}),
            "negative" => json!({"prompt_tokens": -100, "completion_tokens": -5, "total_tokens": -105}),
            "nulls" => json!({"prompt_tokens": null, "completion_tokens": null, "total_tokens": null,
                              "prompt_tokens_details": null}),
            "text" => json!({"prompt_tokens": "12", "completion_tokens": "many", "total_tokens": "?"}),
            "overcap" => {
                json!({"prompt_tokens": 10, "completion_tokens": 1_000_000_000u64, "total_tokens": 1_000_000_010u64})
            }
            _ => usage.clone(),
        };
    }

    /// Applies `answer=` and `logprob=` to a plan.
    pub fn shape(&self, mut p: Plan) -> Plan {
        if let (Some(lp), Some(_)) = (self.logprob, p.logprob) {
            p.logprob = Some(lp);
        }
        let Some(kind) = self.answer.as_deref() else {
            return p;
        };
        for a in &mut p.answers {
            *a = match (kind, &*a) {
                ("empty", _) => Answer::Text(String::new()),
                ("refusal", _) => Answer::Text("I'm sorry, but I can't help with that request.".into()),
                ("badjson", _) => Answer::Text(r#"{"answer": "unfinished"#.into()),
                ("badtool", Answer::ToolCall { id, name, .. }) => Answer::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: "{city: Oslo".into(),
                },
                ("text", _) => Answer::Text("Here is a plain answer instead of a tool call.".into()),
                _ => a.clone(),
            };
        }
        let completion: u64 = p
            .answers
            .iter()
            .map(|a| match a {
                Answer::Text(t) | Answer::Cut(t) => switchyard::providers::mock::mock_tokens(t).max(1),
                Answer::ToolCall { arguments, .. } => switchyard::providers::mock::mock_tokens(arguments).max(1),
            })
            .sum();
        p.usage.completion_tokens = completion;
        p
    }
}

#[derive(Default)]
pub struct MockState {
    pub requests: AtomicU64,
    /// Streams whose body was dropped before it finished (the client went away).
    pub streams_cancelled: AtomicU64,
    pub streams_completed: AtomicU64,
    /// TCP connections accepted (to check that clients reuse connections).
    pub connections: AtomicU64,
    per_model: Mutex<HashMap<String, u64>>,
    recent: Mutex<VecDeque<Value>>,
}

impl MockState {
    fn record(&self, body: &Value) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut r = self.recent.lock().expect("mock lock");
        if r.len() >= 200 {
            r.pop_front();
        }
        r.push_back(body.clone());
        let model = body["model"].as_str().unwrap_or("").to_string();
        let mut pm = self.per_model.lock().expect("mock lock");
        let n = pm.entry(model).or_insert(0);
        *n += 1;
        *n
    }

    pub fn recent(&self) -> Vec<Value> {
        self.recent.lock().expect("mock lock").iter().cloned().collect()
    }

    pub fn count_for(&self, model: &str) -> u64 {
        self.per_model
            .lock()
            .expect("mock lock")
            .get(model)
            .copied()
            .unwrap_or(0)
    }
}

fn openai_error(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status == 429 {
        "rate_limit_exceeded"
    } else {
        "server_error"
    };
    let mut r = (
        code,
        [("content-type", "application/json")],
        json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}).to_string(),
    )
        .into_response();
    if status == 429 {
        r.headers_mut().insert(
            "retry-after",
            retry_after.unwrap_or(1).to_string().parse().expect("digits"),
        );
    }
    r
}

fn anthropic_error(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400 => "invalid_request_error",
        401 => "authentication_error",
        _ => "api_error",
    };
    let mut r = (
        code,
        [("content-type", "application/json")],
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
    )
        .into_response();
    if status == 429 {
        r.headers_mut().insert(
            "retry-after",
            retry_after.unwrap_or(1).to_string().parse().expect("digits"),
        );
    }
    r
}

/// Applies latency, hang and error directives; `Some` is the response to send instead of an answer.
async fn preamble(state: &MockState, body: &Value, d: &Directives, anthropic: bool) -> Option<Response> {
    let n = state.record(body);
    if d.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(d.latency_ms)).await;
    }
    if d.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let fail = match (d.error, d.fail_first) {
        (Some(s), 0) => Some(s),
        (s, f) if f > 0 && n <= f => Some(s.unwrap_or(500)),
        _ => None,
    };
    fail.map(|status| {
        let msg = format!("mock failure {status}");
        if anthropic {
            anthropic_error(status, &msg, d.retry_after)
        } else {
            openai_error(status, &msg, d.retry_after)
        }
    })
}

/// Counts a stream as completed when fully sent, cancelled when dropped early.
struct StreamWatch {
    state: Arc<MockState>,
    done: bool,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if self.done {
            self.state.streams_completed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.state.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends SSE frames with `delay` between them; `cut` closes early without the end frame.
fn sse_response(state: Arc<MockState>, frames: Vec<String>, delay: Duration, end: Option<String>) -> Response {
    sse_frames(state, frames.into_iter().chain(end), delay)
}

/// [`sse_response`] of any sequence of frames, endless ones too.
fn sse_frames(
    state: Arc<MockState>,
    items: impl Iterator<Item = String> + Send + 'static,
    delay: Duration,
) -> Response {
    let watch = StreamWatch { state, done: false };
    let stream = futures_util::stream::unfold((items, watch, true), move |(mut it, mut watch, first)| async move {
        match it.next() {
            None => {
                watch.done = true;
                drop(watch);
                None
            }
            Some(f) => {
                if !first && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, Infallible>(Bytes::from(f)), (it, watch, false)))
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(400, "mock: body is not a JSON object", None);
    };
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return openai_error(400, "mock: content-type must be application/json", None);
    }
    let model = req.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let d = Directives::parse(&model);
    if let Some(r) = preamble(&state, &Value::Object(req.clone()), &d, false).await {
        return r;
    }
    if d.error_body {
        let body = json!({"error": {"message": "mock: quota exhausted", "type": "insufficient_quota"}});
        return ([("content-type", "application/json")], body.to_string()).into_response();
    }
    let mut req = req;
    if d.no_max_completion_tokens {
        req.remove("max_completion_tokens");
    }
    let p = d.shape(plan(&model, &req));
    let stream = req.get("stream") == Some(&Value::Bool(true));
    if !stream {
        let mut v = render_completion(&p, d.usage);
        if let Some(u) = v.get_mut("usage") {
            d.spoil_usage(u);
        }
        return ([("content-type", "application/json")], v.to_string()).into_response();
    }
    let wants_usage = !d.no_stream_usage
        && req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let filler = "x".repeat(d.pad);
    let mut frames: Vec<String> = render_chunks(&p, d.chunks, d.usage && wants_usage)
        .into_iter()
        .map(|mut c| {
            if let Some(Value::String(t)) = c.pointer_mut("/choices/0/delta/content") {
                if !t.is_empty() {
                    t.push_str(&filler);
                }
            }
            if let Some(u) = c.get_mut("usage") {
                d.spoil_usage(u);
            }
            if d.repeat_tool_names {
                repeat_tool_names(&p, &mut c);
            }
            format!("data: {c}\n\n")
        })
        .collect();
    if d.endless && frames.len() > 1 {
        let again = frames[1].clone();
        frames.truncate(1);
        let forever = frames.into_iter().chain(std::iter::repeat(again));
        return sse_frames(state.clone(), forever, Duration::from_millis(d.delay_ms));
    }
    let mut end = Some("data: [DONE]\n\n".to_string());
    if let Some(n) = d.cut {
        frames.truncate(n);
        end = None;
    }
    if let Some(n) = d.stream_error {
        frames.truncate(n);
        end = Some(format!(
            "data: {}\n\n",
            json!({"error": {"message": "mock mid-stream failure", "type": "server_error", "code": 500}})
        ));
    }
    sse_response(state.clone(), frames, Duration::from_millis(d.delay_ms), end)
}

/// Puts each tool call's `id`, `type` and name into every delta of it, as llama.cpp's server does.
fn repeat_tool_names(p: &Plan, chunk: &mut Value) {
    for choice in chunk["choices"].as_array_mut().into_iter().flatten() {
        let i = choice["index"].as_u64().unwrap_or(0) as usize;
        let Some(Answer::ToolCall { id, name, .. }) = p.answers.get(i) else {
            continue;
        };
        for tc in choice["delta"]["tool_calls"].as_array_mut().into_iter().flatten() {
            tc["id"] = Value::String(id.clone());
            tc["type"] = Value::String("function".into());
            tc["function"]["name"] = Value::String(name.clone());
        }
    }
}

async fn embeddings(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(400, "mock: body is not a JSON object", None);
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let d = Directives::parse(&model);
    if let Some(r) = preamble(&state, &Value::Object(req.clone()), &d, false).await {
        return r;
    }
    let texts: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect(),
        _ => return openai_error(400, "mock: input missing", None),
    };
    let mut v = render_embeddings(&model, &texts, d.dims);
    if !d.usage {
        v.as_object_mut().expect("object").remove("usage");
    }
    ([("content-type", "application/json")], v.to_string()).into_response()
}

/// Checks the rules the real Messages API enforces; returns the first violation.
pub fn check_anthropic_request(req: &Map<String, Value>) -> Result<(), String> {
    if !req.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Field required".into());
    }
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut tool_ids: Vec<String> = Vec::new();
    let mut expected = "user";
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if role != expected {
            return Err(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\""
            ));
        }
        expected = if role == "user" { "assistant" } else { "user" };
        let blocks = match &m["content"] {
            Value::String(_) => continue,
            Value::Array(b) => b,
            _ => return Err(format!("messages.{i}.content: invalid")),
        };
        if blocks.is_empty() {
            return Err(format!("messages.{i}: content must not be empty"));
        }
        for b in blocks {
            match b["type"].as_str() {
                Some("text") if b["text"].is_string() => {}
                Some("image") if b["source"]["type"].is_string() => {}
                Some("tool_use") if role == "assistant" && b["input"].is_object() => {
                    tool_ids.push(b["id"].as_str().unwrap_or("").to_string())
                }
                Some("tool_result") if role == "user" => {
                    let id = b["tool_use_id"].as_str().unwrap_or("");
                    if !tool_ids.iter().any(|t| t == id) {
                        return Err(format!("messages.{i}: tool_result for unknown tool_use_id `{id}`"));
                    }
                }
                other => return Err(format!("messages.{i}: invalid content block {other:?}")),
            }
        }
    }
    Ok(())
}

/// An OpenAI-shaped view of an Anthropic request, for the shared answer planner.
fn openai_view(req: &Map<String, Value>) -> Map<String, Value> {
    let mut messages = Vec::new();
    for m in req.get("messages").and_then(Value::as_array).into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => messages.push(json!({"role": m["role"], "content": s})),
            Value::Array(blocks) => {
                for b in blocks {
                    match b["type"].as_str() {
                        Some("text") => messages.push(json!({"role": m["role"], "content": b["text"]})),
                        Some("tool_result") => messages.push(json!({"role": "tool", "content": b["content"]})),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let tools: Vec<Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| json!({"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}))
        .collect();
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = req.get("tool_choice") {
        match tc["type"].as_str() {
            Some("tool") => {
                out.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": tc["name"]}}),
                );
            }
            Some("none") => {
                out.insert("tool_choice".into(), json!("none"));
            }
            _ => {}
        }
    }
    out
}

fn anthropic_usage(p: &Plan, usage: bool) -> Value {
    if usage {
        json!({"input_tokens": p.usage.prompt_tokens, "output_tokens": p.usage.completion_tokens})
    } else {
        json!({"input_tokens": 0, "output_tokens": 0})
    }
}

fn anthropic_blocks(p: &Plan) -> (Vec<Value>, &'static str) {
    match &p.answers[0] {
        Answer::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Answer::Cut(t) => (vec![json!({"type": "text", "text": t})], "max_tokens"),
        Answer::ToolCall { id, name, arguments } => (
            vec![
                json!({"type": "text", "text": "I will call a tool."}),
                json!({"type": "tool_use", "id": id.replace("call_", "toolu_"), "name": name,
                       "input": serde_json::from_str::<Value>(arguments).unwrap_or(json!({}))}),
            ],
            "tool_use",
        ),
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

async fn messages(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(400, "mock: body is not a JSON object", None);
    };
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(400, "anthropic-version: header is required", None);
    }
    if headers.get("x-api-key").is_none() {
        return anthropic_error(401, "x-api-key header is required", None);
    }
    let model = req.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let d = Directives::parse(&model);
    if let Some(r) = preamble(&state, &Value::Object(req.clone()), &d, true).await {
        return r;
    }
    if let Err(e) = check_anthropic_request(&req) {
        return anthropic_error(400, &e, None);
    }
    if d.error_body {
        // As Anthropic's API sometimes does: an error event with a 200 status.
        let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock: overloaded"}});
        return ([("content-type", "application/json")], body.to_string()).into_response();
    }
    let p = plan(&model, &openai_view(&req));
    let (blocks, stop_reason) = anthropic_blocks(&p);
    let id = p.id.replace("chatcmpl-", "msg_");
    if req.get("stream") != Some(&Value::Bool(true)) {
        let msg = json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": blocks,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": anthropic_usage(&p, d.usage),
        });
        return ([("content-type", "application/json")], msg.to_string()).into_response();
    }
    let mut frames = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": if d.usage { p.usage.prompt_tokens } else { 0 }, "output_tokens": 1}}}),
    )];
    frames.push(event("ping", json!({"type": "ping"})));
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("text") => {
                frames.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                ));
                for piece in switchyard::providers::mock::split_text(b["text"].as_str().unwrap_or(""), d.chunks) {
                    frames.push(event("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}})));
                }
            }
            _ => {
                frames.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
                ));
                for piece in switchyard::providers::mock::split_text(&b["input"].to_string(), d.chunks) {
                    frames.push(event("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
            }
        }
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": if d.usage { p.usage.completion_tokens } else { 0 }}}),
    ));
    let mut end = Some(event("message_stop", json!({"type": "message_stop"})));
    if let Some(n) = d.cut {
        frames.truncate(n);
        end = None;
    }
    if let Some(n) = d.stream_error {
        frames.truncate(n);
        end = Some(event(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
    }
    sse_response(state.clone(), frames, Duration::from_millis(d.delay_ms), end)
}

async fn stats(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(json!({
        "requests": state.requests.load(Ordering::Relaxed),
        "streams_cancelled": state.streams_cancelled.load(Ordering::Relaxed),
        "streams_completed": state.streams_completed.load(Ordering::Relaxed),
        "connections": state.connections.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn recent(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(Value::Array(state.recent())).into_response()
}

pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/mock/stats", get(stats))
        .route("/mock/requests", get(recent))
        .with_state(state)
}

/// A running mock upstream.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    _task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Starts a mock on an ephemeral port of 127.0.0.1.
    pub async fn start() -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an ephemeral port");
        Self::serve(listener).await
    }

    pub async fn serve(listener: TcpListener) -> MockUpstream {
        let addr = listener.local_addr().expect("bound listener has an address");
        let state = Arc::new(MockState::default());
        let app = router(state.clone());
        let counter = state.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp: &mut tokio::net::TcpStream| {
            counter.connections.fetch_add(1, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockUpstream {
            addr,
            state,
            _task: task,
        }
    }

    /// The OpenAI-style base URL (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self._task.abort();
    }
}
