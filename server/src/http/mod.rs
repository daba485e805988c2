//! The HTTP surface: the only module that knows axum, routes and status codes.
//!
//! Layers, outermost first: request context (request id kept or made, `x-request-id` on every
//! response, access log, request metrics) → router → handler. Handlers are thin: authenticate,
//! read and validate the body, run [`crate::proxy::pipeline`], shape the answer and its
//! headers. Every error leaves as OpenAI-shaped JSON through [`ApiError`]'s `IntoResponse`.
//!
//! - [`serve`]: the accept loop (header timeout, connection cap, graceful drain).
//! - `access`: the bearer key and the preference header; `headers`: every response header.
//! - `chat`, `route`, `embeddings`, `models`, `ops`: the `/v1` handlers and health.
//! - `admin`: the `/admin/v1` API, one file per resource.
//! - `ui`: the dashboard at `/ui`: sign-in, sessions, its pages, server functions and bundle.

mod access;
mod admin;
mod chat;
mod cors;
mod embeddings;
mod headers;
mod models;
mod ops;
mod route;
pub mod serve;
mod stall;
mod ui;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::App;
use crate::error::ApiError;

/// The HTTP side of a running gateway: its shared parts, and the handles of what HTTP measures.
pub struct AppState {
    pub app: Arc<App>,
    pub metrics: Option<PrometheusHandle>,
    pub http_metrics: HttpMetrics,
    /// Model requests running now, at most `server.max_in_flight`.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

/// The request id, as sent by the client or made here.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

/// The address the request's connection came from.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// When the request reached the gateway.
#[derive(Clone, Copy, Debug)]
pub struct Received(pub Instant);

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.to_json()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(ra) = self.retry_after {
            let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        h.insert(
            HeaderName::from_static("x-switchyard-error-kind"),
            HeaderValue::from_static(self.kind()),
        );
        resp
    }
}

fn new_request_id() -> String {
    format!("req_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Accepts a client's request id only if it is short, visible ASCII.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_string())
}

/// The routes metrics are kept for; anything else counts as `unmatched`.
const ROUTES: &[&str] = &[
    "/v1/chat/completions",
    "/v1/route",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/{*id}",
    "/healthz",
    "/readyz",
    "/metrics",
    "unmatched",
];
const STATUS_CLASSES: &[&str] = &[
    "2xx", "3xx", "400", "403", "404", "413", "429", "4xx", "502", "503", "504", "5xx", "other",
];

/// Metric handles for every route × status class, registered once so the request path only increments.
pub struct HttpMetrics {
    requests: Vec<Vec<metrics::Counter>>,
    duration: Vec<metrics::Histogram>,
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        HttpMetrics {
            requests: ROUTES
                .iter()
                .map(|path| {
                    STATUS_CLASSES
                        .iter()
                        .map(|status| metrics::counter!("switchyard_http_requests_total", "path" => *path, "status" => *status))
                        .collect()
                })
                .collect(),
            duration: ROUTES
                .iter()
                .map(|path| metrics::histogram!("switchyard_http_request_duration_seconds", "path" => *path))
                .collect(),
        }
    }

    fn record(&self, path: &str, status: u16, elapsed: std::time::Duration) {
        let r = ROUTES.iter().position(|p| *p == path).unwrap_or(ROUTES.len() - 1);
        let class = status_class(status);
        let s = STATUS_CLASSES
            .iter()
            .position(|c| *c == class)
            .unwrap_or(STATUS_CLASSES.len() - 1);
        self.requests[r][s].increment(1);
        self.duration[r].record(elapsed.as_secs_f64());
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

async fn request_context(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let received = Instant::now();
    let id: Arc<str> = client_request_id(req.headers()).unwrap_or_else(new_request_id).into();
    let method = req.method().clone();
    let path = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let path = path.as_ref().map(|p| p.as_str()).unwrap_or("unmatched");
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(Received(received));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    let elapsed = received.elapsed();
    state.http_metrics.record(path, status, elapsed);
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, path, status, ms = elapsed.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, path, status, us = elapsed.as_micros() as u64, "request");
    }
    resp
}

fn status_class(s: u16) -> &'static str {
    match s {
        200..=299 => "2xx",
        400 => "400",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        401..=499 => "4xx",
        502 => "502",
        503 => "503",
        504 => "504",
        500..=599 => "5xx",
        300..=399 => "3xx",
        _ => "other",
    }
}

/// Reads a JSON body: checks the content type, the size limit and the time it takes (a client
/// that sends its body a byte at a time is cut off at `deadline`), returns the bytes.
pub(crate) async fn read_json_body(
    req: Request,
    limit: usize,
    deadline: Duration,
) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") && !mime.to_ascii_lowercase().ends_with("+json") {
            return Err(ApiError::unsupported_media_type(ct));
        }
    }
    if let Some(len) = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::body_too_large(limit));
        }
    }
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::body_timeout(deadline.as_secs()))?;
    let bytes = read.map_err(|e| {
        // `to_bytes` fails either on the limit or on a broken connection; both end the request.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            ApiError::body_too_large(limit)
        } else {
            ApiError::invalid_request("Could not read the request body")
        }
    })?;
    Ok((parts.headers, bytes))
}

async fn not_found() -> ApiError {
    ApiError::not_found("Unknown path. Switchyard serves the OpenAI API under /v1 (and /r/{route}/v1).")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Builds the router for a running gateway.
pub fn router(app: Arc<App>) -> Router {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(app.config.server.max_in_flight.max(1)));
    let state = Arc::new(AppState {
        app,
        metrics: crate::telemetry::metrics_handle(),
        http_metrics: HttpMetrics::new(),
        in_flight,
    });
    // The requests that call models count against `server.max_in_flight`.
    let model_calls = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/route", post(route::explain_route))
        .route(
            "/r/{route}/v1/chat/completions",
            post(chat::path_route_chat_completions),
        )
        .route("/r/{route}/v1/route", post(route::explain_path_route))
        .route("/r/{route}/v1/embeddings", post(embeddings::embeddings_under_route))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route_layer(middleware::from_fn_with_state(state.clone(), in_flight_limit));
    Router::new()
        .merge(model_calls)
        .route("/r/{route}/v1/models", get(models::list_models))
        .route("/r/{route}/v1/models/{*id}", get(models::get_model_under_route))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{*id}", get(models::get_model))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(admin::routes(&state).route_layer(middleware::from_fn_with_state(state.clone(), admin::require_master)))
        .merge(ui::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

/// Refuses a model request at once (503, `retry-after`) when `server.max_in_flight` are running,
/// or when the usage ledger's buffer is full (its database is down); the slot is held until the
/// response's last byte is sent or the client goes away.
async fn in_flight_limit(State(state): State<Arc<AppState>>, req: Request, next: middleware::Next) -> Response {
    let Ok(slot) = state.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("switchyard_overloaded_total").increment(1);
        return ApiError::overloaded().into_response();
    };
    if state.ledger.as_ref().is_some_and(|b| b.refuses()) {
        metrics::counter!("switchyard_ledger_refused_total").increment(1);
        return ApiError::ledger_full().into_response();
    }
    use http_body_util::BodyExt;
    next.run(req).await.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _slot = &slot;
            frame
        }))
    })
}

/// A header value from text that is known to be valid header text (numbers, ids, decimal amounts).
pub(crate) fn hv(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, JSON);
    r
}
