//! `/admin/v1/routes`: the routing table in force, replacing it, and per-route statistics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::usage::{filter_of, query_of, UsageQuery};
use super::wire::{RouteList, RouteStats, RouteStatsList};
use super::{body, reply, store_err};
use crate::error::ApiError;
use crate::http::AppState;
use crate::store::RouteStat;

/// The routing table
///
/// The routes in force (from the config file, its latest valid reload, or the latest
/// replacement through this API).
#[utoipa::path(get, path = "/admin/v1/routes", tag = "routing",
    responses((status = 200, description = "The routes.", body = RouteList)))]
pub(super) async fn list_routes(State(state): State<Arc<AppState>>) -> Response {
    let router = state.router.get();
    let data: Vec<crate::router::policy::Route> = router.routes().cloned().collect();
    reply(StatusCode::OK, &RouteList::from(data))
}

/// Routing statistics
///
/// Routed events in range (the usage filters apply): requests and cost per route, per model
/// served and per experiment arm; for a shadow policy, how often it agreed with the live one and
/// what its choices would have cost (the same tokens at its models' current prices); for a
/// cascade, how its cheap answers fared.
#[utoipa::path(get, path = "/admin/v1/routes/stats", tag = "routing", params(UsageQuery),
    responses(
        (status = 200, description = "Statistics per route.", body = RouteStatsList),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn route_stats(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let rows = state.store.route_stats(&f).await.map_err(store_err)?;
    let now = state.clock.now_ms();
    let projected = |r: &RouteStat| {
        state
            .gateway
            .model(&r.shadow_model)
            .and_then(|m| m.deployments.first())
            .map_or(0, |d| {
                let p = d.config.prices.at_or_first(now).price;
                p.cost(
                    r.prompt_tokens.max(0) as u64,
                    r.cached_tokens.max(0) as u64,
                    r.completion_tokens.max(0) as u64,
                )
                .0
            })
    };
    let mut routes: BTreeMap<&str, RouteStats> = BTreeMap::new();
    for r in &rows {
        let e = routes.entry(&r.route).or_insert_with(|| RouteStats {
            route: r.route.clone(),
            ..RouteStats::default()
        });
        let n = r.requests;
        add(&mut e.requests, n);
        add(&mut e.cost_nanos, r.cost_nanos);
        add(e.by_model.entry(r.model.clone()).or_default(), n);
        let c = &mut e.cascade;
        match r.cascade.as_str() {
            "accepted" => add(&mut c.accepted, n),
            "unchecked" => add(&mut c.unchecked, n),
            "escalated" => add(&mut c.escalated, n),
            _ => {}
        }
        if !r.cascade.is_empty() {
            add(&mut c.escalation_cost_nanos, r.escalation_cost_nanos);
            if !r.escalation_reason.is_empty() {
                add(c.by_reason.entry(r.escalation_reason.clone()).or_default(), n);
            }
        }
        if !r.variant.is_empty() {
            let v = e.by_variant.entry(r.variant.clone()).or_default();
            add(&mut v.requests, n);
            add(&mut v.cost_nanos, r.cost_nanos);
        }
        if !r.shadow_model.is_empty() {
            let s = &mut e.shadow;
            add(&mut s.requests, n);
            add(s.by_model.entry(r.shadow_model.clone()).or_default(), n);
            add(&mut s.actual_cost_nanos, r.cost_nanos);
            if r.shadow_model == r.model {
                add(&mut s.agreed, n);
                add(&mut s.projected_cost_nanos, r.cost_nanos);
            } else {
                add(&mut s.projected_cost_nanos, projected(r));
            }
        }
    }
    let data: Vec<RouteStats> = routes.into_values().collect();
    Ok(reply(StatusCode::OK, &RouteStatsList::from(data)))
}

fn add(total: &mut i64, n: i64) {
    *total = total.saturating_add(n);
}

/// A routing table to put in force.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesIn {
    /// Route name → route, the same fields as `[routes.NAME]` in the config (`cheap` and
    /// `strong` required).
    #[schema(value_type = BTreeMap<String, Object>)]
    routes: serde_json::Map<String, Value>,
}

/// Replace the routing table
///
/// Validates the whole table against the configured models first; on any problem nothing
/// changes and every problem is listed (the first one's path is `param`). Requests in flight
/// finish with the table they started with. Not written back to the config file: a later
/// change of the file replaces it again.
#[utoipa::path(put, path = "/admin/v1/routes", tag = "routing", request_body = RoutesIn,
    responses(
        (status = 200, description = "The routes now in force.", body = RouteList),
        (status = 400, description = "The table was refused; nothing changed."),
    ))]
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
