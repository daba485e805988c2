//! `/admin/v1/usage`: usage reports and re-pricing.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::wire::{
    Dollars, Iso, LabelCount, PercentilesOut, RepriceOut, RepriceTag, SummaryTag, TotalsOut, UsageGroup, UsageReport,
    UsageSummary, UsageTag,
};
use super::{body, check_label, reply, store_err, Time};
use crate::clock::{iso8601, parse_time};
use crate::error::ApiError;
use crate::http::AppState;
use crate::store::{GroupBy, Totals, UsageFilter};

/// The export's formats.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "lowercase")]
pub(super) enum ExportFormat {
    Csv,
    Json,
}

/// Which usage events a report, an export or route statistics cover. Times are a date
/// (`YYYY-MM-DD`, midnight UTC), an RFC 3339 time (any offset), or integer milliseconds since 1970.
/// Unknown parameters are refused (400).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UsageQuery {
    /// Inclusive start.
    #[param(example = "2026-11-01")]
    pub(super) from: Option<String>,
    /// Exclusive end; must not be before `from`.
    #[param(example = "2026-12-01T00:00:00Z")]
    pub(super) to: Option<String>,
    /// Only events of this key.
    pub(super) key_id: Option<String>,
    /// Only events of this team.
    pub(super) team_id: Option<String>,
    /// Only events for this logical model.
    pub(super) model: Option<String>,
    /// Only events whose key carried this tag.
    pub(super) tag: Option<String>,
    /// Only events of this cost center.
    pub(super) cost_center: Option<String>,
    /// Group the totals (usage reports only; accepted and ignored elsewhere).
    #[param(value_type = Option<GroupBy>)]
    pub(super) group_by: Option<String>,
    /// The export's format, `csv` by default (exports only; accepted and ignored elsewhere).
    #[param(value_type = Option<ExportFormat>)]
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

/// Usage totals
///
/// Totals over usage events matching every filter given, optionally grouped by `hour`, `day`,
/// `key`, `team` or `model`.
#[utoipa::path(get, path = "/admin/v1/usage", tag = "usage", params(UsageQuery),
    responses(
        (status = 200, description = "The report.", body = UsageReport),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn usage_report(
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
                .map(|(k, r)| UsageGroup {
                    group: match g {
                        GroupBy::Hour | GroupBy::Day => k.parse::<i64>().map(iso8601).unwrap_or(k),
                        _ => k,
                    },
                    totals: TotalsOut::from(&r),
                })
                .collect();
            (t, groups)
        }
    };
    Ok(reply(
        StatusCode::OK,
        &UsageReport {
            object: UsageTag::Tag,
            from: f.from_ms.map(Iso::at),
            to: f.to_ms.map(Iso::at),
            group_by: q.group_by,
            totals: TotalsOut::from(&totals),
            groups,
        },
    ))
}

/// Usage summary
///
/// Totals with savings (against each route's strong model, and from the cache) and tracked
/// versus estimated cost, latency and time-to-first-token percentiles, errors by kind, and the
/// routing tier and intent mix, over the events matching every filter. A filter by whole hours
/// alone reads the hourly rollups, so a year answers quickly.
#[utoipa::path(get, path = "/admin/v1/usage/summary", tag = "usage", params(UsageQuery),
    responses(
        (status = 200, description = "The summary.", body = UsageSummary),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn usage_summary(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let f = filter_of(&query_of(q)?)?;
    let s = state.store.usage_summary(&f).await.map_err(store_err)?;
    let labels = |v: &[(String, i64)]| {
        v.iter()
            .map(|(label, requests)| LabelCount {
                label: label.clone(),
                requests: *requests,
            })
            .collect()
    };
    Ok(reply(
        StatusCode::OK,
        &UsageSummary {
            object: SummaryTag::Tag,
            from: f.from_ms.map(Iso::at),
            to: f.to_ms.map(Iso::at),
            totals: TotalsOut::from(&s.totals),
            latency: PercentilesOut::from(&s.latency),
            time_to_first_token: PercentilesOut::from(&s.ttft),
            errors: labels(&s.errors),
            tiers: labels(&s.tiers),
            intents: labels(&s.intents),
        },
    ))
}

/// Which events to re-price; every field is optional (no bounds: all history).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RepriceIn {
    /// Inclusive start.
    #[schema(value_type = Option<Time>)]
    from: Option<String>,
    /// Exclusive end.
    #[schema(value_type = Option<Time>)]
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    /// Compute the report without changing anything.
    #[serde(default)]
    dry_run: bool,
}

/// Re-price stored usage
///
/// Recomputes the cost of every event in range from its stored tokens with the price in force
/// at the event's time (the price table loaded at start, then inline config prices), updating
/// events, their `price_version` and the hourly rollups. Budget spend already settled is not
/// changed; billing events already delivered are not re-sent.
#[utoipa::path(post, path = "/admin/v1/usage/reprice", tag = "billing", request_body = RepriceIn,
    responses(
        (status = 200, description = "What was found and changed.", body = RepriceOut),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn reprice_usage(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
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
    Ok(reply(
        StatusCode::OK,
        &RepriceOut {
            object: RepriceTag::Tag,
            dry_run: report.dry_run,
            events: report.events,
            changed: report.changed,
            unpriced: report.unpriced,
            cost_before_usd: Dollars::of(report.cost_before_nanos),
            cost_after_usd: Dollars::of(report.cost_after_nanos),
            cost_before_nanos: report.cost_before_nanos,
            cost_after_nanos: report.cost_after_nanos,
        },
    ))
}
