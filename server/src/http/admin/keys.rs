//! `/admin/v1/keys`: create, list, read, change, revoke and rotate virtual keys.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::wire::{Key, KeyList, KeyWithSecret};
use super::{body, check_label, check_name, limits_out, nullable, reply, store_err, LimitsPatch, Time};
use crate::access::keys::{hash_secret, new_id, new_secret};
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::keys::{KeyRecord, KeyStatus, Prefer};
use crate::records::limits::Limits;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyIn {
    /// 1 to 128 characters without control characters, stored trimmed.
    name: String,
    /// An existing team's id (an unknown id is a 400 with `param` `team_id`). Omitted or
    /// `null`: no team.
    #[serde(default)]
    team_id: Option<String>,
    /// A cost center label: 1 to 64 ASCII letters, digits and `-` `.` `:` `/`.
    #[serde(default)]
    cost_center: Option<String>,
    /// At most 32 labels, each like a cost center.
    #[serde(default)]
    #[schema(max_items = 32)]
    tags: Vec<String>,
    /// Configured logical models or routes this key may call (an unknown name is a 400 with
    /// `param` `allowed_models[i]`). Omitted or `null`: all.
    #[serde(default)]
    allowed_models: Option<Vec<String>>,
    /// The routing preference for this key's requests that send no `x-switchyard-prefer`
    /// header: `cost`, `quality` or `balanced`.
    #[serde(default)]
    #[schema(value_type = Option<Prefer>)]
    route_prefer: Option<String>,
    /// When the key stops working; must be in the future. Omitted or `null`: never.
    #[serde(default)]
    expires_at: Option<Time>,
    /// Initial limits; omitted or `null` means no limits.
    #[serde(default)]
    limits: Option<LimitsPatch>,
    /// Store the prompt and answer bodies of this key's requests in the request log
    /// (redacted, cut and kept as `[request_log]` says). Off by default.
    #[serde(default)]
    store_bodies: bool,
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

/// Create a key
///
/// Creates an `active` key and returns it with its secret in `key`. The secret is shown only
/// once.
#[utoipa::path(post, path = "/admin/v1/keys", tag = "keys", request_body = KeyIn,
    responses(
        (status = 201, description = "The key and its secret.", body = KeyWithSecret),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
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
        store_bodies: k.store_bodies,
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
    let key = key_out(&state, &rec);
    Ok(reply(StatusCode::CREATED, &KeyWithSecret { key, secret }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyListQuery {
    /// Only keys of this team (an unknown team gives an empty list).
    team_id: Option<String>,
}

/// List keys
///
/// Keys oldest first, optionally only one team's. Secrets are never listed. Unknown query
/// parameters are refused (400).
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys", params(KeyListQuery),
    responses(
        (status = 200, description = "The keys.", body = KeyList),
        (status = 400, description = "An unknown query parameter."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_keys(
    State(state): State<Arc<AppState>>,
    q: Result<Query<KeyListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let keys = state.store.list_keys(q.team_id.as_deref()).await.map_err(store_err)?;
    let data: Vec<Key> = keys.iter().map(|k| key_out(&state, k)).collect();
    Ok(reply(StatusCode::OK, &KeyList::from(data)))
}

pub(super) async fn find_key(state: &AppState, id: &str) -> Result<KeyRecord, ApiError> {
    state
        .store
        .get_key(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No key with id `{id}`.")))
}

/// Get a key
#[utoipa::path(get, path = "/admin/v1/keys/{id}", tag = "keys", params(KeyId),
    responses(
        (status = 200, description = "The key.", body = Key),
        (status = 404, description = "No key has this id."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn get_key(
    State(state): State<Arc<AppState>>,
    Path(KeyId(id)): Path<KeyId>,
) -> Result<Response, ApiError> {
    let k = find_key(&state, &id).await?;
    Ok(reply(StatusCode::OK, &key_out(&state, &k)))
}

/// Fields to change; omitted fields are left as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyPatch {
    #[serde(default)]
    name: Option<String>,
    /// An existing team's id, or `null` to detach the key from its team.
    #[serde(default, deserialize_with = "nullable")]
    team_id: Option<Option<String>>,
    /// A new cost center, or `null` to clear it.
    #[serde(default, deserialize_with = "nullable")]
    cost_center: Option<Option<String>>,
    /// Replaces all tags.
    #[serde(default)]
    #[schema(max_items = 32)]
    tags: Option<Vec<String>>,
    /// Replaces the allowed models (each must be configured), or `null` to allow all.
    #[serde(default, deserialize_with = "nullable")]
    allowed_models: Option<Option<Vec<String>>>,
    /// A new routing preference, or `null` to clear it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Prefer>)]
    route_prefer: Option<Option<String>>,
    /// A new expiry, or `null` for none. Unlike on create, a past time is accepted (it expires
    /// the key).
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<Time>>,
    /// Turns stored bodies on or off for this key's requests.
    #[serde(default)]
    store_bodies: Option<bool>,
    /// `active` or `disabled`. Revoking has its own endpoint; a revoked key's status cannot be
    /// changed (409).
    #[serde(default)]
    #[schema(pattern = "^(active|disabled)$")]
    status: Option<String>,
    /// Limit changes, merged field by field into the current limits.
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

/// Update a key
///
/// Changes only the fields given; `status` may switch between `active` and `disabled`.
/// `limits` is merged field by field; a given `budget` replaces the current one. Takes effect
/// at once.
#[utoipa::path(patch, path = "/admin/v1/keys/{id}", tag = "keys", params(KeyId), request_body = KeyPatch,
    responses(
        (status = 200, description = "The key as changed.", body = Key),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 404, description = "No key has this id."),
        (status = 409, description = "The key is revoked."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn update_key(
    State(state): State<Arc<AppState>>,
    Path(KeyId(id)): Path<KeyId>,
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
    if let Some(b) = p.store_bodies {
        k.store_bodies = b;
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
    Ok(reply(StatusCode::OK, &key_out(&state, &k)))
}

/// Revoke a key
///
/// Sets the key's status to `revoked`, permanently. Takes effect at once. Revoking a revoked
/// key succeeds again. No request body is read.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/revoke", tag = "keys", params(KeyId),
    responses(
        (status = 200, description = "The key, revoked.", body = Key),
        (status = 404, description = "No key has this id."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path(KeyId(id)): Path<KeyId>,
) -> Result<Response, ApiError> {
    let mut k = find_key(&state, &id).await?;
    k.status = KeyStatus::Revoked;
    k.updated_ms = state.clock.now_ms();
    state.store.update_key(&k).await.map_err(store_err)?;
    state.keys.invalidate_all();
    tracing::info!(key = %k.id, "key revoked");
    Ok(reply(StatusCode::OK, &key_out(&state, &k)))
}

/// Rotate a key's secret
///
/// Replaces the secret (and so `prefix`) and sets `rotated_at`; the old secret stops working
/// at once. Everything else, including the id, limits and usage history, is kept. No request
/// body is read.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/rotate", tag = "keys", params(KeyId),
    responses(
        (status = 200, description = "The key and its new secret.", body = KeyWithSecret),
        (status = 404, description = "No key has this id."),
        (status = 409, description = "The key is revoked."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn rotate_key(
    State(state): State<Arc<AppState>>,
    Path(KeyId(id)): Path<KeyId>,
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
    let key = key_out(&state, &k);
    Ok(reply(StatusCode::OK, &KeyWithSecret { key, secret }))
}

/// The path parameter of a key's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub(super) struct KeyId(
    /// The key's id.
    #[param(example = "key_a1b2c3d4e5f60718")]
    String,
);

fn key_out(state: &AppState, k: &KeyRecord) -> Key {
    Key::of(k, limits_out(state, &format!("key:{}", k.id), &k.limits))
}
