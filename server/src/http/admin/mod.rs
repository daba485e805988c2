//! `/admin/v1`: keys, teams, budgets and limits, usage reports and exports, behind the master key.
//!
//! Bodies are parsed strictly (unknown fields are refused, `param` names the offending field)
//! and fully validated before anything is written, so a bad request changes nothing. Money is
//! exchanged as decimal USD strings (`"12.50"`), never as floating point.

mod billing;
mod export;
mod keys;
mod openapi;
mod routing;
mod teams;
mod usage;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::access::keys::digest;
use crate::clock::{iso8601, parse_time};
use crate::error::ApiError;
use crate::http::access::bearer;
use crate::http::{json_response, read_json_body, AppState};
use crate::money::pricing::Nanos;
use crate::records::limits::{Budget, Limits, Period};
use crate::store::StoreError;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/teams", post(teams::create_team).get(teams::list_teams))
        .route(
            "/admin/v1/teams/{id}",
            get(teams::get_team)
                .patch(teams::update_team)
                .delete(teams::delete_team),
        )
        .route("/admin/v1/keys", post(keys::create_key).get(keys::list_keys))
        .route("/admin/v1/keys/{id}", get(keys::get_key).patch(keys::update_key))
        .route("/admin/v1/keys/{id}/revoke", post(keys::revoke_key))
        .route("/admin/v1/keys/{id}/rotate", post(keys::rotate_key))
        .route("/admin/v1/usage", get(usage::usage))
        .route("/admin/v1/usage/export", get(export::export))
        .route("/admin/v1/usage/reprice", post(usage::reprice))
        .route("/admin/v1/prices", get(billing::prices))
        .route(
            "/admin/v1/routes",
            get(routing::list_routes).put(routing::replace_routes),
        )
        .route("/admin/v1/routes/stats", get(routing::route_stats))
        .route("/admin/v1/alerts", get(billing::alerts))
        .route("/admin/v1/billing", get(billing::billing_status))
        .route("/admin/v1/billing/requeue", post(billing::billing_requeue))
        .route("/admin/v1/openapi.json", get(openapi::openapi))
}

/// Every admin route checks the master key first.
pub(crate) async fn require_master(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(master) = &state.master_key else {
        return ApiError::admin_unauthorized(
            "The admin API is disabled: set a master key in the environment variable named by auth.master_key_env.",
        )
        .into_response();
    };
    match bearer(req.headers()) {
        Some(t) if master.matches(&digest(t)) => next.run(req).await,
        _ => ApiError::admin_unauthorized("The admin API needs the master key as `Authorization: Bearer …`.")
            .into_response(),
    }
}

pub(super) fn store_err(e: StoreError) -> ApiError {
    if e.is_conflict() {
        return ApiError::conflict("A record with that name already exists.");
    }
    tracing::error!(error = %e, "admin store call failed");
    ApiError::service_unavailable("The database is unavailable; nothing was changed.")
}

/// Parses a JSON body strictly: every problem is a 400 whose `param` is the field's path.
pub(super) async fn body<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let (_h, bytes) = read_json_body(req, MAX_ADMIN_BODY).await?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_json(format!("The body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::invalid_request(format!("Invalid body: {inner}"))
        } else {
            ApiError::invalid_param(path, format!("Invalid value: {inner}"))
        }
    })
}

/// Distinguishes a field that is absent (`None`) from one set to `null` (`Some(None)`).
pub(super) fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A USD amount as a decimal string or a JSON number, parsed exactly.
#[derive(Debug, Clone)]
pub(super) struct Usd(Nanos);

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let text = match &v {
            Value::String(s) => s.clone(),
            // A number's shortest text form is the decimal the client wrote.
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a decimal USD amount such as \"12.50\"",
                ))
            }
        };
        Nanos::parse_usd(&text).map(Usd).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetIn {
    limit_usd: Usd,
    period: Period,
    #[serde(default)]
    soft_limit_pct: Option<u8>,
}

/// A time as RFC 3339 UTC, a date, or milliseconds since 1970.
#[derive(Debug, Clone, Copy)]
pub(super) struct Time(i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => parse_time(&s).map(Time).map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_i64()
                .filter(|v| *v >= 0)
                .map(Time)
                .ok_or_else(|| serde::de::Error::custom("expected milliseconds since 1970")),
            _ => Err(serde::de::Error::custom(
                "expected a time such as \"2026-12-31T00:00:00Z\"",
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsPatch {
    #[serde(default, deserialize_with = "nullable")]
    budget: Option<Option<BudgetIn>>,
    #[serde(default, deserialize_with = "nullable")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_concurrent: Option<Option<u32>>,
}

impl LimitsPatch {
    fn apply(self, mut l: Limits) -> Result<Limits, ApiError> {
        if let Some(b) = self.budget {
            l.budget = match b {
                None => None,
                Some(b) => {
                    let soft = b.soft_limit_pct.unwrap_or(80);
                    if soft > 100 {
                        return Err(ApiError::invalid_param(
                            "budget.soft_limit_pct",
                            "must be between 0 and 100",
                        ));
                    }
                    Some(Budget {
                        limit: b.limit_usd.0,
                        period: b.period,
                        soft_pct: soft,
                    })
                }
            };
        }
        for (name, v) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if let Some(Some(0)) = v {
                return Err(ApiError::invalid_param(
                    name,
                    "must be at least 1 (use null for no limit)",
                ));
            }
        }
        if let Some(Some(0)) = self.max_concurrent {
            return Err(ApiError::invalid_param(
                "max_concurrent",
                "must be at least 1 (use null for no limit)",
            ));
        }
        if let Some(v) = self.rpm {
            l.rpm = v;
        }
        if let Some(v) = self.tpm {
            l.tpm = v;
        }
        if let Some(v) = self.max_concurrent {
            l.max_concurrent = v;
        }
        Ok(l)
    }
}

pub(super) fn check_name(param: &str, name: &str) -> Result<(), ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(ApiError::invalid_param(
            param,
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

pub(super) fn check_label(param: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'/'))
    {
        return Err(ApiError::invalid_param(
            param,
            "must be 1 to 64 characters of letters, digits and - . : /",
        ));
    }
    Ok(())
}

pub(super) fn limits_json(state: &AppState, scope: &str, l: &Limits) -> Value {
    let budget = l.budget.map(|b| {
        let now = state.clock.now_ms();
        let ps = b.period.start_of(now);
        let spent = state.limiter.local_view(scope).map(|(s, _, _)| s);
        json!({
            "limit_usd": b.limit.to_string(),
            "period": b.period.as_str(),
            "soft_limit_pct": b.soft_pct,
            "period_start": iso8601(ps),
            "resets_at": b.period.next_start(ps).map(iso8601),
            "spent_usd_local": spent.map(|s| Nanos(s).to_string()),
        })
    });
    json!({
        "budget": budget,
        "rpm": l.rpm,
        "tpm": l.tpm,
        "max_concurrent": l.max_concurrent,
    })
}

pub(super) fn ok_json(status: StatusCode, v: Value) -> Response {
    json_response(status, Bytes::from(v.to_string()))
}
