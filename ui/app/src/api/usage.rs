//! Usage: the ledger filtered by period, key, team, model, tag and cost center, grouped by hour,
//! day, key, team or model; the exports of the same filter are downloaded from `/ui/export`.

use leptos::prelude::*;

use crate::error::UiError;
use crate::types::{UsagePage, UsageQuery};

#[cfg(feature = "ssr")]
use crate::backend::{fail, get};

/// Hour groups are offered up to this many days; longer ranges are grouped by day.
pub const MAX_HOURLY_DAYS: i64 = 14;

/// The admin API's filter query for `q`: `to` is a whole day, so its next midnight.
#[cfg(feature = "ssr")]
fn filter_of(q: &UsageQuery) -> Result<String, UiError> {
    use super::enc;
    let mut parts = Vec::new();
    if !q.from.trim().is_empty() {
        parts.push(format!("from={}", enc(q.from.trim())));
    }
    if !q.to.trim().is_empty() {
        let day = crate::time::day_number(q.to.trim()).ok_or_else(|| {
            fail(UiError {
                message: "must be a date, YYYY-MM-DD".into(),
                param: Some("to".into()),
                status: 400,
                target: None,
            })
        })?;
        parts.push(format!("to={}", (day + 1) * 86_400_000));
    }
    for (name, v) in [
        ("key_id", &q.key_id),
        ("team_id", &q.team_id),
        ("model", &q.model),
        ("tag", &q.tag),
        ("cost_center", &q.cost_center),
    ] {
        if !v.trim().is_empty() {
            parts.push(format!("{name}={}", enc(v.trim())));
        }
    }
    Ok(parts.join("&"))
}

#[server(prefix = "/ui/api", endpoint = "usage")]
pub async fn load_usage(q: UsageQuery) -> Result<UsagePage, UiError> {
    use crate::types::UsageReport;
    let filter = filter_of(&q)?;
    let mut group_by = match q.group_by.as_str() {
        "" => "day".to_string(),
        g => g.to_string(),
    };
    let mut note = None;
    if group_by == "hour" {
        let days = |s: &str| crate::time::day_number(s.trim());
        let now_day = super::now_ms().div_euclid(86_400_000);
        let from = days(&q.from);
        let to = days(&q.to).unwrap_or(now_day);
        if from.is_none_or(|f| to - f >= MAX_HOURLY_DAYS) {
            group_by = "day".into();
            note = Some(format!(
                "Grouped by day: hours are offered for ranges of up to {MAX_HOURLY_DAYS} days."
            ));
        }
    }
    let sep = if filter.is_empty() { "" } else { "&" };
    let report: UsageReport = get(format!(
        "/admin/v1/usage?{filter}{sep}group_by={}",
        super::enc(&group_by)
    ))
    .await?;
    Ok(UsagePage {
        report,
        group_by,
        filter,
        note,
    })
}
