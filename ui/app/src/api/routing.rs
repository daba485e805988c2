//! Routing: the table in force, the tier and intent mix over time, per-route statistics (A/B
//! arms, shadow agreement, cascade escalations), the latest decisions, and the playground.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::{Explained, LoggedRequest, RoutingPage};

#[cfg(feature = "ssr")]
use crate::backend::{call, fail, get};

#[server(prefix = "/ui/api", endpoint = "routing")]
pub async fn load_routing(period: String) -> Result<RoutingPage, UiError> {
    use crate::types::{List, MixRow, RouteRow, RouteStatsRow};
    #[derive(serde::Deserialize)]
    struct Mix {
        tiers: Vec<MixRow>,
        intents: Vec<MixRow>,
    }
    const HOUR: i64 = 3_600_000;
    let (name, _, hours) = super::PERIODS
        .iter()
        .find(|p| p.0 == period)
        .copied()
        .unwrap_or(super::PERIODS[1]);
    let now = super::now_ms();
    let to = now - now.rem_euclid(HOUR) + HOUR;
    let from = to - hours * HOUR;
    let range = format!("from={from}&to={to}");
    let bucket = if hours <= 48 { "hour" } else { "day" };
    let routes: List<RouteRow> = get("/admin/v1/routes".into()).await?;
    let stats: List<RouteStatsRow> = get(format!("/admin/v1/routes/stats?{range}")).await?;
    let mix: Mix = get(format!("/admin/v1/routes/mix?{range}&group_by={bucket}")).await?;
    let step = if bucket == "hour" { HOUR } else { 24 * HOUR };
    let buckets = super::fill(Vec::new(), from, to, step)
        .into_iter()
        .map(|g| g.group)
        .collect();
    Ok(RoutingPage {
        period: name.to_string(),
        routes: routes.data,
        stats: stats.data,
        buckets,
        tiers: mix.tiers,
        intents: mix.intents,
    })
}

/// The latest 25 routed requests, newest first.
#[server(prefix = "/ui/api", endpoint = "decisions")]
pub async fn load_decisions() -> Result<Vec<LoggedRequest>, UiError> {
    let log: crate::types::RequestPage = get("/admin/v1/requests?routed=true&limit=25".into()).await?;
    Ok(log.data)
}

/// The decision the route would make for `prompt` (one user message), and why; calls no model.
#[server(prefix = "/ui/api", endpoint = "explain")]
pub async fn explain_route(route: String, prompt: String, prefer: String) -> Result<Explained, UiError> {
    if prompt.trim().is_empty() {
        return Err(fail(UiError {
            message: "Paste a prompt to route.".into(),
            param: Some("prompt".into()),
            status: 400,
            target: None,
        }));
    }
    let body = serde_json::json!({
        "model": route,
        "messages": [{"role": "user", "content": prompt}],
    });
    let q = if prefer.is_empty() {
        String::new()
    } else {
        format!("?prefer={}", enc(&prefer))
    };
    call(http::Method::POST, format!("/admin/v1/routes/explain{q}"), Some(body)).await
}
