//! Relays an upstream chunk stream to the client as SSE, chunk by chunk, and meters it.
//!
//! Nothing is buffered beyond one held chunk: the body is pulled by the client's connection, so
//! a slow reader slows the upstream read (backpressure), and a client that disconnects drops this
//! stream, which drops the upstream request and lets the [`Meter`] record the disconnect.
//!
//! Usage: upstreams are always asked for a usage chunk. If the client did not ask for one, it is
//! removed, and the cost travels instead on the last chunk that carries a `finish_reason`, which
//! is held back until the stream's end is known (it carries no text, so holding it costs no
//! latency the reader can see). If the client asked, the cost rides on the usage chunk. The cost
//! is an extra top-level `switchyard` object, which SDKs ignore.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::error::ApiError;
use crate::money::accounting::{self, Verdict, COUNT_INLINE_BYTES};
use crate::money::meter::Meter;
use crate::money::pricing::Nanos;
use crate::providers::{Chunk, ChunkStream, UpstreamError};
use crate::proxy::gateway::{InflightGuard, StartedStream};
use crate::proxy::lookup::{Answer, Keep};
use crate::proxy::replay::{with_extension, Assembler};
use crate::records::usage::{Outcome, Reported, Usage, UsageSource};

/// Generated text kept for estimates when an upstream reports no usage; beyond it, counting stops growing.
const MAX_TEXT_FOR_ESTIMATE: usize = 1024 * 1024;

/// Chunks whose text is not yet read are kept up to this many bytes, then read.
const MAX_UNREAD_BYTES: usize = 256 * 1024;

/// The generated text of a stream, for estimates: what was read, and chunks kept unread (their
/// text is read only if an estimate needs it; most streams report usage, and then none is).
#[derive(Default)]
struct Generated {
    text: String,
    unread: Vec<Bytes>,
    unread_bytes: usize,
}

impl Generated {
    fn add(&mut self, c: &Chunk) {
        if self.text.len() + self.unread_bytes >= MAX_TEXT_FOR_ESTIMATE {
            return;
        }
        if !c.info.text_later {
            self.text.push_str(&c.info.text);
            return;
        }
        self.unread.push(c.data.clone());
        self.unread_bytes += c.data.len();
        if self.unread_bytes > MAX_UNREAD_BYTES {
            self.read_unread();
        }
    }

    fn read_unread(&mut self) {
        for data in std::mem::take(&mut self.unread) {
            self.text.push_str(&crate::providers::text_of(&data));
        }
        self.unread_bytes = 0;
    }

    /// At least the length of the text (unread chunks count whole).
    fn len_bound(&self) -> usize {
        self.text.len() + self.unread_bytes
    }

    /// All the text, reading what is unread.
    fn text(&mut self) -> &str {
        self.read_unread();
        &self.text
    }

    fn take_text(&mut self) -> String {
        self.read_unread();
        std::mem::take(&mut self.text)
    }
}

/// Chunks already waiting are sent together up to this size.
const COALESCE_BYTES: usize = 64 * 1024;

struct Relay {
    first: Option<Chunk>,
    rest: ChunkStream,
    include_usage: bool,
    held: Option<Chunk>,
    usage: Option<Reported>,
    generated: Generated,
    /// An estimate counted ahead on a blocking thread, for when the report is not believed.
    estimated: Option<Usage>,
    /// An item taken off the stream that needs the estimate above before it can be handled.
    deferred: Option<Option<Result<Chunk, UpstreamError>>>,
    meter: Option<Meter>,
    _guard: InflightGuard,
    deployment: String,
    finished: bool,
    /// The extension object once usage is settled; usage is settled exactly once.
    settled: Option<String>,
    /// The usage settled, for a usage chunk the gateway sends itself.
    settled_usage: Usage,
    /// The client got the upstream's usage chunk.
    usage_sent: bool,
    /// The stream's first chunk, for the `id`, `created` and `model` of a chunk made here.
    first_data: Bytes,
    /// The cost settled.
    settled_cost: Nanos,
    /// Where the complete answer goes, if it is to be kept (a cut stream keeps nothing).
    keeper: Option<Keeper>,
}

/// Assembles a stream's answer for the cache as it passes.
pub struct Keeper {
    assembler: Assembler,
    keep: Box<dyn Keep>,
    model: String,
}

impl Keeper {
    /// Keeps the answer of a stream from `model` through `keep`, once it has ended well.
    pub fn new(keep: Box<dyn Keep>, model: String) -> Keeper {
        Keeper {
            assembler: Assembler::new(keep.max_bytes()),
            keep,
            model,
        }
    }
}

/// The SSE event that ends an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Frames one SSE `data:` event. A line break inside the data (JSON may have some between its
/// tokens, where it is whitespace; inside a string it must be escaped) would end the `data:`
/// line early and break the client's framing: each is written as a space.
pub fn frame(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    if memchr::memchr2(b'\n', b'\r', data).is_none() {
        out.put_slice(data);
    } else {
        out.extend(data.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
    }
    out.put_slice(b"\n\n");
}

/// A usage-only chunk as OpenAI sends it last when asked (`choices` empty), with the `id`,
/// `created` and `model` of the stream's first chunk and the `switchyard` extension.
pub fn usage_chunk(first: &[u8], usage: &Usage, ext: &str) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(default, borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        created: Option<u64>,
        #[serde(default, borrow)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    let head = serde_json::from_slice::<Head<'_>>(first).ok();
    let v = serde_json::json!({
        "id": head.as_ref().and_then(|h| h.id.as_deref()).unwrap_or("chatcmpl-switchyard"),
        "object": "chat.completion.chunk",
        "created": head.as_ref().and_then(|h| h.created).unwrap_or(0),
        "model": head.as_ref().and_then(|h| h.model.as_deref()).unwrap_or(""),
        "choices": [],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        },
    });
    with_extension(v.to_string().as_bytes(), ext).to_vec()
}

/// The `switchyard` extension object for the final chunk.
pub fn extension_json(cost: Nanos, usage: &Usage, source: UsageSource, deployment: &str) -> String {
    serde_json::json!({
        "cost_usd": cost.to_string(),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "usage_source": source,
        "deployment": deployment,
    })
    .to_string()
}

impl Relay {
    fn take_chunk(&mut self, c: Chunk, out: &mut BytesMut) {
        if let Some(k) = self.keeper.as_mut() {
            k.assembler.add(&c.data);
        }
        if let Some(u) = c.info.usage {
            self.usage = Some(u);
        }
        self.generated.add(&c);
        if c.info.no_choices && c.info.carries_usage {
            // The usage chunk: the stream's last data chunk.
            if self.include_usage {
                if let Some(h) = self.held.take() {
                    frame(out, &h.data);
                }
                let ext = self.settle_extension();
                frame(out, &with_extension(&c.data, &ext));
                self.usage_sent = true;
            } else {
                self.held_with_cost(out);
            }
            return;
        }
        if c.info.finish {
            if let Some(h) = self.held.take() {
                frame(out, &h.data);
            }
            self.held = Some(c);
            return;
        }
        if let Some(h) = self.held.take() {
            frame(out, &h.data);
        }
        frame(out, &c.data);
    }

    /// Emits the held finish chunk with the cost attached (when there is no usage chunk to carry it).
    fn held_with_cost(&mut self, out: &mut BytesMut) {
        let ext = self.settle_extension();
        if let Some(h) = self.held.take() {
            frame(out, &with_extension(&h.data, &ext));
        }
    }

    /// Works out usage and cost once (see `money::accounting`) and settles the meter's usage.
    fn settle_extension(&mut self) -> String {
        if let Some(ext) = &self.settled {
            return ext.clone();
        }
        let Some(meter) = self.meter.as_mut() else {
            return "{}".into();
        };
        let (estimated, generated) = (self.estimated.take(), &mut self.generated);
        let enc = meter.encoding();
        let prompt = meter.prompt().cloned();
        let a = meter.account(self.usage.as_ref(), || {
            estimated.unwrap_or_else(|| accounting::estimate_chat(prompt.as_deref(), generated.text(), enc))
        });
        let ext = extension_json(a.cost, &a.usage, a.source, &self.deployment);
        self.settled = Some(ext.clone());
        self.settled_usage = a.usage;
        self.settled_cost = a.cost;
        ext
    }

    /// Whether settling now would count much text on the executor (a report that is not
    /// believed, and a prompt or answer too long to count inline).
    fn needs_slow_estimate(&self, reported: Option<&Reported>) -> bool {
        let Some(meter) = self.meter.as_ref() else { return false };
        if self.settled.is_some() || self.estimated.is_some() {
            return false;
        }
        if !matches!(meter.verdict(reported), Verdict::Estimate(_)) {
            return false;
        }
        let enc = meter.encoding();
        let prompt = meter
            .prompt()
            .filter(|p| !p.is_counted(enc))
            .map_or(0, |p| p.text.len());
        prompt + self.generated.len_bound() > COUNT_INLINE_BYTES
    }

    /// Counts the estimate on a blocking thread, so settling does not.
    async fn estimate_off_executor(&mut self) {
        if let Some(meter) = self.meter.as_ref() {
            let prompt = meter.prompt().cloned();
            let enc = meter.encoding();
            let text = self.generated.text().into();
            self.estimated = Some(accounting::estimate_chat_off_executor(prompt, text, enc).await);
        }
    }

    /// Whether this item (the end, an error or the usage chunk) settles usage slowly: it is
    /// then handled only after [`Relay::estimate_off_executor`].
    fn settles_slowly(&self, item: &Option<Result<Chunk, UpstreamError>>) -> bool {
        match item {
            None => self.needs_slow_estimate(self.usage.as_ref()),
            Some(Ok(c)) if c.info.no_choices && c.info.carries_usage => {
                self.needs_slow_estimate(c.info.usage.as_ref().or(self.usage.as_ref()))
            }
            _ => false,
        }
    }

    /// The upstream finished with `[DONE]`.
    fn end_ok(&mut self, out: &mut BytesMut) {
        if self.include_usage && !self.usage_sent {
            // The client asked for usage and the upstream sent no usage chunk (some servers
            // ignore the option): send one, in OpenAI's shape, from the gateway's accounting;
            // its `switchyard.usage_source` says it was estimated.
            if let Some(h) = self.held.take() {
                frame(out, &h.data);
            }
            let ext = self.settle_extension();
            frame(out, &usage_chunk(&self.first_data, &self.settled_usage, &ext));
        } else if self.held.is_some() {
            self.held_with_cost(out);
        } else {
            let _ = self.settle_extension();
        }
        out.put_slice(DONE);
        if let Some(mut m) = self.meter.take() {
            // The meter is gone before this write is sent: it counts it now.
            m.add_response(out);
            m.finish(200, Outcome::Success, None);
        }
        if let Some(k) = self.keeper.take() {
            if let Some(body) = k.assembler.finish() {
                k.keep.keep(Answer {
                    body,
                    model: k.model,
                    usage: self.settled_usage,
                    cost: self.settled_cost,
                    tool_calls: false,
                });
            }
        }
    }

    /// The upstream broke after the stream started: tell the client in-band and bill what was used.
    fn end_err(&mut self, e: &UpstreamError, out: &mut BytesMut) {
        if let Some(h) = self.held.take() {
            frame(out, &h.data);
        }
        let api = match e {
            UpstreamError::Timeout => ApiError::upstream_timeout(),
            UpstreamError::OverBound(why) => ApiError::upstream_error(format!("The upstream stream was cut: {why}")),
            _ => ApiError::upstream_error("The upstream provider failed mid-stream"),
        };
        frame(out, &api.to_json());
        if let Some(mut m) = self.meter.take() {
            m.add_response(out);
            m.account_later(self.usage.as_ref(), self.generated.take_text());
            m.finish(200, Outcome::UpstreamError, Some(e.kind()));
        }
    }

    /// Appends chunks that are already waiting (a burst) to this write, without waiting for more:
    /// one write and one wake-up instead of one per chunk, and no added latency.
    fn take_ready(&mut self, out: &mut BytesMut) {
        use futures_util::FutureExt;
        while out.len() < COALESCE_BYTES {
            let Some(item) = self.rest.next().now_or_never() else {
                return;
            };
            if self.settles_slowly(&item) {
                self.deferred = Some(item);
                return;
            }
            if self.handle(item, out) {
                return;
            }
        }
    }

    /// Handles one item of the upstream stream; true when the stream is over.
    fn handle(&mut self, item: Option<Result<Chunk, UpstreamError>>, out: &mut BytesMut) -> bool {
        match item {
            Some(Ok(c)) => {
                self.take_chunk(c, out);
                false
            }
            None => {
                self.end_ok(out);
                self.finished = true;
                true
            }
            Some(Err(e)) => {
                self.end_err(&e, out);
                self.finished = true;
                true
            }
        }
    }

    async fn step(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut out = BytesMut::new();
        if let Some(first) = self.first.take() {
            self.take_chunk(first, &mut out);
            if !out.is_empty() {
                self.take_ready(&mut out);
                if let Some(m) = self.meter.as_mut() {
                    m.add_response(&out);
                }
                return Some(out.freeze());
            }
        }
        loop {
            // Network providers enforce the idle timeout as they read; the in-process mock needs none.
            let item = match self.deferred.take() {
                Some(item) => item,
                None => self.rest.next().await,
            };
            if self.settles_slowly(&item) {
                self.estimate_off_executor().await;
            }
            let ended = self.handle(item, &mut out);
            if ended {
                break;
            }
            if !out.is_empty() {
                self.take_ready(&mut out);
                break;
            }
        }
        if let Some(m) = self.meter.as_mut() {
            m.add_response(&out);
        }
        Some(out.freeze())
    }
}

impl Drop for Relay {
    /// The client went away mid-stream: what was generated so far is left on the meter, which
    /// records the disconnect (unless usage was already settled from the upstream's own report).
    fn drop(&mut self) {
        if self.settled.is_none() {
            if let Some(m) = self.meter.as_mut() {
                m.account_later(self.usage.as_ref(), self.generated.take_text());
            }
        }
    }
}

/// The SSE body for a started stream. Dropping it (client gone) drops the upstream call and
/// records the disconnect through the meter.
pub fn sse_body(
    started: StartedStream,
    include_usage: bool,
    mut meter: Meter,
    guard: InflightGuard,
    deployment: String,
    keeper: Option<Keeper>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    meter.mark_first_token();
    let first_data = started.first.data.clone();
    let relay = Relay {
        first: Some(started.first),
        rest: started.rest,
        include_usage,
        held: None,
        usage: None,
        generated: Generated::default(),
        estimated: None,
        deferred: None,
        meter: Some(meter),
        _guard: guard,
        deployment,
        finished: false,
        settled: None,
        settled_usage: Usage::default(),
        usage_sent: false,
        first_data,
        settled_cost: Nanos(0),
        keeper,
    };
    futures_util::stream::unfold(relay, |mut r| async move { r.step().await.map(|b| (Ok(b), r)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_is_appended_as_last_member() {
        let out = with_extension(br#"{"a":1}"#, r#"{"cost_usd":"0.1"}"#);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["switchyard"]["cost_usd"], "0.1");
        let out = with_extension(b"{ }\n", r#"{}"#);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            serde_json::json!({"switchyard": {}})
        );
        assert_eq!(&with_extension(b"[1]", "{}")[..], b"[1]");
    }

    #[test]
    fn line_breaks_in_the_data_do_not_break_the_framing() {
        let mut out = BytesMut::new();
        frame(&mut out, b"{\"a\":\r\n 1,\n\"b\": \"x\"}");
        assert_eq!(&out[..], b"data: {\"a\":   1, \"b\": \"x\"}\n\n");
        let v: serde_json::Value = serde_json::from_slice(&out[6..out.len() - 2]).unwrap();
        assert_eq!((v["a"].as_i64(), v["b"].as_str()), (Some(1), Some("x")));
        let mut out = BytesMut::new();
        frame(&mut out, b"{}");
        assert_eq!(&out[..], b"data: {}\n\n");
    }

    #[test]
    fn a_usage_chunk_made_here_looks_like_openais() {
        let first = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[]}"#;
        let u = Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0,
        };
        let c = usage_chunk(first, &u, r#"{"usage_source":"estimated"}"#);
        let v: serde_json::Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["created"].as_u64(), v["model"].as_str()),
            (Some("chatcmpl-1"), Some(7), Some("m"))
        );
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["switchyard"]["usage_source"], "estimated");
    }
}
