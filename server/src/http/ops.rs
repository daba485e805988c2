//! `GET /healthz`, `GET /readyz` and `GET /metrics`. Liveness and readiness answer anyone (load
//! balancers and probes send no key); what they reveal beyond the status (deployments, breaker
//! states, load, spend per model) needs the master key unless `server.public_ops` is on.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{hv, json_response, AppState};
use crate::error::ApiError;
use crate::money::backlog::LedgerState;

pub(crate) async fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.into())
}

/// Whether the caller may see operational detail: `server.public_ops`, or the master key.
fn sees_ops(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.server.public_ops || super::access::is_master(state, headers)
}

/// Ready unless draining or unable to record usage: 503 while draining and while the usage
/// ledger's buffer is full (new model requests are refused then); 200 `degraded` while its
/// database cannot be written and events are buffered. With the master key (or
/// `server.public_ops`), the ledger's backlog and each deployment's breaker state and load.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let ledger = state.ledger.as_ref().map(|b| b.state());
    let (status, word) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        match ledger {
            Some(LedgerState::Refusing) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_full"),
            Some(LedgerState::Buffering) => (StatusCode::OK, "degraded"),
            _ => (StatusCode::OK, "ready"),
        }
    };
    if !sees_ops(&state, &headers) {
        return json_response(status, json!({"status": word}).to_string().into());
    }
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
    let mut body = json!({"status": word, "deployments": deployments});
    if let Some(b) = &state.ledger {
        body["ledger"] = json!({
            "state": b.state().as_str(),
            "buffered_events": b.buffered(),
            "max_buffered_events": b.capacity(),
            "failing_since_ms": b.failing_since_ms(),
        });
    }
    if let Some(r) = state.last_reload.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        body["config_reload"] = json!(r);
    }
    json_response(status, body.to_string().into())
}

/// The Prometheus text, for the master key (a scraper's `bearer_token`) or with `server.public_ops`.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !sees_ops(&state, &headers) {
        return ApiError::admin_unauthorized(
            "Metrics need the master key (Authorization: Bearer …), or server.public_ops = true.",
        )
        .into_response();
    }
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
