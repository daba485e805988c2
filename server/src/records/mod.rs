//! Plain records: what the store keeps and the rest of the gateway passes around. A leaf: it
//! depends on nothing of the gateway but the clock's calendar and integer money.
//!
//! - [`keys`]: keys, teams, the caller behind a request, and a caller's routing preference.
//! - [`limits`]: budgets, rate and concurrency limits, budget alerts.
//! - [`usage`]: the usage event, one ledger row per accepted request, its columns defined once.
//! - [`billing`]: the billing outbox's rows and status.
//! - [`cache`]: a response-cache entry as the database keeps it.
//! - [`dashboard`]: the dashboard's users and sessions.
//! - [`audit`]: an entry of the audit log of admin changes.
//! - [`bodies`]: a request's prompt and answer, kept where a key, team or route opts in.

pub mod audit;
pub mod billing;
pub mod bodies;
pub mod cache;
pub mod dashboard;
pub mod keys;
pub mod limits;
pub mod usage;
