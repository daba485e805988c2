//! `/admin/v1/usage`: usage reports and re-pricing.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, check_label, ok_json, store_err};
use crate::clock::{iso8601, parse_time};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::pricing::Nanos;
use crate::store::{GroupBy, Totals, UsageFilter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    tag: Option<String>,
    cost_center: Option<String>,
    group_by: Option<String>,
    pub(super) format: Option<String>,
}

pub(super) fn filter_of(q: &UsageQuery) -> Result<UsageFilter, ApiError> {
    let t = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_time(s).map_err(|e| ApiError::invalid_param(name, e)))
            .transpose()
    };
    let f = UsageFilter {
        from_ms: t("from", &q.from)?,
        to_ms: t("to", &q.to)?,
        key_id: q.key_id.clone(),
        team_id: q.team_id.clone(),
        model: q.model.clone(),
        tag: q.tag.clone(),
        cost_center: q.cost_center.clone(),
    };
    if let (Some(a), Some(b)) = (f.from_ms, f.to_ms) {
        if a > b {
            return Err(ApiError::invalid_param("to", "must not be before `from`"));
        }
    }
    if let Some(tag) = &f.tag {
        check_label("tag", tag)?;
    }
    Ok(f)
}

pub(super) fn query_of(
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<UsageQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))
}

pub(super) fn totals_json(t: &Totals) -> Value {
    json!({
        "requests": t.requests,
        "errors": t.errors,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "cached_tokens": t.cached_tokens,
        "cost_usd": Nanos(t.cost_nanos).to_string(),
        "cost_nanos": t.cost_nanos,
    })
}

/// Usage totals, optionally grouped by `hour`, `day`, `key`, `team` or `model`.
pub(super) async fn usage(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let group = match q.group_by.as_deref() {
        None => None,
        Some(g) => Some(
            GroupBy::parse(g)
                .ok_or_else(|| ApiError::invalid_param("group_by", "must be one of hour, day, key, team, model"))?,
        ),
    };
    let (totals, groups) = match group {
        None => (state.store.usage_totals(&f).await.map_err(store_err)?, Vec::new()),
        Some(g) => {
            let rows = state.store.usage_grouped(&f, g).await.map_err(store_err)?;
            let mut t = Totals::default();
            for (_, r) in &rows {
                t.add(r);
            }
            let groups = rows
                .into_iter()
                .map(|(k, r)| {
                    let mut v = totals_json(&r);
                    let label = match g {
                        GroupBy::Hour | GroupBy::Day => k.parse::<i64>().map(iso8601).unwrap_or(k),
                        _ => k,
                    };
                    v["group"] = Value::String(label);
                    v
                })
                .collect();
            (t, groups)
        }
    };
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "object": "usage",
            "from": f.from_ms.map(iso8601),
            "to": f.to_ms.map(iso8601),
            "group_by": q.group_by,
            "totals": totals_json(&totals),
            "groups": groups,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RepriceIn {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Re-prices stored events from their tokens with the prices in force at each event's time.
pub(super) async fn reprice(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let b: RepriceIn = body(req).await?;
    let f = filter_of(&UsageQuery {
        from: b.from,
        to: b.to,
        key_id: b.key_id,
        team_id: b.team_id,
        model: b.model,
        tag: None,
        cost_center: None,
        group_by: None,
        format: None,
    })?;
    let book = state.prices.clone();
    let report = state
        .store
        .reprice(&f, &|m, d, ms| book.price_at(m, d, ms), b.dry_run)
        .await
        .map_err(store_err)?;
    tracing::info!(?report, "usage re-priced");
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "object": "usage.reprice",
            "dry_run": report.dry_run,
            "events": report.events,
            "changed": report.changed,
            "unpriced": report.unpriced,
            "cost_before_usd": Nanos(report.cost_before_nanos).to_string(),
            "cost_after_usd": Nanos(report.cost_after_nanos).to_string(),
            "cost_before_nanos": report.cost_before_nanos,
            "cost_after_nanos": report.cost_after_nanos,
        }),
    ))
}
