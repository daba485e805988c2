//! `/admin/v1/cache`: the response cache's statistics per scope and route, and purges.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::{body, reply};
use crate::cache::{Purge, ScopeStats};
use crate::error::ApiError;
use crate::http::AppState;

/// The cache's figures.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CacheStats {
    /// Whether a cache is configured at all.
    enabled: bool,
    /// Entries held, and their bytes, in all.
    entries: u64,
    bytes: u64,
    /// The semantic tier's embedder (`local:all-MiniLM-L6-v2`, `remote:MODEL`, `lexical`), if
    /// the tier is on anywhere.
    embedder: Option<String>,
    /// Questions in the semantic index, and their bytes.
    semantic_entries: u64,
    semantic_bytes: u64,
    /// Per scope (`key:ID`, `team:ID`, `anonymous`) and route or model, ordered by both.
    data: Vec<ScopeStats>,
}

/// What a purge removed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Purged {
    purged: u64,
}

/// Cache statistics
///
/// Lookups, hits (exact and semantic), misses, bypasses, answers kept and what the hits saved,
/// per scope and route since the gateway started, with the entries each holds now.
#[utoipa::path(get, path = "/admin/v1/cache/stats", tag = "cache",
    responses((status = 200, description = "The cache's figures.", body = CacheStats)))]
pub(super) async fn cache_stats(State(state): State<Arc<AppState>>) -> Response {
    let stats = match &state.cache {
        Some(c) => {
            let (entries, bytes) = c.size();
            let (semantic_entries, semantic_bytes) = c.semantic_size();
            CacheStats {
                enabled: true,
                entries,
                bytes,
                embedder: c.embedder().map(str::to_string),
                semantic_entries: semantic_entries as u64,
                semantic_bytes: semantic_bytes as u64,
                data: c.stats(),
            }
        }
        None => CacheStats {
            enabled: false,
            entries: 0,
            bytes: 0,
            embedder: None,
            semantic_entries: 0,
            semantic_bytes: 0,
            data: Vec::new(),
        },
    };
    reply(StatusCode::OK, &stats)
}

/// Purge cache entries
///
/// Removes the entries that match every field given (`{}` removes all): by scope, by the route
/// or model asked for (`target`, or `route`), by the model that answered, or by age.
#[utoipa::path(post, path = "/admin/v1/cache/purge", tag = "cache", request_body = Purge,
    responses(
        (status = 200, description = "How many entries went.", body = Purged),
        (status = 400, description = "The body is invalid; `param` names the field."),
        (status = 503, description = "Persisted entries could not be deleted: the database is unavailable."),
    ))]
pub(super) async fn purge_cache(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let purge: Purge = body(req).await?;
    let purged = match &state.cache {
        Some(c) => c
            .purge_everywhere(&purge)
            .await
            .map_err(ApiError::service_unavailable)?,
        None => 0,
    };
    Ok(reply(StatusCode::OK, &Purged { purged }))
}
