//! `/admin/v1/teams`: create, list, read, change and delete teams.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::wire::{Team, TeamDeleted, TeamList, TeamTag};
use super::{body, check_label, check_name, limits_out, nullable, reply, store_err, LimitsPatch};
use crate::access::keys::new_id;
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::keys::TeamRecord;
use crate::records::limits::Limits;

/// A team to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamIn {
    /// 1 to 128 characters without control characters, stored trimmed; unique among teams (a
    /// duplicate is a 409).
    name: String,
    /// A cost center label: 1 to 64 ASCII letters, digits and `-` `.` `:` `/`.
    #[serde(default)]
    cost_center: Option<String>,
    /// Initial limits; omitted or `null` means no limits.
    #[serde(default)]
    limits: Option<LimitsPatch>,
    /// Store the prompt and answer bodies of the team's keys' requests in the request log
    /// (redacted, cut and kept as `[request_log]` says). Off by default.
    #[serde(default)]
    store_bodies: bool,
}

/// Create a team
#[utoipa::path(post, path = "/admin/v1/teams", tag = "teams", request_body = TeamIn,
    responses(
        (status = 201, description = "The team as created.", body = Team),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 409, description = "A team with this name exists."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
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
        store_bodies: t.store_bodies,
        created_ms: now,
        updated_ms: now,
    };
    state.store.insert_team(&rec).await.map_err(store_err)?;
    tracing::info!(team = %rec.id, name = %rec.name, "team created");
    Ok(reply(StatusCode::CREATED, &team_out(&state, &rec)))
}

/// List all teams
#[utoipa::path(get, path = "/admin/v1/teams", tag = "teams",
    responses(
        (status = 200, description = "Every team, oldest first.", body = TeamList),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_teams(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let teams = state.store.list_teams().await.map_err(store_err)?;
    let data: Vec<Team> = teams.iter().map(|t| team_out(&state, t)).collect();
    Ok(reply(StatusCode::OK, &TeamList::from(data)))
}

pub(super) async fn find_team(state: &AppState, id: &str) -> Result<TeamRecord, ApiError> {
    state
        .store
        .get_team(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found(format!("No team with id `{id}`.")))
}

/// Get a team
#[utoipa::path(get, path = "/admin/v1/teams/{id}", tag = "teams", params(TeamId),
    responses(
        (status = 200, description = "The team.", body = Team),
        (status = 404, description = "No team has this id."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn get_team(
    State(state): State<Arc<AppState>>,
    Path(TeamId(id)): Path<TeamId>,
) -> Result<Response, ApiError> {
    let t = find_team(&state, &id).await?;
    Ok(reply(StatusCode::OK, &team_out(&state, &t)))
}

/// Fields to change; omitted fields are left as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamPatch {
    /// A new name, unique among teams (a duplicate is a 409).
    #[serde(default)]
    name: Option<String>,
    /// A new cost center, or `null` to clear it.
    #[serde(default, deserialize_with = "nullable")]
    cost_center: Option<Option<String>>,
    /// Limit changes, merged field by field into the current limits.
    #[serde(default)]
    limits: Option<LimitsPatch>,
    /// Turns stored bodies on or off for the team's keys' requests.
    #[serde(default)]
    store_bodies: Option<bool>,
}

/// Update a team
///
/// Changes only the fields given. `limits` is merged field by field; a given `budget` replaces
/// the current one. Takes effect for the team's keys at once.
#[utoipa::path(patch, path = "/admin/v1/teams/{id}", tag = "teams", params(TeamId), request_body = TeamPatch,
    responses(
        (status = 200, description = "The team as changed.", body = Team),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 404, description = "No team has this id."),
        (status = 409, description = "Another team has this name."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn update_team(
    State(state): State<Arc<AppState>>,
    Path(TeamId(id)): Path<TeamId>,
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
    if let Some(b) = p.store_bodies {
        t.store_bodies = b;
    }
    t.updated_ms = state.clock.now_ms();
    if !state.store.update_team(&t).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("No team with id `{id}`.")));
    }
    state.keys.invalidate_all();
    tracing::info!(team = %t.id, "team updated");
    Ok(reply(StatusCode::OK, &team_out(&state, &t)))
}

/// Delete a team
///
/// Only a team without keys can be deleted; move or revoke its keys first (revoked keys still
/// count).
#[utoipa::path(delete, path = "/admin/v1/teams/{id}", tag = "teams", params(TeamId),
    responses(
        (status = 200, description = "The team is gone.", body = TeamDeleted),
        (status = 404, description = "No team has this id."),
        (status = 409, description = "The team still has keys."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn delete_team(
    State(state): State<Arc<AppState>>,
    Path(TeamId(id)): Path<TeamId>,
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
    Ok(reply(
        StatusCode::OK,
        &TeamDeleted {
            id,
            object: TeamTag::Tag,
            deleted: true,
        },
    ))
}

/// The path parameter of a team's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub(super) struct TeamId(
    /// The team's id.
    #[param(example = "team_3f9a1c2b7d4e5f60")]
    String,
);

fn team_out(state: &AppState, t: &TeamRecord) -> Team {
    Team::of(t, limits_out(state, &format!("team:{}", t.id), &t.limits))
}
