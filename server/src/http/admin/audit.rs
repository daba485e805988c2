//! The audit log: every change made through the admin API, whether it came from a script, the
//! CLI or the dashboard (which calls the admin API in process), is stored after it succeeded
//! with who made it, through what, from where and what it was; `GET /admin/v1/audit` reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::wire::AuditList;
use super::{next_cursor, page_of, reply, store_err, MAX_ADMIN_BODY};
use crate::error::ApiError;
use crate::http::AppState;
use crate::records::audit::AuditEntry;

/// Who is calling the admin API, set by whoever let the call in: the master-key check (`api`,
/// or `cli` for the `switchyard` command) or the dashboard (`ui`, as its signed-in user).
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub name: String,
    pub via: &'static str,
    pub address: Option<String>,
}

pub(crate) use crate::admin_client::CLI_AGENT;

/// Largest body detail kept per entry.
const MAX_DETAIL: usize = 4096;

/// What a change does, in words, and what it names: from the method and the path's segments
/// after `/admin/v1/`. `None` for a request that changes nothing (reads, and explaining a
/// routing decision).
fn action_of(method: &Method, path: &str) -> Option<(&'static str, Option<String>)> {
    let rest = path.strip_prefix("/admin/v1/")?;
    let seg: Vec<&str> = rest.split('/').collect();
    let id = |i: usize| seg.get(i).map(|s| (*s).to_string());
    let m = method.as_str();
    Some(match (m, seg.as_slice()) {
        ("POST", ["keys"]) => ("key created", None),
        ("PATCH", ["keys", _]) => ("key changed", id(1)),
        ("POST", ["keys", _, "revoke"]) => ("key revoked", id(1)),
        ("POST", ["keys", _, "rotate"]) => ("key rotated", id(1)),
        ("POST", ["teams"]) => ("team created", None),
        ("PATCH", ["teams", _]) => ("team changed", id(1)),
        ("DELETE", ["teams", _]) => ("team deleted", id(1)),
        ("PUT", ["routes"]) => ("routing table replaced", None),
        ("POST", ["cache", "purge"]) => ("cache purged", None),
        ("POST", ["usage", "reprice"]) => ("usage re-priced", None),
        ("POST", ["billing", "requeue"]) => ("billing events requeued", None),
        ("POST", ["users"]) => ("user added", None),
        ("DELETE", ["users", _]) => ("user removed", id(1)),
        ("GET" | "HEAD", _) | ("POST", ["routes", "explain"]) => return None,
        _ => ("admin change", None),
    })
}

/// A body as kept: JSON with every `password`, `secret` and `key` value replaced by `***`,
/// at most [`MAX_DETAIL`] bytes.
fn detail_of(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    fn hide(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if matches!(k.as_str(), "password" | "secret" | "key" | "api_key") {
                        *v = Value::String("***".into());
                    } else {
                        hide(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(hide),
            _ => {}
        }
    }
    let mut text = match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            hide(&mut v);
            v.to_string()
        }
        Err(_) => "(not JSON)".to_string(),
    };
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    Some(text)
}

/// An entry's id: its time, then a per-process sequence (so entries of one millisecond keep
/// their order), then a random part (so replicas never collide).
fn entry_id(ts_ms: i64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let random = crate::access::keys::new_id("");
    format!("aud_{ts_ms:013}_{seq:010}{random}")
}

/// Records each successful change. Runs inside every way into the admin API, so a change made
/// through the dashboard is recorded once, as its user.
pub(crate) async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some((action, target)) = action_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let actor = req.extensions().get::<Actor>().cloned().unwrap_or(Actor {
        name: "unknown".into(),
        via: "api",
        address: None,
    });
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (parts, body) = req.into_parts();
    // Bodies past the admin limit are refused by the handler anyway; read one byte more to see it.
    let bytes = match axum::body::to_bytes(body, MAX_ADMIN_BODY + 1).await {
        Ok(b) => b,
        Err(_) => return ApiError::body_too_large(MAX_ADMIN_BODY).into_response(),
    };
    let detail = detail_of(&bytes);
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if !resp.status().is_success() {
        return resp;
    }
    // A create names its new record: read the id back from the answer.
    let (parts, body) = resp.into_parts();
    let Ok(out) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let target = target.or_else(|| {
        let v: Value = serde_json::from_slice(&out).ok()?;
        v["id"].as_str().or(v["name"].as_str()).map(str::to_string)
    });
    let ts_ms = state.clock.now_ms();
    let entry = AuditEntry {
        id: entry_id(ts_ms),
        ts_ms,
        actor: actor.name,
        via: actor.via.to_string(),
        address: actor.address,
        action: action.to_string(),
        target,
        method,
        path,
        status: parts.status.as_u16(),
        detail,
    };
    tracing::info!(actor = %entry.actor, via = %entry.via, action = %entry.action,
        target = entry.target.as_deref().unwrap_or(""), "admin change");
    if let Err(e) = state.store.write_audit(&entry).await {
        // The change is made; losing its record is logged loudly rather than undoing it.
        tracing::error!(error = %e, action = %entry.action, "the audit entry could not be written");
        metrics::counter!("switchyard_audit_write_failures_total").increment(1);
    }
    Response::from_parts(parts, Body::from(out))
}

/// Which entries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// At most this many (1 to 1000, 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
}

/// The audit log
///
/// Every change made through the admin API (by a script, the CLI or the dashboard), newest
/// first: when, who (`master key` or the dashboard user), through what (`api`, `cli`, `ui`),
/// from where, what (`key created`, `key changed`, `cache purged`…), to what, and the body
/// sent with passwords and secrets hidden.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "The entries.", body = AuditList),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn list_audit(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid_request(format!("Invalid query: {}", e.body_text())))?;
    let (limit, before) = page_of(q.limit, 100, q.before.as_deref())?;
    let data = state.store.audit_entries(before, limit).await.map_err(store_err)?;
    let next = next_cursor(data.len(), limit, data.last().map(|e| (e.ts_ms, e.id.as_str())));
    Ok(reply(
        StatusCode::OK,
        &AuditList {
            object: super::wire::ListTag::Tag,
            data,
            next,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_and_reads_are_not_recorded() {
        let post = Method::POST;
        assert_eq!(action_of(&post, "/admin/v1/keys"), Some(("key created", None)));
        assert_eq!(
            action_of(&Method::PATCH, "/admin/v1/keys/key_1"),
            Some(("key changed", Some("key_1".into())))
        );
        assert_eq!(
            action_of(&post, "/admin/v1/keys/key_1/revoke"),
            Some(("key revoked", Some("key_1".into())))
        );
        assert_eq!(
            action_of(&Method::PUT, "/admin/v1/routes"),
            Some(("routing table replaced", None))
        );
        assert_eq!(action_of(&post, "/admin/v1/cache/purge"), Some(("cache purged", None)));
        assert_eq!(action_of(&Method::GET, "/admin/v1/keys"), None);
        assert_eq!(action_of(&post, "/admin/v1/routes/explain"), None);
        assert_eq!(action_of(&post, "/elsewhere"), None);
    }

    #[test]
    fn ids_order_entries_of_one_millisecond() {
        let (a, b) = (entry_id(1_700_000_000_000), entry_id(1_700_000_000_000));
        assert!(a < b && a.starts_with("aud_1700000000000_"), "{a} {b}");
        assert!(entry_id(999) < entry_id(1_000), "times of any width sort");
    }

    #[test]
    fn secrets_are_hidden_and_details_bounded() {
        let d = detail_of(br#"{"name":"ops","password":"hunter2 hunter2","nested":[{"secret":"s"}]}"#).unwrap();
        assert!(!d.contains("hunter2") && !d.contains("\"s\""), "{d}");
        assert!(d.contains("\"ops\"") && d.contains("***"));
        assert_eq!(detail_of(b""), None);
        assert_eq!(detail_of(b"not json").as_deref(), Some("(not JSON)"));
        let big = format!("{{\"name\":\"{}\"}}", "é".repeat(5000));
        let d = detail_of(big.as_bytes()).unwrap();
        assert!(d.len() <= MAX_DETAIL + '…'.len_utf8(), "{}", d.len());
    }
}
