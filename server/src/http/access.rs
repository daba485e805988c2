//! Who is calling: the bearer key of a request, authenticated to a principal; and the caller's
//! routing preference header.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::headers::H_PREFER;
use super::AppState;
use crate::access::keys::{AuthError, SECRET_PREFIX};
use crate::error::ApiError;
use crate::records::keys::{Prefer, Principal};

/// The bearer token of a request (`Authorization: Bearer …`, or Azure-style `api-key`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        return (!token.is_empty()).then_some(token);
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The shown part of a presented key in messages: never the secret itself.
fn shown(token: &str) -> String {
    let visible: String = token.chars().take(12).collect();
    format!("{visible}****")
}

/// Authenticates a `/v1` request: `Some(principal)` for a valid virtual key, `None` for an
/// anonymous caller when keys are optional (or the master key), 401 otherwise.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<Principal>>, ApiError> {
    let token = bearer(headers);
    if let (Some(t), Some(master)) = (token, state.master_key.as_ref()) {
        if constant_time_eq(t.as_bytes(), master.expose().as_bytes()) {
            return Ok(None);
        }
    }
    match token {
        Some(t) if t.starts_with(SECRET_PREFIX) => match state.keys.authenticate(t, state.clock.now_ms()).await {
            Ok(p) => Ok(Some(p)),
            Err(AuthError::Unavailable(e)) => {
                tracing::error!(error = %e, "cannot look up an API key");
                Err(ApiError::service_unavailable(
                    "The key store is unavailable; try again shortly.",
                ))
            }
            Err(why) => {
                let reason = match why {
                    AuthError::Revoked => "it has been revoked",
                    AuthError::Disabled => "it is disabled",
                    AuthError::Expired => "it has expired",
                    _ => "it is not a known key",
                };
                Err(ApiError::invalid_api_key(format!(
                    "Incorrect API key provided: {} ({reason}).",
                    shown(t)
                )))
            }
        },
        _ if !state.auth_required => Ok(None),
        Some(t) => Err(ApiError::invalid_api_key(format!(
            "Incorrect API key provided: {}. Use a Switchyard key (sk-sy-…).",
            shown(t)
        ))),
        None => Err(ApiError::invalid_api_key(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-sy-…`.",
        )),
    }
}

/// Compares secrets without leaking, through timing, where they differ or how long the
/// expected one is: both are hashed first, and the digests compared in constant time.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// The caller's `x-switchyard-prefer` header, when sent (400 if it is not a preference).
pub(crate) fn prefer_header(headers: &HeaderMap) -> Result<Option<Prefer>, ApiError> {
    match headers.get(H_PREFER) {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(Prefer::parse).map(Some).ok_or_else(|| {
            ApiError::invalid_request("The x-switchyard-prefer header must be `cost`, `quality` or `balanced`.")
        }),
    }
}
