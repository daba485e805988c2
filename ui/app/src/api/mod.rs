//! The dashboard's server functions: each checks the session (and, for changes, the role and
//! the anti-forgery token), then calls the admin API. Mounted under `/ui/api`.

use leptos::prelude::*;

mod audit;
mod keys;
mod providers;
mod requests;
mod routing;
mod teams;
mod usage;

pub use audit::*;
pub use keys::*;
pub use providers::*;
pub use requests::*;
pub use routing::*;
pub use teams::*;
pub use usage::*;

use crate::error::UiError;
use crate::types::{Key, Overview, Viewer};

#[cfg(feature = "ssr")]
use crate::backend::{get, session};

/// The periods the overview offers, with their length in hours.
pub const PERIODS: &[(&str, &str, i64)] = &[
    ("24h", "Last 24 hours", 24),
    ("7d", "Last 7 days", 24 * 7),
    ("30d", "Last 30 days", 24 * 30),
    ("365d", "Last 365 days", 24 * 365),
];

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[server(prefix = "/ui/api", endpoint = "whoami")]
pub async fn whoami() -> Result<Viewer, UiError> {
    Ok(session()?.viewer)
}

#[server(prefix = "/ui/api", endpoint = "overview")]
pub async fn load_overview(period: String) -> Result<Overview, UiError> {
    use crate::types::{List, Summary, UsageReport};
    const HOUR: i64 = 3_600_000;
    let (name, _, hours) = PERIODS.iter().find(|p| p.0 == period).copied().unwrap_or(PERIODS[1]);
    let now = now_ms();
    // Whole hours, the current one included: the admin API then answers from its hourly rollups.
    let to = now - now.rem_euclid(HOUR) + HOUR;
    let from = to - hours * HOUR;
    let range = format!("from={from}&to={to}");
    let bucket = if hours <= 48 { "hour" } else { "day" };
    let summary: Summary = get(format!("/admin/v1/usage/summary?{range}")).await?;
    let series: UsageReport = get(format!("/admin/v1/usage?{range}&group_by={bucket}")).await?;
    let keys: UsageReport = get(format!("/admin/v1/usage?{range}&group_by=key")).await?;
    let teams: UsageReport = get(format!("/admin/v1/usage?{range}&group_by=team")).await?;
    let models: UsageReport = get(format!("/admin/v1/usage?{range}&group_by=model")).await?;
    let all: List<Key> = get("/admin/v1/keys".into()).await?;
    let top = |mut g: Vec<crate::types::Group>| {
        g.sort_by(|a, b| {
            b.totals
                .cost_nanos
                .cmp(&a.totals.cost_nanos)
                .then(b.totals.requests.cmp(&a.totals.requests))
        });
        g.truncate(5);
        g
    };
    let alerts: List<crate::types::Alert> = get("/admin/v1/alerts?limit=10".into()).await?;
    let top_keys = top(keys.groups);
    let named = |id: &str| {
        all.data
            .iter()
            .find(|k| k.id == id)
            .map(|k| (k.id.clone(), k.name.clone()))
    };
    let key_names = top_keys
        .iter()
        .filter_map(|g| named(&g.group))
        .chain(
            alerts
                .data
                .iter()
                .filter_map(|a| a.scope.strip_prefix("key:").and_then(named)),
        )
        .collect();
    let step = if bucket == "hour" { HOUR } else { 24 * HOUR };
    let filled = fill(series.groups, from, to, step);
    Ok(Overview {
        period: name.to_string(),
        summary,
        series: filled,
        top_keys,
        top_teams: top(teams.groups),
        top_models: top(models.groups),
        key_names,
        alerts: alerts.data,
    })
}

/// Every bucket of `[from, to)`, empty ones too, so a chart's axis is time.
#[cfg(feature = "ssr")]
pub(crate) fn fill(groups: Vec<crate::types::Group>, from: i64, to: i64, step: i64) -> Vec<crate::types::Group> {
    let mut filled = Vec::new();
    let mut t = from - from.rem_euclid(step);
    while t < to {
        let label = crate::time::iso(t);
        let found = groups.iter().find(|g| g.group == label).cloned();
        filled.push(found.unwrap_or(crate::types::Group {
            group: label,
            totals: Default::default(),
        }));
        t += step;
    }
    filled
}

#[cfg(feature = "ssr")]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
