//! `/admin/v1/users`: the dashboard's users (admins and read-only viewers).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::wire::{User, UserDeleted, UserList};
use super::{body, reply, store_err};
use crate::dashboard::UserError;
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::dashboard::Role;

/// A dashboard user to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserIn {
    /// 1 to 64 letters, digits and `-` `_` `.` `@`.
    name: String,
    /// 12 to 1024 characters; stored as an Argon2id hash.
    password: String,
    /// `admin` (may change everything) or `viewer` (reads only).
    #[schema(example = "viewer")]
    role: String,
}

fn dashboard(state: &AppState) -> Result<&crate::dashboard::Dashboard, ApiError> {
    state
        .dashboard
        .as_deref()
        .ok_or_else(|| ApiError::not_found("The dashboard is disabled (`dashboard.enabled = false`)."))
}

/// Add a dashboard user
#[utoipa::path(post, path = "/admin/v1/users", tag = "users", request_body = UserIn,
    responses(
        (status = 201, description = "The user.", body = User),
        (status = 400, description = "A field is invalid; `param` names it."),
        (status = 409, description = "A user with this name exists."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn create_user(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let u: UserIn = body(req).await?;
    let role = Role::parse(&u.role).ok_or_else(|| ApiError::invalid_param("role", "must be `admin` or `viewer`"))?;
    let made = dashboard(&state)?
        .add_user(&u.name, &u.password, role)
        .await
        .map_err(|e| match e {
            UserError::Invalid(field, m) => ApiError::invalid_param(field, m),
            UserError::Exists => ApiError::conflict(format!("A user named `{}` exists.", u.name.trim())),
            UserError::Store(e) => store_err(e),
        })?;
    tracing::info!(user = %made.name, role = made.role.as_str(), "dashboard user added");
    Ok(reply(StatusCode::CREATED, &User::of(&made)))
}

/// List dashboard users
#[utoipa::path(get, path = "/admin/v1/users", tag = "users",
    responses(
        (status = 200, description = "The users, by name.", body = UserList),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_users(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    dashboard(&state)?;
    let users = state.store.list_users().await.map_err(store_err)?;
    Ok(reply(
        StatusCode::OK,
        &UserList::from(users.iter().map(User::of).collect::<Vec<_>>()),
    ))
}

/// The path parameter of a user's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("name"), parameter_in = Path)]
pub(super) struct UserName(
    /// The user's name.
    String,
);

/// Delete a dashboard user
///
/// Its sessions end at once.
#[utoipa::path(delete, path = "/admin/v1/users/{name}", tag = "users", params(UserName),
    responses(
        (status = 200, description = "The user is gone.", body = UserDeleted),
        (status = 404, description = "No user has this name."),
        (status = 503, description = "The database is unavailable; nothing was changed."),
    ))]
pub(super) async fn delete_user(
    State(state): State<Arc<AppState>>,
    Path(UserName(name)): Path<UserName>,
) -> Result<Response, ApiError> {
    dashboard(&state)?;
    if !state.store.delete_user(&name).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("No user named `{name}`.")));
    }
    tracing::info!(user = %name, "dashboard user deleted");
    Ok(reply(StatusCode::OK, &UserDeleted { name, deleted: true }))
}
