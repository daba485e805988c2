//! `POST /v1/chat/completions`: validate, dispatch, answer as JSON or SSE with routing, token and cost headers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{access, hv, model_of_kind, read_json_body, AppState, Received, RequestId};
use crate::config::ModelKind;
use crate::error::ApiError;
use futures_util::StreamExt;

use crate::money::meter::{Escalated, Meter};
use crate::money::pricing::Nanos;
use crate::providers::{completion_text_of_body, Chunk, Usage};
use crate::proxy::gateway::{ChatAnswer, Deployment, StartedStream};
use crate::proxy::relay;
use crate::proxy::request::{parse_object, ChatRequest};
use crate::records::usage::{Outcome, UsageSource};
use crate::router::cascade;
use crate::router::features::Conversation;
use crate::router::policy::{Decision, Prefer};

pub(crate) const H_DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchyard-deployment");
pub(crate) const H_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub(crate) const H_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub(crate) const H_PROCESS_MS: HeaderName = HeaderName::from_static("x-switchyard-process-ms");
pub(crate) const H_TOKENS_IN: HeaderName = HeaderName::from_static("x-switchyard-tokens-in");
pub(crate) const H_TOKENS_OUT: HeaderName = HeaderName::from_static("x-switchyard-tokens-out");
pub(crate) const H_CACHED_IN: HeaderName = HeaderName::from_static("x-switchyard-tokens-cached");
pub(crate) const H_COST: HeaderName = HeaderName::from_static("x-switchyard-cost-usd");
pub(crate) const H_USAGE_SOURCE: HeaderName = HeaderName::from_static("x-switchyard-usage-source");
pub(crate) const H_REQ_BYTES: HeaderName = HeaderName::from_static("x-switchyard-request-bytes");
pub(crate) const H_RESP_BYTES: HeaderName = HeaderName::from_static("x-switchyard-response-bytes");
pub(crate) const H_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
pub(crate) const H_OVERHEAD_US: HeaderName = HeaderName::from_static("x-switchyard-overhead-us");

/// Headers every routed answer carries. `upstream` is the time spent waiting on the upstream,
/// so the rest of the time to the headers is the gateway's own overhead.
#[allow(clippy::too_many_arguments)]
pub(crate) fn routing_headers(
    h: &mut HeaderMap,
    d: &Deployment,
    model: &str,
    attempts: u32,
    received: Instant,
    upstream: std::time::Duration,
    request_bytes: usize,
) {
    h.insert(H_DEPLOYMENT, hv(&d.config.id));
    h.insert(H_PROVIDER, hv(&d.provider_name));
    h.insert(H_MODEL, hv(model));
    h.insert(H_ATTEMPTS, HeaderValue::from(attempts));
    h.insert(H_REQ_BYTES, HeaderValue::from(request_bytes));
    let elapsed = received.elapsed();
    h.insert(H_PROCESS_MS, hv(format!("{:.3}", elapsed.as_secs_f64() * 1000.0)));
    let overhead = elapsed.saturating_sub(upstream);
    metrics::histogram!("switchyard_gateway_overhead_seconds").record(overhead.as_secs_f64());
    h.insert(H_OVERHEAD_US, HeaderValue::from(overhead.as_micros() as u64));
}

/// Token and cost headers of a complete answer.
pub(crate) fn usage_headers(
    h: &mut HeaderMap,
    usage: &Usage,
    cost: crate::money::pricing::Nanos,
    source: UsageSource,
    body_len: usize,
) {
    h.insert(H_TOKENS_IN, HeaderValue::from(usage.prompt_tokens));
    h.insert(H_TOKENS_OUT, HeaderValue::from(usage.completion_tokens));
    h.insert(H_CACHED_IN, HeaderValue::from(usage.cached_tokens));
    h.insert(H_COST, hv(cost.to_string()));
    h.insert(
        H_USAGE_SOURCE,
        HeaderValue::from_static(match source {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }),
    );
    h.insert(H_RESP_BYTES, HeaderValue::from(body_len));
}

pub(crate) const H_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
pub(crate) const H_TIER: HeaderName = HeaderName::from_static("x-switchyard-tier");
pub(crate) const H_REASON: HeaderName = HeaderName::from_static("x-switchyard-reason");
pub(crate) const H_PREFER: HeaderName = HeaderName::from_static("x-switchyard-prefer");
pub(crate) const H_VARIANT: HeaderName = HeaderName::from_static("x-switchyard-variant");
pub(crate) const H_CASCADE: HeaderName = HeaderName::from_static("x-switchyard-cascade");

/// The caller's `x-switchyard-prefer`; without the header, the key's default (balanced when
/// it has none).
fn preference(
    headers: &HeaderMap,
    principal: Option<&crate::records::keys::Principal>,
) -> Result<(Prefer, &'static str), ApiError> {
    match headers.get(H_PREFER) {
        None => Ok(match principal.and_then(|p| p.key.route_prefer) {
            Some(p) => (p, "key"),
            None => (Prefer::Balanced, "default"),
        }),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(Prefer::parse)
            .map(|p| (p, "header"))
            .ok_or_else(|| {
                ApiError::invalid_request("The x-switchyard-prefer header must be `cost`, `quality` or `balanced`.")
            }),
    }
}

/// Routes a request whose `model` names a route; `None` for a plain model.
/// Routes a request whose `model` names a route, or any request under `/r/{route}/v1`
/// (`path_route`); `None` for a plain model.
fn decide(
    state: &AppState,
    request: &ChatRequest,
    path_route: Option<&str>,
    (prefer, prefer_source): (Prefer, &'static str),
    principal: Option<&crate::records::keys::Principal>,
    remember: bool,
) -> Result<Option<Decision>, ApiError> {
    let router = state.router.get();
    let route = match path_route {
        Some(name) => Some(router.route(name).ok_or_else(|| {
            let routes: Vec<&str> = router.routes().map(|r| r.name.as_str()).collect();
            ApiError::not_found(format!(
                "Unknown route `{name}` in the path; routes: {}.",
                routes.join(", ")
            ))
        })?),
        None => router.route(&request.model),
    };
    let Some(route) = route else {
        return Ok(None);
    };
    access::check_model(principal, &route.name)?;
    let budget = principal.and_then(|p| state.limiter.budget_remaining(&access::subjects(p)));
    let started = Instant::now();
    let conversation = Conversation::of_body(&request.body);
    // Conversations are told apart by caller, by the end user the app names in `user`, and by
    // their opening.
    let end_user = request
        .body
        .get("user")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let caller = principal.map_or(0, |p| crate::router::features::hash_str(&p.key.id));
    let thread = (
        crate::router::features::hash_str(&route.name),
        conversation.thread ^ caller ^ crate::router::features::hash_str(end_user).rotate_left(7),
    );
    let before = (conversation.assistant_turns > 0 && state.router.strong_threads.contains_key(&thread))
        .then_some(crate::router::policy::Tier::Strong);
    let serves = Serving {
        state,
        request,
        at_ms: state.clock.now_ms(),
    };
    // An experiment puts a stable share of callers (or conversations) under a candidate's policy.
    let policy = match &route.experiment {
        Some(e) => {
            let unit = match (e.by, principal) {
                (crate::router::policy::StickyBy::Key, Some(_)) => caller,
                _ => thread.1,
            };
            // Salted per experiment, so two experiments do not put the same callers in their arms.
            let salt = crate::router::features::hash_parts(&[&route.name, &e.candidate]);
            let arm = if e.in_variant(unit ^ salt) {
                router.route(&e.candidate)
            } else {
                None
            };
            arm.unwrap_or(route)
        }
        None => route,
    };
    let prediction = router.predict(&conversation);
    let mut d = router.decide_predicted(policy, &prediction, prefer, budget, before, &serves);
    d.prefer_source = prefer_source;
    if prefer_source == "key" && prefer != Prefer::Balanced {
        d.reason = d.reason.replace("caller prefers", "the key's default prefers");
    }
    if route.experiment.is_some() {
        d.variant = Some(policy.name.clone());
        d.route = route.name.clone();
    }
    if let Some(shadow) = route.shadow.as_deref().and_then(|s| router.route(s)) {
        // The shadow decides as if fresh: the live policy's history must not make it agree.
        let s = router.decide_predicted(shadow, &prediction, prefer, budget, None, &serves);
        d.shadow = Some(crate::router::policy::ShadowChoice {
            route: shadow.name.clone(),
            model: s.model,
            tier: s.tier,
        });
    }
    if remember {
        d.thread = Some(thread);
    }
    metrics::histogram!("switchyard_route_decision_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("switchyard_route_decisions_total", "route" => d.route.clone(), "tier" => d.tier.as_str())
        .increment(1);
    Ok(Some(d))
}

/// The gateway's models as a routing decision sees them, for one request.
struct Serving<'a> {
    state: &'a AppState,
    request: &'a ChatRequest,
    at_ms: i64,
}

impl crate::router::policy::Models for Serving<'_> {
    fn serves(&self, model: &str) -> bool {
        self.state.gateway.can_serve(model, self.request)
    }

    fn list_price(&self, model: &str) -> Option<i64> {
        self.state.gateway.list_price(model, self.at_ms)
    }
}

fn decision_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(H_ROUTE, hv(&d.route));
    h.insert(H_TIER, HeaderValue::from_static(d.tier.as_str()));
    h.insert(H_REASON, hv(&d.reason));
    if let Some(v) = &d.variant {
        h.insert(H_VARIANT, hv(v));
    }
}

/// `POST /v1/route`: the decision for a chat request, without calling any model.
pub(crate) async fn explain_route(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    explain(state, None, req).await
}

/// `POST /r/{route}/v1/route`.
pub(crate) async fn explain_path_route(
    State(state): State<Arc<AppState>>,
    Path(route): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    explain(state, Some(route), req).await
}

async fn explain(state: Arc<AppState>, path_route: Option<String>, req: Request) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers()).await?;
    let prefer = preference(req.headers(), principal.as_deref())?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes).await?;
    let request = ChatRequest::from_body(parse_object(&bytes)?)?;
    let Some(d) = decide(
        &state,
        &request,
        path_route.as_deref(),
        prefer,
        principal.as_deref(),
        false,
    )?
    else {
        let router = state.router.get();
        let routes: Vec<&str> = router.routes().map(|r| r.name.as_str()).collect();
        return Err(ApiError::invalid_param(
            "model",
            format!("`{}` is not a route; routes: {}", request.model, routes.join(", ")),
        ));
    };
    // A decision is plain data: it always serializes.
    let mut v = serde_json::to_value(&d).unwrap_or_default();
    v["object"] = serde_json::Value::String("route.decision".into());
    let mut resp = super::json_response(StatusCode::OK, bytes::Bytes::from(v.to_string()));
    decision_headers(resp.headers_mut(), &d);
    Ok(resp)
}

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    chat(state, request_id, received, None, req).await
}

/// `POST /r/{route}/v1/chat/completions`: the route in the path decides, whatever the body's
/// `model` says, so an app selects its policy with its base URL alone.
pub(crate) async fn path_route_chat_completions(
    State(state): State<Arc<AppState>>,
    Path(route): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    chat(state, request_id, received, Some(route), req).await
}

async fn chat(
    state: Arc<AppState>,
    request_id: Arc<str>,
    received: Instant,
    path_route: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers()).await?;
    let prefer = preference(req.headers(), principal.as_deref())?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes).await?;
    let request_bytes = bytes.len();
    let request = ChatRequest::from_body(parse_object(&bytes)?)?;
    drop(bytes);
    let mut decision = decide(
        &state,
        &request,
        path_route.as_deref(),
        prefer,
        principal.as_deref(),
        true,
    )?;
    let model = match &decision {
        Some(d) => model_of_kind(&state, &d.model, ModelKind::Chat)?,
        None => {
            let m = model_of_kind(&state, &request.model, ModelKind::Chat)?;
            access::check_model(principal.as_deref(), &m.name)?;
            m
        }
    };
    let served = serve_chat(
        &state,
        &request_id,
        received,
        principal,
        request,
        request_bytes,
        model,
        decision.as_mut(),
    )
    .await;
    let mut resp = match served {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(d) = &decision {
        decision_headers(resp.headers_mut(), d);
    }
    Ok(resp)
}

/// Serves an accepted chat request on `model` (chosen by the client, or by a route).
#[allow(clippy::too_many_arguments)]
async fn serve_chat(
    state: &Arc<AppState>,
    request_id: &str,
    received: Instant,
    principal: Option<Arc<crate::records::keys::Principal>>,
    request: ChatRequest,
    request_bytes: usize,
    model: Arc<crate::proxy::gateway::LogicalModel>,
    mut decision: Option<&mut Decision>,
) -> Result<Response, ApiError> {
    // A cascade stands the strong model behind the cheap one: admission reserves for both.
    let cascade = match decision.as_ref().and_then(|d| d.cascade.as_ref()) {
        Some(plan) => Some((
            model_of_kind(state, &plan.escalate_to, ModelKind::Chat)?,
            plan.checks.clone(),
        )),
        None => None,
    };
    // From here on the request is accepted: it yields exactly one usage event.
    let mut meter = Meter::start(
        state.usage.clone(),
        received,
        request_id,
        "chat",
        &model.name,
        request.stream,
        request_bytes,
    );
    if let Some(d) = decision.as_ref() {
        meter.set_route(
            &d.route,
            d.variant.as_deref(),
            d.shadow.as_ref().map(|s| s.model.as_str()),
        );
    }
    meter.set_prompt(request.prompt.clone());
    if let Some(p) = &principal {
        meter.set_principal(p);
    }
    let prompt_bound = request.prompt.upper_bound();
    let mut worst = state.gateway.worst_case_cost(
        &model,
        meter.arrived_ms(),
        prompt_bound,
        request.max_output_tokens,
        request.n,
    );
    if let Some((strong, _)) = &cascade {
        worst = worst.saturating_add(state.gateway.worst_case_cost(
            strong,
            meter.arrived_ms(),
            prompt_bound,
            request.max_output_tokens,
            request.n,
        ));
    }
    let est_tokens = prompt_bound / 4 + u64::from(request.max_output_tokens.unwrap_or(0));
    let mut metered = Some(meter);
    let admitted = match access::admit(state, principal.as_deref(), &mut metered, est_tokens, worst).await {
        Ok(a) => a,
        Err(refused) => return Ok(refused),
    };
    let mut meter = metered.expect("an admitted request keeps its meter");

    let (dispatched, model, cascaded) = match cascade {
        Some((strong, checks)) => {
            let c = run_cascade(state, &model, &strong, &request, &checks, &mut meter).await;
            let route = decision.as_ref().map_or("", |d| d.route.as_str());
            let (outcome, reason) = match &c.escalated {
                Some(f) => ("escalated", f.reason.as_str()),
                None if c.checked => ("accepted", ""),
                None => ("unchecked", ""),
            };
            metrics::counter!("switchyard_cascade_total", "route" => route.to_string(), "outcome" => outcome, "reason" => reason)
                .increment(1);
            if let (Some(f), Some(d)) = (&c.escalated, decision.as_deref_mut()) {
                d.tier = crate::router::policy::Tier::Strong;
                d.reason
                    .push_str(&format!("; escalated to {}: {}", strong.name, f.detail));
            }
            let header = match &c.escalated {
                Some(f) => format!("escalated:{}", f.reason.as_str()),
                None => outcome.to_string(),
            };
            (c.dispatched, c.model, Some(header))
        }
        None => (state.gateway.chat(&model, &request).await, model, None),
    };
    // An admitted conversation that went (or escalated) to the strong tier stays there.
    if let Some(d) = decision.as_ref() {
        if let (Some(t), crate::router::policy::Tier::Strong) = (d.thread, d.tier) {
            state.router.strong_threads.insert(t, ());
        }
    }
    let routed = match dispatched {
        Ok(r) => r,
        Err(de) => {
            meter.set_attempts(de.attempts);
            let outcome = if de.attempts == 0 && de.last_deployment.is_none() && de.error.status.as_u16() < 500 {
                Outcome::Rejected
            } else {
                Outcome::UpstreamError
            };
            meter.finish(de.error.status.as_u16(), outcome, Some(de.kind));
            let mut resp = de.error.into_response();
            resp.headers_mut().insert(H_ATTEMPTS, HeaderValue::from(de.attempts));
            if let Some(d) = &de.last_deployment {
                resp.headers_mut().insert(H_DEPLOYMENT, hv(&d.config.id));
                resp.headers_mut().insert(H_PROVIDER, hv(&d.provider_name));
            }
            if let Some(a) = &admitted {
                access::admitted_headers(resp.headers_mut(), a);
            }
            if let Some(c) = &cascaded {
                resp.headers_mut().insert(H_CASCADE, hv(c));
            }
            return Ok(resp);
        }
    };
    let deployment = routed.deployment.clone();
    meter.set_deployment(&deployment, routed.attempts);

    let (attempts, upstream) = (routed.attempts, routed.upstream);
    let mut resp = match routed.value {
        ChatAnswer::Complete(c) => {
            let (usage, source) = match c.usage {
                Some(u) => (u, UsageSource::Reported),
                None => {
                    // Rare: an upstream that reports no usage. Count so the headers stay honest.
                    let enc = deployment.encoding;
                    (
                        Usage {
                            prompt_tokens: request.prompt.count(enc),
                            completion_tokens: enc.count(&completion_text_of_body(&c.body)),
                            cached_tokens: 0,
                        },
                        UsageSource::Estimated,
                    )
                }
            };
            let answer_cost = meter
                .price()
                .cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens);
            let cost = Nanos(answer_cost.0 + meter.extra_cost().0);
            meter.set_counted(
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens,
                answer_cost,
                source,
            );
            let len = c.body.len();
            meter.add_response_bytes(len);
            let mut resp = Response::new(Body::from(c.body));
            let h = resp.headers_mut();
            h.insert(http::header::CONTENT_TYPE, super::JSON);
            usage_headers(h, &usage, cost, source, len);
            drop(routed.guard);
            meter.finish(200, Outcome::Success, None);
            resp
        }
        ChatAnswer::Stream(started) => {
            let body = relay::sse_body(
                started,
                request.include_usage,
                meter,
                routed.guard,
                deployment.config.id.clone(),
            );
            let mut resp = Response::new(Body::from_stream(body));
            *resp.status_mut() = StatusCode::OK;
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            resp
        }
    };
    routing_headers(
        resp.headers_mut(),
        &deployment,
        &model.name,
        attempts,
        received,
        upstream,
        request_bytes,
    );
    if let Some(a) = &admitted {
        access::admitted_headers(resp.headers_mut(), a);
    }
    if let Some(c) = &cascaded {
        resp.headers_mut().insert(H_CASCADE, hv(c));
    }
    Ok(resp)
}

/// What a cascade did: the answer to relay (the cheap one, or the strong one after an
/// escalation), the model that gave it, whether the cheap answer was checked (a streamed answer
/// longer than the buffer is passed on unchecked) and why it was escalated.
struct CascadeRun {
    dispatched: Result<crate::proxy::gateway::Routed<ChatAnswer>, crate::proxy::gateway::DispatchError>,
    model: Arc<crate::proxy::gateway::LogicalModel>,
    checked: bool,
    escalated: Option<cascade::Failed>,
}

/// Asks `cheap` first; keeps its answer if it passes the checks, else records the attempt on the
/// meter and asks `strong`. A streamed cheap answer is held back until it is complete (up to the
/// buffer limit) so the client sees one answer only.
async fn run_cascade(
    state: &Arc<AppState>,
    cheap: &Arc<crate::proxy::gateway::LogicalModel>,
    strong: &Arc<crate::proxy::gateway::LogicalModel>,
    request: &ChatRequest,
    cfg: &cascade::Cascade,
    meter: &mut Meter,
) -> CascadeRun {
    // Confidence needs log-probabilities: ask for them, and take them out again if the client did not.
    let add_logprobs = cfg.min_logprob.is_some()
        && cfg.checks.contains(&cascade::Check::Logprob)
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
    let keep = |value: ChatAnswer, routed: crate::proxy::gateway::Routed<ChatAnswer>, checked: bool| CascadeRun {
        dispatched: Ok(crate::proxy::gateway::Routed { value, ..routed }),
        model: cheap.clone(),
        checked,
        escalated: None,
    };
    let mut routed = match state.gateway.chat(cheap, cheap_request).await {
        Ok(r) => r,
        Err(de) => {
            let failed = cascade::Failed {
                reason: cascade::Escalation::UpstreamError,
                detail: format!("{} failed: {}", cheap.name, de.error.message),
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
            return escalate(state, strong, request, failed).await;
        }
    };
    // From here the cheap model has been called: a client that goes away is billed for it.
    meter.set_deployment(&routed.deployment, routed.attempts);
    let placeholder = ChatAnswer::Complete(crate::providers::Complete {
        body: bytes::Bytes::new(),
        usage: None,
    });
    let (failed, usage, text) = match std::mem::replace(&mut routed.value, placeholder) {
        ChatAnswer::Complete(c) => {
            let view = cascade::AnswerView::of_body(&c.body).unwrap_or_default();
            match cascade::check(&view, &request.body, cfg) {
                Ok(()) => {
                    meter.set_cascade_kept("accepted");
                    let body = match add_logprobs.then(|| cascade::without_logprobs(&c.body)).flatten() {
                        Some(b) => bytes::Bytes::from(b),
                        None => c.body,
                    };
                    return keep(
                        ChatAnswer::Complete(crate::providers::Complete { body, usage: c.usage }),
                        routed,
                        true,
                    );
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
            let mut next: Option<Result<Chunk, crate::providers::UpstreamError>> = Some(Ok(started.first));
            let outcome = loop {
                match next {
                    Some(Ok(c)) => {
                        bytes += c.data.len();
                        view.add_chunk(&c.data);
                        partial.usage = c.info.usage.or(partial.usage);
                        partial.text.push_str(&c.info.text);
                        held.push(strip(c));
                        if bytes > cfg.max_buffer_bytes {
                            break None;
                        }
                    }
                    Some(Err(e)) => {
                        break Some(cascade::Failed {
                            reason: cascade::Escalation::UpstreamError,
                            detail: format!("{} broke mid-answer: {}", cheap.name, e.kind()),
                        })
                    }
                    None => match cascade::check(&view, &request.body, cfg) {
                        Ok(()) => {
                            partial.armed = false;
                            partial.meter.set_cascade_kept("accepted");
                            let mut it = held.into_iter();
                            let first = it.next().expect("a started stream has a first chunk");
                            let rest: crate::providers::ChunkStream = Box::pin(futures_util::stream::iter(it.map(Ok)));
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
                    let rest: crate::providers::ChunkStream =
                        Box::pin(futures_util::stream::iter(it.map(Ok)).chain(rest.map(move |r| r.map(strip))));
                    return keep(ChatAnswer::Stream(StartedStream { first, rest }), routed, false);
                }
            }
        }
    };
    // The discarded attempt is billed at its deployment's price; counted if the upstream said nothing.
    let d = &routed.deployment;
    let usage = usage.unwrap_or_else(|| Usage {
        prompt_tokens: request.prompt.count(d.encoding),
        completion_tokens: d.encoding.count(&text),
        cached_tokens: 0,
    });
    let price = d.config.prices.at_or_first(meter.arrived_ms()).price;
    meter.set_escalated(
        Escalated {
            reason: failed.reason.as_str(),
            model: cheap.name.clone(),
            deployment: Some(d.config.id.clone()),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_nanos: price
                .cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
                .0,
        },
        &strong.name,
    );
    drop(routed);
    escalate(state, strong, request, failed).await
}

/// A streamed cheap answer being held back: if the client goes away meanwhile (the request's
/// future is dropped), what was generated so far is left on the meter to be billed.
struct Partial<'a> {
    meter: &'a mut Meter,
    usage: Option<Usage>,
    text: String,
    armed: bool,
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.meter.set_usage(self.usage, std::mem::take(&mut self.text));
        }
    }
}

async fn escalate(
    state: &Arc<AppState>,
    strong: &Arc<crate::proxy::gateway::LogicalModel>,
    request: &ChatRequest,
    failed: cascade::Failed,
) -> CascadeRun {
    tracing::debug!(reason = failed.reason.as_str(), detail = %failed.detail, to = %strong.name, "cascade escalates");
    CascadeRun {
        dispatched: state.gateway.chat(strong, request).await,
        model: strong.clone(),
        checked: true,
        escalated: Some(failed),
    }
}
