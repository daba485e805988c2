//! Answers in both shapes: a complete `chat.completion` replayed as the SSE chunks a streaming
//! client expects, and a stream's chunks assembled back into a complete `chat.completion`.
//!
//! Both are OpenAI's wire format as the official SDKs parse it: the first chunk of each choice
//! carries the role, content arrives in pieces, each tool call opens with its id, type and name
//! and then streams its arguments, the last chunk of a choice carries its `finish_reason`, and
//! a usage chunk (`choices: []`) follows when the client asked for one.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Adds `"switchyard":{…}` as the last member of a JSON object without re-serializing the rest.
pub fn with_extension(data: &[u8], ext: &str) -> Bytes {
    let trimmed = match data.iter().rposition(|b| !b.is_ascii_whitespace()) {
        Some(i) => &data[..=i],
        None => data,
    };
    if trimmed.last() != Some(&b'}') {
        return Bytes::copy_from_slice(data);
    }
    let body = &trimmed[..trimmed.len() - 1];
    let empty = body.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut out = Vec::with_capacity(trimmed.len() + ext.len() + 16);
    out.extend_from_slice(body);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(b"\"switchyard\":");
    out.extend_from_slice(ext.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// Content is replayed in pieces of about this many bytes, cut after whitespace.
const PIECE_BYTES: usize = 16;

/// Cuts text into pieces of at least [`PIECE_BYTES`], each ending just before a word (or at the
/// end), never inside a UTF-8 character.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_space_end = None;
    for (i, ch) in text.char_indices() {
        if ch.is_whitespace() {
            last_space_end = Some(i + ch.len_utf8());
        } else if let Some(cut) = last_space_end.take() {
            if cut - start >= PIECE_BYTES {
                out.push(&text[start..cut]);
                start = cut;
            }
        }
        // A long run without spaces is cut anyway, on a character boundary.
        if i + ch.len_utf8() - start >= PIECE_BYTES * 8 {
            out.push(&text[start..i + ch.len_utf8()]);
            start = i + ch.len_utf8();
            last_space_end = None;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The SSE events (`data:` payloads, `[DONE]` excluded) that stream `body`, a complete
/// `chat.completion`. `ext` is the `switchyard` extension object, set on the usage chunk when
/// one is sent and else on the last chunk. `None` when `body` is not a chat completion.
pub fn chunks_of(body: &[u8], include_usage: bool, ext: &str) -> Option<Vec<Bytes>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choices = v.get("choices")?.as_array()?;
    let mut head = Map::new();
    head.insert(
        "id".into(),
        v.get("id").cloned().unwrap_or_else(|| json!("chatcmpl-switchyard")),
    );
    head.insert("object".into(), json!("chat.completion.chunk"));
    head.insert("created".into(), v.get("created").cloned().unwrap_or(json!(0)));
    head.insert("model".into(), v.get("model").cloned().unwrap_or(json!("")));
    if let Some(fp) = v.get("system_fingerprint") {
        head.insert("system_fingerprint".into(), fp.clone());
    }
    let chunk = |choices: Value| {
        let mut c = head.clone();
        c.insert("choices".into(), choices);
        if include_usage {
            c.insert("usage".into(), Value::Null);
        }
        Value::Object(c)
    };
    let delta = |index: &Value, delta: Value, finish: Value| json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut out: Vec<Value> = Vec::new();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let message = choice.get("message").cloned().unwrap_or(json!({}));
        let role = message.get("role").cloned().unwrap_or(json!("assistant"));
        let content = message.get("content").and_then(Value::as_str);
        let tool_calls = message.get("tool_calls").and_then(Value::as_array);
        let mut opening = json!({"role": role, "content": if content.is_some() || tool_calls.is_none() { json!("") } else { Value::Null }});
        if let Some(r) = message.get("refusal").filter(|r| !r.is_null()) {
            opening["refusal"] = r.clone();
        }
        out.push(chunk(delta(&index, opening, Value::Null)));
        for piece in content.map(pieces).unwrap_or_default() {
            out.push(chunk(delta(&index, json!({"content": piece}), Value::Null)));
        }
        for (n, call) in tool_calls.into_iter().flatten().enumerate() {
            let f = call.get("function").cloned().unwrap_or(json!({}));
            let opening = json!({"tool_calls": [{
                "index": n,
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "type": call.get("type").cloned().unwrap_or(json!("function")),
                "function": {"name": f.get("name").cloned().unwrap_or(json!("")), "arguments": ""},
            }]});
            out.push(chunk(delta(&index, opening, Value::Null)));
            let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
            for piece in pieces(args) {
                let d = json!({"tool_calls": [{"index": n, "function": {"arguments": piece}}]});
                out.push(chunk(delta(&index, d, Value::Null)));
            }
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(json!("stop"));
        out.push(chunk(delta(&index, json!({}), finish)));
    }
    let mut bytes: Vec<Bytes> = out.iter().map(|c| Bytes::from(c.to_string())).collect();
    if include_usage {
        let mut u = head.clone();
        u.insert("choices".into(), json!([]));
        u.insert("usage".into(), v.get("usage").cloned().unwrap_or(Value::Null));
        bytes.push(with_extension(Value::Object(u).to_string().as_bytes(), ext));
    } else if let Some(last) = bytes.pop() {
        bytes.push(with_extension(&last, ext));
    }
    Some(bytes)
}

/// One choice as its deltas arrive.
#[derive(Default)]
struct ChoiceParts {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    /// Tool calls by their index: id, type, name, arguments.
    tool_calls: Vec<(Value, Value, String, String)>,
    finish_reason: Value,
}

/// Builds the complete `chat.completion` a stream amounts to, from its chunks as the client
/// received them. It gives up (and keeps nothing) past `max_bytes` of text or on a chunk it
/// cannot read.
pub struct Assembler {
    max_bytes: usize,
    bytes: usize,
    head: Option<(Value, Value, Value, Option<Value>)>,
    choices: Vec<ChoiceParts>,
    usage: Value,
    broken: bool,
}

impl Assembler {
    pub fn new(max_bytes: usize) -> Assembler {
        Assembler {
            max_bytes,
            bytes: 0,
            head: None,
            choices: Vec::new(),
            usage: Value::Null,
            broken: false,
        }
    }

    /// Takes one chunk's JSON.
    pub fn add(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        self.bytes += data.len();
        if self.bytes > self.max_bytes {
            self.broken = true;
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            self.broken = true;
            return;
        };
        if v.get("error").is_some() {
            self.broken = true;
            return;
        }
        if self.head.is_none() {
            self.head = Some((
                v.get("id").cloned().unwrap_or(Value::Null),
                v.get("created").cloned().unwrap_or(json!(0)),
                v.get("model").cloned().unwrap_or(json!("")),
                v.get("system_fingerprint").cloned(),
            ));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = u.clone();
        }
        for c in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let Some(index) = c.get("index").and_then(Value::as_u64).filter(|i| *i < 128) else {
                self.broken = true;
                return;
            };
            let index = index as usize;
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, ChoiceParts::default);
            }
            let parts = &mut self.choices[index];
            let d = c.get("delta").cloned().unwrap_or(json!({}));
            if let Some(r) = d.get("role").and_then(Value::as_str) {
                parts.role = Some(r.to_string());
            }
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                parts.content.get_or_insert_with(String::new).push_str(t);
            }
            if let Some(t) = d.get("refusal").and_then(Value::as_str) {
                parts.refusal.get_or_insert_with(String::new).push_str(t);
            }
            for tc in d.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let Some(n) = tc.get("index").and_then(Value::as_u64).filter(|n| *n < 128) else {
                    self.broken = true;
                    return;
                };
                let n = n as usize;
                if parts.tool_calls.len() <= n {
                    parts
                        .tool_calls
                        .resize_with(n + 1, || (Value::Null, json!("function"), String::new(), String::new()));
                }
                let call = &mut parts.tool_calls[n];
                if let Some(id) = tc.get("id").filter(|i| !i.is_null()) {
                    call.0 = id.clone();
                }
                if let Some(t) = tc.get("type").filter(|t| !t.is_null()) {
                    call.1 = t.clone();
                }
                if let Some(name) = tc.pointer("/function/name").and_then(Value::as_str) {
                    call.2.push_str(name);
                }
                if let Some(args) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                    call.3.push_str(args);
                }
            }
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                parts.finish_reason = f.clone();
            }
        }
    }

    /// The complete answer, or `None` if it could not be assembled (or no choice finished).
    pub fn finish(self) -> Option<Bytes> {
        if self.broken || self.choices.is_empty() {
            return None;
        }
        let (id, created, model, fingerprint) = self.head?;
        let mut choices = Vec::with_capacity(self.choices.len());
        for (i, p) in self.choices.into_iter().enumerate() {
            if p.finish_reason.is_null() {
                return None;
            }
            let mut message = json!({
                "role": p.role.unwrap_or_else(|| "assistant".into()),
                "content": p.content,
            });
            if let Some(r) = p.refusal {
                message["refusal"] = json!(r);
            }
            if !p.tool_calls.is_empty() {
                let calls: Vec<Value> = p
                    .tool_calls
                    .into_iter()
                    .map(|(id, kind, name, arguments)| {
                        json!({"id": id, "type": kind, "function": {"name": name, "arguments": arguments}})
                    })
                    .collect();
                message["tool_calls"] = Value::Array(calls);
            }
            choices.push(json!({"index": i, "message": message, "logprobs": null, "finish_reason": p.finish_reason}));
        }
        let mut body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": self.usage,
        });
        if let Some(fp) = fingerprint {
            body["system_fingerprint"] = fp;
        }
        Some(Bytes::from(body.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion() -> Value {
        json!({
            "id": "chatcmpl-7", "object": "chat.completion", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "The capital of France is Paris, a city on the Seine."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
        })
    }

    fn parse(chunks: &[Bytes]) -> Vec<Value> {
        chunks.iter().map(|c| serde_json::from_slice(c).unwrap()).collect()
    }

    #[test]
    fn pieces_cover_the_text_and_cut_before_words() {
        let text = "The capital of France is Paris, a city on the Seine. Ünïcödé wörds too.";
        let p = pieces(text);
        assert!(p.len() > 2, "{p:?}");
        assert_eq!(p.concat(), text);
        for piece in &p[..p.len() - 1] {
            assert!(piece.ends_with(' '), "{piece:?}");
        }
        let long = "x".repeat(1000) + "é";
        assert_eq!(pieces(&long).concat(), long);
        assert!(pieces(&long).len() > 5);
        assert!(pieces("").is_empty());
    }

    #[test]
    fn a_completion_replays_as_openai_chunks() {
        let body = completion().to_string();
        let chunks = parse(&chunks_of(body.as_bytes(), true, r#"{"cache":"hit"}"#).unwrap());
        assert!(chunks.len() >= 4);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "chatcmpl-7" && c["object"] == "chat.completion.chunk"));
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, completion()["choices"][0]["message"]["content"]);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 21);
        assert_eq!(last["switchyard"]["cache"], "hit");
        assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
        // Without usage: no usage chunk, no `usage` member, the extension on the finish chunk.
        let chunks = parse(&chunks_of(body.as_bytes(), false, "{}").unwrap());
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
        assert!(chunks.last().unwrap().get("switchyard").is_some());
        assert!(chunks_of(b"[1,2]", false, "{}").is_none());
        assert!(chunks_of(b"not json", false, "{}").is_none());
    }

    #[test]
    fn assembling_a_replay_gives_back_the_answer() {
        let tools = json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 5, "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris, France\", \"unit\": \"celsius\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]}, "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "Second choice here, with words."}, "finish_reason": "length"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        });
        for original in [completion(), tools] {
            let chunks = chunks_of(original.to_string().as_bytes(), true, "{}").unwrap();
            let mut a = Assembler::new(1 << 20);
            for c in &chunks {
                a.add(c);
            }
            let back: Value = serde_json::from_slice(&a.finish().unwrap()).unwrap();
            for (i, c) in original["choices"].as_array().unwrap().iter().enumerate() {
                assert_eq!(back["choices"][i]["message"]["content"], c["message"]["content"]);
                assert_eq!(
                    back["choices"][i]["message"]["tool_calls"],
                    c["message"].get("tool_calls").cloned().unwrap_or(Value::Null)
                );
                assert_eq!(back["choices"][i]["finish_reason"], c["finish_reason"]);
            }
            assert_eq!(back["usage"], original["usage"]);
            assert_eq!(back["id"], original["id"]);
        }
    }

    #[test]
    fn a_cut_or_broken_stream_assembles_nothing() {
        let chunks = chunks_of(completion().to_string().as_bytes(), false, "{}").unwrap();
        let mut cut = Assembler::new(1 << 20);
        for c in &chunks[..chunks.len() - 1] {
            cut.add(c);
        }
        assert!(cut.finish().is_none(), "no finish_reason: not complete");
        let mut err = Assembler::new(1 << 20);
        err.add(&chunks[0]);
        err.add(br#"{"error":{"message":"boom"}}"#);
        err.add(chunks.last().unwrap());
        assert!(err.finish().is_none());
        let mut big = Assembler::new(64);
        for c in &chunks {
            big.add(c);
        }
        assert!(big.finish().is_none(), "over its byte bound");
        assert!(Assembler::new(10).finish().is_none());
    }
}
