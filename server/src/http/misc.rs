//! `/v1/models`, `/v1/embeddings`, health, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::chat::{routing_headers, usage_headers, H_ATTEMPTS};
use super::{access, hv, json_response, model_of_kind, read_json_body, AppState, Received, RequestId};
use crate::config::ModelKind;
use crate::error::ApiError;
use crate::money::meter::Meter;
use crate::providers::Usage;
use crate::proxy::gateway::LogicalModel;
use crate::proxy::request::{parse_object, EmbeddingsRequest};
use crate::records::usage::{Outcome, UsageSource};

fn model_json(m: &LogicalModel) -> Value {
    let mut v = json!({"id": m.name, "object": "model", "created": 0, "owned_by": "switchyard"});
    if let Some(d) = &m.description {
        v["description"] = Value::String(d.clone());
    }
    v
}

/// A route, listed like a model: clients name it the same way.
fn route_json(r: &crate::router::policy::Route) -> Value {
    let mut v = json!({"id": r.name, "object": "model", "created": 0, "owned_by": "switchyard-router"});
    if let Some(d) = &r.description {
        v["description"] = Value::String(d.clone());
    }
    v
}

pub(crate) async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = state
        .gateway
        .model_names
        .iter()
        .filter_map(|n| state.gateway.model(n))
        .map(|m| model_json(m))
        .chain(state.router.get().routes().map(route_json))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data}).to_string().into(),
    )
}

pub(crate) async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let router = state.router.get();
    match (state.gateway.model(&id), router.route(&id)) {
        (Some(m), _) => json_response(StatusCode::OK, model_json(m).to_string().into()),
        (None, Some(r)) => json_response(StatusCode::OK, route_json(r).to_string().into()),
        (None, None) => ApiError::model_not_found(&id).into_response(),
    }
}

/// `GET /r/{route}/v1/models/{id}`: the same as `/v1/models/{id}`, for apps whose base URL names a route.
pub(crate) async fn get_model_under_route(
    state: State<Arc<AppState>>,
    Path((route, id)): Path<(String, String)>,
) -> Response {
    if let Err(e) = known_route(&state, &route) {
        return e.into_response();
    }
    get_model(state, Path(id)).await
}

/// `POST /r/{route}/v1/embeddings`: embeddings are not routed; the route in the path must exist.
pub(crate) async fn embeddings_under_route(
    state: State<Arc<AppState>>,
    Path(route): Path<String>,
    request_id: Extension<RequestId>,
    received: Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    known_route(&state, &route)?;
    embeddings(state, request_id, received, req).await
}

fn known_route(state: &AppState, route: &str) -> Result<(), ApiError> {
    let router = state.router.get();
    match router.route(route) {
        Some(_) => Ok(()),
        None => {
            let routes: Vec<&str> = router.routes().map(|r| r.name.as_str()).collect();
            Err(ApiError::not_found(format!(
                "Unknown route `{route}` in the path; routes: {}.",
                routes.join(", ")
            )))
        }
    }
}

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers()).await?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes).await?;
    let request_bytes = bytes.len();
    let request = EmbeddingsRequest::from_body(parse_object(&bytes)?)?;
    let model = model_of_kind(&state, &request.model, ModelKind::Embedding)?;
    access::check_model(principal.as_deref(), &model.name)?;
    let mut meter = Meter::start(
        state.usage.clone(),
        received,
        &request_id,
        "embeddings",
        &request.model,
        false,
        request_bytes,
    );
    if let Some(p) = &principal {
        meter.set_principal(p);
    }
    let input_bound: u64 = request.texts.iter().map(|t| t.len() as u64).sum::<u64>() + request.token_inputs;
    let worst = state
        .gateway
        .worst_case_cost(&model, meter.arrived_ms(), input_bound, Some(0), 1);
    let mut metered = Some(meter);
    let admitted = match access::admit(&state, principal.as_deref(), &mut metered, input_bound / 4, worst).await {
        Ok(a) => a,
        Err(refused) => return Ok(refused),
    };
    let mut meter = metered.expect("an admitted request keeps its meter");
    let routed = match state.gateway.embeddings(&model, &request).await {
        Ok(r) => r,
        Err(de) => {
            meter.set_attempts(de.attempts);
            meter.finish(de.error.status.as_u16(), Outcome::UpstreamError, Some(de.kind));
            let mut resp = de.error.into_response();
            resp.headers_mut().insert(H_ATTEMPTS, HeaderValue::from(de.attempts));
            if let Some(a) = &admitted {
                access::admitted_headers(resp.headers_mut(), a);
            }
            return Ok(resp);
        }
    };
    let d = routed.deployment.clone();
    meter.set_deployment(&d, routed.attempts);
    let c = routed.value;
    let (usage, source) = match c.usage {
        Some(u) => (u, UsageSource::Reported),
        None => {
            let n: u64 = request.texts.iter().map(|t| d.encoding.count(t)).sum::<u64>() + request.token_inputs;
            (
                Usage {
                    prompt_tokens: n,
                    completion_tokens: 0,
                    cached_tokens: 0,
                },
                UsageSource::Estimated,
            )
        }
    };
    let cost = meter.price().cost(usage.prompt_tokens, 0, 0);
    meter.set_counted(usage.prompt_tokens, 0, 0, cost, source);
    meter.add_response_bytes(c.body.len());
    let len = c.body.len();
    let mut resp = Response::new(Body::from(c.body));
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, super::JSON);
    routing_headers(
        h,
        &d,
        &model.name,
        routed.attempts,
        received,
        routed.upstream,
        request_bytes,
    );
    usage_headers(h, &usage, cost, source, len);
    if let Some(a) = &admitted {
        access::admitted_headers(h, a);
    }
    drop(routed.guard);
    meter.finish(200, Outcome::Success, None);
    Ok(resp)
}

pub(crate) async fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.into())
}

/// Ready unless draining; lists each deployment's breaker state and load for operators.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut deployments = serde_json::Map::new();
    let now = state.gateway.now_ms();
    for name in &state.gateway.model_names {
        if let Some(m) = state.gateway.model(name) {
            for d in &m.deployments {
                deployments.insert(
                    d.config.id.clone(),
                    json!({
                        "model": name,
                        "provider": d.provider_name,
                        "breaker": if d.breaker.is_open(now) { "open" } else { "closed" },
                        "inflight": d.inflight(),
                    }),
                );
            }
        }
    }
    let draining = state.is_draining();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({"status": if draining { "draining" } else { "ready" }, "deployments": deployments});
    json_response(status, body.to_string().into())
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => {
            let mut r = Response::new(Body::from(h.render()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                hv("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        None => ApiError::not_found("Metrics are not enabled in this process").into_response(),
    }
}
