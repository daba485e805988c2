//! The audit log: every admin change, whoever made it and however.

use leptos::prelude::*;

use super::enc;
use crate::error::UiError;
use crate::types::AuditPage;

#[cfg(feature = "ssr")]
use crate::backend::get;

/// A page of 50 entries, newest first, before the cursor `before` (blank: the newest).
#[server(prefix = "/ui/api", endpoint = "audit")]
pub async fn load_audit(before: String) -> Result<AuditPage, UiError> {
    let cursor = if before.is_empty() {
        String::new()
    } else {
        format!("&before={}", enc(&before))
    };
    get(format!("/admin/v1/audit?limit=50{cursor}")).await
}
