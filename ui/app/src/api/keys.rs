//! Keys: list and search, create, change, disable and enable, rotate and revoke, and one key's
//! page.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::{Created, Key, KeyPage};

#[cfg(feature = "ssr")]
use crate::backend::{backend, call, editor, fail, get, plain_form, session};

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
                || k.team_id.as_deref().is_some_and(|t| t == needle)
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
    let tags = list_of(&tags);
    if !tags.is_empty() {
        body["tags"] = tags.into();
    }
    body["limits"] = limits_of(&budget_usd, &period, "", &rpm, "", "")?;
    let v: serde_json::Value = call(http::Method::POST, "/admin/v1/keys".into(), Some(body)).await?;
    shown_once(&s, &v)
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

/// A key and its secret from the admin API's answer; kept for the next page once when the form
/// was posted without JavaScript (the redirect back would lose it).
#[cfg(feature = "ssr")]
fn shown_once(s: &crate::backend::Session, v: &serde_json::Value) -> Result<Created, UiError> {
    let text = |f: &str| v[f].as_str().unwrap_or_default().to_string();
    let created = Created {
        id: text("id"),
        name: text("name"),
        secret: text("key"),
    };
    if plain_form() {
        backend()?.put_created(&s.id, created.clone());
    }
    Ok(created)
}

/// A blank form field as `null`, else its trimmed text.
#[cfg(feature = "ssr")]
pub(crate) fn text_or_null(s: &str) -> serde_json::Value {
    let t = s.trim();
    if t.is_empty() {
        serde_json::Value::Null
    } else {
        t.into()
    }
}

/// A blank form field as `null`, else a whole number of at least 1; the error names `param`.
#[cfg(feature = "ssr")]
pub(crate) fn count_or_null(param: &str, s: &str) -> Result<serde_json::Value, UiError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    match t.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n.into()),
        _ => Err(fail(UiError {
            message: "must be a whole number of at least 1, or blank for no limit".into(),
            param: Some(param.into()),
            status: 400,
            target: None,
        })),
    }
}

/// Comma-separated labels as a list.
#[cfg(feature = "ssr")]
pub(crate) fn list_of(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The limits a form sets: blank means no limit; a blank budget amount removes the budget.
#[cfg(feature = "ssr")]
pub(crate) fn limits_of(
    budget_usd: &str,
    period: &str,
    soft_limit_pct: &str,
    rpm: &str,
    tpm: &str,
    max_concurrent: &str,
) -> Result<serde_json::Value, UiError> {
    let budget = if budget_usd.trim().is_empty() {
        serde_json::Value::Null
    } else {
        let mut b = serde_json::json!({
            "limit_usd": budget_usd.trim(),
            "period": if period.trim().is_empty() { "monthly" } else { period.trim() },
        });
        if !soft_limit_pct.trim().is_empty() {
            let pct: u8 = soft_limit_pct.trim().parse().map_err(|_| {
                fail(UiError {
                    message: "must be a whole number between 0 and 100".into(),
                    param: Some("limits.budget.soft_limit_pct".into()),
                    status: 400,
                    target: None,
                })
            })?;
            b["soft_limit_pct"] = pct.into();
        }
        b
    };
    Ok(serde_json::json!({
        "budget": budget,
        "rpm": count_or_null("limits.rpm", rpm)?,
        "tpm": count_or_null("limits.tpm", tpm)?,
        "max_concurrent": count_or_null("limits.max_concurrent", max_concurrent)?,
    }))
}

/// One key's page: the key, its last 30 days by day, its spend in its budget's period from the
/// ledger, and its budget alerts.
#[server(prefix = "/ui/api", endpoint = "key")]
pub async fn load_key(id: String) -> Result<KeyPage, UiError> {
    use crate::types::{Alert, List, Summary, UsageReport};
    const DAY: i64 = 86_400_000;
    let key: Key = get(format!("/admin/v1/keys/{}", enc(&id))).await?;
    let now = super::now_ms();
    let to = now - now.rem_euclid(DAY) + DAY;
    let from = to - 30 * DAY;
    let of_key = format!("key_id={}", enc(&key.id));
    let summary: Summary = get(format!("/admin/v1/usage/summary?{of_key}&from={from}&to={to}")).await?;
    let series: UsageReport = get(format!("/admin/v1/usage?{of_key}&from={from}&to={to}&group_by=day")).await?;
    let period_spent_usd = match key.limits.budget.as_ref().and_then(|b| b.period_start.clone()) {
        Some(start) => {
            let r: UsageReport = get(format!("/admin/v1/usage?{of_key}&from={}&group_by=day", enc(&start))).await?;
            Some(r.totals.cost_usd)
        }
        None => None,
    };
    let alerts: List<Alert> = get("/admin/v1/alerts?limit=1000".into()).await?;
    let scope = format!("key:{}", key.id);
    Ok(KeyPage {
        summary,
        series: super::fill(series.groups, from, to, DAY),
        period_spent_usd,
        alerts: alerts.data.into_iter().filter(|a| a.scope == scope).take(20).collect(),
        key,
    })
}

/// Changes a key: every field of the form is sent, a blank one clears the setting.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/ui/api", endpoint = "update_key")]
pub async fn update_key(
    csrf: String,
    id: String,
    name: String,
    team_id: String,
    cost_center: String,
    tags: String,
    allowed_models: String,
    route_prefer: String,
    expires_at: String,
    budget_usd: String,
    period: String,
    soft_limit_pct: String,
    rpm: String,
    tpm: String,
    max_concurrent: String,
    // A checkbox: sent only when ticked.
    store_bodies: Option<String>,
) -> Result<Key, UiError> {
    editor(&csrf)?;
    let models = list_of(&allowed_models);
    let body = serde_json::json!({
        "name": name.trim(),
        "team_id": text_or_null(&team_id),
        "cost_center": text_or_null(&cost_center),
        "tags": list_of(&tags),
        "allowed_models": if models.is_empty() { serde_json::Value::Null } else { models.into() },
        "route_prefer": text_or_null(&route_prefer),
        "expires_at": text_or_null(&expires_at),
        "limits": limits_of(&budget_usd, &period, &soft_limit_pct, &rpm, &tpm, &max_concurrent)?,
        "store_bodies": store_bodies.is_some(),
    });
    call(http::Method::PATCH, format!("/admin/v1/keys/{}", enc(&id)), Some(body)).await
}

/// Disables a key (its requests are refused until it is enabled again) or enables it.
#[server(prefix = "/ui/api", endpoint = "key_status")]
pub async fn set_key_status(csrf: String, id: String, status: String) -> Result<Key, UiError> {
    editor(&csrf)?;
    let body = serde_json::json!({ "status": status });
    call(http::Method::PATCH, format!("/admin/v1/keys/{}", enc(&id)), Some(body)).await
}

/// Gives a key a new secret (the old one stops working at once); the secret is shown once.
#[server(prefix = "/ui/api", endpoint = "rotate_key")]
pub async fn rotate_key(csrf: String, id: String) -> Result<Created, UiError> {
    let s = editor(&csrf)?;
    let v: serde_json::Value = call(http::Method::POST, format!("/admin/v1/keys/{}/rotate", enc(&id)), None).await?;
    shown_once(&s, &v)
}
