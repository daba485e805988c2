//! Whether an authenticated caller may make this request: its key's model allow-list, and
//! admission against its key's and team's rate, concurrency and budget limits.

use crate::access::limits::{fmt_reset, Denied, Limiter, RateHeaders, Subject};
use crate::error::ApiError;
use crate::money::meter::Meter;
use crate::money::pricing::Nanos;
use crate::records::keys::Principal;
use crate::records::usage::Outcome;

/// 403 unless the caller's key may use `model` (a logical model or a route).
pub fn check_model(p: Option<&Principal>, model: &str) -> Result<(), ApiError> {
    match p {
        Some(p) if !p.key.allows_model(model) => Err(ApiError::model_not_allowed(model)),
        _ => Ok(()),
    }
}

/// The caller's key and team, where they have limits.
pub fn subjects(p: &Principal) -> Vec<Subject<'_>> {
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

/// Where an admitted caller stands: what its response tells it.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    pub rate: RateHeaders,
    /// The smallest remaining fraction of the caller's budgets.
    pub budget_remaining: Option<f64>,
    pub soft_limit_reached: bool,
}

/// A refused request: the error, and the rate-limit values to send with it.
#[derive(Debug)]
pub struct Refused {
    pub error: ApiError,
    pub rate: RateHeaders,
}

/// What a request may cost at worst and use of the token limit, for admission.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub tokens: u64,
    pub worst_cost: Nanos,
}

/// Admits the request against the caller's key and team limits. An admitted request's
/// concurrency slots and settlement move into `meter`; a refused one is recorded on the meter
/// as `rejected` (the meter is consumed) and comes back with its rate-limit values.
pub async fn admit(
    limiter: &std::sync::Arc<Limiter>,
    p: Option<&Principal>,
    meter: &mut Option<Meter>,
    ask: Ask,
) -> Result<Option<Standing>, Refused> {
    let Some(p) = p else { return Ok(None) };
    let subjects = subjects(p);
    if subjects.is_empty() {
        return Ok(None);
    }
    match limiter.admit(&subjects, ask.tokens, ask.worst_cost).await {
        Ok(a) => {
            if let Some(m) = meter.as_mut() {
                m.set_admission(a.permit, a.settlement);
            }
            Ok(Some(Standing {
                rate: a.headers,
                budget_remaining: a.budget_remaining,
                soft_limit_reached: a.soft_limit_reached,
            }))
        }
        Err(d) => {
            let r = refusal(d);
            if let Some(m) = meter.take() {
                m.finish(r.error.status.as_u16(), Outcome::Rejected, Some(r.error.kind()));
            }
            Err(r)
        }
    }
}

fn refusal(d: Denied) -> Refused {
    match d {
        Denied::RateLimited {
            scope,
            what,
            retry_after,
            headers,
        } => {
            let who = scope_label(&scope);
            let kind: &'static str = if what == "tokens" { "tokens" } else { "requests" };
            Refused {
                error: ApiError::rate_limited(
                    kind,
                    format!(
                        "Rate limit reached for {who} on {what}. Please try again in {}.",
                        fmt_reset(retry_after)
                    ),
                    retry_after,
                ),
                rate: headers,
            }
        }
        Denied::Budget { scope, limit, headers } => Refused {
            error: ApiError::insufficient_quota(format!(
                "{} has reached its budget of ${limit} for this period; the request's worst-case cost does not fit.",
                scope_label(&scope)
            )),
            rate: headers,
        },
        Denied::StoreUnavailable(e) => {
            tracing::error!(error = %e, "cannot extend a budget lease");
            Refused {
                error: ApiError::service_unavailable("The budget store is unavailable; try again shortly."),
                rate: RateHeaders::default(),
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
