//! Seeded mutation fuzzing of what reads untrusted input: request parsing and validation, the
//! Anthropic translation both ways, the upstream SSE reader, the cache fingerprint and config
//! parsing. Inputs are grown from the seeds in `tests/fuzz/corpus/` by random mutations; every
//! target must neither panic nor hang, and must answer with its documented shape (an
//! OpenAI-shaped 4xx for a refused request, a problem with a path for a refused config) and
//! hold its properties (an SSE stream read the same whatever its chunking; a fingerprint that
//! does not depend on the order of a body's fields).
//!
//! `SWITCHYARD_FUZZ_ITERS` sets the inputs per target (2,000 by default, a few seconds in all);
//! `SWITCHYARD_FUZZ_SEED` replays a run. A failure prints the seed and the input.

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use switchyard::cache::key::fingerprint;
use switchyard::config::Config;
use switchyard::providers::anthropic::{translate_request, translate_response, StreamTranslator};
use switchyard::providers::sse::Parser;
use switchyard::proxy::request::{ChatRequest, EmbeddingsRequest};

fn iters() -> usize {
    std::env::var("SWITCHYARD_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn rng(target: &str) -> (fastrand::Rng, u64) {
    let seed = std::env::var("SWITCHYARD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let salt = target
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(b)));
    (fastrand::Rng::with_seed(seed ^ salt), seed)
}

fn corpus(kind: &str) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<String> = files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// A random JSON value, at most `depth` deep.
fn any_value(r: &mut fastrand::Rng, depth: u32) -> Value {
    match r.u8(..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(r.bool()),
        2 => json!(r.i64(..)),
        3 => json!(r.f64() * 1e6 - 5e5),
        4 => json!([u64::MAX, 0u64, 1u64 << 40, 128, 129][r.usize(..5)]),
        5 => Value::String(any_string(r)),
        6 => Value::Array((0..r.usize(..4)).map(|_| any_value(r, depth - 1)).collect()),
        _ => {
            let keys = [
                "role",
                "content",
                "type",
                "text",
                "name",
                "tool_calls",
                "id",
                "function",
                "x",
            ];
            Value::Object(
                (0..r.usize(..4))
                    .map(|_| (keys[r.usize(..keys.len())].to_string(), any_value(r, depth - 1)))
                    .collect(),
            )
        }
    }
}

fn any_string(r: &mut fastrand::Rng) -> String {
    let pieces = [
        "",
        "user",
        "assistant",
        "system",
        "tool",
        "image_url",
        "text",
        "\u{0}",
        "é",
        "🚀",
        "\n",
        "data:",
        "a long piece of text, repeated to pass small bounds; a long piece of text, repeated",
    ];
    (0..r.usize(..3)).map(|_| pieces[r.usize(..pieces.len())]).collect()
}

/// A valid body with some of its fields (at any depth) replaced, removed or added.
fn mutate(r: &mut fastrand::Rng, v: &mut Value, budget: &mut u32) {
    if *budget == 0 {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() && r.u8(..4) > 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[r.usize(..keys.len())];
            match r.u8(..4) {
                0 => {
                    m.remove(k);
                    *budget -= 1;
                }
                1 => {
                    m.insert(k.clone(), any_value(r, 3));
                    *budget -= 1;
                }
                2 => {
                    let extra = [
                        "n",
                        "max_tokens",
                        "stream",
                        "tools",
                        "response_format",
                        "stop",
                        "temperature",
                        "logprobs",
                    ];
                    m.insert(extra[r.usize(..extra.len())].to_string(), any_value(r, 2));
                    *budget -= 1;
                }
                _ => mutate(r, m.get_mut(k).unwrap(), budget),
            }
        }
        Value::Array(a) if !a.is_empty() && r.u8(..4) > 0 => {
            let i = r.usize(..a.len());
            match r.u8(..3) {
                0 => {
                    a.remove(i);
                    *budget -= 1;
                }
                1 => {
                    let copy = a[i].clone();
                    a.push(copy);
                    *budget -= 1;
                }
                _ => mutate(r, &mut a[i], budget),
            }
        }
        other => {
            *other = any_value(r, 2);
            *budget -= 1;
        }
    }
}

fn mutated_bodies(target: &str, kind: &str) -> (Vec<Map<String, Value>>, u64) {
    let (mut r, seed) = rng(target);
    let seeds: Vec<Value> = corpus(kind).iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    let out = (0..iters())
        .map(|_| {
            let mut v = seeds[r.usize(..seeds.len())].clone();
            let mut budget = 1 + r.u32(..4);
            mutate(&mut r, &mut v, &mut budget);
            match v {
                Value::Object(m) => m,
                other => Map::from_iter([("body".to_string(), other)]),
            }
        })
        .collect();
    (out, seed)
}

#[test]
fn request_validation_refuses_in_shape_and_never_panics() {
    let (bodies, seed) = mutated_bodies("request", "chat");
    let mut accepted = 0;
    for body in bodies {
        let shown = Value::Object(body.clone()).to_string();
        match ChatRequest::from_body(body.clone()) {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.status.is_client_error(), "seed {seed}: {} for {shown}", e.status);
                let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
                assert!(
                    v["error"]["message"].is_string() && v["error"]["type"].is_string(),
                    "seed {seed}: {v}"
                );
            }
        }
        if let Err(e) = EmbeddingsRequest::from_body(body) {
            assert!(e.status.is_client_error(), "seed {seed}: {shown}");
        }
    }
    assert!(accepted > 0, "seed {seed}: some mutations stay valid");
}

#[test]
fn the_anthropic_translation_takes_anything_both_ways() {
    let (bodies, seed) = mutated_bodies("anthropic", "chat");
    for body in bodies {
        if let Ok(req) = ChatRequest::from_body(body) {
            let t = translate_request(&req.body, "claude", 100, req.stream);
            assert!(t["messages"].is_array(), "seed {seed}: {t}");
        }
    }
    let (mut r, seed) = rng("anthropic-out");
    let seeds: Vec<Value> = corpus("anthropic")
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    for _ in 0..iters() {
        let mut msg = seeds[r.usize(..seeds.len())].clone();
        let mut budget = 1 + r.u32(..4);
        mutate(&mut r, &mut msg, &mut budget);
        let (body, _) = translate_response(&msg);
        assert_eq!(body["object"], "chat.completion", "seed {seed}: {msg}");
        // A stream of such events, in any order, ends or errs; it never panics.
        let mut tr = StreamTranslator::new();
        for _ in 0..4 {
            let mut ev = seeds[r.usize(..seeds.len())].clone();
            let mut budget = r.u32(..3);
            mutate(&mut r, &mut ev, &mut budget);
            if tr.on_event(&ev).is_err() {
                break;
            }
        }
    }
}

fn read_all(chunks: &[&[u8]]) -> Vec<(String, String)> {
    let mut p = Parser::default();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c);
        while let Some(e) = p.next_event() {
            out.push((e.event, e.data));
        }
    }
    out
}

#[test]
fn the_sse_reader_reads_the_same_whatever_the_chunking() {
    let (mut r, seed) = rng("sse");
    let seeds = corpus("sse");
    for _ in 0..iters() {
        let mut bytes = seeds[r.usize(..seeds.len())].clone().into_bytes();
        // Some inputs are damaged: bytes flipped, inserted or cut.
        for _ in 0..r.usize(..3) {
            if bytes.is_empty() {
                break;
            }
            let i = r.usize(..bytes.len());
            match r.u8(..3) {
                0 => bytes[i] = r.u8(..),
                1 => bytes.insert(i, [b'\r', b'\n', b':', 0xff][r.usize(..4)]),
                _ => bytes.truncate(i),
            }
        }
        let whole = read_all(&[&bytes]);
        let mut cuts: Vec<usize> = (0..r.usize(..6)).map(|_| r.usize(..=bytes.len())).collect();
        cuts.sort_unstable();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for c in cuts {
            pieces.push(&bytes[at..c]);
            at = c;
        }
        pieces.push(&bytes[at..]);
        assert_eq!(
            read_all(&pieces),
            whole,
            "seed {seed}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn the_cache_fingerprint_is_deterministic_and_ignores_field_order() {
    let (bodies, seed) = mutated_bodies("fingerprint", "chat");
    let (mut r, _) = rng("fingerprint-order");
    for body in bodies {
        let a = fingerprint("m", &body);
        assert_eq!(a, fingerprint("m", &body), "seed {seed}");
        let mut fields: Vec<(String, Value)> = body.clone().into_iter().collect();
        r.shuffle(&mut fields);
        let shuffled: Map<String, Value> = fields.into_iter().collect();
        assert_eq!(a, fingerprint("m", &shuffled), "seed {seed}: {}", Value::Object(body));
        assert_ne!(a.exact, fingerprint("other", &body).exact, "the target is part of it");
    }
}

#[test]
fn config_parsing_names_every_problem_and_never_panics() {
    let (mut r, seed) = rng("config");
    let seeds = corpus("config");
    let env = |_: &str| Some("fuzz-secret".to_string());
    for _ in 0..iters() / 4 {
        let mut text = seeds[r.usize(..seeds.len())].clone();
        for _ in 0..1 + r.usize(..3) {
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                break;
            }
            let i = r.usize(..lines.len());
            let replacement = [
                "",
                "x = 1",
                "[server]",
                "max_body_bytes = -1",
                "listen = \"nowhere\"",
                "kind = \"martian\"",
                "context_window = 0",
                "input_per_mtok = \"1e999\"",
                "[[models.m.deployments]]",
                "redact = [\"(\"]",
                "\u{0}",
            ][r.usize(..11)];
            let mut out: Vec<&str> = lines.clone();
            out[i] = replacement;
            text = out.join("\n");
        }
        if let Err(e) = Config::from_toml(&text, &env, std::iter::empty()) {
            let shown = e.to_string();
            assert!(!shown.trim().is_empty(), "seed {seed}: an empty error for {text}");
        }
    }
}
