//! Teams: the list with each team's spend against its budget, create, and change.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::{Team, TeamRow};

#[cfg(feature = "ssr")]
use super::keys::{limits_of, text_or_null};
#[cfg(feature = "ssr")]
use crate::backend::{call, editor, get};

/// Every team, with its number of keys and its spend since its budget period began (the last
/// 30 days without a budget), from the ledger's rollups.
#[server(prefix = "/ui/api", endpoint = "teams")]
pub async fn list_teams() -> Result<Vec<TeamRow>, UiError> {
    use crate::types::{Key, List, UsageReport};
    const DAY: i64 = 86_400_000;
    let teams: List<Team> = get("/admin/v1/teams".into()).await?;
    let keys: List<Key> = get("/admin/v1/keys".into()).await?;
    let now = super::now_ms();
    let month_ago = now - now.rem_euclid(DAY) - 29 * DAY;
    // One report per distinct period start (teams share a few), grouped by team.
    let mut spent: std::collections::HashMap<String, UsageReport> = Default::default();
    let mut rows = Vec::with_capacity(teams.data.len());
    for team in teams.data {
        let start = team
            .limits
            .budget
            .as_ref()
            .and_then(|b| b.period_start.clone())
            .unwrap_or_else(|| crate::time::iso(month_ago));
        if !spent.contains_key(&start) {
            let r: UsageReport = get(format!("/admin/v1/usage?from={}&group_by=team", enc(&start))).await?;
            spent.insert(start.clone(), r);
        }
        let spent_usd = spent[&start]
            .groups
            .iter()
            .find(|g| g.group == team.id)
            .map_or_else(|| "0".to_string(), |g| g.totals.cost_usd.clone());
        rows.push(TeamRow {
            keys: keys
                .data
                .iter()
                .filter(|k| k.team_id.as_deref() == Some(team.id.as_str()))
                .count(),
            spent_usd,
            team,
        });
    }
    Ok(rows)
}

/// Creates a team. Blank fields are left out.
#[server(prefix = "/ui/api", endpoint = "create_team")]
pub async fn create_team(
    csrf: String,
    name: String,
    cost_center: String,
    budget_usd: String,
    period: String,
    rpm: String,
) -> Result<Team, UiError> {
    editor(&csrf)?;
    let mut body = serde_json::json!({
        "name": name.trim(),
        "limits": limits_of(&budget_usd, &period, "", &rpm, "", "")?,
    });
    if !cost_center.trim().is_empty() {
        body["cost_center"] = cost_center.trim().into();
    }
    call(http::Method::POST, "/admin/v1/teams".into(), Some(body)).await
}

/// Changes a team's budget and limits: every field of the form is sent, a blank one clears it.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/ui/api", endpoint = "update_team")]
pub async fn update_team(
    csrf: String,
    id: String,
    cost_center: String,
    budget_usd: String,
    period: String,
    soft_limit_pct: String,
    rpm: String,
    tpm: String,
    max_concurrent: String,
    // A checkbox: sent only when ticked.
    store_bodies: Option<String>,
) -> Result<Team, UiError> {
    // Every error names the team, so the page shows it next to the field of this team's form.
    editor(&csrf).map_err(|e| e.on(&id))?;
    let limits =
        limits_of(&budget_usd, &period, &soft_limit_pct, &rpm, &tpm, &max_concurrent).map_err(|e| e.on(&id))?;
    let body = serde_json::json!({
        "cost_center": text_or_null(&cost_center),
        "limits": limits,
        "store_bodies": store_bodies.is_some(),
    });
    call(http::Method::PATCH, format!("/admin/v1/teams/{}", enc(&id)), Some(body))
        .await
        .map_err(|e| e.on(&id))
}
