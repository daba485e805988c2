//! `/admin/v1/openapi.json`: the admin API's OpenAPI document.

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use crate::http::json_response;

pub(super) async fn openapi() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(include_bytes!("openapi.json")))
}
