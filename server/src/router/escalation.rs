//! Running a cascade: the cheap model answers first; its answer is checked
//! ([`crate::router::cascade`]) and, when a check fails, the strong model answers instead.
//!
//! The client sees one answer. A streamed cheap answer is held back until it is complete (up to
//! the route's buffer), so nothing of a discarded answer ever reaches the client: the "no retry
//! after the first byte" rule holds for the bytes the client receives, and a cascade holds back
//! at most `max_buffer_kb` of one answer, not one chunk. Past the buffer the cheap answer goes
//! through unchecked. The discarded attempt is accounted once, like any call, and its cost is
//! part of the request's.

use std::sync::Arc;

use futures_util::StreamExt;

use crate::money::accounting::{self, Bounds, Verdict};
use crate::money::meter::{Escalated, Meter};
use crate::providers::{completion_text_of_body, Chunk, ChunkStream, Complete, UpstreamError};
use crate::proxy::gateway::{ChatAnswer, DispatchError, Gateway, LogicalModel, Routed, StartedStream};
use crate::proxy::request::ChatRequest;
use crate::records::usage::Reported;
use crate::router::cascade::{self, Cascade, Check, Escalation, Failed};

/// What a cascade did: the answer to relay (the cheap one, or the strong one after an
/// escalation), the model that gave it, whether the cheap answer was checked (a streamed answer
/// longer than the buffer is passed on unchecked) and why it was escalated.
pub struct CascadeRun {
    pub dispatched: Result<Routed<ChatAnswer>, DispatchError>,
    pub model: Arc<LogicalModel>,
    pub checked: bool,
    pub escalated: Option<Failed>,
}

impl CascadeRun {
    /// `accepted`, `unchecked` or `escalated`, and the reason of an escalation (`""` otherwise).
    pub fn outcome(&self) -> (&'static str, &'static str) {
        match &self.escalated {
            Some(f) => ("escalated", f.reason.as_str()),
            None if self.checked => ("accepted", ""),
            None => ("unchecked", ""),
        }
    }
}

/// Asks `cheap` first; keeps its answer if it passes the checks, else records the attempt on the
/// meter and asks `strong`.
pub async fn run(
    gateway: &Gateway,
    cheap: &Arc<LogicalModel>,
    strong: &Arc<LogicalModel>,
    request: &ChatRequest,
    cfg: &Cascade,
    meter: &mut Meter,
) -> CascadeRun {
    // Confidence needs log-probabilities: ask for them, and take them out again if the client did not.
    let add_logprobs = cfg.min_logprob.is_some()
        && cfg.checks.contains(&Check::Logprob)
        && request.body.get("logprobs") != Some(&serde_json::Value::Bool(true));
    let asked;
    let cheap_request = if add_logprobs {
        let mut r = request.clone();
        r.body.insert("logprobs".into(), serde_json::Value::Bool(true));
        asked = r;
        &asked
    } else {
        request
    };
    let strip = move |c: Chunk| -> Chunk {
        if !add_logprobs {
            return c;
        }
        match cascade::without_logprobs(&c.data) {
            Some(data) => Chunk {
                data: bytes::Bytes::from(data),
                info: c.info,
            },
            None => c,
        }
    };
    let keep = |value: ChatAnswer, routed: Routed<ChatAnswer>, checked: bool| CascadeRun {
        dispatched: Ok(Routed { value, ..routed }),
        model: cheap.clone(),
        checked,
        escalated: None,
    };
    let mut routed = match gateway.chat(cheap, cheap_request).await {
        Ok(r) => r,
        Err(de) => {
            let failed = Failed {
                reason: Escalation::UpstreamError,
                // The upstream's own words stay out: they reach a response header.
                detail: format!("{} failed: {} ({})", cheap.name, de.kind, de.error.status.as_u16()),
            };
            meter.set_escalated(
                Escalated {
                    reason: failed.reason.as_str(),
                    model: cheap.name.clone(),
                    deployment: None,
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    cost_nanos: 0,
                },
                &strong.name,
            );
            return escalate(gateway, strong, request, failed).await;
        }
    };
    // From here the cheap model has been called: a client that goes away is billed for it.
    meter.set_deployment(&routed.deployment, routed.attempts);
    let placeholder = ChatAnswer::Complete(Complete {
        body: bytes::Bytes::new(),
        usage: None,
    });
    let (failed, reported, text) = match std::mem::replace(&mut routed.value, placeholder) {
        ChatAnswer::Complete(c) => {
            let view = cascade::AnswerView::of_body(&c.body).unwrap_or_default();
            match cascade::check(&view, &request.body, cfg) {
                Ok(()) => {
                    meter.set_cascade_kept("accepted");
                    let body = match add_logprobs.then(|| cascade::without_logprobs(&c.body)).flatten() {
                        Some(b) => bytes::Bytes::from(b),
                        None => c.body,
                    };
                    return keep(ChatAnswer::Complete(Complete { body, usage: c.usage }), routed, true);
                }
                Err(f) => (f, c.usage, completion_text_of_body(&c.body)),
            }
        }
        ChatAnswer::Stream(started) => {
            let mut rest = started.rest;
            let mut view = cascade::AnswerView::default();
            let mut held = Vec::new();
            let mut bytes = 0usize;
            let mut partial = Partial {
                meter: &mut *meter,
                usage: None,
                text: String::new(),
                armed: true,
            };
            let mut next: Option<Result<Chunk, UpstreamError>> = Some(Ok(started.first));
            let outcome = loop {
                match next {
                    Some(Ok(c)) => {
                        bytes += c.data.len();
                        view.add_chunk(&c.data);
                        partial.usage = c.info.usage.or(partial.usage);
                        partial.text.push_str(&c.text());
                        held.push(strip(c));
                        if bytes > cfg.max_buffer_bytes {
                            break None;
                        }
                    }
                    Some(Err(e)) => {
                        break Some(Failed {
                            reason: Escalation::UpstreamError,
                            detail: format!("{} broke mid-answer: {}", cheap.name, e.kind()),
                        })
                    }
                    None => match cascade::check(&view, &request.body, cfg) {
                        Ok(()) => {
                            partial.armed = false;
                            partial.meter.set_cascade_kept("accepted");
                            let mut it = held.into_iter();
                            let first = it.next().expect("a started stream has a first chunk");
                            let rest: ChunkStream = Box::pin(futures_util::stream::iter(it.map(Ok)));
                            return keep(ChatAnswer::Stream(StartedStream { first, rest }), routed, true);
                        }
                        Err(f) => break Some(f),
                    },
                }
                next = rest.next().await;
            };
            partial.armed = false;
            match outcome {
                Some(f) => (f, partial.usage, std::mem::take(&mut partial.text)),
                None => {
                    // Too long to hold back: pass it on as it comes, unchecked.
                    partial.meter.set_cascade_kept("unchecked");
                    let mut it = held.into_iter();
                    let first = it.next().expect("a started stream has a first chunk");
                    let rest: ChunkStream =
                        Box::pin(futures_util::stream::iter(it.map(Ok)).chain(rest.map(move |r| r.map(strip))));
                    return keep(ChatAnswer::Stream(StartedStream { first, rest }), routed, false);
                }
            }
        }
    };
    // The discarded attempt is accounted like any call, at its deployment's price.
    let d = &routed.deployment;
    let bounds = Bounds::chat(&d.config, request.max_output_tokens, request.n);
    let estimate = match accounting::judge(reported.as_ref(), bounds) {
        Verdict::Believe(..) => None,
        Verdict::Estimate(_) => {
            Some(accounting::estimate_chat_off_executor(Some(request.prompt.clone()), text.into(), d.encoding).await)
        }
    };
    let price = d.config.prices.at_or_first(meter.arrived_ms()).price;
    let attempt = accounting::account(reported.as_ref(), bounds, price, &d.config.id, || {
        estimate.unwrap_or_default()
    });
    meter.set_escalated(
        Escalated {
            reason: failed.reason.as_str(),
            model: cheap.name.clone(),
            deployment: Some(d.config.id.clone()),
            prompt_tokens: attempt.usage.prompt_tokens,
            completion_tokens: attempt.usage.completion_tokens,
            cost_nanos: attempt.cost.0,
        },
        &strong.name,
    );
    drop(routed);
    escalate(gateway, strong, request, failed).await
}

/// A streamed cheap answer being held back: if the client goes away meanwhile (the request's
/// future is dropped), what was generated so far is left on the meter to be billed.
struct Partial<'a> {
    meter: &'a mut Meter,
    usage: Option<Reported>,
    text: String,
    armed: bool,
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.meter
                .account_later(self.usage.as_ref(), std::mem::take(&mut self.text));
        }
    }
}

async fn escalate(gateway: &Gateway, strong: &Arc<LogicalModel>, request: &ChatRequest, failed: Failed) -> CascadeRun {
    tracing::debug!(reason = failed.reason.as_str(), detail = %failed.detail, to = %strong.name, "cascade escalates");
    CascadeRun {
        dispatched: gateway.chat(strong, request).await,
        model: strong.clone(),
        checked: true,
        escalated: Some(failed),
    }
}
