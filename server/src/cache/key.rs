//! Cache keys: a canonical, deterministic fingerprint of everything in a request that decides
//! its answer, and the scope (tenant) it belongs to.
//!
//! The fingerprint covers the whole body except the fields that only say how to deliver or
//! attribute the answer ([`DELIVERY_FIELDS`]): every message with its role, name and tool calls,
//! the system prompt, tools, `tool_choice`, `response_format`, sampling parameters, and any
//! field the gateway does not know (a new parameter might change the answer, so it is in the
//! key). Objects are written with their keys sorted and numbers in one form, so the order of
//! keys in the JSON, `1` against `1.0`, or the client's whitespace never change it.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::ScopeBy;
use crate::records::keys::Principal;

/// Body fields that do not change the answer: how it is delivered, and who is asking (the
/// scope covers the tenant).
pub const DELIVERY_FIELDS: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
];

/// A 256-bit fingerprint.
pub type Digest256 = [u8; 32];

/// Writes `v` canonically: object keys sorted, no whitespace, integers without a fraction.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    out.extend_from_slice((f as i64).to_string().as_bytes());
                } else {
                    out.extend_from_slice(format!("{f:?}").as_bytes());
                }
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => write_object(m, |_| true, out),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is deterministic; a `String` cannot fail to serialize.
    out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes());
}

fn write_object(m: &Map<String, Value>, keep: impl Fn(&str) -> bool, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = m.keys().filter(|k| keep(k)).collect();
    keys.sort();
    out.push(b'{');
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write_canonical(&m[k.as_str()], out);
    }
    out.push(b'}');
}

/// The fingerprints of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// Everything that decides the answer.
    pub exact: Digest256,
    /// Everything except the last message's content, when the last message is the user's: the
    /// part a semantic hit must match exactly. `None` when the conversation does not end with a
    /// user turn (an agent's tool result, say), which only the exact tier may answer.
    pub context: Option<Digest256>,
    /// The last user message's text, for the semantic tier.
    pub last_user: Option<String>,
}

/// The text of a message's `content`: a string, or the text parts of an array (`None` if any
/// part is not text, such as an image: such a message is not paraphrased).
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                out.push_str(p.get("text").and_then(Value::as_str)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Fingerprints a chat body for `target` (the model or route asked for).
pub fn fingerprint(target: &str, body: &Map<String, Value>) -> Fingerprints {
    let is_answer_field = |k: &str| k != "model" && !DELIVERY_FIELDS.contains(&k);
    let hash = |body: &Map<String, Value>| -> Digest256 {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(b"switchyard-cache-v1\0");
        buf.extend_from_slice(target.as_bytes());
        buf.push(0);
        write_object(body, is_answer_field, &mut buf);
        Sha256::digest(&buf).into()
    };
    let exact = hash(body);
    let messages = body.get("messages").and_then(Value::as_array);
    let last = messages.and_then(|m| m.last());
    let last_user = last
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(content_text)
        .filter(|t| !t.trim().is_empty());
    let context = last_user.as_ref().map(|_| {
        let mut masked = body.clone();
        if let Some(Value::Array(ms)) = masked.get_mut("messages") {
            if let Some(Value::Object(m)) = ms.last_mut() {
                m.insert("content".into(), Value::String("\u{0}last-user-turn\u{0}".into()));
            }
        }
        hash(&masked)
    });
    Fingerprints {
        exact,
        context,
        last_user,
    }
}

/// The scope name of a caller: `key:ID`, `team:ID`, or `anonymous` for unauthenticated callers
/// (when the gateway does not require keys).
pub fn scope_of(principal: Option<&Principal>, by: ScopeBy) -> String {
    match (principal, by) {
        (None, _) => "anonymous".into(),
        (Some(p), ScopeBy::Team) => p.team_scope.clone().unwrap_or_else(|| p.key_scope.clone()),
        (Some(p), ScopeBy::Key) => p.key_scope.clone(),
    }
}

/// The exact tier's key: the fingerprint within a scope.
pub fn scoped(scope: &str, fp: &Digest256) -> Digest256 {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(fp);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn fp(v: Value) -> Fingerprints {
        fingerprint("m", &obj(v))
    }

    #[test]
    fn key_order_whitespace_and_number_form_do_not_change_the_key() {
        let a: Value = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1,"tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":2}}}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{ "tools":[{"function":{"parameters":{"a":2,"b":1},"name":"f"},"type":"function"}], "temperature": 1.0,
                "messages":[{"content":"hi","role":"user"}], "model":"m" }"#,
        )
        .unwrap();
        assert_eq!(fp(a.clone()).exact, fp(b).exact);
        // Delivery fields do not count; the stream flag, the user and metadata least of all.
        let mut c = a.clone();
        c["stream"] = json!(true);
        c["user"] = json!("u-1");
        c["metadata"] = json!({"x": "y"});
        assert_eq!(fp(a.clone()).exact, fp(c).exact);
        // The same on every run: a fixed digest, not a per-process hash.
        assert_eq!(
            hex::encode(fp(json!({"messages": [{"role": "user", "content": "hi"}]})).exact),
            hex::encode(fp(json!({"messages": [{"content": "hi", "role": "user"}]})).exact),
        );
    }

    #[test]
    fn everything_that_decides_the_answer_changes_the_key() {
        let base = json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]});
        let k = fp(base.clone()).exact;
        let changes = [
            ("/messages/0/content", json!("Be long.")),
            ("/messages/1/role", json!("assistant")),
            ("/temperature", json!(0.5)),
            ("/top_p", json!(0.9)),
            ("/seed", json!(3)),
            ("/max_tokens", json!(10)),
            ("/n", json!(2)),
            ("/stop", json!(["x"])),
            ("/tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("/tool_choice", json!("none")),
            ("/response_format", json!({"type": "json_object"})),
            ("/some_future_parameter", json!(true)),
        ];
        for (path, value) in changes {
            let mut v = base.clone();
            let (parent, leaf) = path.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).unwrap()
            };
            target[leaf] = value;
            assert_ne!(fp(v).exact, k, "{path} must change the key");
        }
        let mut named = base.clone();
        named["messages"][1]["name"] = json!("alice");
        assert_ne!(fp(named).exact, k);
        assert_ne!(
            fingerprint("other", &obj(base.clone())).exact,
            k,
            "the target is in the key"
        );
    }

    #[test]
    fn the_context_masks_only_the_last_user_turn() {
        let a = fp(
            json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "How do I reset my password?"}]}),
        );
        let b = fp(
            json!({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "password reset: how?"}]}),
        );
        assert_ne!(a.exact, b.exact);
        assert_eq!(a.context, b.context);
        assert_eq!(a.last_user.as_deref(), Some("How do I reset my password?"));
        let other_system = fp(
            json!({"messages": [{"role": "system", "content": "T"}, {"role": "user", "content": "password reset: how?"}]}),
        );
        assert_ne!(other_system.context, b.context);
        let earlier = fp(
            json!({"messages": [{"role": "user", "content": "Python"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "how do I sort a list?"}]}),
        );
        let earlier2 = fp(
            json!({"messages": [{"role": "user", "content": "Rust"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "how do I sort a list?"}]}),
        );
        assert_ne!(earlier.context, earlier2.context);
        // An agent's turn (a tool result last) has no semantic part.
        let tool = fp(
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": "42"}]}),
        );
        assert_eq!((tool.context, tool.last_user), (None, None));
        let parts = fp(
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
        );
        assert_eq!(parts.last_user.as_deref(), Some("ab"));
        let image =
            fp(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}));
        assert_eq!(image.context, None);
    }

    #[test]
    fn scopes_keep_tenants_apart() {
        let k = fp(json!({"messages": [{"role": "user", "content": "hi"}]})).exact;
        assert_ne!(scoped("key:a", &k), scoped("key:b", &k));
        assert_ne!(scoped("team:a", &k), scoped("key:a", &k));
        assert_eq!(scope_of(None, ScopeBy::Team), "anonymous");
    }
}
