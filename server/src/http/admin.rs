//! `/admin/v1`: keys, teams, budgets and limits, usage reports and exports, behind the master key.
//!
//! Bodies are parsed strictly (unknown fields are refused, `param` names the offending field)
//! and fully validated before anything is written, so a bad request changes nothing. Money is
//! exchanged as decimal USD strings (`"12.50"`), never as floating point.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::access::{bearer, constant_time_eq};
use super::{json_response, read_json_body, AppState};
use crate::clock::{iso8601, parse_time};
use crate::error::ApiError;
use crate::keys::{hash_secret, new_id, new_secret, KeyRecord, KeyStatus, TeamRecord};
use crate::limits::{Budget, Limits, Period};
use crate::pricing::Nanos;
use crate::store::{GroupBy, StoreError, Totals, UsageFilter, UsageRow};

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/teams", post(create_team).get(list_teams))
        .route(
            "/admin/v1/teams/{id}",
            get(get_team).patch(update_team).delete(delete_team),
        )
        .route("/admin/v1/keys", post(create_key).get(list_keys))
        .route("/admin/v1/keys/{id}", get(get_key).patch(update_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{id}/rotate", post(rotate_key))
        .route("/admin/v1/usage", get(usage))
        .route("/admin/v1/usage/export", get(export))
        .route("/admin/v1/usage/reprice", post(reprice))
        .route("/admin/v1/prices", get(prices))
        .route("/admin/v1/routes", get(list_routes).put(replace_routes))
        .route("/admin/v1/routes/stats", get(route_stats))
        .route("/admin/v1/alerts", get(alerts))
        .route("/admin/v1/billing", get(billing_status))
        .route("/admin/v1/billing/requeue", post(billing_requeue))
        .route("/admin/v1/openapi.json", get(openapi))
}

/// Every admin route checks the master key first.
pub(crate) async fn require_master(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(master) = &state.master_key else {
        return ApiError::admin_unauthorized(
            "The admin API is disabled: set a master key in the environment variable named by auth.master_key_env.",
        )
        .into_response();
    };
    match bearer(req.headers()) {
        Some(t) if constant_time_eq(t.as_bytes(), master.expose().as_bytes()) => next.run(req).await,
        _ => ApiError::admin_unauthorized("The admin API needs the master key as `Authorization: Bearer …`.")
            .into_response(),
    }
}

fn store_err(e: StoreError) -> ApiError {
    if e.is_conflict() {
        return ApiError::conflict("A record with that name already exists.");
    }
    tracing::error!(error = %e, "admin store call failed");
    ApiError::service_unavailable("The database is unavailable; nothing was changed.")
}

/// Parses a JSON body strictly: every problem is a 400 whose `param` is the field's path.
async fn body<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let (_h, bytes) = read_json_body(req, MAX_ADMIN_BODY).await?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_json(format!("The body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::invalid_request(format!("Invalid body: {inner}"))
        } else {
            ApiError::invalid_param(path, format!("Invalid value: {inner}"))
        }
    })
}

/// Distinguishes a field that is absent (`None`) from one set to `null` (`Some(None)`).
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A USD amount as a decimal string or a JSON number, parsed exactly.
#[derive(Debug, Clone)]
struct Usd(Nanos);

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let text = match &v {
            Value::String(s) => s.clone(),
            // A number's shortest text form is the decimal the client wrote.
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a decimal USD amount such as \"12.50\"",
                ))
            }
        };
        Nanos::parse_usd(&text).map(Usd).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetIn {
    limit_usd: Usd,
    period: Period,
    #[serde(default)]
    soft_limit_pct: Option<u8>,
}

/// A time as RFC 3339 UTC, a date, or milliseconds since 1970.
#[derive(Debug, Clone, Copy)]
struct Time(i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => parse_time(&s).map(Time).map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_i64()
                .filter(|v| *v >= 0)
                .map(Time)
                .ok_or_else(|| serde::de::Error::custom("expected milliseconds since 1970")),
            _ => Err(serde::de::Error::custom(
                "expected a time such as \"2026-12-31T00:00:00Z\"",
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsPatch {
    #[serde(default, deserialize_with = "nullable")]
    budget: Option<Option<BudgetIn>>,
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_concurrent: Option<Option<u32>>,
}

impl LimitsPatch {
    fn apply(self, mut l: Limits) -> Result<Limits, ApiError> {
        if let Some(b) = self.budget {
            l.budget = match b {
                None => None,
                Some(b) => {
                    let soft = b.soft_limit_pct.unwrap_or(80);
                    if soft > 100 {
                        return Err(ApiError::invalid_param(
                            "budget.soft_limit_pct",
                            "must be between 0 and 100",
                        ));
                    }
                    Some(Budget {
                        limit: b.limit_usd.0,
                        period: b.period,
                        soft_pct: soft,
                    })
                }
            };
        }
        for (name, v) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if let Some(Some(0)) = v {
                return Err(ApiError::invalid_param(
                    name,
                    "must be at least 1 (use null for no limit)",
                ));
            }
        }
        if let Some(Some(0)) = self.max_concurrent {
            return Err(ApiError::invalid_param(
                "max_concurrent",
                "must be at least 1 (use null for no limit)",
            ));
        }
        if let Some(v) = self.rpm {
            l.rpm = v;
        }
        if let Some(v) = self.tpm {
            l.tpm = v;
        }
        if let Some(v) = self.max_concurrent {
            l.max_concurrent = v;
        }
        Ok(l)
    }
}

fn check_name(param: &str, name: &str) -> Result<(), ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(ApiError::invalid_param(
            param,
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

fn check_label(param: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'/'))
    {
        return Err(ApiError::invalid_param(
            param,
            "must be 1 to 64 characters of letters, digits and - . : /",
        ));
    }
    Ok(())
}

fn limits_json(state: &AppState, scope: &str, l: &Limits) -> Value {
    let budget = l.budget.map(|b| {
        let now = state.clock.now_ms();
        let ps = b.period.start_of(now);
        let spent = state.limiter.local_view(scope).map(|(s, _, _)| s);
        json!({
            "limit_usd": b.limit.to_string(),
            "period": b.period.as_str(),
            "soft_limit_pct": b.soft_pct,
            "period_start": iso8601(ps),
            "resets_at": b.period.next_start(ps).map(iso8601),
            "spent_usd_local": spent.map(|s| Nanos(s).to_string()),
        })
    });
    json!({
        "budget": budget,
        "rpm": l.rpm,
        "tpm": l.tpm,
        "max_concurrent": l.max_concurrent,
    })
}

fn team_json(state: &AppState, t: &TeamRecord) -> Value {
    json!({
        "id": t.id,
        "object": "team",
        "name": t.name,
        "cost_center": t.cost_center,
        "limits": limits_json(state, &format!("team:{}", t.id), &t.limits),
        "created_at": iso8601(t.created_ms),
        "updated_at": iso8601(t.updated_ms),
    })
}

fn key_json(state: &AppState, k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "prefix": k.prefix,
        "team_id": k.team_id,
        "cost_center": k.cost_center,
        "tags": k.tags,
        "allowed_models": k.allowed_models,
        "route_prefer": k.route_prefer.map(|p| p.as_str()),
        "expires_at": k.expires_ms.map(iso8601),
        "status": k.status.as_str(),
        "limits": limits_json(state, &format!("key:{}", k.id), &k.limits),
        "created_at": iso8601(k.created_ms),
        "updated_at": iso8601(k.updated_ms),
        "rotated_at": k.rotated_ms.map(iso8601),
    })
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    json_response(status, Bytes::from(v.to_string()))
}

// ---- teams ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamIn {
    name: String,
    #[serde(default)]
    cost_center: Option<String>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

async fn create_team(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let t: TeamIn = body(req).await?;
    check_name("name", &t.name)?;
    if let Some(c) = &t.cost_center {
        check_label("cost_center", c)?;
    }
    let limits = t.limits.unwrap_or_default().apply(Limits::default())?;
    let now = state.clock.now_ms();
    let rec = TeamRecord {
        id: new_id("team"),
        name: t.name.trim().to_string(),
        cost_center: t.cost_center,
        limits,
        created_ms: now,
        updated_ms: now,
    };
    state.store.insert_team(&rec).await.map_err(store_err)?;
    tracing::info!(team = %rec.id, name = %rec.name, "team created");
    Ok(ok_json(StatusCode::CREATED, team_json(&state, &rec)))
}

async fn list_teams(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let teams = state.store.list_teams().await.map_err(store_err)?;
    let data: Vec<Value> = teams.iter().map(|t| team_json(&state, t)).collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

async fn find_team(state: &AppState, id: &str) -> Result<TeamRecord, ApiError> {
    state
        .store
        .get_team(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No team with id `{id}`.")))
}

async fn get_team(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = find_team(&state, &id).await?;
    Ok(ok_json(StatusCode::OK, team_json(&state, &t)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    cost_center: Option<Option<String>>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

async fn update_team(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let p: TeamPatch = body(req).await?;
    let mut t = find_team(&state, &id).await?;
    if let Some(n) = p.name {
        check_name("name", &n)?;
        t.name = n.trim().to_string();
    }
    if let Some(c) = p.cost_center {
        if let Some(c) = &c {
            check_label("cost_center", c)?;
        }
        t.cost_center = c;
    }
    if let Some(l) = p.limits {
        t.limits = l.apply(t.limits)?;
    }
    t.updated_ms = state.clock.now_ms();
    if !state.store.update_team(&t).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("No team with id `{id}`.")));
    }
    state.keys.invalidate_all();
    tracing::info!(team = %t.id, "team updated");
    Ok(ok_json(StatusCode::OK, team_json(&state, &t)))
}

async fn delete_team(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    find_team(&state, &id).await?;
    let keys = state.store.team_key_count(&id).await.map_err(store_err)?;
    if keys > 0 {
        return Err(ApiError::conflict(format!(
            "Team `{id}` still has {keys} key(s); move or revoke them first."
        )));
    }
    state.store.delete_team(&id).await.map_err(store_err)?;
    state.keys.invalidate_all();
    tracing::info!(team = %id, "team deleted");
    Ok(ok_json(
        StatusCode::OK,
        json!({"id": id, "object": "team", "deleted": true}),
    ))
}

// ---- keys ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIn {
    name: String,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    cost_center: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    allowed_models: Option<Vec<String>>,
    #[serde(default)]
    route_prefer: Option<String>,
    #[serde(default)]
    expires_at: Option<Time>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

/// A key's default routing preference; `null` clears it.
fn check_prefer(p: Option<&str>) -> Result<Option<crate::router::policy::Prefer>, ApiError> {
    match p {
        None => Ok(None),
        Some(v) => crate::router::policy::Prefer::parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_param("route_prefer", "must be `cost`, `quality` or `balanced`")),
    }
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > 32 {
        return Err(ApiError::invalid_param("tags", "at most 32 tags"));
    }
    for (i, t) in tags.iter().enumerate() {
        check_label(&format!("tags[{i}]"), t)?;
    }
    Ok(())
}

fn check_models(state: &AppState, models: &[String]) -> Result<(), ApiError> {
    for (i, m) in models.iter().enumerate() {
        if state.gateway.model(m).is_none() && state.router.get().route(m).is_none() {
            return Err(ApiError::invalid_param(
                format!("allowed_models[{i}]"),
                format!("`{m}` is not a configured model or route"),
            ));
        }
    }
    Ok(())
}

async fn check_team_ref(state: &AppState, team: &Option<String>) -> Result<(), ApiError> {
    if let Some(t) = team {
        if state.store.get_team(t).await.map_err(store_err)?.is_none() {
            return Err(ApiError::invalid_param("team_id", format!("No team with id `{t}`.")));
        }
    }
    Ok(())
}

async fn create_key(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let k: KeyIn = body(req).await?;
    check_name("name", &k.name)?;
    if let Some(c) = &k.cost_center {
        check_label("cost_center", c)?;
    }
    check_tags(&k.tags)?;
    if let Some(m) = &k.allowed_models {
        check_models(&state, m)?;
    }
    let now = state.clock.now_ms();
    if let Some(Time(e)) = k.expires_at {
        if e <= now {
            return Err(ApiError::invalid_param("expires_at", "must be in the future"));
        }
    }
    let limits = k.limits.unwrap_or_default().apply(Limits::default())?;
    let route_prefer = check_prefer(k.route_prefer.as_deref())?;
    check_team_ref(&state, &k.team_id).await?;
    let (secret, prefix) = new_secret();
    let rec = KeyRecord {
        id: new_id("key"),
        name: k.name.trim().to_string(),
        prefix,
        team_id: k.team_id,
        cost_center: k.cost_center,
        tags: k.tags,
        allowed_models: k.allowed_models,
        route_prefer,
        expires_ms: k.expires_at.map(|t| t.0),
        status: KeyStatus::Active,
        limits,
        created_ms: now,
        updated_ms: now,
        rotated_ms: None,
    };
    state
        .store
        .insert_key(&rec, &hash_secret(&secret))
        .await
        .map_err(store_err)?;
    state.keys.invalidate_all();
    tracing::info!(key = %rec.id, prefix = %rec.prefix, "key created");
    let mut v = key_json(&state, &rec);
    v["key"] = Value::String(secret);
    Ok(ok_json(StatusCode::CREATED, v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyListQuery {
    team_id: Option<String>,
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    q: Result<Query<KeyListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let keys = state.store.list_keys(q.team_id.as_deref()).await.map_err(store_err)?;
    let data: Vec<Value> = keys.iter().map(|k| key_json(&state, k)).collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

async fn find_key(state: &AppState, id: &str) -> Result<KeyRecord, ApiError> {
    state
        .store
        .get_key(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No key with id `{id}`.")))
}

async fn get_key(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let k = find_key(&state, &id).await?;
    Ok(ok_json(StatusCode::OK, key_json(&state, &k)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    cost_center: Option<Option<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    route_prefer: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<Time>>,
    /// `active` or `disabled`; revoking has its own endpoint and cannot be undone.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

async fn update_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let p: KeyPatch = body(req).await?;
    let mut k = find_key(&state, &id).await?;
    if let Some(n) = p.name {
        check_name("name", &n)?;
        k.name = n.trim().to_string();
    }
    if let Some(t) = p.team_id {
        check_team_ref(&state, &t).await?;
        k.team_id = t;
    }
    if let Some(c) = p.cost_center {
        if let Some(c) = &c {
            check_label("cost_center", c)?;
        }
        k.cost_center = c;
    }
    if let Some(t) = p.tags {
        check_tags(&t)?;
        k.tags = t;
    }
    if let Some(m) = p.allowed_models {
        if let Some(m) = &m {
            check_models(&state, m)?;
        }
        k.allowed_models = m;
    }
    if let Some(p) = p.route_prefer {
        k.route_prefer = check_prefer(p.as_deref())?;
    }
    if let Some(e) = p.expires_at {
        k.expires_ms = e.map(|t| t.0);
    }
    if let Some(s) = p.status {
        let s = match s.as_str() {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            _ => {
                return Err(ApiError::invalid_param(
                    "status",
                    "must be `active` or `disabled` (revoke with POST /admin/v1/keys/{id}/revoke)",
                ))
            }
        };
        if k.status == KeyStatus::Revoked {
            return Err(ApiError::conflict(format!(
                "Key `{id}` is revoked; revocation is permanent."
            )));
        }
        k.status = s;
    }
    if let Some(l) = p.limits {
        k.limits = l.apply(k.limits)?;
    }
    k.updated_ms = state.clock.now_ms();
    if !state.store.update_key(&k).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("No key with id `{id}`.")));
    }
    state.keys.invalidate_all();
    tracing::info!(key = %k.id, "key updated");
    Ok(ok_json(StatusCode::OK, key_json(&state, &k)))
}

async fn revoke_key(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut k = find_key(&state, &id).await?;
    k.status = KeyStatus::Revoked;
    k.updated_ms = state.clock.now_ms();
    state.store.update_key(&k).await.map_err(store_err)?;
    state.keys.invalidate_all();
    tracing::info!(key = %k.id, "key revoked");
    Ok(ok_json(StatusCode::OK, key_json(&state, &k)))
}

async fn rotate_key(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let k = find_key(&state, &id).await?;
    if k.status == KeyStatus::Revoked {
        return Err(ApiError::conflict(format!(
            "Key `{id}` is revoked and cannot be rotated."
        )));
    }
    let (secret, prefix) = new_secret();
    let now = state.clock.now_ms();
    state
        .store
        .rotate_key(&id, &prefix, &hash_secret(&secret), now)
        .await
        .map_err(store_err)?;
    state.keys.invalidate_all();
    let k = find_key(&state, &id).await?;
    tracing::info!(key = %k.id, prefix = %k.prefix, "key rotated");
    let mut v = key_json(&state, &k);
    v["key"] = Value::String(secret);
    Ok(ok_json(StatusCode::OK, v))
}

// ---- usage ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    tag: Option<String>,
    cost_center: Option<String>,
    group_by: Option<String>,
    format: Option<String>,
}

fn filter_of(q: &UsageQuery) -> Result<UsageFilter, ApiError> {
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

fn query_of(q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>) -> Result<UsageQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))
}

fn totals_json(t: &Totals) -> Value {
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
async fn usage(
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
struct RepriceIn {
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    team_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Re-prices stored events from their tokens with the prices in force at each event's time.
async fn reprice(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    since: Option<String>,
    limit: Option<i64>,
}

/// Stored budget alerts, newest first.
async fn alerts(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))?;
    let since = match q.since.as_deref() {
        Some(s) => parse_time(s).map_err(|e| ApiError::invalid_param("since", e))?,
        None => 0,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "must be 1..=1000"));
    }
    let rows = state.store.list_alerts(since, limit).await.map_err(store_err)?;
    let data: Vec<Value> = rows
        .iter()
        .map(|a| {
            json!({
                "scope": a.scope,
                "kind": a.kind,
                "period_start": iso8601(a.period_start),
                "at": iso8601(a.ts_ms),
                "spent_usd": Nanos(a.spent_nanos).to_string(),
                "limit_usd": Nanos(a.limit_nanos).to_string(),
            })
        })
        .collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

/// The billing outbox: pending and retained delivered events, the oldest pending, the last error.
async fn billing_status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let s = state.store.billing_status().await.map_err(store_err)?;
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "object": "billing.outbox",
            "pending": s.pending,
            "rejected": s.rejected,
            "delivered_retained": s.delivered_retained,
            "oldest_pending": s.oldest_pending_ms.map(iso8601),
            "max_attempts": s.max_attempts,
            "last_error": s.last_error,
        }),
    ))
}

/// Puts billing events the receiver refused back in the queue, after the cause was fixed.
async fn billing_requeue(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let n = state.store.requeue_rejected_billing().await.map_err(store_err)?;
    tracing::info!(events = n, "rejected billing events re-queued");
    Ok(ok_json(
        StatusCode::OK,
        json!({"object": "billing.requeue", "requeued": n}),
    ))
}

/// The routing table in force.
async fn list_routes(State(state): State<Arc<AppState>>) -> Response {
    let router = state.router.get();
    let data: Vec<&crate::router::policy::Route> = router.routes().collect();
    ok_json(StatusCode::OK, json!({"object": "list", "data": data}))
}

/// Per route: requests and cost by variant and by model served; for a shadow policy, how often it
/// agreed and what its choices would have cost (the same tokens at its models' current prices).
async fn route_stats(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let rows = state.store.route_stats(&f).await.map_err(store_err)?;
    let now = state.clock.now_ms();
    let price_of = |model: &str| {
        state
            .gateway
            .model(model)
            .and_then(|m| m.deployments.first())
            .map(|d| d.config.prices.at_or_first(now).price)
    };
    let mut routes: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    for r in &rows {
        let e = routes.entry(&r.route).or_insert_with(|| {
            json!({"route": r.route, "requests": 0, "cost_nanos": 0, "by_model": {}, "by_variant": {},
                   "shadow": {"requests": 0, "agreed": 0, "actual_cost_nanos": 0, "projected_cost_nanos": 0, "by_model": {}},
                   "cascade": {"accepted": 0, "unchecked": 0, "escalated": 0, "by_reason": {}, "escalation_cost_nanos": 0}})
        });
        let add = |v: &mut Value, n: i64| *v = json!(v.as_i64().unwrap_or(0) + n);
        add(&mut e["requests"], r.requests);
        add(&mut e["cost_nanos"], r.cost_nanos);
        add(&mut e["by_model"][r.model.as_str()], r.requests);
        if !r.cascade.is_empty() {
            let c = &mut e["cascade"];
            add(&mut c[r.cascade.as_str()], r.requests);
            add(&mut c["escalation_cost_nanos"], r.escalation_cost_nanos);
            if !r.escalation_reason.is_empty() {
                add(&mut c["by_reason"][r.escalation_reason.as_str()], r.requests);
            }
        }
        if !r.variant.is_empty() {
            let v = &mut e["by_variant"][r.variant.as_str()];
            if v.is_null() {
                *v = json!({"requests": 0, "cost_nanos": 0});
            }
            add(&mut v["requests"], r.requests);
            add(&mut v["cost_nanos"], r.cost_nanos);
        }
        if !r.shadow_model.is_empty() {
            let s = &mut e["shadow"];
            add(&mut s["requests"], r.requests);
            add(&mut s["by_model"][r.shadow_model.as_str()], r.requests);
            add(&mut s["actual_cost_nanos"], r.cost_nanos);
            if r.shadow_model == r.model {
                add(&mut s["agreed"], r.requests);
                add(&mut s["projected_cost_nanos"], r.cost_nanos);
            } else {
                let projected = price_of(&r.shadow_model).map_or(0, |p| {
                    p.cost(
                        r.prompt_tokens.max(0) as u64,
                        r.cached_tokens.max(0) as u64,
                        r.completion_tokens.max(0) as u64,
                    )
                    .0
                });
                add(&mut s["projected_cost_nanos"], projected);
            }
        }
    }
    let data: Vec<Value> = routes.into_values().collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesIn {
    /// Route name → route, as in `[routes]`.
    routes: serde_json::Map<String, Value>,
}

/// Replaces the routing table. It is validated whole first; on any problem nothing changes.
async fn replace_routes(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let b: RoutesIn = body(req).await?;
    let table: toml::Value = serde_json::from_value(Value::Object(b.routes))
        .map_err(|e| ApiError::invalid_param("routes", format!("Invalid routing table: {e}")))?;
    let intents = state.router.get().model.intents.clone();
    let routes = state.config.parse_routes(table, &intents).map_err(|e| {
        let first = e.0.first().map(|p| p.path.clone()).unwrap_or_default();
        let all: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        ApiError::invalid_param(
            first,
            format!("The routing table was refused, nothing changed: {}", all.join("; ")),
        )
    })?;
    let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    let model = state.router.get().model.clone();
    state.router.set(crate::router::policy::Router::new(model, routes));
    tracing::info!(routes = ?names, "routing table replaced through the admin API");
    Ok(list_routes(State(state)).await)
}

/// The price table's versions and every deployment's prices over time.
async fn prices(State(state): State<Arc<AppState>>) -> Response {
    let per_mtok = |p: crate::pricing::PicoPerToken| p.usd_per_mtok();
    let deployments: Vec<Value> = state
        .prices
        .all()
        .into_iter()
        .map(|(d, s)| {
            let points: Vec<Value> = s
                .points()
                .iter()
                .map(|p| {
                    json!({
                        "version": &*p.version,
                        "effective": (p.from_ms != i64::MIN).then(|| iso8601(p.from_ms)),
                        "input_per_mtok": per_mtok(p.price.input),
                        "output_per_mtok": per_mtok(p.price.output),
                        "cached_input_per_mtok": per_mtok(p.price.cached_input),
                    })
                })
                .collect();
            json!({"deployment": d, "prices": points})
        })
        .collect();
    let versions: Vec<Value> = state
        .prices
        .versions
        .iter()
        .map(|v| json!({"id": v.id, "effective": iso8601(v.effective_ms), "note": v.note}))
        .collect();
    ok_json(
        StatusCode::OK,
        json!({"object": "prices", "versions": versions, "deployments": deployments}),
    )
}

const CSV_COLUMNS: &[&str] = &[
    "event_id",
    "request_id",
    "timestamp",
    "key_id",
    "team_id",
    "cost_center",
    "tags",
    "route",
    "endpoint",
    "model",
    "deployment",
    "provider",
    "stream",
    "status",
    "outcome",
    "error_kind",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "usage_source",
    "cost_usd",
    "cost_nanos",
    "price_version",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "request_bytes",
    "response_bytes",
    "route_variant",
    "shadow_model",
    "cascade",
    "escalation_reason",
    "escalated_from",
    "escalation_cost_nanos",
];

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

pub(crate) fn csv_line(r: &UsageRow) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields: [String; 34] = [
        r.event_id.clone(),
        r.request_id.clone(),
        iso8601(r.ts_ms),
        o(&r.key_id),
        o(&r.team_id),
        o(&r.cost_center),
        o(&r.tags),
        o(&r.route),
        r.endpoint.clone(),
        r.model.clone(),
        o(&r.deployment),
        o(&r.provider),
        r.stream.to_string(),
        r.status.to_string(),
        r.outcome.clone(),
        o(&r.error_kind),
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cached_tokens.to_string(),
        r.usage_source.clone(),
        Nanos(r.cost_nanos).to_string(),
        r.cost_nanos.to_string(),
        o(&r.price_version),
        r.latency_ms.to_string(),
        r.ttft_ms.map(|v| v.to_string()).unwrap_or_default(),
        r.attempts.to_string(),
        r.request_bytes.to_string(),
        r.response_bytes.to_string(),
        o(&r.route_variant),
        o(&r.shadow_model),
        o(&r.cascade),
        o(&r.escalation_reason),
        o(&r.escalated_from),
        r.escalation_cost_nanos.to_string(),
    ];
    let mut line = String::with_capacity(256);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, f);
    }
    line.push('\n');
    line
}

/// Rows per page read from the ledger while exporting.
const EXPORT_PAGE: usize = 1000;

/// Streams every event in range as CSV or JSON, page by page; the JSON form ends with totals.
async fn export(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let csv = match q.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "json" => false,
        _ => return Err(ApiError::invalid_param("format", "must be `csv` or `json`")),
    };
    // Read the first page now, so a database failure is a clean error rather than a cut stream.
    let first = state.store.usage_page(&f, None, EXPORT_PAGE).await.map_err(store_err)?;
    let store = state.store.clone();
    let stream = async_stream(store, f, first, csv);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    if csv {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        h.insert(
            http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"switchyard-usage.csv\""),
        );
    } else {
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(resp)
}

/// The export body: a header, then each page as it is read, then (JSON) the totals.
fn async_stream(
    store: crate::store::Store,
    f: UsageFilter,
    first: Vec<UsageRow>,
    csv: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    enum St {
        Start(Vec<UsageRow>),
        Page(Vec<UsageRow>),
        Done,
    }
    struct Ctx {
        store: crate::store::Store,
        f: UsageFilter,
        csv: bool,
        totals: Totals,
        first_row: bool,
        st: St,
    }
    let ctx = Ctx {
        store,
        f,
        csv,
        totals: Totals::default(),
        first_row: true,
        st: St::Start(first),
    };
    futures_util::stream::unfold(ctx, |mut c| async move {
        let rows = match std::mem::replace(&mut c.st, St::Done) {
            St::Done => return None,
            St::Start(rows) => {
                let head = if c.csv {
                    format!("{}\n", CSV_COLUMNS.join(","))
                } else {
                    "{\"object\":\"list\",\"data\":[".to_string()
                };
                c.st = St::Page(rows);
                return Some((Ok(Bytes::from(head)), c));
            }
            St::Page(rows) => rows,
        };
        if rows.is_empty() {
            let tail = if c.csv {
                String::new()
            } else {
                format!("],\"totals\":{}}}\n", totals_json(&c.totals))
            };
            return Some((Ok(Bytes::from(tail)), c));
        }
        let mut out = String::with_capacity(rows.len() * 300);
        for r in &rows {
            c.totals.add_row(r);
            if c.csv {
                out.push_str(&csv_line(r));
            } else {
                if !c.first_row {
                    out.push(',');
                }
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                v["timestamp"] = Value::String(iso8601(r.ts_ms));
                v["cost_usd"] = Value::String(Nanos(r.cost_nanos).to_string());
                out.push_str(&v.to_string());
            }
            c.first_row = false;
        }
        let full = rows.len() == EXPORT_PAGE;
        if full {
            let last = rows.last().map(|r| (r.ts_ms, r.event_id.clone()));
            match c.store.usage_page(&c.f, last, EXPORT_PAGE).await {
                Ok(next) => c.st = St::Page(next),
                Err(e) => {
                    tracing::error!(error = %e, "usage export failed mid-stream");
                    return Some((Err(std::io::Error::other(e.to_string())), c));
                }
            }
        } else {
            c.st = St::Page(Vec::new());
        }
        Some((Ok(Bytes::from(out)), c))
    })
}

async fn openapi() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(include_bytes!("openapi.json")))
}
