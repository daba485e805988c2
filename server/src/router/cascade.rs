//! Cascades: a route may ask its cheap model first and escalate to its strong model when the
//! cheap answer fails a check: it is empty or a refusal, it is not the JSON a JSON-mode request
//! asked for, a tool call cannot be parsed or does not fit the tool, or (where the upstream
//! reports log-probabilities) the model was not confident enough.
//!
//! This module holds the checks and the view of an answer they read, built from a complete
//! `chat.completion` body or from the chunks of a stream. The request path that runs the two
//! calls is in `http/chat.rs`.

use serde::Serialize;
use serde_json::{Map, Value};

/// One check a cheap answer must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Some choice has no text and no tool call.
    Empty,
    /// Some choice refuses (OpenAI's `refusal` field, a `content_filter` stop, or a short answer
    /// that opens with a refusal phrase).
    Refusal,
    /// A JSON-mode request got text that is not JSON (or, with a schema, not that schema's shape).
    Json,
    /// A tool call names no offered tool or its arguments do not parse or fit the parameters;
    /// or a request that requires a tool call got none.
    ToolCall,
    /// The mean log-probability of the answer's tokens is below `min_logprob`.
    Logprob,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Empty,
        Check::Refusal,
        Check::Json,
        Check::ToolCall,
        Check::Logprob,
    ];
}

/// A route's cascade settings (`[routes.NAME.cascade]`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cascade {
    pub checks: Vec<Check>,
    /// Escalate when an answer's mean token log-probability is below this. When set, the cheap
    /// model is asked for log-probabilities (removed again from what the client gets, unless it
    /// asked for them too).
    pub min_logprob: Option<f64>,
    /// Lower-case phrases that make a short answer a refusal.
    pub refusal_phrases: Vec<String>,
    /// A streamed cheap answer is held back until it is complete so it can be checked; past this
    /// many bytes it is passed on unchecked.
    pub max_buffer_bytes: usize,
}

/// Answers longer than this are not read as refusals: a long answer that opens with an apology
/// usually goes on to help.
const REFUSAL_MAX_CHARS: usize = 400;
/// A refusal phrase counts only if it starts this close to the beginning of the answer ("Sure!
/// … I can't provide exact figures, but …" is an answer, not a refusal).
const REFUSAL_OPENING_BYTES: usize = 80;

pub fn default_refusal_phrases() -> Vec<String> {
    [
        "i'm sorry, but i can't",
        "i'm sorry, but i cannot",
        "i am sorry, but i cannot",
        "sorry, i can't help",
        "sorry, but i can't",
        "i can't help with",
        "i cannot help with",
        "i can't assist with",
        "i cannot assist with",
        "i'm unable to help",
        "i am unable to help",
        "i'm unable to assist",
        "i'm not able to help",
        "i can't provide",
        "i cannot provide",
        "i won't be able to help",
        "as an ai language model, i cannot",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for Cascade {
    fn default() -> Self {
        Cascade {
            checks: Check::ALL.to_vec(),
            min_logprob: None,
            refusal_phrases: default_refusal_phrases(),
            max_buffer_bytes: 256 * 1024,
        }
    }
}

/// Why an answer was escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Escalation {
    /// The cheap model's deployments all failed, or its stream broke.
    UpstreamError,
    Empty,
    Refusal,
    InvalidJson,
    InvalidToolCall,
    LowConfidence,
}

impl Escalation {
    pub fn as_str(self) -> &'static str {
        match self {
            Escalation::UpstreamError => "upstream_error",
            Escalation::Empty => "empty",
            Escalation::Refusal => "refusal",
            Escalation::InvalidJson => "invalid_json",
            Escalation::InvalidToolCall => "invalid_tool_call",
            Escalation::LowConfidence => "low_confidence",
        }
    }
}

/// One tool call of a choice, its arguments joined from the stream's pieces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCallView {
    pub name: String,
    pub arguments: String,
}

/// What the checks read of one choice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChoiceView {
    pub content: String,
    pub refusal: String,
    pub tool_calls: Vec<ToolCallView>,
    pub finish_reason: Option<String>,
    pub logprob_sum: f64,
    pub logprob_tokens: u32,
}

/// An answer as the checks see it: its choices by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerView {
    pub choices: Vec<ChoiceView>,
}

/// More choices than this in an answer are not tracked (requests allow at most 128).
const MAX_CHOICES: usize = 128;
/// Tool calls per choice tracked at most.
const MAX_TOOL_CALLS: usize = 128;

fn add_logprobs(c: &mut ChoiceView, lp: Option<&Value>) {
    for t in lp
        .and_then(|l| l.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(x) = t.get("logprob").and_then(Value::as_f64) {
            c.logprob_sum += x;
            c.logprob_tokens += 1;
        }
    }
}

impl AnswerView {
    fn choice(&mut self, index: usize) -> Option<&mut ChoiceView> {
        if index >= MAX_CHOICES {
            return None;
        }
        if self.choices.len() <= index {
            self.choices.resize_with(index + 1, ChoiceView::default);
        }
        self.choices.get_mut(index)
    }

    /// The view of a complete `chat.completion` body; `None` if it is not one.
    pub fn of_body(body: &[u8]) -> Option<AnswerView> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let mut view = AnswerView::default();
        for (i, ch) in v.get("choices")?.as_array()?.iter().enumerate() {
            let index = ch.get("index").and_then(Value::as_u64).map_or(i, |x| x as usize);
            let Some(c) = view.choice(index) else { continue };
            let m = ch.get("message");
            let text = |k: &str| {
                m.and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            c.content = text("content");
            c.refusal = text("refusal");
            c.finish_reason = ch.get("finish_reason").and_then(Value::as_str).map(String::from);
            for t in m
                .and_then(|m| m.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(MAX_TOOL_CALLS)
            {
                let f = t.get("function");
                let s = |k: &str| {
                    f.and_then(|f| f.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                c.tool_calls.push(ToolCallView {
                    name: s("name"),
                    arguments: s("arguments"),
                });
            }
            add_logprobs(c, ch.get("logprobs"));
        }
        Some(view)
    }

    /// Adds one `chat.completion.chunk` (its JSON) to the view.
    pub fn add_chunk(&mut self, data: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        for ch in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let index = ch.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let Some(c) = self.choice(index) else { continue };
            let delta = ch.get("delta");
            let piece = |k: &str| delta.and_then(|d| d.get(k)).and_then(Value::as_str);
            if let Some(t) = piece("content") {
                c.content.push_str(t);
            }
            if let Some(t) = piece("refusal") {
                c.refusal.push_str(t);
            }
            for t in delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = t.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if i >= MAX_TOOL_CALLS {
                    continue;
                }
                if c.tool_calls.len() <= i {
                    c.tool_calls.resize_with(i + 1, ToolCallView::default);
                }
                let call = &mut c.tool_calls[i];
                let f = t.get("function");
                if let Some(n) = f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    call.name.push_str(n);
                }
                if let Some(a) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                    call.arguments.push_str(a);
                }
            }
            if let Some(r) = ch.get("finish_reason").and_then(Value::as_str) {
                c.finish_reason = Some(r.to_string());
            }
            add_logprobs(c, ch.get("logprobs"));
        }
    }
}

/// A failed check: which, and a short human explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub reason: Escalation,
    pub detail: String,
}

fn fail(reason: Escalation, detail: impl Into<String>) -> Result<(), Failed> {
    Err(Failed {
        reason,
        detail: detail.into(),
    })
}

/// Normalizes typographic apostrophes so phrases match however the model typed them.
pub fn normalized(text: &str) -> String {
    text.trim().replace(['\u{2019}', '\u{2018}'], "'").to_lowercase()
}

fn is_refusal(c: &ChoiceView, phrases: &[String]) -> bool {
    if !c.refusal.trim().is_empty() || c.finish_reason.as_deref() == Some("content_filter") {
        return true;
    }
    let text = c.content.trim();
    if text.is_empty() || text.chars().count() > REFUSAL_MAX_CHARS {
        return false;
    }
    let t = normalized(text);
    phrases
        .iter()
        .any(|p| t.find(p.as_str()).is_some_and(|at| at <= REFUSAL_OPENING_BYTES))
}

/// The request's JSON mode: `None` (text), or the schema the answer must fit (`Value::Null`
/// for `json_object`, which asks for any object).
fn json_mode(req: &Map<String, Value>) -> Option<Value> {
    let rf = req.get("response_format")?;
    match rf.get("type").and_then(Value::as_str)? {
        "json_object" => Some(Value::Null),
        "json_schema" => Some(
            rf.get("json_schema")
                .and_then(|s| s.get("schema"))
                .cloned()
                .unwrap_or(Value::Null),
        ),
        _ => None,
    }
}

/// Runs the configured checks on an answer to `req`. The first failure wins.
pub fn check(answer: &AnswerView, req: &Map<String, Value>, cfg: &Cascade) -> Result<(), Failed> {
    let on = |c: Check| cfg.checks.contains(&c);
    if answer.choices.is_empty() && on(Check::Empty) {
        return fail(Escalation::Empty, "the answer has no choices");
    }
    let json = json_mode(req);
    let tools: Vec<&Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    let tool_required = match req.get("tool_choice") {
        Some(Value::String(s)) => s == "required",
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str) == Some("function"),
        _ => false,
    };
    for (i, c) in answer.choices.iter().enumerate() {
        if on(Check::Refusal) && is_refusal(c, &cfg.refusal_phrases) {
            return fail(Escalation::Refusal, format!("choice {i} is a refusal"));
        }
        if on(Check::Empty) && c.content.trim().is_empty() && c.tool_calls.is_empty() && c.refusal.is_empty() {
            return fail(Escalation::Empty, format!("choice {i} is empty"));
        }
        if on(Check::ToolCall) {
            if tool_required && c.tool_calls.is_empty() {
                return fail(
                    Escalation::InvalidToolCall,
                    format!("choice {i} made no tool call, and the request requires one"),
                );
            }
            for call in &c.tool_calls {
                let Some(tool) = tools.iter().find(|t| {
                    t.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) == Some(call.name.as_str())
                }) else {
                    return fail(
                        Escalation::InvalidToolCall,
                        format!("choice {i} calls `{}`, which is not an offered tool", call.name),
                    );
                };
                let args: Value = match serde_json::from_str(&call.arguments) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return fail(
                            Escalation::InvalidToolCall,
                            format!("choice {i}: the arguments of `{}` are not a JSON object", call.name),
                        )
                    }
                };
                if let Some(schema) = tool.get("function").and_then(|f| f.get("parameters")) {
                    if let Err(e) = fits(&args, schema, 0) {
                        return fail(
                            Escalation::InvalidToolCall,
                            format!("choice {i}: the arguments of `{}` do not fit: {e}", call.name),
                        );
                    }
                }
            }
        }
        if on(Check::Json) && c.tool_calls.is_empty() {
            if let Some(schema) = &json {
                match serde_json::from_str::<Value>(c.content.trim()) {
                    Ok(v) => {
                        let shape = if schema.is_null() {
                            if v.is_object() {
                                Ok(())
                            } else {
                                Err("not an object".to_string())
                            }
                        } else {
                            fits(&v, schema, 0)
                        };
                        if let Err(e) = shape {
                            return fail(
                                Escalation::InvalidJson,
                                format!("choice {i} does not fit the schema: {e}"),
                            );
                        }
                    }
                    Err(_) => return fail(Escalation::InvalidJson, format!("choice {i} is not valid JSON")),
                }
            }
        }
        if let (true, Some(min)) = (on(Check::Logprob), cfg.min_logprob) {
            if c.logprob_tokens > 0 {
                let mean = c.logprob_sum / f64::from(c.logprob_tokens);
                if mean < min {
                    return fail(
                        Escalation::LowConfidence,
                        format!("choice {i}: mean token log-probability {mean:.2} < {min}"),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Schemas nest at most this deep; deeper parts are not checked.
const MAX_SCHEMA_DEPTH: usize = 32;

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

/// Whether `v` fits `schema`, for the JSON Schema keywords structured outputs and tool
/// parameters use: `type`, `enum`, `const`, `properties`, `required`, `additionalProperties:
/// false`, `items`, `anyOf`/`oneOf`/`allOf`. Other keywords (and `$ref`) are not checked: this
/// catches answers that are plainly wrong, it does not replace the provider's own validation.
pub fn fits(v: &Value, schema: &Value, depth: usize) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if depth > MAX_SCHEMA_DEPTH {
        return Ok(());
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_matches(v, t) => return Err(format!("expected {t}")),
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_matches(v, t)) => {
            return Err("wrong type".into())
        }
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err("not one of the allowed values".into());
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return Err("not the required constant".into());
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(k) = r.as_str() {
                if !obj.contains_key(k) {
                    return Err(format!("`{k}` is missing"));
                }
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => fits(x, sub, depth + 1).map_err(|e| format!("{k}: {e}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("`{k}` is not allowed"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            fits(x, items, depth + 1).map_err(|e| format!("[{i}]: {e}"))?;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            if !alts.is_empty() && !alts.iter().any(|a| fits(v, a, depth + 1).is_ok()) {
                return Err(format!("fits none of `{key}`"));
            }
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for a in all {
            fits(v, a, depth + 1)?;
        }
    }
    Ok(())
}

/// Sets every choice's `logprobs` to `null` in a completion body or a chunk (for a client that
/// did not ask for them when the cascade did). `None` if nothing changed.
pub fn without_logprobs(data: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(data).ok()?;
    let mut changed = false;
    for ch in v.get_mut("choices")?.as_array_mut()? {
        if let Some(lp) = ch.get_mut("logprobs") {
            if !lp.is_null() {
                *lp = Value::Null;
                changed = true;
            }
        }
    }
    changed.then(|| serde_json::to_vec(&v).unwrap_or_else(|_| data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { panic!() };
        m
    }

    fn text(content: &str) -> AnswerView {
        AnswerView {
            choices: vec![ChoiceView {
                content: content.into(),
                finish_reason: Some("stop".into()),
                ..Default::default()
            }],
        }
    }

    fn call(name: &str, arguments: &str) -> AnswerView {
        AnswerView {
            choices: vec![ChoiceView {
                tool_calls: vec![ToolCallView {
                    name: name.into(),
                    arguments: arguments.into(),
                }],
                finish_reason: Some("tool_calls".into()),
                ..Default::default()
            }],
        }
    }

    fn reason(a: &AnswerView, r: &Map<String, Value>, cfg: &Cascade) -> Option<Escalation> {
        check(a, r, cfg).err().map(|f| f.reason)
    }

    #[test]
    fn checks_table() {
        let cfg = Cascade {
            min_logprob: Some(-1.0),
            ..Cascade::default()
        };
        let plain = req(json!({"messages": []}));
        let json_obj = req(json!({"response_format": {"type": "json_object"}}));
        let schema = req(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "required": ["city", "days"], "additionalProperties": false,
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                           "unit": {"enum": ["c", "f"]}}}}}}),
        );
        let tools = req(
            json!({"tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}]}),
        );
        let required = req(json!({"tool_choice": "required", "tools": tools["tools"]}));
        let low = AnswerView {
            choices: vec![ChoiceView {
                content: "Paris".into(),
                logprob_sum: -6.0,
                logprob_tokens: 3,
                ..Default::default()
            }],
        };
        let sure = AnswerView {
            choices: vec![ChoiceView {
                content: "Paris".into(),
                logprob_sum: -0.3,
                logprob_tokens: 3,
                ..Default::default()
            }],
        };
        type Case<'a> = (&'a str, AnswerView, &'a Map<String, Value>, Option<Escalation>);
        let cases: Vec<Case> = vec![
            ("plain text passes", text("The capital is Paris."), &plain, None),
            ("empty", text("  \n"), &plain, Some(Escalation::Empty)),
            ("no choices", AnswerView::default(), &plain, Some(Escalation::Empty)),
            (
                "refusal phrase",
                text("I’m sorry, but I can’t help with that."),
                &plain,
                Some(Escalation::Refusal),
            ),
            (
                "a refusal phrase deep in a short answer is not a refusal",
                text("The population of Norway is about 5.4 million people according to the latest national census; I can't provide the exact figure for this week."),
                &plain,
                None,
            ),
            (
                "a long answer opening with an apology is not a refusal",
                text(&format!("I'm sorry, but I can't be brief: {}", "detail ".repeat(80))),
                &plain,
                None,
            ),
            ("json object passes", text(r#" {"a": 1} "#), &json_obj, None),
            (
                "json array is not an object",
                text("[1]"),
                &json_obj,
                Some(Escalation::InvalidJson),
            ),
            (
                "broken json",
                text(r#"{"a": "#),
                &json_obj,
                Some(Escalation::InvalidJson),
            ),
            (
                "schema fits",
                text(r#"{"city": "Oslo", "days": 3, "unit": "c"}"#),
                &schema,
                None,
            ),
            (
                "schema: missing",
                text(r#"{"city": "Oslo"}"#),
                &schema,
                Some(Escalation::InvalidJson),
            ),
            (
                "schema: wrong type",
                text(r#"{"city": "Oslo", "days": "3"}"#),
                &schema,
                Some(Escalation::InvalidJson),
            ),
            (
                "schema: enum",
                text(r#"{"city": "O", "days": 3, "unit": "k"}"#),
                &schema,
                Some(Escalation::InvalidJson),
            ),
            (
                "schema: extra",
                text(r#"{"city": "O", "days": 3, "x": 1}"#),
                &schema,
                Some(Escalation::InvalidJson),
            ),
            ("tool call passes", call("weather", r#"{"city": "Oslo"}"#), &tools, None),
            (
                "unknown tool",
                call("stocks", r#"{"city": "Oslo"}"#),
                &tools,
                Some(Escalation::InvalidToolCall),
            ),
            (
                "unparsable arguments",
                call("weather", r#"{city: Oslo"#),
                &tools,
                Some(Escalation::InvalidToolCall),
            ),
            (
                "arguments miss a parameter",
                call("weather", "{}"),
                &tools,
                Some(Escalation::InvalidToolCall),
            ),
            (
                "text where a call is required",
                text("It is sunny."),
                &required,
                Some(Escalation::InvalidToolCall),
            ),
            ("text where a call is optional", text("It is sunny."), &tools, None),
            ("low confidence", low.clone(), &plain, Some(Escalation::LowConfidence)),
            ("confident", sure, &plain, None),
        ];
        for (name, answer, r, want) in cases {
            assert_eq!(reason(&answer, r, &cfg), want, "{name}");
        }
        // A check that is off does not fire; no threshold, no confidence check.
        let only_empty = Cascade {
            checks: vec![Check::Empty],
            ..Cascade::default()
        };
        assert_eq!(reason(&text("{"), &json_obj, &only_empty), None);
        assert_eq!(reason(&low, &plain, &Cascade::default()), None);
    }

    #[test]
    fn views_of_body_and_chunks_agree() {
        let body = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "logprobs": {"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.5}]}}]});
        let a = AnswerView::of_body(body.to_string().as_bytes()).unwrap();
        let mut b = AnswerView::default();
        for c in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "c1",
                "function": {"name": "weather", "arguments": ""}}]}, "logprobs": {"content": [{"logprob": -0.5}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]},
                "logprobs": {"content": [{"logprob": -1.5}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 1}}),
        ] {
            b.add_chunk(c.to_string().as_bytes());
        }
        assert_eq!(a, b);
        assert_eq!(a.choices[0].logprob_tokens, 2);
        assert_eq!(a.choices[0].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        // Out-of-range indexes are ignored, not allocated.
        let mut c = AnswerView::default();
        c.add_chunk(br#"{"choices": [{"index": 1000000000, "delta": {"content": "x"}}]}"#);
        assert!(c.choices.is_empty());
        assert!(AnswerView::of_body(b"not json").is_none());
    }

    #[test]
    fn logprobs_are_removed() {
        let out = without_logprobs(br#"{"choices":[{"index":0,"logprobs":{"content":[]}}]}"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        assert!(without_logprobs(br#"{"choices":[{"index":0,"logprobs":null}]}"#).is_none());
    }

    #[test]
    fn deep_schemas_are_bounded() {
        let mut schema = json!({"type": "object"});
        for _ in 0..100 {
            schema = json!({"type": "object", "properties": {"a": schema}});
        }
        let mut v = json!(1);
        for _ in 0..100 {
            v = json!({"a": v});
        }
        assert!(fits(&v, &schema, 0).is_ok());
    }
}
