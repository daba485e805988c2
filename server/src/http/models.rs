//! `GET /v1/models` and `GET /v1/models/{id}` (and under `/r/{route}/v1`): the logical models
//! and the routes, listed alike. Like every `/v1` call they need a key when `auth.required`;
//! a key with an allow-list sees only what it may call.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, AppState};
use crate::error::ApiError;
use crate::proxy::gateway::LogicalModel;
use crate::records::keys::Principal;

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

/// Whether the caller may call `name` (no key, or a key that allows it).
fn visible(p: Option<&Principal>, name: &str) -> bool {
    p.is_none_or(|p| p.key.allows_model(name))
}

pub(crate) async fn list_models(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let principal = match super::access::authenticate(&state, req.headers(), super::access::peer_ip(&req)).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let p = principal.as_deref();
    let data: Vec<Value> = state
        .gateway
        .model_names
        .iter()
        .filter(|n| visible(p, n))
        .filter_map(|n| state.gateway.model(n))
        .map(|m| model_json(m))
        .chain(
            state
                .router
                .get()
                .routes()
                .filter(|r| visible(p, &r.name))
                .map(route_json),
        )
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data}).to_string().into(),
    )
}

pub(crate) async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>, req: Request) -> Response {
    let principal = match super::access::authenticate(&state, req.headers(), super::access::peer_ip(&req)).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !visible(principal.as_deref(), &id) {
        return ApiError::model_not_found(&id).into_response();
    }
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
    req: Request,
) -> Response {
    if let Err(e) = known_route(&state, &route) {
        return e.into_response();
    }
    get_model(state, Path(id), req).await
}

pub(crate) fn known_route(state: &AppState, route: &str) -> Result<(), ApiError> {
    let table = state.router.get();
    match table.route(route) {
        Some(_) => Ok(()),
        None => Err(crate::router::decide::unknown_route(route)),
    }
}
