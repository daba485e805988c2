//! Cross-origin calls from browsers to the OpenAI API (`/v1`, `/r/{route}/v1`): closed unless
//! `server.cors_allow_origins` names the page's origin (or is `["*"]`). The admin API and the
//! dashboard never answer cross-origin requests.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::ApiError;

/// The request headers a browser may send cross-origin: any (a request with a key carries no
/// cookies, so the wildcard holds), and `authorization`, which a wildcard never covers.
const ALLOW_HEADERS: &str = "*, authorization";
/// The response headers a cross-origin page may read: all of them (`x-request-id`, the rate
/// limits, every `x-switchyard-*`).
const EXPOSE_HEADERS: &str = "*";

fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || (path.starts_with("/r/") && path.contains("/v1/"))
}

/// The origin to allow, when the request comes from one the configuration allows.
fn allowed(state: &AppState, req: &Request) -> Option<HeaderValue> {
    let origin = req.headers().get(http::header::ORIGIN)?;
    let list = &state.config.server.cors_allow_origins;
    let text = origin.to_str().ok()?;
    list.iter().any(|o| o == "*" || o == text).then(|| origin.clone())
}

pub(crate) async fn cors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !is_api(req.uri().path()) || req.headers().get(http::header::ORIGIN).is_none() {
        return next.run(req).await;
    }
    let origin = allowed(&state, &req);
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(origin) = origin else {
            return ApiError::origin_not_allowed().into_response();
        };
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(http::header::VARY, HeaderValue::from_static("origin"));
        return r;
    }
    let mut r = next.run(req).await;
    if let Some(origin) = origin {
        let h = r.headers_mut();
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        h.append(http::header::VARY, HeaderValue::from_static("origin"));
    }
    r
}
