//! The one error type clients see, shaped like OpenAI's: `{"error":{"message","type","param","code"}}`.
//!
//! Every failure, ours or an upstream's, becomes an [`ApiError`] with the status a client can act
//! on (never 200 for a failure). Each carries a short [`ApiError::kind`] for metrics labels and
//! usage rows. Internal details (upstream URLs, keys, stack traces) are never put in messages.

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`, `rate_limit_error`…
    pub error_type: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Sent as `retry-after` (seconds).
    pub retry_after: Option<Duration>,
    kind: &'static str,
}

/// Every failure is shaped like OpenAI's errors. All four inner fields are always present;
/// absent values are `null`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
struct Inner<'a> {
    /// Human-readable explanation.
    message: &'a str,
    /// OpenAI-style error class, e.g. `invalid_request_error` or `server_error`.
    #[serde(rename = "type")]
    error_type: &'a str,
    /// The offending field's path, for an error about one field.
    param: Option<&'a str>,
    /// A short machine-readable name of the error, e.g. `invalid_api_key`.
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            error_type,
            param: None,
            code: None,
            retry_after: None,
            kind,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    /// A short, low-cardinality name for metrics and usage rows.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The JSON body, exactly as OpenAI shapes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            error: Inner {
                message: &self.message,
                error_type: self.error_type,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .expect("serializing plain strings cannot fail")
    }

    /// A field of the request is missing or wrong; `param` names it (`messages[2].role`).
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid_request_error",
            message,
        )
        .with_param(param)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid_request_error",
            message,
        )
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "invalid_request_error",
            message,
        )
        .with_code("invalid_json")
    }

    pub fn unsupported_media_type(found: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "invalid_request_error",
            format!("Content-Type must be application/json, got `{found}`"),
        )
        .with_code("unsupported_media_type")
    }

    /// The client did not send its whole body in time (a slow or stalled sender).
    pub fn body_timeout(secs: u64) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "invalid_request_error",
            format!("The request body did not arrive within {secs} s"),
        )
        .with_code("request_timeout")
    }

    pub fn body_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "invalid_request_error",
            format!("Request body exceeds the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn context_length_exceeded(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            "invalid_request_error",
            message,
        )
        .with_param("messages")
        .with_code("context_length_exceeded")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "invalid_request_error", message).with_code("not_found")
    }

    /// No key, an unknown key, or one that is revoked, disabled or expired.
    pub fn invalid_api_key(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "invalid_request_error",
            message,
        )
        .with_code("invalid_api_key")
    }

    /// A browser page of an origin `server.cors_allow_origins` does not list.
    pub fn origin_not_allowed() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "invalid_request_error",
            "This origin may not call the API from a browser; see server.cors_allow_origins.",
        )
        .with_code("origin_not_allowed")
    }

    /// The key may not use this model.
    pub fn model_not_allowed(model: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            "invalid_request_error",
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .with_param("model")
        .with_code("model_not_allowed")
    }

    /// The admin API was called without the master key.
    pub fn admin_unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin_unauthorized",
            "invalid_request_error",
            message,
        )
        .with_code("invalid_api_key")
    }

    /// A budget cannot cover the request.
    pub fn insufficient_quota(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
            message,
        )
        .with_code("insufficient_quota")
    }

    /// A rate or concurrency limit of the gateway's own (`what`: `requests`, `tokens`…).
    pub fn rate_limited(what: &'static str, message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", what, message)
            .with_code("rate_limit_exceeded")
            .with_retry_after(Some(retry_after))
    }

    /// The gateway has `server.max_in_flight` requests running already.
    pub fn overloaded() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "server_error",
            "The gateway is at its limit of requests in flight; retry shortly.",
        )
        .with_code("server_overloaded")
        .with_retry_after(Some(Duration::from_secs(1)))
    }

    /// The usage ledger cannot be written and its buffer has no room for more requests.
    pub fn ledger_full() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_full",
            "server_error",
            "The gateway cannot record usage at the moment (its database is unreachable or too slow, and the buffer of usage events is full); retry shortly.",
        )
        .with_code("service_unavailable")
        .with_retry_after(Some(Duration::from_secs(5)))
    }

    /// A dependency of the gateway (its database) is unreachable.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "server_error",
            message,
        )
        .with_code("service_unavailable")
    }

    /// A bug: the gateway could not do what it should have (for example write a response).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "server_error", message)
    }

    /// The change conflicts with existing data (a duplicate name, a team that still has keys).
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", "invalid_request_error", message).with_code("conflict")
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "invalid_request_error",
            "Method not allowed for this endpoint",
        )
        .with_code("method_not_allowed")
    }

    /// Every deployment was rate limited upstream.
    pub fn upstream_rate_limited(retry_after: Option<Duration>) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "upstream_rate_limited",
            "rate_limit_error",
            "The upstream provider is rate limiting requests; retry after the indicated delay",
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(retry_after.or(Some(Duration::from_secs(1))))
    }

    /// An upstream rejected the request as invalid: the client can fix it, so its message is passed on.
    pub fn upstream_bad_request(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::new(status, "upstream_bad_request", "invalid_request_error", message)
    }

    pub fn upstream_error(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", "server_error", message).with_code("upstream_error")
    }

    pub fn upstream_timeout() -> Self {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "server_error",
            "The upstream provider did not answer in time",
        )
        .with_code("upstream_timeout")
    }

    /// Every deployment is cooling down after repeated failures.
    pub fn no_healthy_deployment(model: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_deployment",
            "server_error",
            format!("No healthy deployment is available for `{model}`; retry shortly"),
        )
        .with_code("service_unavailable")
        .with_retry_after(Some(Duration::from_secs(1)))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_openai() {
        let e = ApiError::invalid_param("messages[0].role", "bad role");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "bad role", "type": "invalid_request_error", "param": "messages[0].role", "code": null}})
        );
        let e = ApiError::model_not_found("nope");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn no_failure_maps_to_success() {
        let all = [
            ApiError::invalid_request("x"),
            ApiError::invalid_json("x"),
            ApiError::unsupported_media_type("text/plain"),
            ApiError::body_too_large(1),
            ApiError::model_not_found("m"),
            ApiError::context_length_exceeded("x"),
            ApiError::upstream_rate_limited(None),
            ApiError::upstream_error("x"),
            ApiError::upstream_timeout(),
            ApiError::no_healthy_deployment("m"),
        ];
        for e in all {
            assert!(e.status.as_u16() >= 400, "{e}");
            assert!(!e.kind().is_empty());
        }
    }
}
