//! One usage event per accepted request, whatever its outcome, handed to a bounded sink off the hot path.
//!
//! A [`Meter`] is created when a request is accepted (valid, known model) and records exactly one
//! [`UsageEvent`]: explicitly on success or failure, or from its `Drop` when the client went away
//! first (mid-dispatch or mid-stream). When the upstream reported no usage, the event carries the
//! material for an estimate and the sink's consumer counts the tokens, so counting never runs on
//! the request path.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::access::limits::{ConcurrencyPermit, Settlement};
use crate::money::pricing::{Nanos, Price};
use crate::money::tokens::{Encoding, PromptText};
use crate::providers::Usage;
use crate::proxy::gateway::Deployment;
use crate::records::keys::Principal;
use crate::records::usage::{Outcome, Tags, UsageEvent, UsageSource};

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

/// A usage event on its way to the ledger: the record, plus what is still to be resolved off
/// the request path (a token estimate) and settled (the request's budget reservations).
#[derive(Debug)]
pub struct Metered {
    pub event: UsageEvent,
    pub estimate: Option<Box<PendingEstimate>>,
    /// Budget reservations and token estimate to settle once the real cost is known.
    pub settlement: Option<Arc<Settlement>>,
}

impl Metered {
    /// Resolves any estimate and settles the request's budget reservations to the real cost.
    /// Consumers call this once per event, off the request path.
    pub fn finalize(mut self) -> UsageEvent {
        self.resolve_estimate();
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

    /// Counts tokens for an event that carries an estimate; a no-op for reported usage.
    pub fn resolve_estimate(&mut self) {
        if let Some(est) = self.estimate.take() {
            let e = &mut self.event;
            e.prompt_tokens = est.prompt.count(est.encoding);
            e.completion_tokens = est.encoding.count(&est.completion_text);
            e.cached_tokens = 0;
            e.cost_nanos = est
                .price
                .cost(e.prompt_tokens, 0, e.completion_tokens)
                .saturating_add(est.extra)
                .0;
            e.usage_source = UsageSource::Estimated;
        }
    }
}

/// Where usage events go. `record` must never block or await.
pub trait UsageSink: Send + Sync + 'static {
    fn record(&self, event: Metered);
}

/// The production sink: a bounded channel to the ledger writer. A full channel drops the event,
/// counts it in `switchyard_usage_events_dropped_total` and logs it, never silently.
pub struct ChannelSink {
    tx: mpsc::Sender<Metered>,
    dropped: AtomicU64,
}

/// Events buffered between the request path and the consumer.
pub const USAGE_CHANNEL_CAPACITY: usize = 65_536;

impl ChannelSink {
    pub fn new(capacity: usize) -> (Arc<ChannelSink>, mpsc::Receiver<Metered>) {
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
    fn record(&self, event: Metered) {
        if let Err(e) = self.tx.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("switchyard_usage_events_dropped_total").increment(1);
            let m = match &e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            tracing::error!(request_id = %m.event.request_id, "usage event dropped: sink channel full or closed");
        }
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

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        let mut event = UsageEvent::new(
            crate::access::keys::new_id("evt"),
            request_id.to_string(),
            unix_ms(),
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
            }),
            prompt: None,
            price: Price::default(),
            encoding: Encoding::Cl100k,
            extra: Nanos(0),
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
        self.ev().cascade = Some(Cow::Borrowed(how));
    }

    /// The cascade discarded the cheap attempt and escalates to `model`: the event now describes
    /// the strong model's answer, plus what the attempt cost.
    pub fn set_escalated(&mut self, attempt: Escalated, model: &str) {
        self.extra = Nanos(attempt.cost_nanos);
        self.price = Price::default();
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
        ev.tags = Tags(p.key.tags.clone());
    }

    /// Holds the request's concurrency slots until the event is recorded, and hands its budget
    /// settlement to the event.
    pub fn set_admission(&mut self, permit: ConcurrencyPermit, settlement: Option<Arc<Settlement>>) {
        self.permit = Some(permit);
        self.metered().settlement = settlement;
    }

    /// Keeps the prompt so usage can be estimated if the call ends without reported usage.
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
        let version = point.version.to_string();
        let ev = self.ev();
        ev.price_version = Some(version);
        ev.deployment = Some(d.config.id.clone());
        ev.provider = Some(d.provider_name.clone());
        ev.attempts = attempts;
    }

    /// When the request arrived, in milliseconds since 1970.
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
        let ev = self.ev();
        ev.response_bytes = ev.response_bytes.saturating_add(n as u64);
    }

    /// Fills in reported usage, or (when `None`) the material for an estimate.
    pub fn set_usage(&mut self, usage: Option<Usage>, completion_text: String) {
        let price = self.price;
        let extra = self.extra;
        let estimate = match usage {
            Some(_) => None,
            None => self.prompt.clone().map(|prompt| {
                Box::new(PendingEstimate {
                    prompt,
                    completion_text,
                    encoding: self.encoding,
                    price,
                    extra,
                })
            }),
        };
        let m = self.metered();
        let ev = &mut m.event;
        match usage {
            Some(u) => {
                ev.prompt_tokens = u.prompt_tokens;
                ev.completion_tokens = u.completion_tokens;
                ev.cached_tokens = u.cached_tokens;
                ev.cost_nanos = price
                    .cost(u.prompt_tokens, u.cached_tokens, u.completion_tokens)
                    .saturating_add(extra)
                    .0;
                ev.usage_source = UsageSource::Reported;
                m.estimate = None;
            }
            None => {
                ev.usage_source = if estimate.is_some() {
                    UsageSource::Estimated
                } else {
                    UsageSource::None
                };
                m.estimate = estimate;
            }
        }
    }

    /// Usage already computed by the caller (for example an estimate counted for a header).
    /// `cost` is the answer's; a discarded cascade attempt's cost is added.
    pub fn set_counted(&mut self, prompt: u64, cached: u64, completion: u64, cost: Nanos, source: UsageSource) {
        let extra = self.extra;
        let m = self.metered();
        let ev = &mut m.event;
        ev.prompt_tokens = prompt;
        ev.cached_tokens = cached;
        ev.completion_tokens = completion;
        ev.cost_nanos = cost.saturating_add(extra).0;
        ev.usage_source = source;
        m.estimate = None;
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
    use crate::money::pricing::PicoPerToken;

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
        assert_eq!(ev[2].error_kind.as_deref(), Some("upstream_5xx"));
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
