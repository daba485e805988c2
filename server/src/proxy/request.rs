//! Validated views of client requests: what the gateway needs to know, with the original body kept for pass-through.
//!
//! Validation happens before anything goes upstream and names the offending field in `param`
//! the way OpenAI does (`messages[2].content`). Fields the gateway does not know stay in the body
//! untouched, so new OpenAI parameters reach OpenAI-compatible upstreams without a release here.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::money::tokens::PromptText;

/// The request's needs that a deployment must be able to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub tools: bool,
    pub vision: bool,
    pub json: bool,
    /// `n > 1`: several choices in one call, which not every provider offers.
    pub choices: bool,
}

/// A validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The body as sent, unknown fields included.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    pub n: u32,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_output_tokens: Option<u32>,
    pub needs: Needs,
    /// Shared so a usage meter can keep it for an estimate without copying the text.
    pub prompt: std::sync::Arc<PromptText>,
}

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
/// More messages than this is a client bug or an attack, not a conversation.
pub const MAX_MESSAGES: usize = 100_000;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(param: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_param(
        param,
        format!(
            "Invalid type for '{param}': expected {want}, but got {}.",
            type_name(got)
        ),
    )
}

fn opt_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(key, "a boolean", v)),
    }
}

fn opt_u32(body: &Map<String, Value>, key: &str, min: u64, max: u64) -> Result<Option<u32>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match n.as_u64() {
            Some(x) if x >= min && x <= max => Ok(Some(x as u32)),
            _ => Err(ApiError::invalid_param(
                key,
                format!("Invalid value for '{key}': expected an integer from {min} to {max}, got {v}."),
            )),
        },
        Some(v) => Err(wrong_type(key, "an integer", v)),
    }
}

fn opt_number_in(body: &Map<String, Value>, key: &str, min: f64, max: f64) -> Result<(), ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x >= min && x <= max {
                Ok(())
            } else {
                Err(ApiError::invalid_param(
                    key,
                    format!("Invalid value for '{key}': expected a number from {min} to {max}, got {x}."),
                ))
            }
        }
        Some(v) => Err(wrong_type(key, "a number", v)),
    }
}

fn push_text(prompt: &mut PromptText, s: &str) {
    if !prompt.text.is_empty() {
        prompt.text.push('\n');
    }
    prompt.text.push_str(s);
}

/// Reads the model name, which every endpoint needs first.
fn model_field(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        None | Some(Value::Null) => Err(ApiError::invalid_param("model", "Missing required parameter: 'model'.")),
        Some(Value::String(s)) if s.is_empty() => Err(ApiError::invalid_param("model", "'model' must not be empty.")),
        Some(Value::String(s)) if s.len() > 256 => Err(ApiError::invalid_param(
            "model",
            "'model' is longer than 256 characters.",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(wrong_type("model", "a string", v)),
    }
}

/// Parses raw bytes as a JSON object, with OpenAI's wording for the failure.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::invalid_json(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::invalid_json(format!(
            "We could not parse the JSON body of your request: {e}. The body must be valid JSON."
        ))),
    }
}

impl ChatRequest {
    pub fn from_body(body: Map<String, Value>) -> Result<ChatRequest, ApiError> {
        let model = model_field(&body)?;
        let stream = opt_bool(&body, "stream")?.unwrap_or(false);
        let mut include_usage = false;
        match body.get("stream_options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => {
                if !stream {
                    return Err(ApiError::invalid_param(
                        "stream_options",
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    ));
                }
                match o.get("include_usage") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(b)) => include_usage = *b,
                    Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
                }
            }
            Some(v) => return Err(wrong_type("stream_options", "an object", v)),
        }
        let n = opt_u32(&body, "n", 1, 128)?.unwrap_or(1);
        let max_tokens = opt_u32(&body, "max_tokens", 1, u32::MAX as u64)?;
        let max_completion = opt_u32(&body, "max_completion_tokens", 1, u32::MAX as u64)?;
        opt_number_in(&body, "temperature", 0.0, 2.0)?;
        opt_number_in(&body, "top_p", 0.0, 1.0)?;
        opt_number_in(&body, "presence_penalty", -2.0, 2.0)?;
        opt_number_in(&body, "frequency_penalty", -2.0, 2.0)?;

        let mut needs = Needs::default();
        let mut prompt = PromptText::default();

        match body.get("stop") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => {}
            Some(Value::Array(_)) => {
                return Err(ApiError::invalid_param(
                    "stop",
                    "'stop' takes a string or up to 4 strings.",
                ))
            }
            Some(v) => return Err(wrong_type("stop", "a string or an array of strings", v)),
        }

        let messages = match body.get("messages") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_param(
                    "messages",
                    "Missing required parameter: 'messages'.",
                ))
            }
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(ApiError::invalid_param(
                    "messages",
                    "'messages' must contain at least one message.",
                ))
            }
            Some(Value::Array(a)) if a.len() > MAX_MESSAGES => {
                return Err(ApiError::invalid_param(
                    "messages",
                    format!("'messages' has more than {MAX_MESSAGES} entries."),
                ))
            }
            Some(Value::Array(a)) => a,
            Some(v) => return Err(wrong_type("messages", "an array", v)),
        };
        for (i, m) in messages.iter().enumerate() {
            validate_message(i, m, &mut needs, &mut prompt)?;
        }

        match body.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Array(tools)) => {
                for (i, t) in tools.iter().enumerate() {
                    let p = format!("tools[{i}]");
                    let Value::Object(t) = t else {
                        return Err(wrong_type(&p, "an object", t));
                    };
                    match t.get("type") {
                        Some(Value::String(s)) if s == "function" => {}
                        Some(Value::String(_)) => {}
                        _ => {
                            return Err(ApiError::invalid_param(
                                format!("{p}.type"),
                                "Missing required parameter: 'type'.",
                            ))
                        }
                    }
                    if let Some(f) = t.get("function") {
                        let Value::Object(f) = f else {
                            return Err(wrong_type(&format!("{p}.function"), "an object", f));
                        };
                        match f.get("name") {
                            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => push_text(&mut prompt, s),
                            _ => {
                                return Err(ApiError::invalid_param(
                                    format!("{p}.function.name"),
                                    "Each function needs a 'name' of 1 to 64 characters.",
                                ))
                            }
                        }
                        if let Some(Value::String(d)) = f.get("description") {
                            push_text(&mut prompt, d);
                        }
                        match f.get("parameters") {
                            None | Some(Value::Null) => {}
                            Some(v @ Value::Object(_)) => push_text(&mut prompt, &v.to_string()),
                            Some(v) => return Err(wrong_type(&format!("{p}.function.parameters"), "an object", v)),
                        }
                    }
                }
                needs.tools = !tools.is_empty();
            }
            Some(v) => return Err(wrong_type("tools", "an array", v)),
        }
        if let Some(Value::Array(f)) = body.get("functions") {
            needs.tools |= !f.is_empty();
        }

        match body.get("response_format") {
            None | Some(Value::Null) => {}
            Some(Value::Object(rf)) => match rf.get("type") {
                Some(Value::String(t)) if t == "json_object" || t == "json_schema" => needs.json = true,
                Some(Value::String(t)) if t == "text" => {}
                Some(Value::String(t)) => {
                    return Err(ApiError::invalid_param(
                        "response_format.type",
                        format!("Invalid value: '{t}'. Supported values are: 'text', 'json_object' and 'json_schema'."),
                    ))
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        "response_format.type",
                        "Missing required parameter: 'response_format.type'.",
                    ))
                }
            },
            Some(v) => return Err(wrong_type("response_format", "an object", v)),
        }

        needs.choices = n > 1;
        Ok(ChatRequest {
            model,
            stream,
            include_usage,
            n,
            max_output_tokens: max_completion.or(max_tokens),
            needs,
            prompt: std::sync::Arc::new(prompt),
            body,
        })
    }
}

fn validate_message(i: usize, m: &Value, needs: &mut Needs, prompt: &mut PromptText) -> Result<(), ApiError> {
    let p = format!("messages[{i}]");
    let Value::Object(m) = m else {
        return Err(wrong_type(&p, "an object", m));
    };
    let role = match m.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
        Some(Value::String(r)) => {
            return Err(ApiError::invalid_param(
                format!("{p}.role"),
                format!("Invalid value: '{r}'. Supported values are: {}.", ROLES.join(", ")),
            ))
        }
        None => {
            return Err(ApiError::invalid_param(
                format!("{p}.role"),
                "Missing required parameter: 'role'.",
            ))
        }
        Some(v) => return Err(wrong_type(&format!("{p}.role"), "a string", v)),
    };
    prompt.messages += 1;
    if let Some(name) = m.get("name") {
        match name {
            Value::String(s) => {
                prompt.names += 1;
                push_text(prompt, s);
            }
            v => return Err(wrong_type(&format!("{p}.name"), "a string", v)),
        }
    }
    let has_tool_calls = matches!(m.get("tool_calls"), Some(Value::Array(a)) if !a.is_empty())
        || matches!(m.get("function_call"), Some(Value::Object(_)));
    match m.get("content") {
        None | Some(Value::Null) => {
            if role != "assistant" || !has_tool_calls {
                if role == "assistant" {
                    return Err(ApiError::invalid_param(
                        format!("{p}.content"),
                        "An assistant message needs 'content' or 'tool_calls'.",
                    ));
                }
                return Err(ApiError::invalid_param(
                    format!("{p}.content"),
                    format!("Missing required parameter: '{p}.content'."),
                ));
            }
        }
        Some(Value::String(s)) => push_text(prompt, s),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{p}.content[{j}]");
                let Value::Object(part) = part else {
                    return Err(wrong_type(&pp, "an object", part));
                };
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text") {
                        Some(Value::String(t)) => push_text(prompt, t),
                        _ => {
                            return Err(ApiError::invalid_param(
                                format!("{pp}.text"),
                                "A text part needs a string 'text'.",
                            ))
                        }
                    },
                    Some("image_url") => {
                        if role != "user" {
                            return Err(ApiError::invalid_param(
                                format!("{pp}.type"),
                                "Image content is only allowed in user messages.",
                            ));
                        }
                        let url = part.get("image_url").and_then(|u| u.get("url")).and_then(Value::as_str);
                        if url.is_none_or(str::is_empty) {
                            return Err(ApiError::invalid_param(
                                format!("{pp}.image_url.url"),
                                "An image part needs 'image_url.url'.",
                            ));
                        }
                        needs.vision = true;
                    }
                    Some("refusal") => {
                        if let Some(Value::String(t)) = part.get("refusal") {
                            push_text(prompt, t);
                        }
                    }
                    Some("input_audio") | Some("file") => {}
                    Some(other) => {
                        return Err(ApiError::invalid_param(
                            format!("{pp}.type"),
                            format!("Invalid content part type '{other}'."),
                        ))
                    }
                    None => {
                        return Err(ApiError::invalid_param(
                            format!("{pp}.type"),
                            "Missing required parameter: 'type'.",
                        ))
                    }
                }
            }
        }
        Some(v) => {
            return Err(wrong_type(
                &format!("{p}.content"),
                "a string or an array of content parts",
                v,
            ))
        }
    }
    if role == "tool" {
        match m.get("tool_call_id") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(ApiError::invalid_param(
                    format!("{p}.tool_call_id"),
                    "A tool message needs the 'tool_call_id' it answers.",
                ))
            }
        }
    }
    if let Some(tc) = m.get("tool_calls") {
        if role != "assistant" {
            return Err(ApiError::invalid_param(
                format!("{p}.tool_calls"),
                "Only assistant messages carry 'tool_calls'.",
            ));
        }
        let Value::Array(calls) = tc else {
            return Err(wrong_type(&format!("{p}.tool_calls"), "an array", tc));
        };
        for (j, c) in calls.iter().enumerate() {
            let cp = format!("{p}.tool_calls[{j}]");
            let id_ok = matches!(c.get("id"), Some(Value::String(s)) if !s.is_empty());
            let f = c.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
            let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str);
            if !id_ok {
                return Err(ApiError::invalid_param(
                    format!("{cp}.id"),
                    "A tool call needs an 'id'.",
                ));
            }
            match (name, args) {
                (Some(n), Some(a)) => {
                    push_text(prompt, n);
                    push_text(prompt, a);
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        format!("{cp}.function"),
                        "A tool call needs 'function.name' and 'function.arguments' (a string).",
                    ))
                }
            }
        }
    }
    Ok(())
}

/// A validated `POST /v1/embeddings` body.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    pub body: Map<String, Value>,
    pub model: String,
    /// The input texts (token-array inputs are kept in the body and counted by length).
    pub texts: Vec<String>,
    pub token_inputs: u64,
}

impl EmbeddingsRequest {
    pub fn from_body(body: Map<String, Value>) -> Result<EmbeddingsRequest, ApiError> {
        let model = model_field(&body)?;
        let mut texts = Vec::new();
        let mut token_inputs = 0u64;
        let bad = || {
            ApiError::invalid_param(
                "input",
                "'input' must be a string, an array of strings, an array of tokens or an array of token arrays.",
            )
        };
        match body.get("input") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_param("input", "Missing required parameter: 'input'."))
            }
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(ApiError::invalid_param("input", "'input' must not be empty."))
            }
            Some(Value::Array(a)) if a.len() > 2048 => {
                return Err(ApiError::invalid_param("input", "'input' has more than 2048 entries."))
            }
            Some(Value::Array(a)) => {
                for item in a {
                    match item {
                        Value::String(s) => texts.push(s.clone()),
                        Value::Number(_) => token_inputs += 1,
                        Value::Array(inner) if inner.iter().all(Value::is_number) => token_inputs += inner.len() as u64,
                        _ => return Err(bad()),
                    }
                }
            }
            Some(_) => return Err(bad()),
        }
        match body.get("encoding_format") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "float" || s == "base64" => {}
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "encoding_format",
                    "'encoding_format' must be 'float' or 'base64'.",
                ))
            }
        }
        Ok(EmbeddingsRequest {
            body,
            model,
            texts,
            token_inputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<ChatRequest, ApiError> {
        let Value::Object(m) = v else { panic!("object") };
        ChatRequest::from_body(m)
    }

    #[test]
    fn accepts_a_full_request_and_keeps_unknown_fields() {
        let r = chat(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_object"},
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_completion_tokens": 50,
            "n": 2,
            "some_future_param": {"x": 1}
        }))
        .unwrap();
        assert!(r.stream && r.include_usage);
        assert_eq!(r.n, 2);
        assert_eq!(r.max_output_tokens, Some(50));
        assert_eq!(
            r.needs,
            Needs {
                tools: true,
                vision: true,
                json: true,
                choices: true
            }
        );
        assert_eq!(r.prompt.messages, 4);
        assert_eq!(r.prompt.names, 1);
        assert!(r.prompt.text.contains("be brief") && r.prompt.text.contains("42"));
        assert_eq!(r.body["some_future_param"], json!({"x": 1}));
    }

    #[test]
    fn names_the_bad_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
            (json!({"model": 3, "messages": []}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m", "messages": "hi"}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "boss", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]}),
                "messages[1].tool_call_id",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "content": null}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
                "n",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
                "stream",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
                "response_format.type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}),
                "stop",
            ),
        ];
        for (body, param) in cases {
            let err = chat(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
            assert_eq!(err.status.as_u16(), 400);
        }
    }

    #[test]
    fn parse_object_rejects_non_objects_and_bad_json() {
        assert_eq!(parse_object(b"{").unwrap_err().kind(), "invalid_json");
        assert_eq!(parse_object(b"[1]").unwrap_err().kind(), "invalid_json");
        assert!(parse_object(b"{\"a\":1}").is_ok());
    }

    #[test]
    fn embeddings_inputs() {
        let Value::Object(m) = json!({"model": "e", "input": ["a", "b"]}) else {
            panic!()
        };
        let r = EmbeddingsRequest::from_body(m).unwrap();
        assert_eq!(r.texts, vec!["a", "b"]);
        let Value::Object(m) = json!({"model": "e", "input": [[1, 2, 3]]}) else {
            panic!()
        };
        assert_eq!(EmbeddingsRequest::from_body(m).unwrap().token_inputs, 3);
        for bad in [
            json!({"model": "e"}),
            json!({"model": "e", "input": []}),
            json!({"model": "e", "input": [{}]}),
        ] {
            let Value::Object(m) = bad else { panic!() };
            assert_eq!(
                EmbeddingsRequest::from_body(m).unwrap_err().param.as_deref(),
                Some("input")
            );
        }
    }
}
