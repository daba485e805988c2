//! A request's prompt and answer as the request log keeps them, where a key, team or route
//! opted in: cut to the configured size and redacted before they are stored.

use serde::Serialize;

/// The stored bodies of one request (the usage event `event_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RequestBodies {
    pub event_id: String,
    /// When the request arrived, in milliseconds since 1970 (its event's `ts_ms`).
    pub ts_ms: i64,
    /// The request body as the client sent it (JSON), redacted and cut.
    pub request: String,
    /// The answer as the client received it: the JSON body, or the SSE events of a stream;
    /// redacted and cut. Empty when no answer was sent.
    pub response: String,
    /// The request body was longer than the configured cap and was cut.
    pub request_truncated: bool,
    pub response_truncated: bool,
    /// How many matches of the configured patterns were replaced by `[REDACTED]`.
    pub redactions: u32,
}
