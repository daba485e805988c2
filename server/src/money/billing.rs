//! Billing events: one per usage event, kept in a durable outbox and delivered at least once to
//! a webhook in Lago's event format.
//!
//! The ledger writer adds each usage event to `billing_outbox` in the same transaction as the
//! usage event itself, so a usage event is never recorded without its billing event, nor billed
//! without being recorded. A [`Deliverer`] task claims due rows, reads their usage events (so a
//! re-priced event is billed at its corrected cost), posts them
//! (`POST {url}/api/v1/events`, or `/api/v1/events/batch` with `batch_size` above 1), marks
//! them delivered on a 2xx answer and schedules a retry with exponential backoff and jitter on
//! anything else. The event id is the `transaction_id`, so a receiver deduplicates the copies
//! that at-least-once delivery can produce (a crash between its 2xx and our bookkeeping, a
//! timeout after it stored the event). Rows survive restarts; a claim left by a process that
//! died comes due again after the claim timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::clock::Clock;
use crate::config::{BillingConfig, SubscriptionFrom};
use crate::money::pricing::Nanos;
use crate::records::billing::Pending;
use crate::records::usage::UsageEvent;
use crate::store::Store;

/// How a usage event is turned into a billing event.
#[derive(Debug, Clone)]
pub struct Shape {
    pub code: String,
    pub subscription: SubscriptionFrom,
    pub anonymous_subscription: String,
}

impl Shape {
    pub fn of(cfg: &BillingConfig) -> Shape {
        Shape {
            code: cfg.code.clone(),
            subscription: cfg.subscription,
            anonymous_subscription: cfg.anonymous_subscription.clone(),
        }
    }

    /// The billing event of one stored usage event: Lago's event object, serialized.
    pub fn event_json(&self, ev: &UsageEvent) -> String {
        let subscription = match self.subscription {
            SubscriptionFrom::Team => ev.team_id.as_ref().or(ev.key_id.as_ref()),
            SubscriptionFrom::Key => ev.key_id.as_ref(),
        }
        .cloned()
        .unwrap_or_else(|| self.anonymous_subscription.clone());
        let cost = Nanos(ev.cost_nanos);
        // Seconds with millisecond precision; Lago reads fractional Unix timestamps.
        let timestamp = ev.ts_ms as f64 / 1000.0;
        json!({
            "transaction_id": ev.event_id,
            "external_subscription_id": subscription,
            "code": self.code,
            "timestamp": timestamp,
            // The real cost, for a dynamic charge model; 1 cent = 10^7 nanodollars.
            "precise_total_amount_cents": cents(cost),
            "properties": {
                "request_id": ev.request_id,
                "key_id": ev.key_id,
                "team_id": ev.team_id,
                "cost_center": ev.cost_center,
                "endpoint": ev.endpoint,
                "model": ev.model,
                "deployment": ev.deployment,
                "provider": ev.provider,
                "route": ev.route,
                "outcome": ev.outcome,
                "prompt_tokens": ev.prompt_tokens,
                "completion_tokens": ev.completion_tokens,
                "cached_tokens": ev.cached_tokens,
                "total_tokens": ev.total_tokens(),
                "usage_source": ev.usage_source,
                "cost_usd": cost.to_string(),
                "price_version": ev.price_version,
            }
        })
        .to_string()
    }
}

/// Nanodollars as a decimal number of cents, exactly (`"0.0012345"`).
fn cents(n: Nanos) -> String {
    let sign = if n.0 < 0 { "-" } else { "" };
    let abs = n.0.unsigned_abs();
    let whole = abs / 10_000_000;
    let frac = abs % 10_000_000;
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let f = format!("{frac:07}");
    format!("{sign}{whole}.{}", f.trim_end_matches('0'))
}

/// Rounds send at most this many waves of `concurrency` requests.
const WAVES: usize = 4;
/// How long the deliverer sleeps when nothing is due.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often delivered rows past their retention are pruned.
const PRUNE_EVERY_MS: i64 = 60_000;

/// Delivers the outbox until stopped.
pub struct Deliverer {
    store: Store,
    cfg: BillingConfig,
    shape: Shape,
    http: reqwest::Client,
    clock: std::sync::Arc<dyn Clock>,
    holder: String,
    claims: AtomicU64,
}

/// What one delivery request came to.
#[derive(Debug, PartialEq)]
enum Sent {
    Delivered,
    /// Worth retrying (network, 5xx, 429, auth).
    Failed(String),
    /// Refused for good (validation).
    Rejected(String),
}

impl Deliverer {
    pub fn new(store: Store, cfg: BillingConfig, clock: std::sync::Arc<dyn Clock>, holder: String) -> Deliverer {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            // A redirect is not a delivery: followed, a 301/302 turns the POST into a GET and its
            // 200 would mark events delivered that never were. It is answered as a failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is available");
        Deliverer {
            store,
            shape: Shape::of(&cfg),
            cfg,
            http,
            clock,
            holder,
            claims: AtomicU64::new(0),
        }
    }

    /// Delivers due events until `stop` resolves, then finishes the round in progress and makes
    /// one last round (bounded by `final_round`) for the events written at shutdown.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>, final_round: Duration) {
        tokio::pin!(stop);
        let mut last_prune = 0i64;
        loop {
            let now = self.clock.now_ms();
            if now - last_prune >= PRUNE_EVERY_MS {
                last_prune = now;
                let before = now.saturating_sub((self.cfg.retain_delivered_hours as i64).saturating_mul(3_600_000));
                if let Err(e) = self.store.prune_billing(before).await {
                    tracing::warn!(error = %e, "cannot prune delivered billing events");
                }
            }
            let worked = tokio::select! {
                n = self.round() => n,
                _ = &mut stop => break,
            };
            if worked == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = &mut stop => break,
                }
            }
        }
        // A round cut short by `stop` left its claims; they come due again when the claim lapses, and
        // the final round below releases this process's claims first so nothing waits that long.
        if let Err(e) = self.store.release_billing_claims(&self.holder).await {
            tracing::warn!(error = %e, "cannot release billing claims");
        }
        let _ = tokio::time::timeout(final_round, async { while self.round().await > 0 {} }).await;
        if let Err(e) = self.store.release_billing_claims(&self.holder).await {
            tracing::warn!(error = %e, "cannot release billing claims");
        }
    }

    /// Claims due rows and delivers them; returns how many were attempted.
    pub async fn round(&self) -> usize {
        let now = self.clock.now_ms();
        let claim = format!("{}:{}", self.holder, self.claims.fetch_add(1, Ordering::Relaxed));
        let limit = (self.cfg.batch_size * self.cfg.concurrency * WAVES) as i64;
        let rows = match self
            .store
            .claim_billing(&claim, now, now + self.claim_ms(), limit)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the billing outbox");
                return 0;
            }
        };
        let n = rows.len();
        if n == 0 {
            return 0;
        }
        let batches: Vec<Vec<Pending>> = rows.chunks(self.cfg.batch_size).map(<[Pending]>::to_vec).collect();
        let claim = &claim;
        futures_util::stream::iter(batches)
            .for_each_concurrent(self.cfg.concurrency, |batch| async move {
                match self.send(&batch).await {
                    // A batch the receiver refuses as a whole (one bad or duplicate event makes
                    // Lago refuse all) goes again one event at a time, so each gets its own answer.
                    Sent::Rejected(_) if batch.len() > 1 => {
                        for one in batch.chunks(1) {
                            let outcome = self.send(one).await;
                            self.record(claim, one, outcome).await;
                        }
                    }
                    outcome => self.record(claim, &batch, outcome).await,
                }
            })
            .await;
        n
    }

    /// How long a claim holds: every wave of a round may take the whole request timeout.
    fn claim_ms(&self) -> i64 {
        (self.cfg.timeout_ms as i64).saturating_mul(WAVES as i64 + 1) + 30_000
    }

    async fn record(&self, claim: &str, batch: &[Pending], outcome: Sent) {
        let ids: Vec<String> = batch.iter().map(|p| p.event.event_id.clone()).collect();
        let now = self.clock.now_ms();
        let attempts = batch.iter().map(|p| p.attempts).max().unwrap_or(0) + 1;
        let written = match &outcome {
            Sent::Delivered => {
                metrics::counter!("switchyard_billing_events_delivered_total").increment(ids.len() as u64);
                self.store.billing_delivered(&ids, now).await
            }
            Sent::Failed(why) => {
                metrics::counter!("switchyard_billing_delivery_failures_total").increment(1);
                tracing::warn!(events = ids.len(), attempts, error = %why, "billing delivery failed; will retry");
                self.store
                    .billing_failed(
                        claim,
                        &ids,
                        now,
                        now.saturating_add(self.backoff_ms(attempts)),
                        why,
                        false,
                    )
                    .await
            }
            Sent::Rejected(why) => {
                metrics::counter!("switchyard_billing_events_rejected_total").increment(ids.len() as u64);
                tracing::error!(events = ids.len(), error = %why,
                    "the billing receiver refused events for good; fix and re-queue them (POST /admin/v1/billing/requeue)");
                self.store.billing_failed(claim, &ids, now, now, why, true).await
            }
        };
        if let Err(e) = written {
            // The claim expires and the rows are sent again: at least once, never lost.
            tracing::warn!(error = %e, "cannot record a billing delivery result");
        }
    }

    /// Exponential backoff with jitter: a random delay in [d/2, d], d = backoff × 2^(attempts-1).
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let cap = (self.cfg.max_backoff_secs as i64).saturating_mul(1000);
        let d = (self.cfg.backoff_ms as i64)
            .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
            .min(cap)
            .max(1);
        d / 2 + fastrand::i64(0..=d - d / 2)
    }

    async fn send(&self, batch: &[Pending]) -> Sent {
        let (url, body) = if batch.len() == 1 {
            (
                format!("{}/api/v1/events", self.cfg.url),
                format!("{{\"event\":{}}}", self.shape.event_json(&batch[0].event)),
            )
        } else {
            let mut body = String::from("{\"events\":[");
            for (i, p) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&self.shape.event_json(&p.event));
            }
            body.push_str("]}");
            (format!("{}/api/v1/events/batch", self.cfg.url), body)
        };
        let mut req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(k) = &self.cfg.api_key {
            req = req.bearer_auth(k.expose());
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status();
                let text = if status.is_success() {
                    String::new()
                } else {
                    String::from_utf8_lossy(&crate::providers::read_prefix(r, MAX_ERROR_BODY).await).into_owned()
                };
                classify(status.as_u16(), &text)
            }
            Err(e) => Sent::Failed(format!("request failed: {e}")),
        }
    }
}

/// The most of an error answer's body read (the rest is not waited for).
const MAX_ERROR_BODY: usize = 4096;

/// What an answer of the billing API means for the events sent.
fn classify(status: u16, body: &str) -> Sent {
    let short: String = body.chars().take(300).collect();
    match status {
        200..=299 => Sent::Delivered,
        // The receiver has the transaction id already: Lago answers 422 with
        // `transaction_id: value_already_exist`; other receivers may answer 409.
        409 => Sent::Delivered,
        422 if body.contains("value_already_exist") => Sent::Delivered,
        // Validation errors do not heal by waiting.
        400 | 422 => Sent::Rejected(format!("HTTP {status}: {short}")),
        _ => Sent::Failed(format!("HTTP {status}: {short}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, ""), Sent::Delivered);
        assert_eq!(classify(409, ""), Sent::Delivered);
        let dup = r#"{"status":422,"error":"Unprocessable Entity","code":"validation_errors","error_details":{"transaction_id":["value_already_exist"]}}"#;
        assert_eq!(classify(422, dup), Sent::Delivered);
        assert!(matches!(
            classify(422, r#"{"error_details":{"code":["value_is_mandatory"]}}"#),
            Sent::Rejected(_)
        ));
        assert!(matches!(classify(400, "bad"), Sent::Rejected(_)));
        for retry in [401, 403, 404, 408, 429, 500, 502, 503] {
            assert!(matches!(classify(retry, ""), Sent::Failed(_)), "{retry}");
        }
    }

    #[test]
    fn cents_are_exact() {
        assert_eq!(cents(Nanos(0)), "0");
        assert_eq!(cents(Nanos(10_000_000)), "1");
        assert_eq!(cents(Nanos(12_345)), "0.0012345");
        assert_eq!(cents(Nanos(1_250_000_000)), "125");
        assert_eq!(cents(Nanos(1)), "0.0000001");
    }
}
