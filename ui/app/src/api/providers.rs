//! Providers and the cache: each deployment's breaker, load, error rate and latency; the
//! cache's entries, hit rates and savings; purging it.

use leptos::prelude::*;

use crate::error::UiError;
use crate::types::ProvidersPage;

#[cfg(feature = "ssr")]
use crate::backend::{call, editor, get};

#[server(prefix = "/ui/api", endpoint = "providers")]
pub async fn load_providers() -> Result<ProvidersPage, UiError> {
    use crate::types::{CacheStats, DeploymentRow, List};
    let deployments: List<DeploymentRow> = get("/admin/v1/deployments".into()).await?;
    let cache: CacheStats = get("/admin/v1/cache/stats".into()).await?;
    Ok(ProvidersPage {
        deployments: deployments.data,
        cache,
    })
}

/// Purges the cache: all of it, or the entries asked for by one route or model. Returns how
/// many entries went.
#[server(prefix = "/ui/api", endpoint = "purge_cache")]
pub async fn purge_cache(csrf: String, target: String) -> Result<u64, UiError> {
    editor(&csrf)?;
    let body = if target.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({ "target": target.trim() })
    };
    let v: serde_json::Value = call(http::Method::POST, "/admin/v1/cache/purge".into(), Some(body)).await?;
    Ok(v["purged"].as_u64().unwrap_or(0))
}
