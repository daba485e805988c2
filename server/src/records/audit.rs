//! One entry of the audit log: an admin change, who made it, through what, from where.

use serde::Serialize;

/// A change made through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub ts_ms: i64,
    /// `master key`, or the dashboard user's name.
    pub actor: String,
    /// `api`, `cli` or `ui`.
    pub via: String,
    /// The client's address (for the dashboard, the browser's).
    pub address: Option<String>,
    /// What was done, in words: `key created`, `budget changed`, `cache purged`…
    pub action: String,
    /// What it was done to: a key, team or user id, or a route or model.
    pub target: Option<String>,
    pub method: String,
    pub path: String,
    /// The status the change answered with.
    pub status: u16,
    /// The request's body, passwords and secrets replaced by `***`, at most 4 KiB.
    pub detail: Option<String>,
}
