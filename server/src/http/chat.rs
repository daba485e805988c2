//! `POST /v1/chat/completions` (and under `/r/{route}/v1`): parse, run the pipeline, shape the
//! answer as JSON or SSE with its headers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;

use super::headers::{
    cache_headers, decision_headers, failure_response, routing_headers, standing_headers, usage_headers, H_CASCADE,
};
use super::{access, hv, read_json_body, AppState, Received, RequestId};
use crate::error::ApiError;
use crate::proxy::lookup::Directives;
use crate::proxy::pipeline::{self, ChatCall, ServedBody};
use crate::proxy::request::{parse_object, ChatRequest};

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    chat(state, request_id, received, None, req).await
}

/// `POST /r/{route}/v1/chat/completions`: the route in the path decides, whatever the body's
/// `model` says, so an app selects its policy with its base URL alone.
pub(crate) async fn path_route_chat_completions(
    State(state): State<Arc<AppState>>,
    Path(route): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    chat(state, request_id, received, Some(route), req).await
}

async fn chat(
    state: Arc<AppState>,
    request_id: Arc<str>,
    received: Instant,
    path_route: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers(), access::peer_ip(&req)).await?;
    let prefer = access::prefer_header(req.headers())?;
    let directives = req
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(Directives::parse)
        .fold(Directives::default(), |a, b| Directives {
            no_cache: a.no_cache || b.no_cache,
            no_store: a.no_store || b.no_store,
        });
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes, state.body_read_timeout).await?;
    let request_bytes = bytes.len();
    let request = ChatRequest::from_body(parse_object(&bytes)?)?;
    let reply = pipeline::chat(
        &state.app,
        ChatCall {
            request,
            principal,
            request_id,
            received,
            body: bytes,
            path_route,
            prefer,
            directives,
        },
    )
    .await;
    let mut resp = match reply.outcome {
        Err(f) => failure_response(f),
        Ok(served) => {
            let mut resp = match served.body {
                ServedBody::Json { body, accounted } => {
                    let len = body.len();
                    let mut resp = Response::new(Body::from(body));
                    let h = resp.headers_mut();
                    h.insert(http::header::CONTENT_TYPE, super::JSON);
                    usage_headers(h, &accounted, len);
                    resp
                }
                ServedBody::Stream(body) => {
                    let mut resp = Response::new(Body::from_stream(body));
                    *resp.status_mut() = StatusCode::OK;
                    let h = resp.headers_mut();
                    h.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    );
                    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    h.insert(
                        HeaderName::from_static("x-accel-buffering"),
                        HeaderValue::from_static("no"),
                    );
                    resp
                }
            };
            routing_headers(
                resp.headers_mut(),
                served.deployment.as_deref(),
                &served.model.name,
                served.attempts,
                received,
                served.upstream,
                request_bytes,
            );
            resp
        }
    };
    let h = resp.headers_mut();
    if let Some(s) = &reply.standing {
        standing_headers(h, s);
    }
    if let Some(c) = &reply.cascade {
        h.insert(H_CASCADE, hv(c));
    }
    if let Some(d) = &reply.decision {
        decision_headers(h, d);
    }
    if let Some(c) = &reply.cache {
        cache_headers(h, c);
    }
    Ok(resp)
}
