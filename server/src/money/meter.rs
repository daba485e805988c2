//! One usage event per accepted request, whatever its outcome, handed to a bounded sink off the hot path.
//!
//! A [`Meter`] is created when a request is accepted (valid, known model) and records exactly one
//! [`UsageEvent`]: explicitly on success or failure, or from its `Drop` when the client went away
//! first (mid-dispatch or mid-stream). Usage is decided by [`crate::money::accounting`]: now,
//! when the answer needs it (a JSON answer's headers, a stream's last chunk), or later, when the
//! request ended early. Then the event carries the material for an estimate and the ledger
//! writer counts it, on a blocking thread, so counting never runs on the request path.
//!
//! The sink is bounded twice: by events (`ledger.max_buffered_events`, with admission closing
//! before it is reached, see [`crate::money::backlog`]) and by the bytes of text
//! waiting to be counted or stored as bodies ([`MAX_PENDING_ESTIMATE_BYTES`]). Past the second
//! bound an event is still recorded: without its bodies (counted in
//! `switchyard_request_bodies_dropped_total`), and if that is not enough, with its tokens
//! approximated from sizes and flagged `approximate`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::access::limits::{ConcurrencyPermit, Settlement};
use crate::capture::Capture;
use crate::clock::{Clock, SystemClock};
use crate::money::accounting::{self, Accounted, Bounds, Verdict};
use crate::money::backlog::Backlog;
use crate::money::pricing::{Nanos, Price};
use crate::money::tokens::{Encoding, PromptText};
use crate::proxy::gateway::{Attempting, Deployment};
use crate::records::bodies::RequestBodies;
use crate::records::keys::Principal;
use crate::records::usage::{Outcome, Reported, Tags, Usage, UsageEvent, UsageSource};

/// Everything needed to estimate tokens and cost when the upstream's report could not be used.
#[derive(Debug, Clone)]
pub struct PendingEstimate {
    pub prompt: Option<Arc<PromptText>>,
    pub completion_text: String,
    pub encoding: Encoding,
    pub price: Price,
    /// Cost already spent on a discarded cascade attempt, added to the estimate's.
    pub extra: Nanos,
}

impl PendingEstimate {
    /// The text still to be counted, in bytes (what it holds in memory until it is).
    pub fn bytes(&self) -> usize {
        let prompt = self
            .prompt
            .as_ref()
            .filter(|p| !p.is_counted(self.encoding))
            .map_or(0, |p| p.text.len());
        prompt + self.completion_text.len()
    }
}

/// A cascade's discarded cheap attempt: what it was, why it was escalated, what it cost.
#[derive(Debug, Clone)]
pub struct Escalated {
    pub reason: &'static str,
    /// The cheap logical model.
    pub model: String,
    /// Its deployment that answered; `None` when none did.
    pub deployment: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_nanos: i64,
}

/// What a route decided, as the event records it.
#[derive(Debug, Clone, Copy)]
pub struct RouteMark<'a> {
    pub route: &'a str,
    pub variant: Option<&'a str>,
    pub shadow_model: Option<&'a str>,
    pub tier: &'static str,
    pub intent: &'a str,
    pub reason: &'a str,
    /// The route's strong model's price when the request arrived, if it has one.
    pub strong_price: Option<Price>,
}

/// A usage event on its way to the ledger: the record, plus what is still to be resolved off
/// the request path (a token estimate) and settled (the request's budget reservations).
#[derive(Debug)]
pub struct Metered {
    pub event: UsageEvent,
    pub estimate: Option<Box<PendingEstimate>>,
    /// Budget reservations and token estimate to settle once the real cost is known.
    pub settlement: Option<Arc<Settlement>>,
    /// The route's strong model's price: the event's baseline is its tokens at this price.
    pub baseline: Option<Price>,
    /// The request's bodies, where they are stored (redacted and cut when finalized).
    pub bodies: Option<Box<Capture>>,
}

impl Metered {
    /// Resolves any estimate and settles the request's budget reservations to the real cost.
    /// Consumers call this once per event, off the request path (it may count tokens).
    pub fn finalize(mut self) -> UsageEvent {
        self.resolve_estimate();
        self.set_baseline();
        if let Some(s) = self.settlement.take() {
            let e = &self.event;
            s.settle(
                Nanos(e.cost_nanos),
                e.total_tokens()
                    .saturating_add(e.escalation_prompt_tokens)
                    .saturating_add(e.escalation_completion_tokens),
            );
        }
        self.event
    }

    /// [`Metered::finalize`], and the bodies to store with the event (redacted and cut).
    pub fn finalize_with_bodies(mut self) -> (UsageEvent, Option<RequestBodies>) {
        let bodies = self
            .bodies
            .take()
            .map(|c| c.finish(&self.event.event_id, self.event.ts_ms));
        (self.finalize(), bodies)
    }

    /// The bytes this event holds in memory until the ledger writer takes it: text to count and bodies.
    pub fn held_bytes(&self) -> usize {
        self.estimate.as_ref().map_or(0, |e| e.bytes()) + self.bodies.as_ref().map_or(0, |c| c.held_bytes())
    }

    /// The event's baseline from its final usage: its tokens at the strong model's price when a
    /// route chose the model and the cache did not answer, else its cost plus the cache's saving.
    fn set_baseline(&mut self) {
        let e = &mut self.event;
        let answered_by_cache = e.cache_entry.is_some();
        e.baseline_cost_nanos = match self.baseline {
            Some(p) if !answered_by_cache => p.cost(e.prompt_tokens, e.cached_tokens, e.completion_tokens).0,
            _ => e.cost_nanos.saturating_add(e.cache_saved_nanos),
        };
    }

    /// Counts tokens for an event that carries an estimate; a no-op for reported usage.
    pub fn resolve_estimate(&mut self) {
        if let Some(est) = self.estimate.take() {
            let u = accounting::estimate_chat(est.prompt.as_deref(), &est.completion_text, est.encoding);
            self.set_estimated(u, est.price, est.extra);
        }
    }

    fn set_estimated(&mut self, u: Usage, price: Price, extra: Nanos) {
        let e = &mut self.event;
        e.prompt_tokens = u.prompt_tokens;
        e.completion_tokens = u.completion_tokens;
        e.cached_tokens = 0;
        e.cost_nanos = price
            .cost(u.prompt_tokens, 0, u.completion_tokens)
            .saturating_add(extra)
            .0;
        e.usage_source = UsageSource::Estimated;
    }

    /// Replaces a pending estimate by one from sizes alone (no counting), flagged.
    fn approximate(&mut self) {
        if let Some(est) = self.estimate.take() {
            let prompt = est.prompt.as_ref().map_or(0, |p| p.text.len());
            let u = accounting::approximate(prompt, est.completion_text.len());
            self.set_estimated(u, est.price, est.extra);
            self.event.usage_flag = Some(Cow::Borrowed("approximate"));
        }
    }
}

/// Where usage events go. `record` must never block or await.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, event: Metered);

    /// The ledger's backlog behind this sink, if it has one (admission and `/readyz` read it).
    fn backlog(&self) -> Option<Arc<Backlog>> {
        None
    }
}

/// The production sink: a bounded channel to the ledger writer. A full channel drops the event,
/// counts it in `switchyard_usage_events_dropped_total` and logs it, never silently.
pub struct ChannelSink {
    tx: mpsc::Sender<Metered>,
    dropped: AtomicU64,
    /// Bytes of text waiting in the channel to be counted.
    pending_bytes: Arc<AtomicUsize>,
    max_pending_bytes: usize,
    backlog: Arc<Backlog>,
}

/// Text waiting in the channel to be counted for estimates, in bytes at most.
pub const MAX_PENDING_ESTIMATE_BYTES: usize = 64 * 1024 * 1024;

/// The receiving end of a [`ChannelSink`]: hand every received event to [`Receiver::taken`]
/// so the sink's byte bound is given back.
pub struct Receiver {
    pub rx: mpsc::Receiver<Metered>,
    pending_bytes: Arc<AtomicUsize>,
    /// Counts events out as they are written or given up on.
    pub backlog: Arc<Backlog>,
}

impl Receiver {
    /// Marks an event as taken off the channel.
    pub fn taken(&self, m: &Metered) {
        self.pending_bytes.fetch_sub(m.held_bytes(), Ordering::Relaxed);
    }
}

impl ChannelSink {
    pub fn new(capacity: usize) -> (Arc<ChannelSink>, Receiver) {
        Self::with_byte_bound(capacity, MAX_PENDING_ESTIMATE_BYTES)
    }

    pub fn with_byte_bound(capacity: usize, max_pending_bytes: usize) -> (Arc<ChannelSink>, Receiver) {
        Self::with_backlog(Arc::new(Backlog::new(capacity, 0)), max_pending_bytes)
    }

    /// A sink whose channel holds `backlog.capacity()` events.
    pub fn with_backlog(backlog: Arc<Backlog>, max_pending_bytes: usize) -> (Arc<ChannelSink>, Receiver) {
        let (tx, rx) = mpsc::channel(backlog.capacity().max(1));
        let pending_bytes = Arc::new(AtomicUsize::new(0));
        (
            Arc::new(ChannelSink {
                tx,
                dropped: AtomicU64::new(0),
                pending_bytes: pending_bytes.clone(),
                max_pending_bytes,
                backlog: backlog.clone(),
            }),
            Receiver {
                rx,
                pending_bytes,
                backlog,
            },
        )
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes of text waiting to be counted.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }
}

impl UsageSink for ChannelSink {
    fn record(&self, mut event: Metered) {
        let bytes = event.held_bytes();
        if bytes > 0 {
            let before = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
            if before.saturating_add(bytes) > self.max_pending_bytes {
                self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
                if event.bodies.take().is_some() {
                    metrics::counter!("switchyard_request_bodies_dropped_total").increment(1);
                    tracing::warn!(request_id = %event.event.request_id,
                        "too much waiting for the ledger: this request's bodies are not stored");
                }
                let bytes = event.held_bytes();
                let before = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
                if bytes > 0 && before.saturating_add(bytes) > self.max_pending_bytes {
                    self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    metrics::counter!("switchyard_usage_estimates_approximated_total").increment(1);
                    tracing::warn!(request_id = %event.event.request_id, bytes,
                        "too much text waiting to be counted: usage approximated from sizes");
                    event.approximate();
                }
            }
        }
        let bytes = event.held_bytes();
        // Counted in before it is sent, so the writer never counts it out first.
        self.backlog.entered();
        if let Err(e) = self.tx.try_send(event) {
            self.backlog.left(1);
            self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchyard_usage_events_dropped_total").increment(1);
            let m = match &e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            tracing::error!(request_id = %m.event.request_id, "usage event dropped: sink channel full or closed");
        }
    }

    fn backlog(&self) -> Option<Arc<Backlog>> {
        Some(self.backlog.clone())
    }
}

/// A sink that keeps events in memory, for tests and for inspecting a running demo.
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<UsageEvent>>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<UsageEvent> {
        self.events.lock().expect("no panics while holding this lock").clone()
    }
}

impl UsageSink for MemorySink {
    fn record(&self, event: Metered) {
        let event = event.finalize();
        self.events
            .lock()
            .expect("no panics while holding this lock")
            .push(event);
    }
}

/// What bounds a plausible usage report of this request.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Chat { max_output: Option<u32>, n: u32 },
    Embeddings { inputs: u64 },
}

/// Records exactly one usage event for one accepted request.
pub struct Meter {
    sink: Arc<dyn UsageSink>,
    permit: Option<ConcurrencyPermit>,
    started: Instant,
    event: Option<Metered>,
    prompt: Option<Arc<PromptText>>,
    price: Price,
    encoding: Encoding,
    shape: Shape,
    bounds: Bounds,
    /// Cost of a discarded cascade attempt, added to whatever the answer costs.
    extra: Nanos,
    /// The deployment the request is being sent to, while no answer has come: a client gone
    /// then is billed the prompt at its price.
    dispatching: Option<Attempting>,
}

impl Meter {
    pub fn start(
        sink: Arc<dyn UsageSink>,
        started: Instant,
        request_id: &str,
        endpoint: &'static str,
        model: &str,
        stream: bool,
        request_bytes: usize,
    ) -> Meter {
        let mut event = UsageEvent::new(
            crate::access::keys::new_id("evt"),
            request_id.to_string(),
            SystemClock.now_ms(),
            endpoint,
            model.to_string(),
        );
        event.stream = stream;
        event.status = 499;
        event.outcome = Outcome::ClientDisconnect;
        event.error_kind = Some(Cow::Borrowed("client_disconnect"));
        event.request_bytes = request_bytes as u64;
        Meter {
            sink,
            permit: None,
            started,
            event: Some(Metered {
                event,
                estimate: None,
                settlement: None,
                baseline: None,
                bodies: None,
            }),
            prompt: None,
            price: Price::default(),
            encoding: Encoding::Cl100k,
            shape: Shape::Chat { max_output: None, n: 1 },
            bounds: Bounds::UNKNOWN,
            extra: Nanos(0),
            dispatching: None,
        }
    }

    fn metered(&mut self) -> &mut Metered {
        self.event
            .as_mut()
            .expect("a meter's event is present until it is recorded")
    }

    fn ev(&mut self) -> &mut UsageEvent {
        &mut self.metered().event
    }

    /// A chat request's output cap and choices, which bound a believable report.
    pub fn set_chat_limits(&mut self, max_output: Option<u32>, n: u32) {
        self.shape = Shape::Chat { max_output, n };
    }

    /// An embeddings request's number of inputs, which bounds a believable report.
    pub fn set_embedding_inputs(&mut self, inputs: u64) {
        self.shape = Shape::Embeddings { inputs };
    }

    /// Records the route that chose the model and why, the experiment's variant, a shadow's
    /// choice, and the strong model's price the event's baseline is counted at.
    pub fn set_route(&mut self, mark: RouteMark<'_>) {
        self.metered().baseline = mark.strong_price;
        let ev = self.ev();
        ev.route = Some(mark.route.to_string());
        ev.route_variant = mark.variant.map(str::to_string);
        ev.shadow_model = mark.shadow_model.map(str::to_string);
        ev.tier = Some(Cow::Borrowed(mark.tier));
        ev.intent = Some(mark.intent.to_string());
        ev.route_reason = Some(mark.reason.to_string());
    }

    /// The cascade kept the cheap answer: `accepted` (it passed the checks) or `unchecked` (a
    /// stream too long to hold back).
    pub fn set_cascade_kept(&mut self, how: &'static str) {
        self.ev().cascade = Some(Cow::Borrowed(how));
    }

    /// The cascade discarded the cheap attempt and escalates to `model`: the event now describes
    /// the strong model's answer, plus what the attempt cost.
    pub fn set_escalated(&mut self, attempt: Escalated, model: &str) {
        self.extra = Nanos(attempt.cost_nanos);
        self.price = Price::default();
        self.bounds = Bounds::UNKNOWN;
        let ev = self.ev();
        ev.cascade = Some(Cow::Borrowed("escalated"));
        ev.model = model.to_string();
        ev.cost_nanos = attempt.cost_nanos;
        ev.escalation_reason = Some(Cow::Borrowed(attempt.reason));
        ev.escalated_from = Some(attempt.model);
        ev.escalated_deployment = attempt.deployment;
        ev.escalation_prompt_tokens = attempt.prompt_tokens;
        ev.escalation_completion_tokens = attempt.completion_tokens;
        ev.escalation_cost_nanos = attempt.cost_nanos;
        ev.deployment = None;
        ev.provider = None;
        ev.price_version = None;
        ev.usage_source = UsageSource::None;
    }

    /// What the response cache did for this request: `miss` or `bypass` (a hit is
    /// [`Meter::answered_from_cache`]).
    pub fn set_cache(&mut self, status: &'static str) {
        self.ev().cache = Some(Cow::Borrowed(status));
    }

    /// The cache answered: no model was called, so nothing was used and nothing is owed; the
    /// event names the entry and what its answer cost when it was made (the saving).
    pub fn answered_from_cache(&mut self, status: &'static str, entry: &str, saved: Nanos) -> Accounted {
        let m = self.metered();
        let ev = &mut m.event;
        ev.cache = Some(Cow::Borrowed(status));
        ev.cache_entry = Some(entry.to_string());
        ev.cache_saved_nanos = saved.0.max(0);
        ev.prompt_tokens = 0;
        ev.completion_tokens = 0;
        ev.cached_tokens = 0;
        ev.cost_nanos = 0;
        ev.usage_source = UsageSource::None;
        ev.usage_flag = None;
        m.estimate = None;
        Accounted {
            usage: Usage::default(),
            source: UsageSource::None,
            cost: Nanos(0),
            flag: None,
        }
    }

    /// Attributes the event to a caller.
    pub fn set_principal(&mut self, p: &Principal) {
        let ev = self.ev();
        ev.key_id = Some(p.key.id.clone());
        ev.team_id = p.key.team_id.clone();
        ev.cost_center = p.cost_center().map(str::to_string);
        ev.tags = Tags(p.key.tags.clone());
    }

    /// Holds the request's concurrency slots until the event is recorded, and hands its budget
    /// settlement to the event.
    pub fn set_admission(&mut self, permit: ConcurrencyPermit, settlement: Option<Arc<Settlement>>) {
        self.permit = Some(permit);
        self.metered().settlement = settlement;
    }

    /// Keeps the prompt so usage can be estimated if the call ends without believable usage.
    pub fn set_prompt(&mut self, prompt: Arc<PromptText>) {
        self.prompt = Some(prompt);
    }

    /// The deployment that served (or last tried) the request; its price is the one in force
    /// when the request arrived.
    pub fn set_deployment(&mut self, d: &Deployment, attempts: u32) {
        let at = self.ev().ts_ms;
        let point = d.config.prices.at_or_first(at);
        self.price = point.price;
        self.encoding = d.encoding;
        self.bounds = match self.shape {
            Shape::Chat { max_output, n } => Bounds::chat(&d.config, max_output, n),
            Shape::Embeddings { inputs } => Bounds::embeddings(&d.config, inputs),
        };
        let version = point.version.to_string();
        let ev = self.ev();
        ev.price_version = Some(version);
        ev.deployment = Some(d.config.id.clone());
        ev.provider = Some(d.provider_name.clone());
        ev.attempts = attempts;
    }

    /// When the request arrived, in milliseconds since 1970.
    /// The request goes upstream: the returned cell is to hold the deployment being tried.
    pub fn dispatching(&mut self) -> Attempting {
        self.dispatching.get_or_insert_with(Attempting::default).clone()
    }

    pub fn arrived_ms(&self) -> i64 {
        self.event.as_ref().map_or(0, |e| e.event.ts_ms)
    }

    pub fn set_attempts(&mut self, attempts: u32) {
        self.ev().attempts = attempts;
    }

    pub fn mark_first_token(&mut self) {
        let elapsed = self.started.elapsed();
        metrics::histogram!("switchyard_time_to_first_token_seconds").record(elapsed.as_secs_f64());
        self.ev().ttft_ms = Some(elapsed.as_millis() as u64);
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The kept prompt, shared.
    pub fn prompt(&self) -> Option<&Arc<PromptText>> {
        self.prompt.as_ref()
    }

    /// Stores this request's bodies: the request's now, the answer's as it is sent.
    pub fn capture_bodies(&mut self, capture: Capture) {
        self.metered().bodies = Some(Box::new(capture));
    }

    /// Bytes of the answer, as they are sent to the client.
    pub fn add_response(&mut self, data: &[u8]) {
        let m = self.metered();
        m.event.response_bytes = m.event.response_bytes.saturating_add(data.len() as u64);
        if let Some(c) = m.bodies.as_mut() {
            c.push(data);
        }
    }

    /// Whether `reported` will be believed; when not, the answer must be estimated.
    pub fn verdict(&self, reported: Option<&Reported>) -> Verdict {
        accounting::judge(reported, self.bounds)
    }

    /// Accounts the answer now (see [`accounting::account`]), counting with `estimate` if the
    /// report is not believed. Returns what the request costs in all, a discarded cascade
    /// attempt included.
    pub fn account(&mut self, reported: Option<&Reported>, estimate: impl FnOnce() -> Usage) -> Accounted {
        let deployment = self
            .event
            .as_ref()
            .and_then(|m| m.event.deployment.clone())
            .unwrap_or_default();
        let mut a = accounting::account(reported, self.bounds, self.price, &deployment, estimate);
        a.cost = a.cost.saturating_add(self.extra);
        let m = self.metered();
        let ev = &mut m.event;
        ev.prompt_tokens = a.usage.prompt_tokens;
        ev.completion_tokens = a.usage.completion_tokens;
        ev.cached_tokens = a.usage.cached_tokens;
        ev.cost_nanos = a.cost.0;
        ev.usage_source = a.source;
        ev.usage_flag = a.flag.map(Cow::Borrowed);
        m.estimate = None;
        a
    }

    /// Accounts the answer once the request is over (it ended early): a believable report is
    /// taken now; otherwise the text seen is kept and counted off the request path.
    pub fn account_later(&mut self, reported: Option<&Reported>, completion_text: String) {
        match self.verdict(reported) {
            Verdict::Believe(..) => {
                self.account(reported, || unreachable!("a believed report is not estimated"));
            }
            Verdict::Estimate(flag) => {
                if let Some(flag) = flag {
                    // The same log line and metric as an estimate made now.
                    let _ = accounting::account(reported, self.bounds, self.price, "", Usage::default);
                    self.ev().usage_flag = Some(Cow::Borrowed(flag));
                }
                let estimate = (self.prompt.is_some() || !completion_text.is_empty()).then(|| {
                    Box::new(PendingEstimate {
                        prompt: self.prompt.clone(),
                        completion_text,
                        encoding: self.encoding,
                        price: self.price,
                        extra: self.extra,
                    })
                });
                let m = self.metered();
                m.event.usage_source = if estimate.is_some() {
                    UsageSource::Estimated
                } else {
                    UsageSource::None
                };
                m.estimate = estimate;
            }
        }
    }

    /// Records the event with this outcome.
    pub fn finish(mut self, status: u16, outcome: Outcome, error_kind: Option<&'static str>) {
        self.record(status, outcome, error_kind);
    }

    fn record(&mut self, status: u16, outcome: Outcome, error_kind: Option<&'static str>) {
        let latency = self.started.elapsed().as_millis() as u64;
        if let Some(mut m) = self.event.take() {
            m.event.status = status;
            m.event.outcome = outcome;
            m.event.error_kind = error_kind.map(Cow::Borrowed);
            m.event.latency_ms = latency;
            self.permit = None;
            self.sink.record(m);
        }
    }
}

impl Drop for Meter {
    /// The request ended without an explicit outcome: the client went away.
    fn drop(&mut self) {
        let Some(m) = &self.event else { return };
        let unaccounted = m.event.usage_source == UsageSource::None && m.estimate.is_none();
        let known = m.event.deployment.is_some();
        if unaccounted && !known {
            let tried = self
                .dispatching
                .take()
                .and_then(|cell| cell.lock().unwrap_or_else(|p| p.into_inner()).clone());
            if let Some(d) = tried {
                self.set_deployment(&d, 1);
            }
        }
        if unaccounted && self.ev().deployment.is_some() {
            // The upstream was called: the prompt was (likely) billed there, so estimate it.
            self.account_later(None, String::new());
        }
        self.record(499, Outcome::ClientDisconnect, Some("client_disconnect"));
    }
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
