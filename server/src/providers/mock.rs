//! The built-in mock model: deterministic answers in-process, so the demo runs with no key and no network.
//!
//! The same answer plan is used by the test crate's HTTP mock upstream (OpenAI and Anthropic
//! wire formats), so tests and the demo agree on what a mock model says. Answers follow the
//! request: a tool call when tools are offered, a JSON object in JSON mode, `n` choices, usage
//! always reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{CallLimits, ChatOutcome, Chunk, Complete, Provider, UpstreamError};
use crate::config::{DeploymentConfig, ProviderConfig};
use crate::proxy::request::{ChatRequest, EmbeddingsRequest};
use crate::records::usage::{Reported, Usage};
use serde::Deserialize;

/// What one choice of a mock answer is.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text(String),
    /// Text cut at the request's output token limit, as a real model stops (`length`).
    Cut(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

impl Answer {
    pub fn finish_reason(&self) -> &'static str {
        match self {
            Answer::Text(_) => "stop",
            Answer::Cut(_) => "length",
            Answer::ToolCall { .. } => "tool_calls",
        }
    }

    fn len_text(&self) -> &str {
        match self {
            Answer::Text(t) | Answer::Cut(t) => t,
            Answer::ToolCall { arguments, .. } => arguments,
        }
    }
}

/// A whole mock answer: one [`Answer`] per choice and the usage it reports.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub answers: Vec<Answer>,
    pub usage: Usage,
    /// With `logprobs: true` in the request: the log-probability reported for every text token.
    pub logprob: Option<f64>,
}

/// The log-probability the mock reports per token when asked (a confident model).
pub const MOCK_LOGPROB: f64 = -0.05;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A rough token count the mock reports as its usage: about four bytes a token.
pub fn mock_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A value that fits `schema`, as a model following it would write: every declared property,
/// the first of an `enum` or of the alternatives of `anyOf`/`oneOf`, `const` as it is,
/// references into `$defs`/`definitions` resolved against `root`. Strings say `text`.
pub fn instance_of(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    let next = |s: &Value| instance_of(s, root, text, depth + 1);
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .cloned()
            .unwrap_or(Value::Null);
        return next(&target);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alt) = schema.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return next(alt);
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in all {
            match next(part) {
                Value::Object(o) => merged.extend(o),
                other if merged.is_empty() => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // A union of types: the first that is not null.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ if schema.get("items").is_some() => "array",
        _ => "",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            for (k, s) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.insert(k.clone(), next(s));
            }
            Value::Object(out)
        }
        "array" => {
            let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1).clamp(1, 8);
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array((0..n).map(|_| next(&item)).collect())
        }
        "string" => {
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut t = text.to_string();
            while t.chars().count() < min {
                t.push('.');
            }
            Value::String(t)
        }
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.0)),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

/// Decides the mock's answer to a chat body (an OpenAI-shaped request).
pub fn plan(model: &str, body: &Map<String, Value>) -> Plan {
    let id_num = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut prompt_text = String::new();
    for m in &messages {
        prompt_text.push_str(&text_of(&m["content"]));
        prompt_text.push(' ');
    }
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let last_role = last["role"].as_str().unwrap_or("user");
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let snippet: String = last_user.chars().take(120).collect();
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 128) as usize;
    let tools = body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
    let tool_choice = body.get("tool_choice").cloned().unwrap_or(Value::Null);
    let format = body.get("response_format");
    let json_mode = matches!(
        format.and_then(|r| r.get("type")).and_then(Value::as_str),
        Some("json_object") | Some("json_schema")
    );
    // With `json_schema`, the answer follows the schema, as a model that honours it does.
    let schema = format
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("json_schema"))
        .and_then(|r| r.get("json_schema"))
        .and_then(|j| j.get("schema"));
    let wants_tool = !tools.is_empty() && tool_choice != json!("none") && last_role != "tool";
    let max_output = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64));

    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        let answer = if wants_tool {
            let named = tool_choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            let tool = named
                .and_then(|name| tools.iter().find(|t| t["function"]["name"] == name))
                .unwrap_or(&tools[0]);
            let params = &tool["function"]["parameters"];
            let args = match instance_of(params, params, "demo", 0) {
                v @ Value::Object(_) => v,
                _ => json!({}),
            };
            Answer::ToolCall {
                id: format!("call_mock{id_num}x{i}"),
                name: tool["function"]["name"].as_str().unwrap_or("tool").to_string(),
                arguments: args.to_string(),
            }
        } else if let Some(schema) = schema {
            Answer::Text(instance_of(schema, schema, &format!("You asked: {snippet}"), 0).to_string())
        } else if json_mode {
            Answer::Text(json!({"model": model, "answer": format!("You asked: {snippet}"), "choice": i}).to_string())
        } else if last_role == "tool" {
            Answer::Text(format!("The tool returned: {}", text_of(&last["content"])))
        } else {
            let suffix = if n > 1 { format!(" (choice {i})") } else { String::new() };
            Answer::Text(format!(
                "This is {model}, a Switchyard mock model. You said: \"{snippet}\". A real deployment would answer here{suffix}."
            ))
        };
        answers.push(cap(answer, max_output));
    }
    let completion_tokens = answers.iter().map(|a| mock_tokens(a.len_text()).max(1)).sum();
    Plan {
        id: format!("chatcmpl-mock{id_num}"),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: model.to_string(),
        answers,
        logprob: (body.get("logprobs") == Some(&Value::Bool(true))).then_some(MOCK_LOGPROB),
        usage: Usage {
            prompt_tokens: mock_tokens(&prompt_text) + 3 * messages.len() as u64 + 3,
            completion_tokens,
            cached_tokens: 0,
        },
    }
}

/// Cuts a text answer to `max` mock tokens (four bytes each), as a model stops at its limit.
fn cap(answer: Answer, max: Option<u64>) -> Answer {
    let (Answer::Text(t), Some(max)) = (&answer, max) else {
        return answer;
    };
    let limit = (max.max(1) * 4) as usize;
    if t.len() <= limit {
        return answer;
    }
    let mut end = limit;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    Answer::Cut(t[..end].to_string())
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// The `logprobs` object of a piece of text: one entry per mock token (four bytes), or `null`.
fn logprobs_json(text: &str, logprob: Option<f64>) -> Value {
    let Some(lp) = logprob else {
        return Value::Null;
    };
    let pieces = split_text(text, text.len().div_ceil(4).max(1));
    let content: Vec<Value> = pieces
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| json!({"token": p, "logprob": lp, "bytes": p.as_bytes(), "top_logprobs": []}))
        .collect();
    json!({"content": content, "refusal": null})
}

/// The plan as a complete `chat.completion` body.
pub fn render_completion(plan: &Plan, with_usage: bool) -> Value {
    let choices: Vec<Value> = plan
        .answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let message = match a {
                Answer::Text(t) | Answer::Cut(t) => json!({"role": "assistant", "content": t, "refusal": null}),
                Answer::ToolCall { id, name, arguments } => json!({
                    "role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]
                }),
            };
            let logprobs = match a {
                Answer::Text(t) | Answer::Cut(t) => logprobs_json(t, plan.logprob),
                Answer::ToolCall { .. } => Value::Null,
            };
            json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": a.finish_reason()})
        })
        .collect();
    let mut v = json!({
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": plan.model,
        "choices": choices, "system_fingerprint": "fp_mock",
    });
    if with_usage {
        v["usage"] = usage_json(&plan.usage);
    }
    v
}

/// Splits `text` into about `pieces` parts on character boundaries.
pub fn split_text(text: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let per = chars.len().div_ceil(pieces.max(1));
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}

/// The plan as the JSON of each `chat.completion.chunk`, in order, the usage chunk last when asked.
pub fn render_chunks(plan: &Plan, pieces: usize, with_usage: bool) -> Vec<Value> {
    let base = |choices: Value| {
        json!({
            "id": plan.id, "object": "chat.completion.chunk", "created": plan.created, "model": plan.model,
            "system_fingerprint": "fp_mock", "choices": choices,
        })
    };
    let mut out = Vec::new();
    for (i, a) in plan.answers.iter().enumerate() {
        match a {
            Answer::Text(t) | Answer::Cut(t) => {
                out.push(base(json!([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])));
                for piece in split_text(t, pieces) {
                    let logprobs = logprobs_json(&piece, plan.logprob);
                    out.push(base(
                        json!([{"index": i, "delta": {"content": piece}, "logprobs": logprobs, "finish_reason": null}]),
                    ));
                }
            }
            Answer::ToolCall { id, name, arguments } => {
                out.push(base(
                    json!([{"index": i, "delta": {"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}
                ]}, "logprobs": null, "finish_reason": null}]),
                ));
                for piece in split_text(arguments, pieces) {
                    out.push(base(json!([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "logprobs": null, "finish_reason": null}])));
                }
            }
        }
        out.push(base(
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": a.finish_reason()}]),
        ));
    }
    if with_usage {
        let mut u = base(json!([]));
        u["usage"] = usage_json(&plan.usage);
        out.push(u);
    }
    out
}

/// A deterministic unit vector for `text`, the same on every run.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        state ^= u64::from(b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            let mut x = state ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            ((x % 2000) as f32 / 1000.0) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A complete embeddings response for `texts`.
pub fn render_embeddings(model: &str, texts: &[String], dims: usize) -> Value {
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedding(t, dims)}))
        .collect();
    let tokens: u64 = texts.iter().map(|t| mock_tokens(t).max(1)).sum();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// The in-process mock provider.
pub struct Mock {
    config: Arc<ProviderConfig>,
}

impl Mock {
    pub fn new(config: Arc<ProviderConfig>) -> Self {
        Mock { config }
    }
}

/// How many pieces the mock splits an answer into when streaming.
const STREAM_PIECES: usize = 12;

impl Provider for Mock {
    fn chat(
        &self,
        deployment: &DeploymentConfig,
        request: &ChatRequest,
        _limits: CallLimits,
    ) -> BoxFuture<'static, Result<ChatOutcome, UpstreamError>> {
        let plan = plan(&deployment.model, &request.body);
        let latency = Duration::from_millis(self.config.latency_ms);
        let delay = Duration::from_millis(self.config.chunk_delay_ms);
        let stream = request.stream;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if !stream {
                let body = Bytes::from(render_completion(&plan, true).to_string());
                return Ok(ChatOutcome::Complete(Complete {
                    body,
                    usage: Some(Reported::from(plan.usage)),
                }));
            }
            let chunks = render_chunks(&plan, STREAM_PIECES, true);
            let s = futures_util::stream::unfold((chunks.into_iter(), true), move |(mut it, first)| async move {
                let v = it.next()?;
                if !first && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(Chunk::from_value(&v)), (it, false)))
            });
            Ok(ChatOutcome::Stream(Box::pin(s)))
        })
    }

    fn embeddings(
        &self,
        deployment: &DeploymentConfig,
        request: &EmbeddingsRequest,
        _limits: CallLimits,
    ) -> BoxFuture<'static, Result<Complete, UpstreamError>> {
        let dims = request
            .body
            .get("dimensions")
            .and_then(Value::as_u64)
            .unwrap_or(16)
            .clamp(1, 4096) as usize;
        let mut texts = request.texts.clone();
        if texts.is_empty() {
            texts.push(String::new());
        }
        let v = render_embeddings(&deployment.model, &texts, dims);
        let usage = super::WireUsage::deserialize(&v["usage"]).ok().map(Reported::from);
        let body = Bytes::from(v.to_string());
        let latency = Duration::from_millis(self.config.latency_ms);
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(Complete { body, usage })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { panic!() };
        m
    }

    #[test]
    fn answers_stop_at_the_output_limit() {
        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "tell me everything"}], "max_tokens": 3, "n": 2})),
        );
        for a in &p.answers {
            assert_eq!(a.finish_reason(), "length");
            assert!(matches!(a, Answer::Cut(t) if t.len() <= 12), "{a:?}");
        }
        assert!(p.usage.completion_tokens <= 6, "{:?}", p.usage);
        let long = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 1000})),
        );
        assert_eq!(long.answers[0].finish_reason(), "stop");
    }

    #[test]
    fn max_completion_tokens_caps_the_answer_too() {
        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "tell me everything"}], "max_completion_tokens": 2})),
        );
        assert_eq!(p.answers[0].finish_reason(), "length");
        assert!(p.usage.completion_tokens <= 2, "{:?}", p.usage);
    }

    #[test]
    fn a_json_schema_answer_fits_its_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 3},
                "age": {"type": "integer", "minimum": 18},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "kind": {"enum": ["a", "b"]},
                "home": {"$ref": "#/$defs/place"},
                "maybe": {"type": ["null", "number"]},
                "either": {"anyOf": [{"type": "boolean"}, {"type": "string"}]}
            },
            "required": ["name", "age", "tags", "kind", "home", "maybe", "either"],
            "additionalProperties": false,
            "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"], "additionalProperties": false}}
        });
        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "who?"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": schema}}})),
        );
        let Answer::Text(t) = &p.answers[0] else {
            panic!("{:?}", p.answers)
        };
        let v: Value = serde_json::from_str(t).unwrap();
        assert!(v["home"]["city"].is_string(), "{v}");
        // The cascade's schema check (the one the gateway uses) accepts it.
        let resolved = {
            let mut s = schema.clone();
            s["properties"]["home"] = schema["$defs"]["place"].clone();
            s
        };
        crate::router::cascade::fits(&v, &resolved, 0).unwrap_or_else(|e| panic!("{e}: {v}"));
    }

    #[test]
    fn plans_text_tool_and_json_answers() {
        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "hello"}], "n": 2})),
        );
        assert_eq!(p.answers.len(), 2);
        assert!(matches!(&p.answers[0], Answer::Text(t) if t.contains("hello")));
        assert!(p.usage.prompt_tokens > 0 && p.usage.completion_tokens > 0);

        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "weather?"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]})),
        );
        match &p.answers[0] {
            Answer::ToolCall { name, arguments, .. } => {
                assert_eq!(name, "get_weather");
                let args: Value = serde_json::from_str(arguments).unwrap();
                assert_eq!(args, json!({"city": "demo", "days": 1}));
            }
            other => panic!("{other:?}"),
        }

        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})),
        );
        let Answer::Text(t) = &p.answers[0] else { panic!() };
        assert!(serde_json::from_str::<Value>(t).unwrap().is_object());
    }

    #[test]
    fn chunks_reassemble_to_the_completion() {
        let p = plan(
            "m",
            &body(json!({"messages": [{"role": "user", "content": "stream me"}]})),
        );
        let chunks = render_chunks(&p, 5, true);
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let full = render_completion(&p, true);
        assert_eq!(text, full["choices"][0]["message"]["content"].as_str().unwrap());
        assert_eq!(chunks.last().unwrap()["choices"], json!([]));
        assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 8);
        assert_eq!(a, embedding("hello", 8));
        assert_ne!(a, embedding("world", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
