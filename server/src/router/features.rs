//! Features of a conversation for the router's models: a few dozen dense signals (length,
//! structure, code, math notation, multi-step and constraint markers, depth, tools, JSON mode)
//! and hashed word unigrams and bigrams of what the user asked last.
//!
//! Extraction is one pass over the last user message (capped) plus a walk over the message list;
//! nothing allocates per word except the output vector, so a 2,000-token conversation costs
//! microseconds.

use serde_json::{Map, Value};

/// The parts of a chat request the router looks at.
#[derive(Debug, Clone, Default)]
pub struct Conversation<'a> {
    /// Text of the last user message (text parts joined).
    pub last_user: std::borrow::Cow<'a, str>,
    /// Bytes of system and developer messages.
    pub system_bytes: usize,
    /// Bytes of every message's text.
    pub total_bytes: usize,
    pub messages: usize,
    /// Assistant turns so far.
    pub assistant_turns: usize,
    pub tools: bool,
    pub json_mode: bool,
    pub images: bool,
    /// Identifies the conversation across turns: a hash of its system prompt and first user
    /// message, which every later request of the conversation repeats.
    pub thread: u64,
}

/// Longest stretch of the last user message that is scanned (a long paste still says what it is
/// in its first 16 KiB; the rest only adds length, which is counted separately).
pub const SCAN_BYTES: usize = 16 * 1024;

fn text_len(content: &Value) -> (usize, bool) {
    match content {
        Value::String(s) => (s.len(), false),
        Value::Array(parts) => parts.iter().fold((0, false), |(n, img), p| {
            let t = p.get("text").and_then(Value::as_str).map_or(0, str::len);
            let is_img = p.get("type").and_then(Value::as_str) == Some("image_url");
            (n + t, img || is_img)
        }),
        _ => (0, false),
    }
}

fn text_of(content: &Value) -> std::borrow::Cow<'_, str> {
    match content {
        Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(""),
    }
}

impl<'a> Conversation<'a> {
    /// A one-message conversation (training rows, the explain endpoint's plain prompts).
    pub fn prompt(text: &'a str) -> Conversation<'a> {
        Conversation {
            last_user: std::borrow::Cow::Borrowed(text),
            total_bytes: text.len(),
            messages: 1,
            thread: fnv(FNV_OFFSET, text.as_bytes()),
            ..Conversation::default()
        }
    }

    /// Reads a chat completions body (already validated).
    pub fn of_body(body: &'a Map<String, Value>) -> Conversation<'a> {
        let mut c = Conversation::default();
        let messages: &'a [Value] = body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        c.messages = messages.len();
        let mut last_user: Option<&'a Value> = None;
        let mut thread = FNV_OFFSET;
        let mut first_user_seen = false;
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let content = m.get("content").unwrap_or(&Value::Null);
            let (n, img) = text_len(content);
            c.total_bytes += n;
            c.images |= img;
            match role {
                "system" | "developer" => {
                    c.system_bytes += n;
                    thread = hash_prefix(thread, &text_of(content));
                }
                "assistant" => c.assistant_turns += 1,
                "user" => {
                    if !first_user_seen {
                        first_user_seen = true;
                        thread = hash_prefix(fnv(thread, b"\x00user\x00"), &text_of(content));
                    }
                    last_user = Some(content);
                }
                _ => {}
            }
        }
        c.last_user = last_user.map(text_of).unwrap_or_default();
        c.thread = thread;
        c.tools = body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
            || body.get("functions").is_some();
        c.json_mode = body
            .get("response_format")
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "json_object" || t == "json_schema");
        c
    }
}

/// Names of the dense features, in order (the model file records them, so a model trained on
/// another feature set is refused instead of misread). All describe the last user message: the
/// training data has single prompts only, so conversation-level signals (depth, system prompt,
/// tools, JSON mode, images) would get weights learned from constants. Tools, JSON mode and
/// images steer the decision through capabilities instead.
pub const DENSE: &[&str] = &[
    "bias",
    "log_user_bytes",
    "digit_ratio",
    "log_numbers",
    "math_operator_ratio",
    "math_notation",
    "code_fence",
    "log_code_tokens",
    "log_questions",
    "log_multistep",
    "log_constraints",
    "log_list_items",
    "log_lines",
    "log_sentences",
    "mean_word_len",
    "upper_ratio",
    "non_ascii_ratio",
    "choices_block",
];

/// The dense-weight group of a prompt: its intent, split by whether it offers answer choices
/// (a multiple-choice question and a free-form one of the same intent differ in what makes them hard).
pub fn gate(intent: usize, intents: usize, f: &Features) -> usize {
    if f.choices {
        intent + intents
    } else {
        intent
    }
}

impl Features {
    /// Standardizes the dense values with a model's means and scales (the bias stays 1).
    pub fn standardize(&mut self, mean: &[f32], scale: &[f32]) {
        for ((x, m), s) in self.dense.iter_mut().zip(mean).zip(scale).skip(1) {
            *x = (*x - m) / s;
        }
    }
}

/// A sparse feature vector: dense values first (index = position in [`DENSE`]), then hashed
/// n-gram buckets offset by `DENSE.len()`, each with value 1 (repeats add up).
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub dense: Vec<f32>,
    pub hashed: Vec<u32>,
    /// The prompt lists answer choices (A–D).
    pub choices: bool,
}

/// What one word (with the word before it) says about the request.
#[derive(Default)]
struct Markers {
    multistep: usize,
    constraints: usize,
    code: usize,
}

impl Markers {
    /// Counts markers by whole words, in the same pass that hashes them: a keyword scan of the
    /// text per marker would cost more than everything else together.
    fn word(&mut self, prev: &str, w: &str) {
        match w {
            "finally" | "prove" | "derive" | "justify" | "compare" | "analyze" | "analyse" | "evaluate" | "design"
            | "plan" | "tradeoff" | "tradeoffs" | "first" | "then" => self.multistep += 1,
            "step" if prev == "by" => self.multistep += 1,
            "why" if prev == "explain" => self.multistep += 1,
            "that" if prev == "show" => self.multistep += 1,
            "through" if prev == "me" => self.multistep += 1,
            "detail" if prev == "in" => self.multistep += 1,
            "must" | "exactly" | "without" | "only" | "never" | "ensure" | "within" | "format" => self.constraints += 1,
            "least" | "most" if prev == "at" => self.constraints += 1,
            "not" if prev == "do" => self.constraints += 1,
            "t" if prev == "don" => self.constraints += 1,
            "than" if prev == "more" || prev == "less" => self.constraints += 1,
            "def" | "return" | "function" | "class" | "import" | "include" | "select" | "const" | "let" | "fn"
            | "print" | "console" | "public" | "void" | "int" | "string" | "array" | "error" | "exception" | "null"
            | "var" | "async" | "await" | "struct" | "lambda" | "elif" | "println" => self.code += 1,
            _ => {}
        }
    }
}

fn log1p(x: usize) -> f32 {
    (x as f32).ln_1p()
}

/// FNV-1a over bytes, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues `h` over a bounded prefix of `text` and its length (a long paste costs no more than 4 KiB).
fn hash_prefix(h: u64, text: &str) -> u64 {
    let bytes = text.as_bytes();
    fnv(
        fnv(h, &bytes[..bytes.len().min(4096)]),
        &(bytes.len() as u64).to_le_bytes(),
    )
}

/// A stable 64-bit hash of a string.
pub fn hash_str(s: &str) -> u64 {
    fnv(FNV_OFFSET, s.as_bytes())
}

/// A stable 64-bit hash of several strings, each ended by a zero byte (no allocation).
pub fn hash_parts(parts: &[&str]) -> u64 {
    parts.iter().fold(FNV_OFFSET, |h, p| fnv(fnv(h, p.as_bytes()), &[0]))
}

impl Features {
    /// Extracts features with n-grams hashed into `2^hash_bits` buckets.
    pub fn of(c: &Conversation<'_>, hash_bits: u32) -> Features {
        let full: &str = &c.last_user;
        let mut cut = full.len().min(SCAN_BYTES);
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = &full[..cut];
        let lower = text.to_lowercase();
        let bytes = text.len().max(1);

        let (mut digits, mut ops, mut upper, mut letters, mut non_ascii) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let (mut numbers, mut in_number) = (0usize, false);
        let (mut questions, mut sentences, mut lines) = (0usize, 0usize, 1usize);
        let mut code_symbols = 0usize;
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                digits += 1;
                if !in_number {
                    numbers += 1;
                    in_number = true;
                }
            } else if ch != '.' && ch != ',' {
                in_number = false;
            }
            match ch {
                '+' | '*' | '/' | '=' | '^' | '<' | '>' | '%' | '×' | '÷' | '≤' | '≥' | '≠' | '√' | '∑' | '∫' | 'π' => {
                    ops += 1
                }
                '?' | '？' => questions += 1,
                '{' | '}' | ';' => code_symbols += 1,
                '.' | '!' | '。' => sentences += 1,
                '\n' => lines += 1,
                _ => {}
            }
            if ch.is_alphabetic() {
                letters += 1;
                if ch.is_uppercase() {
                    upper += 1;
                }
            }
            if !ch.is_ascii() {
                non_ascii += 1;
            }
        }
        let list_items = text
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                t.starts_with("- ")
                    || t.starts_with("* ")
                    || t.split_once(['.', ')'])
                        .is_some_and(|(n, _)| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count();
        // Answer choices: at least three lines starting with `A.`, `A)` or `(A)` through `D`.
        let choices = text
            .lines()
            .filter(|l| {
                let t = l.trim_start().as_bytes();
                let letter = |b: u8| (b'a'..=b'd').contains(&b.to_ascii_lowercase());
                match t {
                    [b'(', x, b')', ..] => letter(*x),
                    [x, b'.' | b')', ..] => letter(*x),
                    _ => false,
                }
            })
            .count()
            >= 3;
        let math_notation = [
            "\\frac", "\\int", "\\sum", "\\sqrt", "$$", "^2", "x^", "∫", "∑", "√", "lim ", "dx", "log(",
        ]
        .iter()
        .any(|m| lower.contains(m));

        let mut words = 0usize;
        let mut word_bytes = 0usize;
        let mut hashed = Vec::with_capacity(text.len() / 3);
        let mask = (1u64 << hash_bits) - 1;
        let mut prev: Option<u64> = None;
        let mut markers = Markers::default();
        let mut prev_word = "";
        for w in lower.split(|ch: char| !ch.is_alphanumeric()).filter(|w| !w.is_empty()) {
            markers.word(prev_word, w);
            prev_word = w;
            // Scripts without spaces: every character is a word.
            if w.chars()
                .any(|ch| ('\u{3040}'..='\u{9fff}').contains(&ch) || ('\u{ac00}'..='\u{d7af}').contains(&ch))
            {
                for ch in w.chars() {
                    let mut buf = [0u8; 4];
                    let h = fnv(FNV_OFFSET, ch.encode_utf8(&mut buf).as_bytes());
                    push_ngrams(&mut hashed, &mut prev, h, mask);
                    words += 1;
                    word_bytes += 1;
                }
                continue;
            }
            let w = if w.len() > 24 {
                &w[..w.char_indices().nth(24).map_or(w.len(), |(i, _)| i)]
            } else {
                w
            };
            // Numbers are one token each: their digits say little, their presence much.
            let h = if w.bytes().all(|b| b.is_ascii_digit()) {
                fnv(FNV_OFFSET, b"<num>")
            } else {
                fnv(FNV_OFFSET, w.as_bytes())
            };
            push_ngrams(&mut hashed, &mut prev, h, mask);
            words += 1;
            word_bytes += w.chars().count();
        }

        let dense = vec![
            1.0,
            log1p(full.len()) / 8.0,
            digits as f32 / bytes as f32 * 4.0,
            log1p(numbers) / 3.0,
            ops as f32 / bytes as f32 * 10.0,
            f32::from(u8::from(math_notation)),
            f32::from(u8::from(text.contains("```"))),
            log1p(markers.code + code_symbols) / 3.0,
            log1p(questions),
            log1p(markers.multistep),
            log1p(markers.constraints),
            log1p(list_items),
            log1p(lines) / 3.0,
            log1p(sentences) / 3.0,
            if words == 0 {
                0.0
            } else {
                word_bytes as f32 / words as f32 / 8.0
            },
            if letters == 0 {
                0.0
            } else {
                upper as f32 / letters as f32
            },
            non_ascii as f32 / bytes as f32,
            f32::from(u8::from(choices)),
        ];
        debug_assert_eq!(dense.len(), DENSE.len());
        Features { dense, hashed, choices }
    }
}

/// Adds the unigram `h` and the bigram (previous word, `h`).
fn push_ngrams(out: &mut Vec<u32>, prev: &mut Option<u64>, h: u64, mask: u64) {
    out.push((h & mask) as u32);
    if let Some(p) = *prev {
        let b = fnv(p.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15, &h.to_le_bytes());
        out.push((b & mask) as u32);
    }
    *prev = Some(h);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dense(text: &str) -> Vec<f32> {
        Features::of(&Conversation::prompt(text), 16).dense
    }

    fn get(d: &[f32], name: &str) -> f32 {
        d[DENSE.iter().position(|n| *n == name).unwrap()]
    }

    #[test]
    fn signals_follow_the_text() {
        let code = dense("Fix this:\n```python\ndef f(x):\n    return x +\n```\nIt raises an error.");
        let math = dense("Compute \\int_0^1 x^2 dx and show that the result is 1/3.");
        assert_eq!(
            get(&dense("call f(a) then g(b), h(c) and k(d)"), "choices_block"),
            0.0,
            "calls are not choices"
        );
        let chat = dense("hi! how are you today?");
        assert_eq!(get(&code, "code_fence"), 1.0);
        assert!(get(&code, "log_code_tokens") > get(&chat, "log_code_tokens"));
        assert_eq!(get(&math, "math_notation"), 1.0);
        assert!(get(&math, "log_multistep") > 0.0);
        assert_eq!(get(&chat, "log_questions"), 2f32.ln());
        let mc = dense("Which is a noble gas?\nA. Oxygen\nB. Neon\nC. Iron\nD. Sodium");
        assert_eq!(get(&mc, "choices_block"), 1.0);
        assert_eq!(get(&chat, "choices_block"), 0.0);
    }

    #[test]
    fn reads_the_conversation_shape() {
        let body = json!({
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": [{"type": "text", "text": "what is in this picture?"},
                                             {"type": "image_url", "image_url": {"url": "data:,"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_object"}
        });
        let Value::Object(map) = body else { unreachable!() };
        let c = Conversation::of_body(&map);
        assert_eq!(c.last_user, "what is in this picture?");
        assert_eq!((c.messages, c.assistant_turns, c.system_bytes), (4, 1, 14));
        assert!(c.tools && c.json_mode && c.images);
        // Later turns of the same conversation share its thread; another opening does not.
        let mut longer = map.clone();
        longer["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "assistant", "content": "a cat"}));
        longer["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "user", "content": "and now?"}));
        assert_eq!(Conversation::of_body(&longer).thread, c.thread);
        let mut other = map.clone();
        other["messages"][1]["content"] = json!("another opening");
        assert_ne!(Conversation::of_body(&other).thread, c.thread);
    }

    #[test]
    fn ngrams_are_hashed_stably_and_bounded() {
        let a = Features::of(&Conversation::prompt("The quick brown fox"), 12);
        let b = Features::of(&Conversation::prompt("the QUICK brown fox!"), 12);
        assert_eq!(a.hashed, b.hashed, "case and punctuation do not matter");
        assert_eq!(a.hashed.len(), 4 + 3, "4 unigrams and 3 bigrams");
        assert!(a.hashed.iter().all(|h| *h < 4096));
        let n1 = Features::of(&Conversation::prompt("add 12 and 30"), 12);
        let n2 = Features::of(&Conversation::prompt("add 7 and 99"), 12);
        assert_eq!(n1.hashed, n2.hashed, "numbers hash as one token");
        let cjk = Features::of(&Conversation::prompt("数学の問題"), 12);
        assert_eq!(cjk.hashed.len(), 5 + 4);
    }
}
