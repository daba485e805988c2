//! What the routing page reads beyond the table and its statistics: a decision explained for a
//! pasted prompt (the same decision `POST /v1/route` makes), and the tier and intent mix over
//! time from the hourly rollups.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::usage::{filter_of, query_of, UsageQuery};
use super::wire::{MixOut, MixRow, MixTag};
use super::{body, reply, store_err};
use crate::error::ApiError;
use crate::http::AppState;
use crate::proxy::pipeline::{self, RouteCall};
use crate::proxy::request::ChatRequest;
use crate::records::keys::Prefer;
use crate::store::GroupBy;

/// A chat body to route (as sent to `/v1/chat/completions`: `model` names the route).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct ExplainIn {
    /// The route.
    #[allow(dead_code)]
    model: String,
    /// The conversation; every other chat field is accepted too.
    #[schema(value_type = Vec<Object>)]
    #[allow(dead_code)]
    messages: Vec<Value>,
}

/// The caller's preference, as the `x-switchyard-prefer` header would give it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainQuery {
    /// `cost`, `quality` or `balanced`.
    #[param(value_type = Option<Prefer>)]
    prefer: Option<String>,
}

/// Explain a routing decision
///
/// The decision `POST /v1/route` makes for this body (the route, tier, model, intent, score,
/// threshold and the reason in words), for a caller without a key; it calls no model and
/// leaves no usage event. The dashboard's routing playground uses it.
#[utoipa::path(post, path = "/admin/v1/routes/explain", tag = "routing", params(ExplainQuery),
    request_body = ExplainIn,
    responses(
        (status = 200, description = "The decision, as `POST /v1/route` answers it.", body = Object),
        (status = 400, description = "The body is not a chat request, or `model` is not a route."),
    ))]
pub(super) async fn explain(
    State(state): State<Arc<AppState>>,
    q: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))?;
    let prefer = match q.prefer.as_deref() {
        None | Some("") => None,
        Some(p) => Some(
            Prefer::parse(p)
                .ok_or_else(|| ApiError::invalid_param("prefer", "must be `cost`, `quality` or `balanced`"))?,
        ),
    };
    let v: Value = body(req).await?;
    let Value::Object(obj) = v else {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    };
    let request = ChatRequest::from_body(obj)?;
    let call = RouteCall {
        request,
        principal: None,
        path_route: None,
        prefer,
    };
    let decision = pipeline::route(&state.app, call).await.map_err(|f| f.error)?.decision;
    let mut out = serde_json::to_value(&decision).unwrap_or_default();
    out["object"] = Value::String("route.decision".into());
    Ok(reply(StatusCode::OK, &out))
}

/// Routing mix over time
///
/// Routed requests per hour or day (`group_by`, `day` by default) by tier and by intent, from
/// the hourly rollups. Only `from` and `to` filter it: the mix is kept for all traffic.
#[utoipa::path(get, path = "/admin/v1/routes/mix", tag = "routing", params(UsageQuery),
    responses(
        (status = 200, description = "The mix.", body = MixOut),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn mix(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    for (name, set) in [
        ("key_id", f.key_id.is_some()),
        ("team_id", f.team_id.is_some()),
        ("model", f.model.is_some()),
        ("tag", f.tag.is_some()),
        ("cost_center", f.cost_center.is_some()),
    ] {
        if set {
            return Err(ApiError::invalid_param(
                name,
                "the mix is kept for all traffic: filter by time only",
            ));
        }
    }
    let group = match q.group_by.as_deref() {
        None | Some("day") => GroupBy::Day,
        Some("hour") => GroupBy::Hour,
        Some(_) => return Err(ApiError::invalid_param("group_by", "must be `hour` or `day`")),
    };
    let rows = state.store.mix_series(&f, group).await.map_err(store_err)?;
    let of = |dim: &str| -> Vec<MixRow> {
        rows.iter()
            .filter(|r| r.1 == dim)
            .map(|(t, _, label, n)| MixRow {
                group: crate::clock::iso8601(*t),
                label: label.clone(),
                requests: *n,
            })
            .collect()
    };
    Ok(reply(
        StatusCode::OK,
        &MixOut {
            object: MixTag::Tag,
            group_by: if group == GroupBy::Hour { "hour" } else { "day" },
            tiers: of("tier"),
            intents: of("intent"),
        },
    ))
}
