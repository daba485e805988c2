//! The ledger writer: takes metered events off the bounded channel, resolves their estimates,
//! settles their budget reservations, updates metrics and writes them to the store in batches.

use std::time::Instant;

use tokio::sync::mpsc;

use crate::clock::{Clock, SystemClock};
use crate::money::meter::{Metered, Receiver};
use crate::records::bodies::RequestBodies;
use crate::records::usage::UsageEvent;
use crate::store::{Store, StoreError};

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

/// Consumes events until every sender is gone: resolves estimates (on a blocking thread),
/// settles budgets, updates metrics and, with a writer, writes the ledger in batches. On a
/// database error the batch is kept and retried; while it is, the consumer stops taking new
/// events beyond a few batches, so the bounded channel (whose drops are counted) is the only
/// place events can be lost. A batch the database refuses for its content is split until the
/// refused events are alone; those are quarantined, and the ledger moves on. Returns once
/// everything received has been written (or the final retries failed).
pub async fn consume(mut rx: Receiver, writer: Option<LedgerWriter>) {
    let mut per_model: std::collections::HashMap<String, ModelCounters> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<UsageEvent> = Vec::new();
    // Bodies stored for some pending events, written with them.
    let mut pending_bodies: Vec<RequestBodies> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut failures: u32 = 0;
    let max_pending = writer.as_ref().map_or(usize::MAX, |w| w.batch_size.saturating_mul(4));
    let mut closed = false;
    loop {
        tick.tick().await;
        rx.backlog.publish();
        let mut taken: Vec<Metered> = Vec::new();
        while pending.len() + taken.len() < max_pending {
            match rx.rx.try_recv() {
                Ok(m) => {
                    rx.taken(&m);
                    taken.push(m);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let n_taken = taken.len();
        let finalized = finalize_all(taken).await;
        // Events that could not be finalized (counted as dropped there) leave the backlog now,
        // and without a writer every event leaves it once observed.
        rx.backlog.left(if writer.is_some() {
            n_taken - finalized.len()
        } else {
            n_taken
        });
        for (ev, bodies) in finalized {
            observe(&ev, &mut per_model);
            if writer.is_some() {
                oldest.get_or_insert_with(Instant::now);
                pending.push(ev);
                pending_bodies.extend(bodies);
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
                match write_splitting(&w.store, &pending[..n], &pending_bodies, w.billing).await {
                    Ok(()) => {
                        metrics::counter!("switchyard_ledger_events_written_total").increment(n as u64);
                        metrics::histogram!("switchyard_ledger_batch_seconds").record(started.elapsed().as_secs_f64());
                        if !pending_bodies.is_empty() {
                            let written: std::collections::HashSet<&str> =
                                pending[..n].iter().map(|e| e.event_id.as_str()).collect();
                            pending_bodies.retain(|b| !written.contains(b.event_id.as_str()));
                        }
                        pending.drain(..n);
                        rx.backlog.left(n);
                        rx.backlog.write_succeeded();
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        rx.backlog.write_failed(SystemClock.now_ms());
                        metrics::counter!("switchyard_ledger_write_errors_total").increment(1);
                        tracing::error!(error = %e, events = pending.len(), attempt = failures, "cannot write usage events; retrying");
                        if closed && failures >= 10 {
                            tracing::error!(events = pending.len(), "giving up on usage events at shutdown");
                            metrics::counter!("switchyard_usage_events_dropped_total").increment(pending.len() as u64);
                            rx.backlog.left(pending.len());
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

/// Finalizes events, with the bodies stored for them: on a blocking thread when any needs
/// counting or redacting (tokenizing a large text would hold up the executor), else right here.
async fn finalize_all(taken: Vec<Metered>) -> Vec<(UsageEvent, Option<RequestBodies>)> {
    if taken.iter().all(|m| m.estimate.is_none() && m.bodies.is_none()) {
        return taken.into_iter().map(Metered::finalize_with_bodies).collect();
    }
    let n = taken.len() as u64;
    match tokio::task::spawn_blocking(move || taken.into_iter().map(Metered::finalize_with_bodies).collect()).await {
        Ok(events) => events,
        Err(e) => {
            // The blocking pool is gone (the runtime is shutting down) or a count panicked:
            // nothing to settle or write; say so rather than lose them silently.
            tracing::error!(error = %e, "usage events could not be finalized");
            metrics::counter!("switchyard_usage_events_dropped_total").increment(n);
            Vec::new()
        }
    }
}

/// Writes `events`; a batch the database refuses for its content is split in halves until each
/// refused event is alone, and that one goes to the quarantine. Fails only when the database
/// cannot be written at all (the caller retries the whole batch; events already written are
/// skipped by their id).
pub async fn write_splitting(
    store: &Store,
    events: &[UsageEvent],
    bodies: &[RequestBodies],
    billing: bool,
) -> Result<(), StoreError> {
    let mut work: Vec<&[UsageEvent]> = vec![events];
    while let Some(part) = work.pop() {
        match store.write_ledger(part, bodies, billing).await {
            Ok(()) => {}
            Err(e) if e.is_refused() && part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                work.push(b);
                work.push(a);
            }
            Err(e) if e.is_refused() => {
                let ev = &part[0];
                metrics::counter!("switchyard_usage_events_quarantined_total").increment(1);
                tracing::error!(event_id = %ev.event_id, request_id = %ev.request_id, error = %e,
                    "the ledger refused a usage event; it is kept in usage_quarantine");
                match store.quarantine_usage(ev, &e.to_string()).await {
                    Ok(()) => {}
                    Err(q) if q.is_refused() => {
                        // Not even the quarantine takes it: the log line is the record.
                        metrics::counter!("switchyard_usage_events_dropped_total").increment(1);
                        tracing::error!(event = %serde_json::to_string(ev).unwrap_or_default(), error = %q,
                            "a usage event could not be quarantined");
                    }
                    Err(q) => return Err(q),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
