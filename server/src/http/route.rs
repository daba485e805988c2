//! `POST /v1/route` (and under `/r/{route}/v1`): the routing decision for a chat body, without
//! calling any model. Authenticated and rate limited like a chat request.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::headers::{decision_headers, failure_response, standing_headers};
use super::{access, json_response, read_json_body, AppState};
use crate::error::ApiError;
use crate::proxy::pipeline::{self, RouteCall};
use crate::proxy::request::{parse_object, ChatRequest};

/// `POST /v1/route`.
pub(crate) async fn explain_route(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    explain(state, None, req).await
}

/// `POST /r/{route}/v1/route`.
pub(crate) async fn explain_path_route(
    State(state): State<Arc<AppState>>,
    Path(route): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    explain(state, Some(route), req).await
}

async fn explain(state: Arc<AppState>, path_route: Option<String>, req: Request) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers(), access::peer_ip(&req)).await?;
    let prefer = access::prefer_header(req.headers())?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes, state.body_read_timeout).await?;
    let request = ChatRequest::from_body(parse_object(&bytes)?)?;
    let call = RouteCall {
        request,
        principal,
        path_route,
        prefer,
    };
    let reply = match pipeline::route(&state.app, call).await {
        Ok(r) => r,
        Err(f) => return Ok(failure_response(f)),
    };
    // A decision is plain data: it always serializes.
    let mut v = serde_json::to_value(&reply.decision).unwrap_or_default();
    v["object"] = serde_json::Value::String("route.decision".into());
    let mut resp = json_response(StatusCode::OK, bytes::Bytes::from(v.to_string()));
    decision_headers(resp.headers_mut(), &reply.decision);
    if let Some(s) = &reply.standing {
        standing_headers(resp.headers_mut(), s);
    }
    Ok(resp)
}
