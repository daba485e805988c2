//! The admin API's routes and its OpenAPI document, both made from the handlers'
//! `#[utoipa::path]` annotations: a route is served exactly where it is documented, and its
//! bodies are described by the Rust types that produce and parse them.

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response as Answer;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    audit, billing, cache, decisions, deployments, export, keys, requests, routing, teams, usage, users, MAX_ADMIN_BODY,
};
use crate::error::Body as ErrorBody;
use crate::http::{json_response, AppState};

const DESCRIPTION: &str = "The admin API of the Switchyard LLM gateway, under `/admin/v1`. \
Every route needs the master key (read from the environment variable named by \
`auth.master_key_env`) as `Authorization: Bearer …`; without a configured master key the admin \
API answers 401.\n\n\
Bodies are JSON of at most 64 KiB, parsed strictly: unknown fields are refused, and every \
problem is a 400 whose `param` names the offending field. A body is fully validated before \
anything is written, so a failed request changes nothing. Money is exchanged as decimal USD \
strings (`\"12.50\"`), never as floating point; amounts in responses have nine decimals. Times \
in responses are ISO 8601 UTC with milliseconds.\n\n\
Errors are shaped like OpenAI's: `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`. An \
unknown path is a 404 and a wrong method a 405, with the same shape. Every response carries \
`x-request-id` (the client's own, if it sent a valid one).";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "The gateway itself")),
    security(("masterKey" = [])),
    components(schemas(crate::store::GroupBy, usage::ExportFormat)),
    tags(
        (name = "teams", description = "Teams group keys and carry their own limits and budget."),
        (name = "keys", description = "Virtual API keys for the `/v1` API."),
        (name = "usage", description = "Usage reports and exports from the ledger."),
        (name = "billing", description = "Prices, re-pricing, budget alerts and the billing outbox."),
        (name = "routing", description = "Routes: virtual models that pick a model per request."),
        (name = "cache", description = "The response cache: statistics and purges."),
        (name = "users", description = "The dashboard's users: admins, and viewers who read only."),
        (name = "audit", description = "Every admin change: who, through what, from where, what."),
        (name = "meta", description = "This document."),
    ),
)]
struct AdminApi;

/// The admin routes, each registered from its annotation.
fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(AdminApi::openapi())
        .routes(routes!(teams::create_team, teams::list_teams))
        .routes(routes!(teams::get_team, teams::update_team, teams::delete_team))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key, keys::update_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(usage::usage_report))
        .routes(routes!(usage::usage_summary))
        .routes(routes!(requests::list_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::get_request_bodies))
        .routes(routes!(export::export_usage))
        .routes(routes!(usage::reprice_usage))
        .routes(routes!(billing::list_prices))
        .routes(routes!(routing::list_routes, routing::replace_routes))
        .routes(routes!(routing::route_stats))
        .routes(routes!(decisions::mix))
        .routes(routes!(decisions::explain))
        .routes(routes!(deployments::list_deployments))
        .routes(routes!(audit::list_audit))
        .routes(routes!(billing::list_alerts))
        .routes(routes!(billing::billing_status))
        .routes(routes!(billing::billing_requeue))
        .routes(routes!(cache::cache_stats))
        .routes(routes!(cache::purge_cache))
        .routes(routes!(users::create_user, users::list_users))
        .routes(routes!(users::delete_user))
        .routes(routes!(openapi_document))
}

/// The admin API's axum router.
pub(super) fn routes() -> axum::Router<Arc<AppState>> {
    router().split_for_parts().0
}

/// The admin API's OpenAPI document.
fn document() -> utoipa::openapi::OpenApi {
    let mut doc = router().split_for_parts().1;
    Conventions.modify(&mut doc);
    doc
}

/// This OpenAPI document
#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The document (OpenAPI 3.1).", body = Object)))]
pub(super) async fn openapi_document() -> Response {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    let doc = DOC.get_or_init(|| Bytes::from(document().to_json().unwrap_or_default()));
    json_response(StatusCode::OK, doc.clone())
}

/// What every admin route shares, written once: the master key, the error shape, the
/// `x-request-id` header, and the answers to a missing key and to an unreadable body.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "masterKey".into(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The gateway's master key, from the environment variable named by `auth.master_key_env`.",
                    ))
                    .build(),
            ),
        );
        let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
        ErrorBody::schemas(&mut schemas);
        components.schemas.extend(schemas);
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                shared_answers(op);
            }
        }
    }
}

fn shared_answers(op: &mut Operation) {
    let answers = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        answers
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Answer::new(description)));
    };
    add(
        "401",
        "The master key is missing or wrong, or the admin API is disabled because no master key is configured.",
    );
    if op.request_body.is_some() {
        add("413", &format!("The body is larger than {MAX_ADMIN_BODY} bytes."));
        add(
            "415",
            "A `Content-Type` other than `application/json` (or `*+json`) was sent. A missing `Content-Type` is accepted.",
        );
    }
    for (status, answer) in answers.iter_mut() {
        let RefOr::T(answer) = answer else { continue };
        if status.as_str() >= "400" && answer.content.is_empty() {
            let error = Ref::from_schema_name(ErrorBody::name());
            answer
                .content
                .insert("application/json".into(), Content::new(Some(RefOr::Ref(error))));
        }
        let mut header = Header::new(ObjectBuilder::new().schema_type(Type::String));
        header.description = Some(
            "The request's id: the client's `x-request-id` if it sent a valid one (1 to 128 visible ASCII characters), else a new one."
                .into(),
        );
        answer.headers.insert("x-request-id".into(), header);
    }
}
