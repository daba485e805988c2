//! `/admin/v1/alerts`, `/admin/v1/billing` and `/admin/v1/prices`: budget alerts, the billing outbox, the price table.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::wire::{
    Alert, AlertList, BillingOutbox, BillingRequeue, DeploymentPrices, Iso, OutboxTag, PricePointOut, PriceVersionOut,
    Prices, PricesTag, RequeueTag,
};
use super::{reply, store_err, Time};
use crate::clock::parse_time;
use crate::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    /// Only alerts raised at or after this time.
    #[param(value_type = Option<Time>)]
    since: Option<String>,
    /// At most this many alerts.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Budget alerts
///
/// Stored budget alerts, newest first: at most one `soft` and one `hard` alert per scope and
/// period.
#[utoipa::path(get, path = "/admin/v1/alerts", tag = "billing", params(AlertsQuery),
    responses(
        (status = 200, description = "The alerts.", body = AlertList),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_alerts(
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
    let data: Vec<Alert> = rows.iter().map(Alert::from).collect();
    Ok(reply(StatusCode::OK, &AlertList::from(data)))
}

/// Billing outbox status
///
/// How many billing events wait for delivery to the webhook, how many the receiver refused for
/// good, the oldest pending one and the last delivery error.
#[utoipa::path(get, path = "/admin/v1/billing", tag = "billing",
    responses(
        (status = 200, description = "The outbox.", body = BillingOutbox),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn billing_status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let s = state.store.billing_status().await.map_err(store_err)?;
    Ok(reply(
        StatusCode::OK,
        &BillingOutbox {
            object: OutboxTag::Tag,
            pending: s.pending,
            rejected: s.rejected,
            delivered_retained: s.delivered_retained,
            oldest_pending: s.oldest_pending_ms.map(Iso::at),
            max_attempts: s.max_attempts,
            last_error: s.last_error,
        },
    ))
}

/// Re-queue rejected billing events
///
/// Puts every billing event the receiver refused for good back in the delivery queue, with its
/// attempts reset; use it after fixing the cause (the billable metric, the customer mapping).
/// No request body is read.
#[utoipa::path(post, path = "/admin/v1/billing/requeue", tag = "billing",
    responses(
        (status = 200, description = "How many events were put back.", body = BillingRequeue),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn billing_requeue(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let n = state.store.requeue_rejected_billing().await.map_err(store_err)?;
    tracing::info!(events = n, "rejected billing events re-queued");
    Ok(reply(
        StatusCode::OK,
        &BillingRequeue {
            object: RequeueTag::Tag,
            requeued: n,
        },
    ))
}

/// Price table
///
/// The price table's versions and every known deployment's prices over time.
#[utoipa::path(get, path = "/admin/v1/prices", tag = "billing",
    responses((status = 200, description = "The prices.", body = Prices)))]
pub(super) async fn list_prices(State(state): State<Arc<AppState>>) -> Response {
    let deployments = state
        .prices
        .all()
        .into_iter()
        .map(|(d, s)| DeploymentPrices {
            deployment: d,
            prices: s
                .points()
                .iter()
                .map(|p| PricePointOut {
                    version: p.version.to_string(),
                    effective: (p.from_ms != i64::MIN).then(|| Iso::at(p.from_ms)),
                    input_per_mtok: p.price.input.usd_per_mtok(),
                    output_per_mtok: p.price.output.usd_per_mtok(),
                    cached_input_per_mtok: p.price.cached_input.usd_per_mtok(),
                })
                .collect(),
        })
        .collect();
    let versions = state
        .prices
        .versions
        .iter()
        .map(|v| PriceVersionOut {
            id: v.id.clone(),
            effective: Iso::at(v.effective_ms),
            note: v.note.clone(),
        })
        .collect();
    reply(
        StatusCode::OK,
        &Prices {
            object: PricesTag::Tag,
            versions,
            deployments,
        },
    )
}
