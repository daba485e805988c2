//! `/admin/v1`: keys, teams, budgets and limits, usage reports and exports, behind the master key.
//!
//! Bodies are parsed strictly (unknown fields are refused, `param` names the offending field)
//! and fully validated before anything is written, so a bad request changes nothing. Money is
//! exchanged as decimal USD strings (`"12.50"`), never as floating point.

mod audit;
mod billing;
mod cache;
mod decisions;
mod deployments;
mod export;
mod keys;
mod openapi;
mod requests;
mod routing;
mod teams;
mod usage;
mod users;
mod wire;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::access::keys::digest;
use crate::clock::parse_time;
use crate::error::ApiError;
use crate::http::access::bearer;
use crate::http::{json_response, read_json_body, AppState};
use crate::money::pricing::Nanos;
use crate::records::limits::{Budget, Limits, Period};
use crate::store::StoreError;
use wire::LimitsOut;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Longest wait for an admin request's body.
const ADMIN_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) use audit::{Actor, CLI_AGENT};

/// The admin routes, made from the handlers' OpenAPI annotations (see [`openapi`]), each change
/// recorded in the audit log (see [`audit`]) as the [`Actor`] the way in names.
pub(crate) fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    openapi::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
}

/// Every admin route checks the master key first.
pub(crate) async fn require_master(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(master) = &state.master_key else {
        return ApiError::admin_unauthorized(
            "The admin API is disabled: set a master key in the environment variable named by auth.master_key_env.",
        )
        .into_response();
    };
    match bearer(req.headers()) {
        Some(t) if master.matches(&digest(t)) => {
            let cli = req
                .headers()
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ua| ua.starts_with(CLI_AGENT));
            let address = req
                .extensions()
                .get::<crate::http::Peer>()
                .map(|p| p.0.ip().to_string());
            req.extensions_mut().insert(Actor {
                name: crate::dashboard::MASTER_USER.to_string(),
                via: if cli { "cli" } else { "api" },
                address,
            });
            next.run(req).await
        }
        _ => ApiError::admin_unauthorized("The admin API needs the master key as `Authorization: Bearer …`.")
            .into_response(),
    }
}

/// A page of a newest-first log (the request log, the audit log): `limit` (1 to 1000,
/// `default` when absent) and `before`, the `next` cursor of the page before (`TS.ID`).
pub(super) fn page_of(
    limit: Option<usize>,
    default: usize,
    before: Option<&str>,
) -> Result<(usize, Option<(i64, String)>), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "must be between 1 and 1000"));
    }
    let before = match before {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(ts, id)| Some((ts.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| ApiError::invalid_param("before", "must be a `next` cursor from a previous page"))?,
        ),
    };
    Ok((limit, before))
}

/// The `next` cursor after a page of `len` rows whose last row is at `(ts_ms, id)`; `None`
/// when the page was not full (it was the last).
pub(super) fn next_cursor(len: usize, limit: usize, last: Option<(i64, &str)>) -> Option<String> {
    (len == limit)
        .then_some(last)
        .flatten()
        .map(|(ts, id)| format!("{ts}.{id}"))
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
    let (_h, bytes) = read_json_body(req, MAX_ADMIN_BODY, ADMIN_BODY_TIMEOUT).await?;
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

/// A schema that is a string or a number: how the amounts and times of a request are given.
fn string_or(number: Type, description: &str, example: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).examples([example]))
        .item(ObjectBuilder::new().schema_type(number).minimum(Some(0)))
        .description(Some(description))
        .into()
}

impl PartialSchema for Usd {
    fn schema() -> RefOr<Schema> {
        string_or(
            Type::Number,
            "A non-negative USD amount, parsed exactly: a decimal string such as `\"12.50\"` \
             (preferred) or a JSON number. At most 9 decimals and at most one billion USD.",
            "12.50",
        )
    }
}

impl ToSchema for Usd {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("UsdAmount")
    }
}

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

/// A budget to set. It replaces any existing budget as a whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetIn {
    limit_usd: Usd,
    period: Period,
    /// Warning threshold in percent of the limit; 80 when omitted.
    #[serde(default)]
    #[schema(maximum = 100, default = 80)]
    soft_limit_pct: Option<u8>,
}

/// A time as RFC 3339, a date, or milliseconds since 1970.
#[derive(Debug, Clone, Copy)]
pub(super) struct Time(i64);

impl PartialSchema for Time {
    fn schema() -> RefOr<Schema> {
        string_or(
            Type::Integer,
            "A date (`YYYY-MM-DD`, midnight UTC), an RFC 3339 time \
             (`YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z` or an offset such as `+02:00`; a \
             space may replace the `T`), or integer milliseconds since 1970.",
            "2026-12-31T00:00:00Z",
        )
    }
}

impl ToSchema for Time {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TimeInput")
    }
}

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

/// Limits to set. An omitted field is left as it is (on create: no limit), `null` removes the
/// limit, a value sets it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsPatch {
    /// A budget, or `null` to remove it.
    #[serde(default, deserialize_with = "nullable")]
    budget: Option<Option<BudgetIn>>,
    /// Requests per minute, or `null` for no limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(minimum = 1)]
    rpm: Option<Option<u64>>,
    /// Tokens per minute, or `null` for no limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(minimum = 1)]
    tpm: Option<Option<u64>>,
    /// Requests in flight at once, or `null` for no limit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(minimum = 1)]
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
                            "limits.budget.soft_limit_pct",
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
        // The `param` is the field's path in the body, as for a value that does not parse.
        for (name, v) in [("limits.rpm", self.rpm), ("limits.tpm", self.tpm)] {
            if let Some(Some(0)) = v {
                return Err(ApiError::invalid_param(
                    name,
                    "must be at least 1 (use null for no limit)",
                ));
            }
        }
        if let Some(Some(0)) = self.max_concurrent {
            return Err(ApiError::invalid_param(
                "limits.max_concurrent",
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

/// A scope's limits as returned, with this process's view of its spend.
pub(super) fn limits_out(state: &AppState, scope: &str, l: &Limits) -> LimitsOut {
    let spent = l
        .budget
        .and_then(|_| state.limiter.local_view(scope).map(|(s, _, _)| s));
    LimitsOut::of(l, state.clock.now_ms(), spent)
}

/// A typed body as a JSON response.
pub(super) fn reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(v) => json_response(status, Bytes::from(v)),
        Err(e) => ApiError::internal(format!("The response could not be written: {e}")).into_response(),
    }
}
