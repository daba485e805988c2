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
use crate::gateway::{ChatAnswer, Deployment};
use crate::providers::{completion_text_of_body, Usage};
use crate::relay;
use crate::request::{parse_object, ChatRequest};
use crate::router::features::Conversation;
use crate::router::policy::{Decision, Prefer};
use crate::usage::{Meter, Outcome, UsageSource};

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
    cost: crate::pricing::Nanos,
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

/// The caller's `x-switchyard-prefer` (balanced when absent).
fn preference(headers: &HeaderMap) -> Result<Prefer, ApiError> {
    match headers.get(H_PREFER) {
        None => Ok(Prefer::Balanced),
        Some(v) => v.to_str().ok().and_then(Prefer::parse).ok_or_else(|| {
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
    prefer: Prefer,
    principal: Option<&crate::keys::Principal>,
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
    let serves = |m: &str| state.gateway.can_serve(m, request);
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
    let mut d = router.decide_in_thread(policy, &conversation, prefer, budget, before, &serves);
    if route.experiment.is_some() {
        d.variant = Some(policy.name.clone());
        d.route = route.name.clone();
    }
    if let Some(shadow) = route.shadow.as_deref().and_then(|s| router.route(s)) {
        // The shadow decides as if fresh: the live policy's history must not make it agree.
        let s = router.decide_in_thread(shadow, &conversation, prefer, budget, None, &serves);
        d.shadow = Some(crate::router::policy::ShadowChoice {
            route: shadow.name.clone(),
            model: s.model,
            tier: s.tier,
        });
    }
    if remember && d.tier == crate::router::policy::Tier::Strong {
        state.router.strong_threads.insert(thread, ());
    }
    metrics::histogram!("switchyard_route_decision_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("switchyard_route_decisions_total", "route" => d.route.clone(), "tier" => d.tier.as_str())
        .increment(1);
    Ok(Some(d))
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
    let prefer = preference(req.headers())?;
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
    let prefer = preference(req.headers())?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes).await?;
    let request_bytes = bytes.len();
    let request = ChatRequest::from_body(parse_object(&bytes)?)?;
    drop(bytes);
    let decision = decide(
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
        decision.as_ref(),
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
    principal: Option<Arc<crate::keys::Principal>>,
    request: ChatRequest,
    request_bytes: usize,
    model: Arc<crate::gateway::LogicalModel>,
    decision: Option<&Decision>,
) -> Result<Response, ApiError> {
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
    if let Some(d) = decision {
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
    let worst = state.gateway.worst_case_cost(
        &model,
        meter.arrived_ms(),
        prompt_bound,
        request.max_output_tokens,
        request.n,
    );
    let est_tokens = prompt_bound / 4 + u64::from(request.max_output_tokens.unwrap_or(0));
    let mut metered = Some(meter);
    let admitted = match access::admit(state, principal.as_deref(), &mut metered, est_tokens, worst).await {
        Ok(a) => a,
        Err(refused) => return Ok(refused),
    };
    let mut meter = metered.expect("an admitted request keeps its meter");

    let routed = match state.gateway.chat(&model, &request).await {
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
            let cost = meter
                .price()
                .cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens);
            meter.set_counted(
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens,
                cost,
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
    Ok(resp)
}
