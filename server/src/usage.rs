//! One usage event per accepted request, whatever its outcome, handed to a bounded sink off the hot path.
//!
//! A [`Meter`] is created when a request is accepted (valid, known model) and records exactly one
//! [`UsageEvent`]: explicitly on success or failure, or from its `Drop` when the client went away
//! first (mid-dispatch or mid-stream). When the upstream reported no usage, the event carries the
//! material for an estimate and the sink's consumer counts the tokens, so counting never runs on
//! the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::gateway::Deployment;
use crate::keys::Principal;
use crate::limits::{ConcurrencyPermit, Settlement};
use crate::pricing::{Nanos, Price};
use crate::providers::Usage;
use crate::store::Store;
use crate::tokens::{Encoding, PromptText};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Every attempt failed upstream, or the stream broke after it started.
    UpstreamError,
    /// The client disconnected before the answer was complete.
    ClientDisconnect,
    /// Accepted, then refused before any upstream call (no capable deployment, context too long).
    Rejected,
}

impl Outcome {
    /// The name used in metrics labels and ledger rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientDisconnect => "client_disconnect",
            Outcome::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The upstream reported the token counts.
    Reported,
    /// The gateway counted them with tiktoken (upstream gave none, or the call ended early).
    Estimated,
    /// No upstream call consumed tokens (for example no deployment was reachable).
    None,
}

/// Everything needed to estimate tokens and cost when the upstream reported no usage.
#[derive(Debug, Clone)]
pub struct PendingEstimate {
    pub prompt: Arc<PromptText>,
    pub completion_text: String,
    pub encoding: Encoding,
    pub price: Price,
    /// Cost already spent on a discarded cascade attempt, added to the estimate's.
    pub extra: Nanos,
}

/// A cascade's discarded cheap attempt: what it was, why it was escalated, what it cost.
#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct UsageEvent {
    /// Unique per event: the ledger's primary key and the billing transaction id.
    pub event_id: String,
    pub request_id: String,
    pub unix_ms: u64,
    /// `chat` or `embeddings`.
    pub endpoint: &'static str,
    /// The model the client asked for.
    pub model: String,
    pub deployment: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    /// The HTTP status the client got (200 for a stream that broke after it started).
    pub status: u16,
    pub outcome: Outcome,
    pub error_kind: Option<&'static str>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub usage_source: UsageSource,
    /// Cost in nanodollars.
    pub cost_nanos: i64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: u32,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Vec<String>,
    /// The routing policy that chose the model, when one did.
    pub route: Option<String>,
    /// Which price the cost was computed with.
    pub price_version: Option<String>,
    /// The route policy that decided, when the route runs an experiment.
    pub route_variant: Option<String>,
    /// The model a shadow policy would have chosen.
    pub shadow_model: Option<String>,
    /// When a cascade ran: `accepted` (the cheap answer passed its checks), `unchecked` (kept
    /// without checks: a stream too long to hold back) or `escalated`.
    pub cascade: Option<&'static str>,
    /// The cheap attempt an escalation discarded. Its cost is part of `cost_nanos`; its tokens
    /// are not part of the token fields, which describe the answer the client got.
    pub escalation: Option<Box<Escalated>>,
    #[serde(skip)]
    pub estimate: Option<Box<PendingEstimate>>,
    /// Budget reservations and token estimate to settle once the real cost is known.
    #[serde(skip)]
    pub settlement: Option<Arc<Settlement>>,
}

impl UsageEvent {
    /// Resolves any estimate and settles the request's budget reservations to the real cost.
    /// Consumers call this once per event, off the request path.
    pub fn finalize(&mut self) {
        self.resolve_estimate();
        if let Some(s) = self.settlement.take() {
            let extra = self
                .escalation
                .as_ref()
                .map_or(0, |e| e.prompt_tokens + e.completion_tokens);
            s.settle(
                Nanos(self.cost_nanos),
                self.prompt_tokens + self.completion_tokens + extra,
            );
        }
    }

    /// Counts tokens for an event that carries an estimate; a no-op for reported usage.
    pub fn resolve_estimate(&mut self) {
        if let Some(est) = self.estimate.take() {
            self.prompt_tokens = est.prompt.count(est.encoding);
            self.completion_tokens = est.encoding.count(&est.completion_text);
            self.cached_tokens = 0;
            self.cost_nanos = est.price.cost(self.prompt_tokens, 0, self.completion_tokens).0 + est.extra.0;
            self.usage_source = UsageSource::Estimated;
        }
    }
}

/// Where usage events go. `record` must never block or await.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, event: UsageEvent);
}

/// The production sink: a bounded channel to a consumer task. A full channel drops the event,
/// counts it in `switchyard_usage_events_dropped_total` and logs it, never silently.
pub struct ChannelSink {
    tx: mpsc::Sender<UsageEvent>,
    dropped: AtomicU64,
}

/// Events buffered between the request path and the consumer.
pub const USAGE_CHANNEL_CAPACITY: usize = 65_536;

impl ChannelSink {
    pub fn new(capacity: usize) -> (Arc<ChannelSink>, mpsc::Receiver<UsageEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Arc::new(ChannelSink {
                tx,
                dropped: AtomicU64::new(0),
            }),
            rx,
        )
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl UsageSink for ChannelSink {
    fn record(&self, event: UsageEvent) {
        if let Err(e) = self.tx.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchyard_usage_events_dropped_total").increment(1);
            let ev = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            tracing::error!(request_id = %ev.request_id, "usage event dropped: sink channel full or closed");
        }
    }
}

/// How often the consumer drains the channel. Draining on a tick instead of waking per event
/// keeps a wake-up (a context switch on a busy machine) off every request.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// What the consumer does with events besides metrics.
pub struct LedgerWriter {
    pub store: Store,
    /// Events per transaction at most.
    pub batch_size: usize,
    /// Longest an event waits before it is written.
    pub flush_interval: std::time::Duration,
    /// Billing is on: each event also goes into the billing outbox.
    pub billing: bool,
}

/// Consumes events until every sender is gone: resolves estimates, settles budgets, updates
/// metrics and, with a writer, writes the ledger in batches. On a database error the batch is
/// kept and retried; while it is, the consumer stops taking new events beyond a few batches,
/// so the bounded channel (whose drops are counted) is the only place events can be lost.
/// Returns once everything received has been written (or the final retries failed).
pub async fn consume(mut rx: mpsc::Receiver<UsageEvent>, writer: Option<LedgerWriter>) {
    let mut per_model: std::collections::HashMap<String, ModelCounters> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<UsageEvent> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut failures: u32 = 0;
    let max_pending = writer.as_ref().map_or(usize::MAX, |w| w.batch_size.saturating_mul(4));
    let mut closed = false;
    loop {
        tick.tick().await;
        while pending.len() < max_pending {
            match rx.try_recv() {
                Ok(mut ev) => {
                    ev.finalize();
                    observe(&ev, &mut per_model);
                    if writer.is_some() {
                        oldest.get_or_insert_with(Instant::now);
                        pending.push(ev);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let Some(w) = &writer else {
            if closed {
                return;
            }
            continue;
        };
        let due = pending.len() >= w.batch_size || oldest.is_some_and(|t| t.elapsed() >= w.flush_interval) || closed;
        if due && !pending.is_empty() {
            while !pending.is_empty() {
                let n = pending.len().min(w.batch_size);
                let started = Instant::now();
                match w.store.write_usage(&pending[..n], w.billing).await {
                    Ok(()) => {
                        metrics::counter!("switchyard_ledger_events_written_total").increment(n as u64);
                        metrics::histogram!("switchyard_ledger_batch_seconds").record(started.elapsed().as_secs_f64());
                        pending.drain(..n);
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        metrics::counter!("switchyard_ledger_write_errors_total").increment(1);
                        tracing::error!(error = %e, events = pending.len(), attempt = failures, "cannot write usage events; retrying");
                        if closed && failures >= 10 {
                            tracing::error!(events = pending.len(), "giving up on usage events at shutdown");
                            metrics::counter!("switchyard_usage_events_dropped_total").increment(pending.len() as u64);
                            return;
                        }
                        let backoff = (100u64 << failures.min(6)).min(5_000);
                        tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                        break;
                    }
                }
            }
            oldest = if pending.is_empty() { None } else { Some(Instant::now()) };
        }
        if closed && pending.is_empty() {
            return;
        }
    }
}

/// Metric handles per model, looked up once instead of per event.
struct ModelCounters {
    prompt: metrics::Counter,
    completion: metrics::Counter,
    cost: metrics::Counter,
}

/// Models in the config bound the map in practice; this caps it if clients send many names.
const MAX_MODEL_SERIES: usize = 1024;

fn observe(ev: &UsageEvent, per_model: &mut std::collections::HashMap<String, ModelCounters>) {
    let outcome = ev.outcome.as_str();
    metrics::counter!("switchyard_usage_events_total", "outcome" => outcome).increment(1);
    if !per_model.contains_key(&ev.model) && per_model.len() < MAX_MODEL_SERIES {
        let model = ev.model.clone();
        per_model.insert(
            model.clone(),
            ModelCounters {
                prompt: metrics::counter!("switchyard_tokens_total", "model" => model.clone(), "type" => "prompt"),
                completion: metrics::counter!("switchyard_tokens_total", "model" => model.clone(), "type" => "completion"),
                cost: metrics::counter!("switchyard_cost_nanodollars_total", "model" => model),
            },
        );
    }
    if let Some(c) = per_model.get(&ev.model) {
        c.prompt.increment(ev.prompt_tokens);
        c.completion.increment(ev.completion_tokens);
        c.cost.increment(ev.cost_nanos.max(0) as u64);
    }
    tracing::debug!(target: "switchyard::usage", request_id = %ev.request_id, model = %ev.model,
        deployment = ?ev.deployment, outcome, prompt_tokens = ev.prompt_tokens,
        completion_tokens = ev.completion_tokens, cost_nanos = ev.cost_nanos, "usage");
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
    fn record(&self, mut event: UsageEvent) {
        event.finalize();
        self.events
            .lock()
            .expect("no panics while holding this lock")
            .push(event);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Records exactly one usage event for one accepted request.
pub struct Meter {
    sink: Arc<dyn UsageSink>,
    permit: Option<ConcurrencyPermit>,
    started: Instant,
    event: Option<UsageEvent>,
    prompt: Option<Arc<PromptText>>,
    price: Price,
    encoding: Encoding,
    /// Cost of a discarded cascade attempt, added to whatever the answer costs.
    extra: Nanos,
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
        Meter {
            sink,
            permit: None,
            started,
            event: Some(UsageEvent {
                event_id: crate::keys::new_id("evt"),
                request_id: request_id.to_string(),
                unix_ms: unix_ms(),
                endpoint,
                model: model.to_string(),
                deployment: None,
                provider: None,
                stream,
                status: 499,
                outcome: Outcome::ClientDisconnect,
                error_kind: Some("client_disconnect"),
                prompt_tokens: 0,
                completion_tokens: 0,
                cached_tokens: 0,
                usage_source: UsageSource::None,
                cost_nanos: 0,
                latency_ms: 0,
                ttft_ms: None,
                attempts: 0,
                request_bytes: request_bytes as u64,
                response_bytes: 0,
                key_id: None,
                team_id: None,
                cost_center: None,
                tags: Vec::new(),
                route: None,
                price_version: None,
                route_variant: None,
                shadow_model: None,
                cascade: None,
                escalation: None,
                estimate: None,
                settlement: None,
            }),
            prompt: None,
            price: Price::default(),
            encoding: Encoding::Cl100k,
            extra: Nanos(0),
        }
    }

    fn ev(&mut self) -> &mut UsageEvent {
        self.event
            .as_mut()
            .expect("a meter's event is present until it is recorded")
    }

    /// Records the route that chose the model, the experiment's variant and a shadow's choice.
    pub fn set_route(&mut self, route: &str, variant: Option<&str>, shadow_model: Option<&str>) {
        let ev = self.ev();
        ev.route = Some(route.to_string());
        ev.route_variant = variant.map(str::to_string);
        ev.shadow_model = shadow_model.map(str::to_string);
    }

    /// The cascade kept the cheap answer: `accepted` (it passed the checks) or `unchecked` (a
    /// stream too long to hold back).
    pub fn set_cascade_kept(&mut self, how: &'static str) {
        self.ev().cascade = Some(how);
    }

    /// The cascade discarded the cheap attempt and escalates to `model`: the event now describes
    /// the strong model's answer, plus what the attempt cost.
    pub fn set_escalated(&mut self, attempt: Escalated, model: &str) {
        self.extra = Nanos(attempt.cost_nanos);
        self.price = Price::default();
        let ev = self.ev();
        ev.cascade = Some("escalated");
        ev.model = model.to_string();
        ev.cost_nanos = attempt.cost_nanos;
        ev.escalation = Some(Box::new(attempt));
        ev.deployment = None;
        ev.provider = None;
        ev.price_version = None;
    }

    /// What a discarded cascade attempt cost (zero without one).
    pub fn extra_cost(&self) -> Nanos {
        self.extra
    }

    /// Attributes the event to a caller.
    pub fn set_principal(&mut self, p: &Principal) {
        let ev = self.ev();
        ev.key_id = Some(p.key.id.clone());
        ev.team_id = p.key.team_id.clone();
        ev.cost_center = p.cost_center().map(str::to_string);
        ev.tags = p.key.tags.clone();
    }

    /// Holds the request's concurrency slots until the event is recorded, and hands its budget
    /// settlement to the event.
    pub fn set_admission(&mut self, permit: ConcurrencyPermit, settlement: Option<Arc<Settlement>>) {
        self.permit = Some(permit);
        self.ev().settlement = settlement;
    }

    /// Keeps the prompt so usage can be estimated if the call ends without reported usage.
    pub fn set_prompt(&mut self, prompt: Arc<PromptText>) {
        self.prompt = Some(prompt);
    }

    /// The deployment that served (or last tried) the request; its price is the one in force
    /// when the request arrived.
    pub fn set_deployment(&mut self, d: &Deployment, attempts: u32) {
        let at = self.ev().unix_ms as i64;
        let point = d.config.prices.at_or_first(at);
        self.price = point.price;
        self.encoding = d.encoding;
        let version = point.version.to_string();
        let ev = self.ev();
        ev.price_version = Some(version);
        ev.deployment = Some(d.config.id.clone());
        ev.provider = Some(d.provider_name.clone());
        ev.attempts = attempts;
    }

    /// When the request arrived, in milliseconds since 1970.
    pub fn arrived_ms(&self) -> i64 {
        self.event.as_ref().map_or(0, |e| e.unix_ms as i64)
    }

    pub fn set_attempts(&mut self, attempts: u32) {
        self.ev().attempts = attempts;
    }

    pub fn mark_first_token(&mut self) {
        let elapsed = self.started.elapsed();
        metrics::histogram!("switchyard_time_to_first_token_seconds").record(elapsed.as_secs_f64());
        self.ev().ttft_ms = Some(elapsed.as_millis() as u64);
    }

    pub fn price(&self) -> Price {
        self.price
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    pub fn prompt(&self) -> Option<&PromptText> {
        self.prompt.as_deref()
    }

    pub fn add_response_bytes(&mut self, n: usize) {
        self.ev().response_bytes += n as u64;
    }

    /// Fills in reported usage, or (when `None`) the material for an estimate.
    pub fn set_usage(&mut self, usage: Option<Usage>, completion_text: String) {
        let price = self.price;
        let extra = self.extra.0;
        let estimate = match usage {
            Some(_) => None,
            None => self.prompt.clone().map(|prompt| {
                Box::new(PendingEstimate {
                    prompt,
                    completion_text,
                    encoding: self.encoding,
                    price,
                    extra: self.extra,
                })
            }),
        };
        let ev = self.ev();
        match usage {
            Some(u) => {
                ev.prompt_tokens = u.prompt_tokens;
                ev.completion_tokens = u.completion_tokens;
                ev.cached_tokens = u.cached_tokens;
                ev.cost_nanos = price.cost(u.prompt_tokens, u.cached_tokens, u.completion_tokens).0 + extra;
                ev.usage_source = UsageSource::Reported;
                ev.estimate = None;
            }
            None => {
                ev.usage_source = if estimate.is_some() {
                    UsageSource::Estimated
                } else {
                    UsageSource::None
                };
                ev.estimate = estimate;
            }
        }
    }

    /// Usage already computed by the caller (for example an estimate counted for a header).
    /// `cost` is the answer's; a discarded cascade attempt's cost is added.
    pub fn set_counted(&mut self, prompt: u64, cached: u64, completion: u64, cost: Nanos, source: UsageSource) {
        let extra = self.extra.0;
        let ev = self.ev();
        ev.prompt_tokens = prompt;
        ev.cached_tokens = cached;
        ev.completion_tokens = completion;
        ev.cost_nanos = cost.0 + extra;
        ev.usage_source = source;
        ev.estimate = None;
    }

    /// Records the event with this outcome.
    pub fn finish(mut self, status: u16, outcome: Outcome, error_kind: Option<&'static str>) {
        self.record(status, outcome, error_kind);
    }

    fn record(&mut self, status: u16, outcome: Outcome, error_kind: Option<&'static str>) {
        let latency = self.started.elapsed().as_millis() as u64;
        if let Some(mut ev) = self.event.take() {
            ev.status = status;
            ev.outcome = outcome;
            ev.error_kind = error_kind;
            ev.latency_ms = latency;
            self.permit = None;
            self.sink.record(ev);
        }
    }
}

impl Drop for Meter {
    /// The request ended without an explicit outcome: the client went away.
    fn drop(&mut self) {
        if self.event.is_some() {
            if self.ev().usage_source == UsageSource::None && self.ev().deployment.is_some() {
                // The upstream was called: the prompt was (likely) billed there, so estimate it.
                self.set_usage(None, String::new());
            }
            self.record(499, Outcome::ClientDisconnect, Some("client_disconnect"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PicoPerToken;

    fn meter(sink: &Arc<MemorySink>) -> Meter {
        Meter::start(sink.clone(), Instant::now(), "r1", "chat", "m", true, 10)
    }

    #[test]
    fn exactly_one_event_per_meter_whatever_the_path() {
        let sink = Arc::new(MemorySink::default());
        let m = meter(&sink);
        m.finish(200, Outcome::Success, None);
        let m = meter(&sink);
        drop(m);
        let mut m = meter(&sink);
        m.set_usage(
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                cached_tokens: 0,
            }),
            String::new(),
        );
        m.finish(502, Outcome::UpstreamError, Some("upstream_5xx"));
        let ev = sink.events();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].outcome, Outcome::Success);
        assert_eq!(ev[1].outcome, Outcome::ClientDisconnect);
        assert_eq!(ev[1].status, 499);
        assert_eq!(ev[2].error_kind, Some("upstream_5xx"));
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let sink = Arc::new(MemorySink::default());
        let mut m = meter(&sink);
        m.price = Price {
            input: PicoPerToken(1_000_000),
            output: PicoPerToken(2_000_000),
            cached_input: PicoPerToken(1_000_000),
        };
        m.set_prompt(Arc::new(PromptText {
            text: "hello world".into(),
            messages: 1,
            names: 0,
        }));
        m.set_usage(None, "hello world".into());
        m.finish(200, Outcome::Success, None);
        let ev = &sink.events()[0];
        assert_eq!(ev.usage_source, UsageSource::Estimated);
        assert_eq!(ev.prompt_tokens, 2 + 3 + 3);
        assert_eq!(ev.completion_tokens, 2);
        assert_eq!(ev.cost_nanos, (8 * 1_000_000 + 2 * 2_000_000) / 1000);
    }

    #[test]
    fn full_channel_counts_drops() {
        let (sink, _rx) = ChannelSink::new(1);
        let s: Arc<dyn UsageSink> = sink.clone();
        Meter::start(s.clone(), Instant::now(), "a", "chat", "m", false, 0).finish(200, Outcome::Success, None);
        Meter::start(s, Instant::now(), "b", "chat", "m", false, 0).finish(200, Outcome::Success, None);
        assert_eq!(sink.dropped(), 1);
    }
}
