//! The request log: the latest requests with their metadata, filtered, page by page; one
//! request in full.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::{LoggedRequest, RequestPage, RequestQuery};

#[cfg(feature = "ssr")]
use crate::backend::get;

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
