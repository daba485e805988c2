//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{hv, json_response, AppState};
use crate::error::ApiError;

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
