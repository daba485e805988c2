//! `/admin/v1/routes`: the routing table in force, replacing it, and per-route statistics.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::usage::{filter_of, query_of, UsageQuery};
use super::{body, ok_json, store_err};
use crate::error::ApiError;
use crate::http::AppState;

/// The routing table in force.
pub(super) async fn list_routes(State(state): State<Arc<AppState>>) -> Response {
    let router = state.router.get();
    let data: Vec<&crate::router::policy::Route> = router.routes().collect();
    ok_json(StatusCode::OK, json!({"object": "list", "data": data}))
}

/// Per route: requests and cost by variant and by model served; for a shadow policy, how often it
/// agreed and what its choices would have cost (the same tokens at its models' current prices).
pub(super) async fn route_stats(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let rows = state.store.route_stats(&f).await.map_err(store_err)?;
    let now = state.clock.now_ms();
    let price_of = |model: &str| {
        state
            .gateway
            .model(model)
            .and_then(|m| m.deployments.first())
            .map(|d| d.config.prices.at_or_first(now).price)
    };
    let mut routes: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    for r in &rows {
        let e = routes.entry(&r.route).or_insert_with(|| {
            json!({"route": r.route, "requests": 0, "cost_nanos": 0, "by_model": {}, "by_variant": {},
                   "shadow": {"requests": 0, "agreed": 0, "actual_cost_nanos": 0, "projected_cost_nanos": 0, "by_model": {}},
                   "cascade": {"accepted": 0, "unchecked": 0, "escalated": 0, "by_reason": {}, "escalation_cost_nanos": 0}})
        });
        let add = |v: &mut Value, n: i64| *v = json!(v.as_i64().unwrap_or(0) + n);
        add(&mut e["requests"], r.requests);
        add(&mut e["cost_nanos"], r.cost_nanos);
        add(&mut e["by_model"][r.model.as_str()], r.requests);
        if !r.cascade.is_empty() {
            let c = &mut e["cascade"];
            add(&mut c[r.cascade.as_str()], r.requests);
            add(&mut c["escalation_cost_nanos"], r.escalation_cost_nanos);
            if !r.escalation_reason.is_empty() {
                add(&mut c["by_reason"][r.escalation_reason.as_str()], r.requests);
            }
        }
        if !r.variant.is_empty() {
            let v = &mut e["by_variant"][r.variant.as_str()];
            if v.is_null() {
                *v = json!({"requests": 0, "cost_nanos": 0});
            }
            add(&mut v["requests"], r.requests);
            add(&mut v["cost_nanos"], r.cost_nanos);
        }
        if !r.shadow_model.is_empty() {
            let s = &mut e["shadow"];
            add(&mut s["requests"], r.requests);
            add(&mut s["by_model"][r.shadow_model.as_str()], r.requests);
            add(&mut s["actual_cost_nanos"], r.cost_nanos);
            if r.shadow_model == r.model {
                add(&mut s["agreed"], r.requests);
                add(&mut s["projected_cost_nanos"], r.cost_nanos);
            } else {
                let projected = price_of(&r.shadow_model).map_or(0, |p| {
                    p.cost(
                        r.prompt_tokens.max(0) as u64,
                        r.cached_tokens.max(0) as u64,
                        r.completion_tokens.max(0) as u64,
                    )
                    .0
                });
                add(&mut s["projected_cost_nanos"], projected);
            }
        }
    }
    let data: Vec<Value> = routes.into_values().collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesIn {
    /// Route name → route, as in `[routes]`.
    routes: serde_json::Map<String, Value>,
}

/// Replaces the routing table. It is validated whole first; on any problem nothing changes.
pub(super) async fn replace_routes(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let b: RoutesIn = body(req).await?;
    let table: toml::Value = serde_json::from_value(Value::Object(b.routes))
        .map_err(|e| ApiError::invalid_param("routes", format!("Invalid routing table: {e}")))?;
    let intents = state.router.get().model.intents.clone();
    let routes = state.config.parse_routes(table, &intents).map_err(|e| {
        let first = e.0.first().map(|p| p.path.clone()).unwrap_or_default();
        let all: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        ApiError::invalid_param(
            first,
            format!("The routing table was refused, nothing changed: {}", all.join("; ")),
        )
    })?;
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let model = state.router.get().model.clone();
    state.router.set(crate::router::policy::Router::new(model, routes));
    tracing::info!(routes = ?names, "routing table replaced through the admin API");
    Ok(list_routes(State(state)).await)
}
