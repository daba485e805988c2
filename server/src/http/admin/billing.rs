//! `/admin/v1/alerts`, `/admin/v1/billing` and `/admin/v1/prices`: budget alerts, the billing outbox, the price table.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok_json, store_err};
use crate::clock::{iso8601, parse_time};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::pricing::Nanos;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    since: Option<String>,
    limit: Option<i64>,
}

/// Stored budget alerts, newest first.
pub(super) async fn alerts(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))?;
    let since = match q.since.as_deref() {
        Some(s) => parse_time(s).map_err(|e| ApiError::invalid_param("since", e))?,
        None => 0,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "must be 1..=1000"));
    }
    let rows = state.store.list_alerts(since, limit).await.map_err(store_err)?;
    let data: Vec<Value> = rows
        .iter()
        .map(|a| {
            json!({
                "scope": a.scope,
                "kind": a.kind,
                "period_start": iso8601(a.period_start),
                "at": iso8601(a.ts_ms),
                "spent_usd": Nanos(a.spent_nanos).to_string(),
                "limit_usd": Nanos(a.limit_nanos).to_string(),
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

/// The billing outbox: pending and retained delivered events, the oldest pending, the last error.
pub(super) async fn billing_status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let s = state.store.billing_status().await.map_err(store_err)?;
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "object": "billing.outbox",
            "pending": s.pending,
            "rejected": s.rejected,
            "delivered_retained": s.delivered_retained,
            "oldest_pending": s.oldest_pending_ms.map(iso8601),
            "max_attempts": s.max_attempts,
            "last_error": s.last_error,
        }),
    ))
}

/// Puts billing events the receiver refused back in the queue, after the cause was fixed.
pub(super) async fn billing_requeue(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let n = state.store.requeue_rejected_billing().await.map_err(store_err)?;
    tracing::info!(events = n, "rejected billing events re-queued");
    Ok(ok_json(
        StatusCode::OK,
        json!({"object": "billing.requeue", "requeued": n}),
    ))
}

/// The price table's versions and every deployment's prices over time.
pub(super) async fn prices(State(state): State<Arc<AppState>>) -> Response {
    let per_mtok = |p: crate::money::pricing::PicoPerToken| p.usd_per_mtok();
    let deployments: Vec<Value> = state
        .prices
        .all()
        .into_iter()
        .map(|(d, s)| {
            let points: Vec<Value> = s
                .points()
                .iter()
                .map(|p| {
                    json!({
                        "version": &*p.version,
                        "effective": (p.from_ms != i64::MIN).then(|| iso8601(p.from_ms)),
                        "input_per_mtok": per_mtok(p.price.input),
                        "output_per_mtok": per_mtok(p.price.output),
                        "cached_input_per_mtok": per_mtok(p.price.cached_input),
                    })
                })
                .collect();
            json!({"deployment": d, "prices": points})
        })
        .collect();
    let versions: Vec<Value> = state
        .prices
        .versions
        .iter()
        .map(|v| json!({"id": v.id, "effective": iso8601(v.effective_ms), "note": v.note}))
        .collect();
    ok_json(
        StatusCode::OK,
        json!({"object": "prices", "versions": versions, "deployments": deployments}),
    )
}
