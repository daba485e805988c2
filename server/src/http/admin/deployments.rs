//! `/admin/v1/deployments`: each deployment's live state (breaker, requests in flight) and its
//! record over a period from the ledger (requests, failures, latency).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::usage::{filter_of, query_of, UsageQuery};
use super::wire::{DeploymentList, DeploymentOut, PercentilesOut};
use super::{reply, store_err};
use crate::clock::HOUR_MS;
use crate::error::ApiError;
use crate::http::AppState;

/// Deployments
///
/// Every configured deployment with its breaker state and requests in flight now, and, over
/// the events in range (the last hour when `from` is not given), its requests, failures,
/// error rate and latency percentiles of its successful answers.
#[utoipa::path(get, path = "/admin/v1/deployments", tag = "routing", params(UsageQuery),
    responses(
        (status = 200, description = "The deployments, by logical model and order.", body = DeploymentList),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_deployments(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let mut f = filter_of(&query_of(q)?)?;
    if f.from_ms.is_none() {
        f.from_ms = Some(state.clock.now_ms() - HOUR_MS);
    }
    let now = state.gateway.now_ms();
    let record = state.store.deployment_summary(&f).await.map_err(store_err)?;
    let mut data = Vec::new();
    for name in &state.gateway.model_names {
        let Some(m) = state.gateway.model(name) else { continue };
        for d in &m.deployments {
            let r = record
                .get(&(name.clone(), d.config.id.clone()))
                .cloned()
                .unwrap_or_default();
            data.push(DeploymentOut {
                id: d.config.id.clone(),
                model: name.clone(),
                provider: d.provider_name.clone(),
                breaker: if d.breaker.is_open(now) { "open" } else { "closed" },
                inflight: d.inflight(),
                requests: r.requests,
                failed: r.failed,
                error_rate: if r.requests > 0 {
                    r.failed as f64 / r.requests as f64
                } else {
                    0.0
                },
                latency: PercentilesOut::from(&r.latency),
            });
        }
    }
    Ok(reply(StatusCode::OK, &DeploymentList::from(data)))
}
