//! Who is calling and whether they may: key authentication, model allow-lists, and admission
//! against rate limits and budgets, with the headers that tell the client where it stands.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{hv, AppState};
use crate::access::keys::{AuthError, SECRET_PREFIX};
use crate::access::limits::{Denied, RateHeaders, Subject};
use crate::error::ApiError;
use crate::money::meter::Meter;
use crate::money::pricing::Nanos;
use crate::records::keys::Principal;
use crate::records::usage::Outcome;

pub(crate) const H_BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-switchyard-budget-remaining");
pub(crate) const H_BUDGET_WARNING: HeaderName = HeaderName::from_static("x-switchyard-budget-warning");

/// The bearer token of a request (`Authorization: Bearer …`, or Azure-style `api-key`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        return (!token.is_empty()).then_some(token);
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The shown part of a presented key in messages: never the secret itself.
fn shown(token: &str) -> String {
    let visible: String = token.chars().take(12).collect();
    format!("{visible}****")
}

/// Authenticates a `/v1` request: `Some(principal)` for a valid virtual key, `None` for an
/// anonymous caller when keys are optional (or the master key), 401 otherwise.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<Principal>>, ApiError> {
    let token = bearer(headers);
    if let (Some(t), Some(master)) = (token, state.master_key.as_ref()) {
        if constant_time_eq(t.as_bytes(), master.expose().as_bytes()) {
            return Ok(None);
        }
    }
    match token {
        Some(t) if t.starts_with(SECRET_PREFIX) => match state.keys.authenticate(t, state.clock.now_ms()).await {
            Ok(p) => Ok(Some(p)),
            Err(AuthError::Unavailable(e)) => {
                tracing::error!(error = %e, "cannot look up an API key");
                Err(ApiError::service_unavailable(
                    "The key store is unavailable; try again shortly.",
                ))
            }
            Err(why) => {
                let reason = match why {
                    AuthError::Revoked => "it has been revoked",
                    AuthError::Disabled => "it is disabled",
                    AuthError::Expired => "it has expired",
                    _ => "it is not a known key",
                };
                Err(ApiError::invalid_api_key(format!(
                    "Incorrect API key provided: {} ({reason}).",
                    shown(t)
                )))
            }
        },
        _ if !state.auth_required => Ok(None),
        Some(t) => Err(ApiError::invalid_api_key(format!(
            "Incorrect API key provided: {}. Use a Switchyard key (sk-sy-…).",
            shown(t)
        ))),
        None => Err(ApiError::invalid_api_key(
            "You didn't provide an API key. Send it as `Authorization: Bearer sk-sy-…`.",
        )),
    }
}

/// Compares secrets without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn check_model(p: Option<&Principal>, model: &str) -> Result<(), ApiError> {
    match p {
        Some(p) if !p.key.allows_model(model) => Err(ApiError::model_not_allowed(model)),
        _ => Ok(()),
    }
}

/// The caller's key and team, where they have limits.
pub(crate) fn subjects(p: &Principal) -> Vec<Subject<'_>> {
    let mut subjects = Vec::with_capacity(2);
    if !p.key.limits.is_empty() {
        subjects.push(Subject {
            scope: &p.key_scope,
            limits: &p.key.limits,
        });
    }
    if let (Some(team), Some(scope)) = (&p.team, &p.team_scope) {
        if !team.limits.is_empty() {
            subjects.push(Subject {
                scope,
                limits: &team.limits,
            });
        }
    }
    subjects
}

/// Admits the request against the caller's key and team limits. An admitted request's
/// concurrency slots and settlement move into `meter`; a refused one is recorded as `rejected`
/// and its response (429/503 with rate-limit headers) comes back as the error.
pub(crate) async fn admit(
    state: &AppState,
    p: Option<&Principal>,
    meter: &mut Option<Meter>,
    est_tokens: u64,
    worst_cost: Nanos,
) -> Result<Option<AdmittedInfo>, Response> {
    let Some(p) = p else { return Ok(None) };
    let subjects = subjects(p);
    if subjects.is_empty() {
        return Ok(None);
    }
    match state.limiter.admit(&subjects, est_tokens, worst_cost).await {
        Ok(a) => {
            if let Some(m) = meter.as_mut() {
                m.set_admission(a.permit, a.settlement);
            }
            Ok(Some((a.headers, a.budget_remaining, a.soft_limit_reached)))
        }
        Err(d) => {
            let r = refusal(d);
            if let Some(m) = meter.take() {
                m.finish(r.error.status.as_u16(), Outcome::Rejected, Some(r.error.kind()));
            }
            Err(r.into_response())
        }
    }
}

/// A refusal as the client sees it, with its `x-ratelimit-*` headers.
pub(crate) struct Refusal {
    pub error: ApiError,
    pub headers: RateHeaders,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = self.error.into_response();
        rate_headers(resp.headers_mut(), &self.headers);
        resp
    }
}

fn refusal(d: Denied) -> Refusal {
    match d {
        Denied::RateLimited {
            scope,
            what,
            retry_after,
            headers,
        } => {
            let who = scope_label(&scope);
            let kind: &'static str = if what == "tokens" { "tokens" } else { "requests" };
            Refusal {
                error: ApiError::rate_limited(
                    kind,
                    format!(
                        "Rate limit reached for {who} on {what}. Please try again in {}.",
                        crate::access::limits::fmt_reset(retry_after)
                    ),
                    retry_after,
                ),
                headers,
            }
        }
        Denied::Budget { scope, limit, headers } => Refusal {
            error: ApiError::insufficient_quota(format!(
                "{} has reached its budget of ${limit} for this period; the request's worst-case cost does not fit.",
                scope_label(&scope)
            )),
            headers,
        },
        Denied::StoreUnavailable(e) => {
            tracing::error!(error = %e, "cannot extend a budget lease");
            Refusal {
                error: ApiError::service_unavailable("The budget store is unavailable; try again shortly."),
                headers: RateHeaders::default(),
            }
        }
    }
}

fn scope_label(scope: &str) -> String {
    match scope.split_once(':') {
        Some(("key", id)) => format!("API key {id}"),
        Some(("team", id)) => format!("team {id}"),
        _ => scope.to_string(),
    }
}

/// What the response of an admitted request tells the client: rate limits, remaining budget,
/// whether the soft threshold is passed.
pub(crate) type AdmittedInfo = (RateHeaders, Option<f64>, bool);

pub(crate) fn admitted_headers(h: &mut HeaderMap, a: &AdmittedInfo) {
    rate_headers(h, &a.0);
    if let Some(r) = a.1 {
        h.insert(H_BUDGET_REMAINING, hv(format!("{r:.4}")));
    }
    if a.2 {
        h.insert(H_BUDGET_WARNING, HeaderValue::from_static("soft_limit_reached"));
    }
}

pub(crate) fn rate_headers(h: &mut HeaderMap, r: &RateHeaders) {
    for (name, value) in r.pairs() {
        h.insert(HeaderName::from_static(name), hv(value));
    }
}
