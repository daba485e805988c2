//! The dashboard's server functions: each checks the session (and, for changes, the role and
//! the anti-forgery token), then calls the admin API. Mounted under `/ui/api`.

use leptos::prelude::*;

use crate::error::UiError;
use crate::types::{Created, Key, Overview, Viewer};

#[cfg(feature = "ssr")]
use crate::backend::{backend, call, editor, fail, get, plain_form, session};

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
    use crate::types::{List, UsageReport};
    let (name, _, hours) = PERIODS.iter().find(|p| p.0 == period).copied().unwrap_or(PERIODS[1]);
    let now = now_ms();
    let from = now - hours * 3_600_000;
    let range = format!("from={from}&to={}", now + 1);
    let bucket = if hours <= 48 { "hour" } else { "day" };
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
    let top_keys = top(keys.groups);
    let key_names = top_keys
        .iter()
        .filter_map(|g| {
            all.data
                .iter()
                .find(|k| k.id == g.group)
                .map(|k| (k.id.clone(), k.name.clone()))
        })
        .collect();
    // Every bucket of the period, empty ones too, so the chart's axis is time.
    let step = if bucket == "hour" { 3_600_000 } else { 86_400_000 };
    let mut filled = Vec::new();
    let mut t = from - from.rem_euclid(step);
    while t <= now {
        let label = crate::time::iso(t);
        let found = series.groups.iter().find(|g| g.group == label).cloned();
        filled.push(found.unwrap_or(crate::types::Group {
            group: label,
            totals: Default::default(),
        }));
        t += step;
    }
    Ok(Overview {
        period: name.to_string(),
        totals: series.totals,
        series: filled,
        top_keys,
        top_teams: top(teams.groups),
        top_models: top(models.groups),
        key_names,
    })
}

#[cfg(feature = "ssr")]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[server(prefix = "/ui/api", endpoint = "keys")]
pub async fn list_keys(search: String, status: String) -> Result<Vec<Key>, UiError> {
    use crate::types::List;
    let all: List<Key> = get("/admin/v1/keys".into()).await?;
    let needle = search.trim().to_lowercase();
    Ok(all
        .data
        .into_iter()
        .rev()
        .filter(|k| status.is_empty() || k.status == status)
        .filter(|k| {
            needle.is_empty()
                || k.name.to_lowercase().contains(&needle)
                || k.id.contains(&needle)
                || k.prefix.to_lowercase().contains(&needle)
                || k.tags.iter().any(|t| t.to_lowercase().contains(&needle))
        })
        .collect())
}

/// Creates a key. Blank fields are left out; the budget needs an amount and a period.
#[server(prefix = "/ui/api", endpoint = "create_key")]
pub async fn create_key(
    csrf: String,
    name: String,
    team_id: String,
    tags: String,
    budget_usd: String,
    period: String,
    rpm: String,
) -> Result<Created, UiError> {
    let s = editor(&csrf)?;
    let mut body = serde_json::json!({ "name": name.trim() });
    if !team_id.trim().is_empty() {
        body["team_id"] = team_id.trim().into();
    }
    let tags: Vec<&str> = tags.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if !tags.is_empty() {
        body["tags"] = tags.into();
    }
    let mut limits = serde_json::Map::new();
    if !budget_usd.trim().is_empty() {
        limits.insert(
            "budget".into(),
            serde_json::json!({ "limit_usd": budget_usd.trim(), "period": if period.is_empty() { "monthly" } else { period.as_str() } }),
        );
    }
    if !rpm.trim().is_empty() {
        let n: u64 = rpm.trim().parse().map_err(|_| {
            fail(UiError {
                message: "must be a whole number".into(),
                param: Some("limits.rpm".into()),
                status: 400,
            })
        })?;
        limits.insert("rpm".into(), n.into());
    }
    if !limits.is_empty() {
        body["limits"] = limits.into();
    }
    let v: serde_json::Value = call(http::Method::POST, "/admin/v1/keys".into(), Some(body)).await?;
    let created = Created {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        name: v["name"].as_str().unwrap_or_default().to_string(),
        secret: v["key"].as_str().unwrap_or_default().to_string(),
    };
    if plain_form() {
        backend()?.put_created(&s.id, created.clone());
    }
    Ok(created)
}

/// The secret of a key created by a form posted without JavaScript, once.
#[server(prefix = "/ui/api", endpoint = "take_created")]
pub async fn take_created() -> Result<Option<Created>, UiError> {
    let s = session()?;
    Ok(backend()?.take_created(&s.id))
}

#[server(prefix = "/ui/api", endpoint = "revoke_key")]
pub async fn revoke_key(csrf: String, id: String) -> Result<String, UiError> {
    editor(&csrf)?;
    let _: serde_json::Value = call(http::Method::POST, format!("/admin/v1/keys/{}/revoke", enc(&id)), None).await?;
    Ok(id)
}
