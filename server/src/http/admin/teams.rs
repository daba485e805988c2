//! `/admin/v1/teams`: create, list, read, change and delete teams.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, check_label, check_name, limits_json, nullable, ok_json, store_err, LimitsPatch};
use crate::access::keys::new_id;
use crate::clock::iso8601;
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::keys::TeamRecord;
use crate::records::limits::Limits;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamIn {
    name: String,
    #[serde(default)]
    cost_center: Option<String>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

pub(super) async fn create_team(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
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

pub(super) async fn list_teams(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let teams = state.store.list_teams().await.map_err(store_err)?;
    let data: Vec<Value> = teams.iter().map(|t| team_json(&state, t)).collect();
    Ok(ok_json(StatusCode::OK, json!({"object": "list", "data": data})))
}

pub(super) async fn find_team(state: &AppState, id: &str) -> Result<TeamRecord, ApiError> {
    state
        .store
        .get_team(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No team with id `{id}`.")))
}

pub(super) async fn get_team(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = find_team(&state, &id).await?;
    Ok(ok_json(StatusCode::OK, team_json(&state, &t)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    cost_center: Option<Option<String>>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

pub(super) async fn update_team(
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

pub(super) async fn delete_team(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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
pub(super) fn team_json(state: &AppState, t: &TeamRecord) -> Value {
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
