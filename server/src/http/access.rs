//! Who is calling: the bearer key of a request, authenticated to a principal; and the caller's
//! routing preference header.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::headers::H_PREFER;
use super::AppState;
use crate::access::keys::{digest, AuthError, SECRET_PREFIX};
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
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Result<Option<Arc<Principal>>, ApiError> {
    let token = bearer(headers);
    // One digest of the token serves both the master-key check and the key lookup.
    let presented = token.map(digest);
    if let (Some(d), Some(master)) = (presented.as_ref(), state.master_key.as_ref()) {
        if master.matches(d) {
            return Ok(None);
        }
    }
    match (token, presented) {
        (Some(t), Some(d)) if t.starts_with(SECRET_PREFIX) => {
            let now = state.clock.now_ms();
            // An address that keeps presenting unknown keys waits before its next one is looked
            // up in the database; a key already cached (known, or known not to exist) costs
            // nothing to answer and is answered.
            let subject = peer.map(|ip| format!("ip:{ip}"));
            let subjects: Vec<&str> = subject.as_deref().into_iter().collect();
            if !state.keys.is_cached(&d) {
                let wait = state.auth_throttle.wait_ms(&subjects, now);
                if wait > 0 {
                    metrics::counter!("switchyard_auth_throttled_total").increment(1);
                    return Err(ApiError::rate_limited(
                        "auth",
                        format!(
                            "Too many unknown API keys from your address; try again in {} s.",
                            (wait + 999) / 1000
                        ),
                        std::time::Duration::from_millis(wait as u64),
                    ));
                }
            }
            let found = state.keys.authenticate_digest(t, &d, now).await;
            if matches!(found, Err(AuthError::Invalid)) {
                state.auth_throttle.failed(&subjects, now);
            }
            match found {
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
            }
        }
        _ if !state.auth_required => Ok(None),
        (Some(t), _) => Err(ApiError::invalid_api_key(format!(
            "Incorrect API key provided: {}. Use a Switchyard key (sk-sy-…).",
            shown(t)
        ))),
        (None, _) => Err(ApiError::invalid_api_key(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-sy-…`.",
        )),
    }
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

/// The client's address, where the accept loop recorded it (not in in-process tests).
pub(crate) fn peer_ip(req: &axum::extract::Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<super::Peer>().map(|p| p.0.ip())
}

/// Whether the request carries the master key as its bearer token.
pub(crate) fn is_master(state: &AppState, headers: &HeaderMap) -> bool {
    match (bearer(headers), &state.master_key) {
        (Some(t), Some(m)) => m.matches(&digest(t)),
        _ => false,
    }
}
