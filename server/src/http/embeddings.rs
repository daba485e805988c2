//! `POST /v1/embeddings` (and under `/r/{route}/v1`, where the route must exist): parse, run the
//! pipeline, shape the answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::Extension;

use super::headers::{failure_response, routing_headers, standing_headers, usage_headers};
use super::models::known_route;
use super::{access, read_json_body, AppState, Received, RequestId};
use crate::error::ApiError;
use crate::proxy::pipeline::{self, EmbeddingsCall, ServedBody};
use crate::proxy::request::{parse_object, EmbeddingsRequest};

/// `POST /r/{route}/v1/embeddings`: embeddings are not routed; the route in the path must exist.
pub(crate) async fn embeddings_under_route(
    state: State<Arc<AppState>>,
    Path(route): Path<String>,
    request_id: Extension<RequestId>,
    received: Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    known_route(&state, &route)?;
    embeddings(state, request_id, received, req).await
}

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Received(received)): Extension<Received>,
    req: Request,
) -> Result<Response, ApiError> {
    let principal = access::authenticate(&state, req.headers(), access::peer_ip(&req)).await?;
    let (_headers, bytes) = read_json_body(req, state.max_body_bytes, state.body_read_timeout).await?;
    let request_bytes = bytes.len();
    let request = EmbeddingsRequest::from_body(parse_object(&bytes)?)?;
    let reply = pipeline::embeddings(
        &state.app,
        EmbeddingsCall {
            request,
            principal,
            request_id,
            received,
            request_bytes,
        },
    )
    .await;
    let mut resp = match reply.outcome {
        Err(f) => failure_response(f),
        Ok(served) => {
            let ServedBody::Json { body, accounted } = served.body else {
                unreachable!("embeddings answer as JSON")
            };
            let len = body.len();
            let mut resp = Response::new(Body::from(body));
            let h = resp.headers_mut();
            h.insert(http::header::CONTENT_TYPE, super::JSON);
            routing_headers(
                h,
                served.deployment.as_deref(),
                &served.model.name,
                served.attempts,
                received,
                served.upstream,
                request_bytes,
            );
            usage_headers(h, &accounted, len);
            resp
        }
    };
    if let Some(s) = &reply.standing {
        standing_headers(resp.headers_mut(), s);
    }
    Ok(resp)
}
