//! The request log: the latest requests with their metadata, filtered, page by page; one
//! request in full.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::{BodiesView, LoggedRequest, RequestPage, RequestQuery};

#[cfg(feature = "ssr")]
use crate::backend::{ask, get, session};

/// Rows per page.
pub const REQUESTS_PER_PAGE: usize = 50;

#[server(prefix = "/ui/api", endpoint = "requests")]
pub async fn load_requests(q: RequestQuery) -> Result<RequestPage, UiError> {
    let mut query = format!("limit={REQUESTS_PER_PAGE}");
    for (name, v) in [
        ("key_id", &q.key_id),
        ("model", &q.model),
        ("route", &q.route),
        ("outcome", &q.outcome),
        ("request_id", &q.request_id),
        ("before", &q.before),
    ] {
        if !v.trim().is_empty() {
            query.push_str(&format!("&{name}={}", enc(v.trim())));
        }
    }
    get(format!("/admin/v1/requests?{query}")).await
}

#[server(prefix = "/ui/api", endpoint = "request")]
pub async fn load_request(id: String) -> Result<LoggedRequest, UiError> {
    get(format!("/admin/v1/requests/{}", enc(&id))).await
}

/// A request's stored bodies, for admins (prompts and answers may hold what viewers should not
/// read); JSON bodies that were not cut are shown indented.
#[server(prefix = "/ui/api", endpoint = "request_bodies")]
pub async fn load_request_bodies(id: String) -> Result<BodiesView, UiError> {
    use crate::types::StoredBodies;
    if !session()?.viewer.can_edit() {
        return Ok(BodiesView::AdminsOnly);
    }
    // Not through `get`: "none stored" (404) is an answer here, not the page's status.
    match ask::<StoredBodies>(
        http::Method::GET,
        format!("/admin/v1/requests/{}/bodies", enc(&id)),
        None,
    )
    .await
    {
        Ok(mut b) => {
            let pretty = |text: &mut String, cut: bool| {
                if let Some(v) = (!cut)
                    .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
                    .flatten()
                {
                    *text = serde_json::to_string_pretty(&v).unwrap_or_default();
                }
            };
            pretty(&mut b.request, b.request_truncated);
            pretty(&mut b.response, b.response_truncated);
            Ok(BodiesView::Stored(b))
        }
        Err(e) if e.status == 404 => Ok(BodiesView::NotStored),
        Err(e) => Err(crate::backend::fail(e)),
    }
}
