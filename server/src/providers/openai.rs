//! OpenAI-compatible upstreams (OpenAI, vLLM, Ollama, llama.cpp, Groq, Together…): pass-through with two edits.
//!
//! The body goes upstream as the client sent it, unknown fields included, with two changes:
//! `model` becomes the deployment's upstream name, and streams always ask for usage
//! (`stream_options.include_usage = true`) so a stream is never billed blind. The response body
//! (or each chunk) comes back byte for byte, except where the provider's compatibility
//! settings ([`Compat`]) make a server that is not OpenAI behave like it: `max_completion_tokens`
//! mirrored as `max_tokens`, and a streamed tool call's name and id sent once per index.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{read_limited, send, sse, CallLimits, ChatOutcome, Chunk, ChunkInfo, Complete, Provider, UpstreamError};
use crate::config::{Compat, DeploymentConfig, ProviderConfig};
use crate::proxy::request::{ChatRequest, EmbeddingsRequest};

pub struct OpenAi {
    client: reqwest::Client,
    config: Arc<ProviderConfig>,
    /// Parsed once: URL parsing is measurable per request at tens of thousands of requests a second.
    chat_url: reqwest::Url,
    embeddings_url: reqwest::Url,
}

impl OpenAi {
    pub fn new(client: reqwest::Client, config: Arc<ProviderConfig>) -> Self {
        let parse = |path: &str| {
            reqwest::Url::parse(&format!("{}{path}", config.base_url))
                .expect("base_url was validated as a URL when the config was loaded")
        };
        OpenAi {
            chat_url: parse("/chat/completions"),
            embeddings_url: parse("/embeddings"),
            client,
            config,
        }
    }

    fn post(&self, url: &reqwest::Url, body: Vec<u8>, limits: CallLimits) -> reqwest::RequestBuilder {
        let mut rb = self
            .client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(limits.timeout)
            .body(body);
        if let Some(key) = &self.config.api_key {
            rb = rb.bearer_auth(key.expose());
        }
        for (k, v) in &self.config.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb
    }
}

/// The client's body, serialized with `model` replaced and, for streams, usage requested.
pub struct ForwardBody<'a> {
    pub body: &'a Map<String, Value>,
    pub model: &'a str,
    pub force_stream_usage: bool,
    /// Also send `max_completion_tokens` as `max_tokens` (when the client sent no `max_tokens`).
    pub mirror_max_tokens: bool,
}

impl Serialize for ForwardBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.body {
            match k.as_str() {
                "model" => map.serialize_entry(k, self.model)?,
                "stream_options" if self.force_stream_usage => {}
                _ => map.serialize_entry(k, v)?,
            }
        }
        if self.force_stream_usage {
            let mut opts = match self.body.get("stream_options") {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            opts.insert("include_usage".into(), Value::Bool(true));
            map.serialize_entry("stream_options", &opts)?;
        }
        if self.mirror_max_tokens && !self.body.contains_key("max_tokens") {
            if let Some(v) = self.body.get("max_completion_tokens").filter(|v| v.is_u64()) {
                map.serialize_entry("max_tokens", v)?;
            }
        }
        map.end()
    }
}

/// Turns an OpenAI-style SSE body into chunks. `[DONE]` ends it; an end without `[DONE]` is
/// [`UpstreamError::Cut`]; an `error` payload mid-stream becomes an error.
pub fn chunk_stream(resp: reqwest::Response, limits: CallLimits, compat: Compat) -> super::ChunkStream {
    let events = Box::pin(sse::events(resp, limits));
    let names = compat.dedupe_tool_call_names.then(ToolCallNames::default);
    Box::pin(futures_util::stream::unfold(
        Some((events, names)),
        |state| async move {
            let (mut events, mut names) = state?;
            loop {
                match events.next().await {
                    None => return Some((Err(UpstreamError::Cut), None)),
                    Some(Err(e)) => return Some((Err(e), None)),
                    Some(Ok(e)) if e.data.is_empty() => continue,
                    Some(Ok(e)) if e.data.trim() == "[DONE]" => return None,
                    Some(Ok(e)) => {
                        let info = ChunkInfo::peek_str(&e.data);
                        let data = Bytes::from(e.data);
                        let item = match info {
                            Some(info) => match names.as_mut().filter(|_| info.tool_calls) {
                                Some(n) => Ok(n.once(data, info)),
                                None => Ok(Chunk { data, info }),
                            },
                            None => Err(stream_error(&data)),
                        };
                        let next = if item.is_ok() { Some((events, names)) } else { None };
                        return Some((item, next));
                    }
                }
            }
        },
    ))
}

/// The tool calls of a stream whose name has been sent: `(choice, tool call)` indexes.
#[derive(Default)]
struct ToolCallNames(Vec<(u64, u64)>);

impl ToolCallNames {
    /// A chunk with each tool call's `id`, `type` and function `name` removed where an earlier
    /// chunk sent them for the same index (OpenAI sends them once, in the first delta).
    fn once(&mut self, data: Bytes, info: ChunkInfo) -> Chunk {
        let Ok(mut v) = serde_json::from_slice::<Value>(&data) else {
            return Chunk { data, info };
        };
        let mut changed = false;
        for choice in v["choices"].as_array_mut().into_iter().flatten() {
            let c = choice["index"].as_u64().unwrap_or(0);
            for tc in choice["delta"]["tool_calls"].as_array_mut().into_iter().flatten() {
                let t = tc["index"].as_u64().unwrap_or(0);
                let Some(obj) = tc.as_object_mut() else { continue };
                let named = obj
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .is_some_and(|n| n.as_str().is_some_and(|n| !n.is_empty()));
                if !named {
                    continue;
                }
                if !self.0.contains(&(c, t)) {
                    self.0.push((c, t));
                    continue;
                }
                obj.remove("id");
                obj.remove("type");
                if let Some(Value::Object(f)) = obj.get_mut("function") {
                    f.remove("name");
                }
                changed = true;
            }
        }
        if !changed {
            return Chunk { data, info };
        }
        let data = Bytes::from(v.to_string());
        let info = ChunkInfo::peek(&data).unwrap_or(info);
        Chunk { data, info }
    }
}

/// The usage of a complete answer. A body that is not JSON, or an error sent with a 200 status
/// (some servers do), is a failure: it must never reach the client as a success.
fn answer_usage(body: &[u8]) -> Result<Option<crate::records::usage::Reported>, UpstreamError> {
    match super::read_body(body) {
        super::BodyRead::Answer(u) => Ok(u),
        super::BodyRead::Error(message) => Err(UpstreamError::Status {
            status: 502,
            message,
            retry_after: None,
        }),
        super::BodyRead::NotJson => Err(UpstreamError::Protocol("response is not JSON".into())),
    }
}

/// An error payload sent inside a stream, or a chunk that is not JSON.
fn stream_error(data: &[u8]) -> UpstreamError {
    let v: Option<Value> = serde_json::from_slice(data).ok();
    match v.as_ref().and_then(|v| v.get("error")) {
        Some(err) => UpstreamError::Status {
            status: err["code"].as_u64().filter(|c| (400..600).contains(c)).unwrap_or(502) as u16,
            message: err["message"].as_str().unwrap_or("upstream stream error").to_string(),
            retry_after: None,
        },
        None => UpstreamError::Protocol("unparsable stream chunk".into()),
    }
}

impl Provider for OpenAi {
    fn chat(
        &self,
        deployment: &DeploymentConfig,
        request: &ChatRequest,
        limits: CallLimits,
    ) -> BoxFuture<'static, Result<ChatOutcome, UpstreamError>> {
        let body = serde_json::to_vec(&ForwardBody {
            body: &request.body,
            model: &deployment.model,
            force_stream_usage: request.stream,
            mirror_max_tokens: self.config.compat.mirror_max_tokens,
        })
        .expect("a JSON map serializes");
        let stream = request.stream;
        let compat = self.config.compat;
        let rb = self.post(&self.chat_url, body, limits);
        let rb = if stream {
            // The timeout covers the wait for headers only; chunks have their own idle timeout.
            rb.timeout(std::time::Duration::from_secs(24 * 3600))
        } else {
            rb
        };
        Box::pin(async move {
            if stream {
                let resp = tokio::time::timeout(limits.timeout, send(rb))
                    .await
                    .map_err(|_| UpstreamError::Timeout)??;
                Ok(ChatOutcome::Stream(chunk_stream(resp, limits, compat)))
            } else {
                let resp = send(rb).await?;
                let body = read_limited(resp, limits.max_response_bytes).await?;
                let usage = answer_usage(&body)?;
                Ok(ChatOutcome::Complete(Complete { body, usage }))
            }
        })
    }

    fn embeddings(
        &self,
        deployment: &DeploymentConfig,
        request: &EmbeddingsRequest,
        limits: CallLimits,
    ) -> BoxFuture<'static, Result<Complete, UpstreamError>> {
        let body = serde_json::to_vec(&ForwardBody {
            body: &request.body,
            model: &deployment.model,
            force_stream_usage: false,
            mirror_max_tokens: false,
        })
        .expect("a JSON map serializes");
        let rb = self.post(&self.embeddings_url, body, limits);
        Box::pin(async move {
            let resp = send(rb).await?;
            let body = read_limited(resp, limits.max_response_bytes).await?;
            let usage = answer_usage(&body)?;
            Ok(Complete { body, usage })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forward_body_swaps_model_and_forces_usage() {
        let Value::Object(body) = json!({
            "model": "logical", "stream": true, "stream_options": {"include_usage": false, "x": 1}, "extra": [1]
        }) else {
            panic!()
        };
        let out: Value = serde_json::to_value(ForwardBody {
            body: &body,
            model: "upstream",
            force_stream_usage: true,
            mirror_max_tokens: false,
        })
        .unwrap();
        assert_eq!(out["model"], "upstream");
        assert_eq!(out["stream_options"], json!({"include_usage": true, "x": 1}));
        assert_eq!(out["extra"], json!([1]));
        let out: Value = serde_json::to_value(ForwardBody {
            body: &body,
            model: "u",
            force_stream_usage: false,
            mirror_max_tokens: false,
        })
        .unwrap();
        assert_eq!(out["stream_options"]["include_usage"], false);
    }

    #[test]
    fn max_completion_tokens_is_mirrored_for_servers_that_need_it() {
        let Value::Object(body) = json!({"model": "m", "max_completion_tokens": 7}) else {
            panic!()
        };
        let fwd = |mirror| {
            serde_json::to_value(ForwardBody {
                body: &body,
                model: "u",
                force_stream_usage: false,
                mirror_max_tokens: mirror,
            })
            .unwrap()
        };
        assert_eq!(fwd(true)["max_tokens"], 7);
        assert_eq!(fwd(true)["max_completion_tokens"], 7);
        assert!(fwd(false).get("max_tokens").is_none());
        let Value::Object(both) = json!({"model": "m", "max_completion_tokens": 7, "max_tokens": 3}) else {
            panic!()
        };
        let out = serde_json::to_value(ForwardBody {
            body: &both,
            model: "u",
            force_stream_usage: false,
            mirror_max_tokens: true,
        })
        .unwrap();
        assert_eq!(out["max_tokens"], 3, "the client's own max_tokens wins");
    }

    #[test]
    fn a_tool_call_name_is_sent_once_per_index() {
        let mut names = ToolCallNames::default();
        let mut chunk = |s: &str| {
            let data = Bytes::from(s.to_string());
            let info = ChunkInfo::peek(&data).unwrap();
            names.once(data, info)
        };
        let first = chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
        );
        assert!(
            String::from_utf8_lossy(&first.data).contains("get_weather"),
            "the first keeps it"
        );
        let again = chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"a\""}}]}}]}"#,
        );
        let v: Value = serde_json::from_slice(&again.data).unwrap();
        let tc = &v["choices"][0]["delta"]["tool_calls"][0];
        assert!(tc.get("id").is_none() && tc.get("type").is_none() && tc["function"].get("name").is_none());
        assert_eq!(tc["function"]["arguments"], "{\"a\"");
        assert_eq!(
            again.info.text, "{\"a\"",
            "the estimate no longer counts the name twice"
        );
        let other = chunk(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c2","type":"function","function":{"name":"other","arguments":""}}]}}]}"#,
        );
        assert!(
            String::from_utf8_lossy(&other.data).contains("other"),
            "another index keeps its own"
        );
    }
}
