//! `/admin/v1/requests`: the request log, the latest usage events with every field, newest
//! first, filtered and paged; one by its event id; the bodies stored for one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::usage::{filter_of, UsageQuery};
use super::wire::{ExportRow, RequestLog, RequestLogTag};
use super::{next_cursor, page_of, reply, store_err};
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::bodies::RequestBodies;
use crate::records::usage::Outcome;
use crate::store::RequestFilter;

/// Which requests; times as for usage reports. Unknown parameters are refused (400).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestQuery {
    /// Inclusive start.
    from: Option<String>,
    /// Exclusive end.
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    /// The logical model that answered.
    model: Option<String>,
    /// The route that chose the model.
    route: Option<String>,
    /// `success`, `upstream_error`, `client_disconnect` or `rejected`; `failed` for any but `success`.
    outcome: Option<String>,
    /// The client's `x-request-id` (or the one the gateway made and sent back).
    request_id: Option<String>,
    /// Only requests a route decided (`true`).
    routed: Option<bool>,
    /// At most this many (1 to 1000, 50 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
}

/// The request log
///
/// The latest usage events matching every filter, newest first, each with every field of the
/// ledger (key, route, tier and reason, model and deployment, tokens, cost, latency, cache,
/// outcome, request id). `next`, when set, is the `before` of the next page.
#[utoipa::path(get, path = "/admin/v1/requests", tag = "usage", params(RequestQuery),
    responses(
        (status = 200, description = "The requests.", body = RequestLog),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_requests(
    State(state): State<Arc<AppState>>,
    q: Result<Query<RequestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))?;
    let usage = filter_of(&UsageQuery {
        from: q.from,
        to: q.to,
        key_id: q.key_id,
        team_id: q.team_id,
        model: q.model,
        tag: None,
        cost_center: None,
        group_by: None,
        format: None,
    })?;
    let (outcome, failed) = match q.outcome.as_deref() {
        None => (None, false),
        Some("failed") => (None, true),
        Some(o) if Outcome::parse(o).is_some() => (Some(o.to_string()), false),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "outcome",
                "must be success, upstream_error, client_disconnect, rejected or failed",
            ))
        }
    };
    let (limit, before) = page_of(q.limit, 50, q.before.as_deref())?;
    let f = RequestFilter {
        usage,
        outcome,
        route: q.route,
        request_id: q.request_id,
        failed,
        routed: q.routed.unwrap_or(false),
    };
    let rows = state
        .store
        .latest_requests(&f, before, limit)
        .await
        .map_err(store_err)?;
    let next = next_cursor(rows.len(), limit, rows.last().map(|e| (e.ts_ms, e.event_id.as_str())));
    Ok(reply(
        StatusCode::OK,
        &RequestLog {
            object: RequestLogTag::Tag,
            data: rows.iter().map(ExportRow::from).collect(),
            next,
        },
    ))
}

/// One logged request's event id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("event_id"), parameter_in = Path)]
pub(super) struct EventId(
    /// The event's id (`evt_…`).
    String,
);

/// One request
///
/// The usage event with this id, with every field.
#[utoipa::path(get, path = "/admin/v1/requests/{event_id}", tag = "usage", params(EventId),
    responses(
        (status = 200, description = "The request.", body = ExportRow),
        (status = 404, description = "No event has this id."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn get_request(
    State(state): State<Arc<AppState>>,
    Path(EventId(id)): Path<EventId>,
) -> Result<Response, ApiError> {
    match state.store.usage_event(&id).await.map_err(store_err)? {
        Some(e) => Ok(reply(StatusCode::OK, &ExportRow::from(&e))),
        None => Err(ApiError::not_found(format!("No request with event id `{id}`."))),
    }
}

/// One request's stored bodies
///
/// The prompt and answer stored for this request, redacted and cut as `[request_log]` says.
/// Bodies are stored only for keys, teams and routes with `store_bodies` on, and only until
/// their retention ends.
#[utoipa::path(get, path = "/admin/v1/requests/{event_id}/bodies", tag = "usage", params(EventId),
    responses(
        (status = 200, description = "The stored bodies.", body = RequestBodies),
        (status = 404, description = "No bodies are stored for this request (none were asked for, or they expired)."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn get_request_bodies(
    State(state): State<Arc<AppState>>,
    Path(EventId(id)): Path<EventId>,
) -> Result<Response, ApiError> {
    let oldest = state
        .bodies
        .as_ref()
        .map_or(i64::MAX, |r| r.oldest_kept(state.clock.now_ms()));
    match state.store.request_bodies(&id, oldest).await.map_err(store_err)? {
        Some(b) => Ok(reply(StatusCode::OK, &b)),
        None => Err(ApiError::not_found(format!(
            "No bodies are stored for request `{id}`: bodies are stored only where its key, team or route \
             opts in (store_bodies), and only until their retention ends."
        ))),
    }
}
