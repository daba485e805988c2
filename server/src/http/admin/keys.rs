//! `/admin/v1/keys`: create, list, read, change, revoke and rotate virtual keys.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, check_label, check_name, limits_json, nullable, ok_json, store_err, LimitsPatch, Time};
use crate::access::keys::{hash_secret, new_id, new_secret};
use crate::clock::iso8601;
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::keys::{KeyRecord, KeyStatus, Prefer};
use crate::records::limits::Limits;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyIn {
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
pub(super) fn check_prefer(p: Option<&str>) -> Result<Option<Prefer>, ApiError> {
    match p {
        None => Ok(None),
        Some(v) => Prefer::parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_param("route_prefer", "must be `cost`, `quality` or `balanced`")),
    }
}

pub(super) fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > 32 {
        return Err(ApiError::invalid_param("tags", "at most 32 tags"));
    }
    for (i, t) in tags.iter().enumerate() {
        check_label(&format!("tags[{i}]"), t)?;
    }
    Ok(())
}

pub(super) fn check_models(state: &AppState, models: &[String]) -> Result<(), ApiError> {
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

pub(super) async fn check_team_ref(state: &AppState, team: &Option<String>) -> Result<(), ApiError> {
    if let Some(t) = team {
        if state.store.get_team(t).await.map_err(store_err)?.is_none() {
            return Err(ApiError::invalid_param("team_id", format!("No team with id `{t}`.")));
        }
    }
    Ok(())
}

pub(super) async fn create_key(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
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
pub(super) struct KeyListQuery {
    team_id: Option<String>,
}

pub(super) async fn list_keys(
    State(state): State<Arc<AppState>>,
    q: Result<Query<KeyListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let keys = state.store.list_keys(q.team_id.as_deref()).await.map_err(store_err)?;
    let data: Vec<Value> = keys.iter().map(|k| key_json(&state, k)).collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

pub(super) async fn find_key(state: &AppState, id: &str) -> Result<KeyRecord, ApiError> {
    state
        .store
        .get_key(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No key with id `{id}`.")))
}

pub(super) async fn get_key(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let k = find_key(&state, &id).await?;
    Ok(ok_json(StatusCode::OK, key_json(&state, &k)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyPatch {
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

pub(super) async fn update_key(
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

pub(super) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut k = find_key(&state, &id).await?;
    k.status = KeyStatus::Revoked;
    k.updated_ms = state.clock.now_ms();
    state.store.update_key(&k).await.map_err(store_err)?;
    state.keys.invalidate_all();
    tracing::info!(key = %k.id, "key revoked");
    Ok(ok_json(StatusCode::OK, key_json(&state, &k)))
}

pub(super) async fn rotate_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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
pub(super) fn key_json(state: &AppState, k: &KeyRecord) -> Value {
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
