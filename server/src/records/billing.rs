//! The billing outbox as the deliverer and the admin API see it.

use serde::Serialize;

use super::usage::UsageEvent;

/// One claimed outbox row with its usage event.
#[derive(Debug, Clone)]
pub struct Pending {
    pub event: UsageEvent,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The outbox at a glance, for the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxStatus {
    pub pending: i64,
    /// Refused for good by the receiver; waiting for an admin to re-queue them.
    pub rejected: i64,
    pub delivered_retained: i64,
    pub oldest_pending_ms: Option<i64>,
    pub max_attempts: i64,
    pub last_error: Option<String>,
}
