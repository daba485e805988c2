//! Upstream providers behind one trait: OpenAI-compatible servers, Anthropic (translated), and the in-process mock.
//!
//! A provider turns a validated request into either a complete OpenAI-shaped JSON body or a
//! stream of OpenAI `chat.completion.chunk`s. Everything vendor-specific stays in its own file;
//! the gateway above sees only [`ChatOutcome`], [`Chunk`] and [`UpstreamError`].

pub mod anthropic;
pub mod mock;
pub mod openai;
pub mod sse;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::Stream;
use serde::Deserialize;

use crate::config::DeploymentConfig;
use crate::proxy::request::{ChatRequest, EmbeddingsRequest};
use crate::records::usage::Reported;

/// A usage object as sent: every count kept as it came, however absurd, for
/// `money::accounting` to judge.
#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Count,
}

/// One count as sent: an integer of any size or sign, nothing (missing or `null`), or
/// something that is not a count (text, a fraction, an object).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Count {
    #[default]
    Missing,
    Int(i128),
    Bad,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count::Int(i128::from(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count::Int(i128::from(v)))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Count, E> {
                Ok(i128::try_from(v).map_or(Count::Int(i128::MAX), Count::Int))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Count, E> {
                Ok(Count::Int(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                // A whole number written as a float (`12.0`, `1e20`) is still a count.
                Ok(if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e36 {
                    Count::Int(v as i128)
                } else {
                    Count::Bad
                })
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count::Missing)
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count::Missing)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Count, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Count::Bad)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Count, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Count::Bad)
            }
        }
        d.deserialize_any(V)
    }
}

impl From<WireUsage> for Reported {
    fn from(w: WireUsage) -> Reported {
        let cached = w.prompt_tokens_details.map_or(Count::Missing, |d| d.cached_tokens);
        let mut malformed = false;
        let mut take = |c: Count| match c {
            Count::Missing => None,
            Count::Int(v) => Some(v),
            Count::Bad => {
                malformed = true;
                None
            }
        };
        let prompt_tokens = take(w.prompt_tokens);
        let completion_tokens = take(w.completion_tokens);
        let cached_tokens = take(cached);
        Reported {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            malformed,
        }
    }
}

/// One `chat.completion.chunk`, its JSON kept as bytes so pass-through needs no re-serialization.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    pub info: ChunkInfo,
}

/// Whether a chunk, as compact JSON, is certainly one whose only news is content: an object with
/// choices, every `finish_reason` null, and no `usage`, `tool_calls`, `function_call` or `error`
/// anywhere. Inside a JSON string a quote is escaped, so these quoted names can appear unescaped
/// only as keys (or as a whole string value, which makes this answer no and the chunk is parsed):
/// the test can refuse a plain chunk, never accept one that carries more.
pub fn is_plain_content(data: &str) -> bool {
    use memchr::memmem::Finder;
    // Built once: making a searcher costs more than searching a chunk with it.
    static FINDERS: std::sync::OnceLock<[Finder<'static>; 7]> = std::sync::OnceLock::new();
    let [choices, usage, tool_calls, function_call, error, finish, finish_null] = FINDERS.get_or_init(|| {
        [
            Finder::new(b"\"choices\":[{"),
            Finder::new(b"\"usage\""),
            Finder::new(b"\"tool_calls\""),
            Finder::new(b"\"function_call\""),
            Finder::new(b"\"error\""),
            Finder::new(b"\"finish_reason\""),
            Finder::new(b"\"finish_reason\":null"),
        ]
    });
    let d = data.as_bytes();
    if d.first() != Some(&b'{') || d.last() != Some(&b'}') || choices.find(d).is_none() {
        return false;
    }
    if [usage, tool_calls, function_call, error]
        .iter()
        .any(|f| f.find(d).is_some())
    {
        return false;
    }
    finish.find_iter(d).count() == finish_null.find_iter(d).count()
}

/// The generated text of a chunk's JSON (content and tool-call arguments); empty if it is not one.
pub fn text_of(data: &[u8]) -> String {
    ChunkInfo::peek(data).map(|i| i.text).unwrap_or_default()
}

impl Chunk {
    /// The generated text of this chunk (content and tool-call arguments), read now if
    /// [`ChunkInfo::text_later`].
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        if self.info.text_later {
            text_of(&self.data).into()
        } else {
            self.info.text.as_str().into()
        }
    }

    /// A chunk a provider built itself: serialized once, its info read from the value, not re-parsed.
    pub fn from_value(v: &serde_json::Value) -> Chunk {
        let info = PeekChunk::deserialize(v).map(ChunkInfo::from_peek).unwrap_or_default();
        Chunk {
            data: Bytes::from(v.to_string()),
            info,
        }
    }
}

/// What the gateway needs to know about a chunk, read once when it arrives.
#[derive(Debug, Clone, Default)]
pub struct ChunkInfo {
    /// Usage the chunk reports, as sent (judged by `money::accounting`).
    pub usage: Option<Reported>,
    /// The chunk has a `usage` object (the usage-only chunk is recognised by it).
    pub carries_usage: bool,
    /// At least one choice has a `finish_reason`.
    pub finish: bool,
    /// The chunk has no choices: OpenAI's usage-only chunk.
    pub no_choices: bool,
    /// The generated text in this chunk (content and tool-call arguments), for estimates.
    pub text: String,
    /// Some choice's delta has tool calls.
    pub tool_calls: bool,
    /// `text` was not read: the chunk was recognised as plain content without parsing it
    /// (see [`ChunkInfo::peek_str`]); [`Chunk::text`] reads it when it is needed.
    pub text_later: bool,
}

#[derive(Deserialize)]
struct PeekChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<PeekChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct PeekChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<PeekDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PeekDelta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<PeekToolCall<'a>>>,
}

#[derive(Deserialize)]
struct PeekToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<PeekFunction<'a>>,
}

#[derive(Deserialize)]
struct PeekFunction<'a> {
    #[serde(default, borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<std::borrow::Cow<'a, str>>,
}

impl ChunkInfo {
    /// Reads the parts of a chunk's JSON the gateway needs; `None` if it is not a chunk object.
    pub fn peek(data: &[u8]) -> Option<ChunkInfo> {
        serde_json::from_slice::<PeekChunk<'_>>(data)
            .ok()
            .map(ChunkInfo::from_peek)
    }

    /// [`ChunkInfo::peek`] of text already known to be UTF-8 (an SSE event's data), which
    /// spares checking every string in it again. A chunk that is plainly content (see
    /// [`is_plain_content`]) is not parsed at all: its text is read only if an estimate needs it,
    /// and most streams report their usage.
    pub fn peek_str(data: &str) -> Option<ChunkInfo> {
        if is_plain_content(data) {
            return Some(ChunkInfo {
                text_later: true,
                ..ChunkInfo::default()
            });
        }
        serde_json::from_str::<PeekChunk<'_>>(data)
            .ok()
            .map(ChunkInfo::from_peek)
    }

    fn from_peek(c: PeekChunk<'_>) -> ChunkInfo {
        let mut info = ChunkInfo {
            carries_usage: c.usage.is_some(),
            usage: c.usage.map(Reported::from),
            finish: false,
            no_choices: c.choices.is_empty(),
            text: String::new(),
            tool_calls: false,
            text_later: false,
        };
        for ch in c.choices {
            info.finish |= ch.finish_reason.is_some();
            if let Some(d) = ch.delta {
                if let Some(t) = d.content {
                    info.text.push_str(&t);
                }
                info.tool_calls |= d.tool_calls.as_ref().is_some_and(|t| !t.is_empty());
                for tc in d.tool_calls.unwrap_or_default() {
                    if let Some(f) = tc.function {
                        if let Some(n) = f.name {
                            info.text.push_str(&n);
                        }
                        if let Some(a) = f.arguments {
                            info.text.push_str(&a);
                        }
                    }
                }
            }
        }
        info
    }
}

/// What a complete response body says, read in one pass.
pub enum BodyRead {
    /// A JSON object without an error: its usage, if it reports one.
    Answer(Option<Reported>),
    /// A JSON object with an `error` and no `choices`/`data`: a failure, whatever the status said.
    Error(String),
    NotJson,
}

/// Reads a complete response body in one pass: usage, or an error hidden behind a 200.
pub fn read_body(body: &[u8]) -> BodyRead {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        usage: Option<WireUsage>,
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        choices: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        data: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(body) {
        Err(_) => BodyRead::NotJson,
        Ok(b) => match b.error {
            Some(e) if !e.is_null() && b.choices.is_none() && b.data.is_none() => {
                let msg = e["message"].as_str().or(e.as_str()).unwrap_or("upstream error");
                BodyRead::Error(msg.chars().take(1000).collect())
            }
            _ => BodyRead::Answer(b.usage.map(Reported::from)),
        },
    }
}

/// The generated text of a complete chat response, for estimating when no usage was reported.
pub fn completion_text_of_body(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let mut out = String::new();
    for c in v["choices"].as_array().into_iter().flatten() {
        if let Some(t) = c["message"]["content"].as_str() {
            out.push_str(t);
        }
        for tc in c["message"]["tool_calls"].as_array().into_iter().flatten() {
            out.push_str(tc["function"]["name"].as_str().unwrap_or(""));
            out.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    out
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, UpstreamError>> + Send>>;

/// A complete (non-streaming) answer: an OpenAI-shaped JSON body.
#[derive(Debug, Clone)]
pub struct Complete {
    pub body: Bytes,
    /// The usage the body reports, as sent.
    pub usage: Option<Reported>,
}

pub enum ChatOutcome {
    Complete(Complete),
    Stream(ChunkStream),
}

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The upstream answered with an error status.
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer (or no next chunk) in time.
    Timeout,
    /// Could not connect or the connection broke.
    Connect(String),
    /// The upstream answered with something that is not the expected protocol.
    Protocol(String),
    /// The stream ended before its end marker.
    Cut,
    /// A stream went past one of the gateway's own bounds (its length or duration); the text
    /// is the gateway's, never the upstream's.
    OverBound(String),
}

impl UpstreamError {
    /// Worth another attempt (same or another deployment) before the first byte reached the client.
    pub fn retryable(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                matches!(status, 401 | 403 | 404 | 408 | 409 | 429 | 529) || *status >= 500
            }
            UpstreamError::Timeout | UpstreamError::Connect(_) | UpstreamError::Cut | UpstreamError::Protocol(_) => {
                true
            }
            UpstreamError::OverBound(_) => false,
        }
    }

    /// Worth retrying on the same deployment (transient), as opposed to moving on at once.
    pub fn transient(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => matches!(status, 408 | 409 | 529) || *status >= 500,
            UpstreamError::Timeout | UpstreamError::Connect(_) | UpstreamError::Cut => true,
            UpstreamError::Protocol(_) | UpstreamError::OverBound(_) => false,
        }
    }

    /// A sign that the deployment itself is unwell (counts toward its circuit breaker).
    pub fn counts_against_deployment(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => *status >= 500 || matches!(status, 401 | 403 | 404),
            _ => true,
        }
    }

    /// Low-cardinality name for metrics and usage rows.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Status { status: 429, .. } => "upstream_rate_limited",
            UpstreamError::Status { status, .. } if *status >= 500 => "upstream_5xx",
            UpstreamError::Status { .. } => "upstream_4xx",
            UpstreamError::Timeout => "upstream_timeout",
            UpstreamError::Connect(_) => "upstream_connect",
            UpstreamError::Protocol(_) => "upstream_protocol",
            UpstreamError::Cut => "upstream_cut",
            UpstreamError::OverBound(_) => "upstream_over_bound",
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Status { status, message, .. } => write!(f, "upstream status {status}: {message}"),
            UpstreamError::Timeout => write!(f, "upstream timed out"),
            UpstreamError::Connect(e) => write!(f, "upstream connection failed: {e}"),
            UpstreamError::Protocol(e) => write!(f, "upstream protocol error: {e}"),
            UpstreamError::Cut => write!(f, "upstream stream ended early"),
            UpstreamError::OverBound(why) => write!(f, "upstream stream cut: {why}"),
        }
    }
}

/// Limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Whole call (non-streaming) or until the response headers (streaming).
    pub timeout: Duration,
    /// Longest silence between two chunks of a stream.
    pub idle_timeout: Duration,
    /// Longest a whole stream may last.
    pub max_stream: Duration,
    /// Largest complete body read, and most bytes a stream may send.
    pub max_response_bytes: usize,
}

/// One upstream vendor protocol.
pub trait Provider: Send + Sync + 'static {
    /// Sends a chat request to `deployment` (its `model` is the upstream name).
    fn chat(
        &self,
        deployment: &DeploymentConfig,
        request: &ChatRequest,
        limits: CallLimits,
    ) -> BoxFuture<'static, Result<ChatOutcome, UpstreamError>>;

    /// Sends an embeddings request; providers without embeddings answer with a 400 status.
    fn embeddings(
        &self,
        deployment: &DeploymentConfig,
        request: &EmbeddingsRequest,
        limits: CallLimits,
    ) -> BoxFuture<'static, Result<Complete, UpstreamError>>;
}

/// Reads `retry-after` (seconds or HTTP date; only seconds are honoured) or `retry-after-ms`.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_millis(ms as u64));
        }
    }
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Extracts a human message from an upstream error body of any common shape.
pub(crate) fn error_message(status: u16, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .or_else(|| v["message"].as_str())
            .map(str::to_string)
    });
    // Control characters would forge lines in a text log (or break a header): spaces instead.
    let mut m: String = msg
        .unwrap_or_else(|| format!("upstream returned status {status}"))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if m.len() > 1000 {
        let mut cut = 1000;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
    }
    m
}

/// Sends a request; a non-success status becomes [`UpstreamError::Status`] with the upstream's message.
pub(crate) async fn send(rb: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
    let resp = rb.send().await.map_err(map_reqwest)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry = retry_after(resp.headers());
    let body = read_prefix(resp, MAX_ERROR_BODY).await;
    Err(UpstreamError::Status {
        status: status.as_u16(),
        message: error_message(status.as_u16(), &body),
        retry_after: retry,
    })
}

/// The most of an upstream error body that is read; the rest is not waited for.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// The start of an answer's body, at most `max` bytes (the rest is not waited for): a server
/// that sends an endless or huge error page holds nothing up and fills no memory.
pub(crate) async fn read_prefix(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(max - buf.len())]),
            _ => break,
        }
    }
    buf
}

/// Reads a response body up to `limit` bytes.
pub(crate) async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, UpstreamError> {
    use futures_util::StreamExt;
    match resp.content_length() {
        Some(n) if n as usize > limit => return Err(UpstreamError::Protocol("response body too large".into())),
        // A known, acceptable length: read it in one go (usually without copying).
        Some(_) => return resp.bytes().await.map_err(map_reqwest),
        None => {}
    }
    let mut stream = resp.bytes_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(part) = stream.next().await {
        let part = part.map_err(map_reqwest)?;
        if buf.len() + part.len() > limit {
            return Err(UpstreamError::Protocol("response body too large".into()));
        }
        buf.extend_from_slice(&part);
    }
    Ok(buf.freeze())
}

pub(crate) fn map_reqwest(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_connect() {
        UpstreamError::Connect(connect_failure(&e))
    } else if e.is_body() || e.is_decode() {
        UpstreamError::Cut
    } else {
        UpstreamError::Connect("request failed".into())
    }
}

/// What went wrong while connecting, in words of our own (never the upstream's): refused, TLS
/// (a handshake or certificate the client does not accept), or unreachable.
fn connect_failure(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // io errors wrap io errors (hyper's connector around rustls's) out of `source`'s sight.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(err) = io {
            match err.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                // rustls reports handshake and certificate failures as invalid data. Its text
                // can quote the upstream's certificate, so it goes to the log only.
                std::io::ErrorKind::InvalidData if e.url().is_some_and(|u| u.scheme() == "https") => {
                    let detail = err.get_ref().map_or_else(|| err.to_string(), |r| r.to_string());
                    tracing::warn!(detail = %detail, "TLS with the upstream failed");
                    return if detail.to_ascii_lowercase().contains("certificate") {
                        "TLS failed: the upstream's certificate was not accepted".into()
                    } else {
                        "TLS handshake failed".into()
                    };
                }
                _ => io = err.get_ref().and_then(|r| r.downcast_ref::<std::io::Error>()),
            }
        }
        source = s.source();
    }
    "connection refused or unreachable".into()
}

/// An HTTP client for one provider: pooled connections, bounded connect time, no redirects.
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // An API gateway must not follow redirects with a provider key attached.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("building a reqwest client with static settings succeeds")
}

#[cfg(test)]
mod tests;
