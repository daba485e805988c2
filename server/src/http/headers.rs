//! The `x-switchyard-*` and `x-ratelimit-*` response headers, written in one place.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::hv;
use crate::access::admission::Standing;
use crate::access::limits::RateHeaders;
use crate::money::accounting::Accounted;
use crate::proxy::gateway::Deployment;
use crate::proxy::lookup::CacheNote;
use crate::proxy::pipeline::Failure;
use crate::records::usage::UsageSource;
use crate::router::policy::Decision;

pub(crate) const H_DEPLOYMENT: HeaderName = HeaderName::from_static("x-switchyard-deployment");
pub(crate) const H_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub(crate) const H_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub(crate) const H_PROCESS_MS: HeaderName = HeaderName::from_static("x-switchyard-process-ms");
pub(crate) const H_TOKENS_IN: HeaderName = HeaderName::from_static("x-switchyard-tokens-in");
pub(crate) const H_TOKENS_OUT: HeaderName = HeaderName::from_static("x-switchyard-tokens-out");
pub(crate) const H_CACHED_IN: HeaderName = HeaderName::from_static("x-switchyard-tokens-cached");
pub(crate) const H_COST: HeaderName = HeaderName::from_static("x-switchyard-cost-usd");
pub(crate) const H_USAGE_SOURCE: HeaderName = HeaderName::from_static("x-switchyard-usage-source");
pub(crate) const H_REQ_BYTES: HeaderName = HeaderName::from_static("x-switchyard-request-bytes");
pub(crate) const H_RESP_BYTES: HeaderName = HeaderName::from_static("x-switchyard-response-bytes");
pub(crate) const H_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
pub(crate) const H_OVERHEAD_US: HeaderName = HeaderName::from_static("x-switchyard-overhead-us");
pub(crate) const H_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
pub(crate) const H_TIER: HeaderName = HeaderName::from_static("x-switchyard-tier");
pub(crate) const H_REASON: HeaderName = HeaderName::from_static("x-switchyard-reason");
pub(crate) const H_PREFER: HeaderName = HeaderName::from_static("x-switchyard-prefer");
pub(crate) const H_VARIANT: HeaderName = HeaderName::from_static("x-switchyard-variant");
pub(crate) const H_CASCADE: HeaderName = HeaderName::from_static("x-switchyard-cascade");
pub(crate) const H_USAGE_FLAG: HeaderName = HeaderName::from_static("x-switchyard-usage-flag");
pub(crate) const H_BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-switchyard-budget-remaining");
pub(crate) const H_CACHE: HeaderName = HeaderName::from_static("x-switchyard-cache");
pub(crate) const H_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-switchyard-cache-similarity");
pub(crate) const H_CACHE_AGE: HeaderName = HeaderName::from_static("x-switchyard-cache-age");
pub(crate) const H_CACHE_ENTRY: HeaderName = HeaderName::from_static("x-switchyard-cache-entry");
pub(crate) const H_CACHE_DETAIL: HeaderName = HeaderName::from_static("x-switchyard-cache-detail");
pub(crate) const H_CACHE_SAVED: HeaderName = HeaderName::from_static("x-switchyard-cache-saved-usd");
pub(crate) const H_BUDGET_WARNING: HeaderName = HeaderName::from_static("x-switchyard-budget-warning");

/// Headers every answered request carries. `upstream` is the time spent waiting on the
/// upstream, so the rest of the time to the headers is the gateway's own overhead.
pub(crate) fn routing_headers(
    h: &mut HeaderMap,
    deployment: Option<&Deployment>,
    model: &str,
    attempts: u32,
    received: Instant,
    upstream: Duration,
    request_bytes: usize,
) {
    if let Some(d) = deployment {
        h.insert(H_DEPLOYMENT, hv(&d.config.id));
        h.insert(H_PROVIDER, hv(&d.provider_name));
    }
    h.insert(H_MODEL, hv(model));
    h.insert(H_ATTEMPTS, HeaderValue::from(attempts));
    h.insert(H_REQ_BYTES, HeaderValue::from(request_bytes));
    let elapsed = received.elapsed();
    h.insert(H_PROCESS_MS, hv(format!("{:.3}", elapsed.as_secs_f64() * 1000.0)));
    let overhead = elapsed.saturating_sub(upstream);
    metrics::histogram!("switchyard_gateway_overhead_seconds").record(overhead.as_secs_f64());
    h.insert(H_OVERHEAD_US, HeaderValue::from(overhead.as_micros() as u64));
}

/// Token and cost headers of a complete answer.
pub(crate) fn usage_headers(h: &mut HeaderMap, a: &Accounted, body_len: usize) {
    h.insert(H_TOKENS_IN, HeaderValue::from(a.usage.prompt_tokens));
    h.insert(H_TOKENS_OUT, HeaderValue::from(a.usage.completion_tokens));
    h.insert(H_CACHED_IN, HeaderValue::from(a.usage.cached_tokens));
    h.insert(H_COST, hv(a.cost.to_string()));
    h.insert(
        H_USAGE_SOURCE,
        HeaderValue::from_static(match a.source {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
            UsageSource::None => "none",
        }),
    );
    if let Some(f) = a.flag {
        h.insert(H_USAGE_FLAG, HeaderValue::from_static(f));
    }
    h.insert(H_RESP_BYTES, HeaderValue::from(body_len));
}

/// The routing decision's headers.
pub(crate) fn decision_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(H_ROUTE, hv(&d.route));
    h.insert(H_TIER, HeaderValue::from_static(d.tier.as_str()));
    h.insert(H_REASON, hv(&d.reason));
    if let Some(v) = &d.variant {
        h.insert(H_VARIANT, hv(v));
    }
}

/// What the response cache did: `x-switchyard-cache` (`hit`, `semantic-hit`, `miss`, `bypass`)
/// and, for a hit, the similarity, the entry's age (also as `age`), the entry and the saving.
pub(crate) fn cache_headers(h: &mut HeaderMap, c: &CacheNote) {
    h.insert(H_CACHE, HeaderValue::from_static(c.status));
    h.insert(H_CACHE_DETAIL, hv(&c.detail));
    if let Some(s) = c.similarity {
        h.insert(H_CACHE_SIMILARITY, hv(format!("{s:.4}")));
    }
    if let Some(a) = c.age_secs {
        h.insert(H_CACHE_AGE, HeaderValue::from(a));
        h.insert(axum::http::header::AGE, HeaderValue::from(a));
    }
    if let Some(e) = &c.entry {
        h.insert(H_CACHE_ENTRY, hv(&**e));
        h.insert(H_CACHE_SAVED, hv(c.saved.to_string()));
    }
}

/// Where an admitted caller stands: rate limits, remaining budget, the soft threshold.
pub(crate) fn standing_headers(h: &mut HeaderMap, s: &Standing) {
    rate_headers(h, &s.rate);
    if let Some(r) = s.budget_remaining {
        h.insert(H_BUDGET_REMAINING, hv(format!("{r:.4}")));
    }
    if s.soft_limit_reached {
        h.insert(H_BUDGET_WARNING, HeaderValue::from_static("soft_limit_reached"));
    }
}

/// OpenAI's `x-ratelimit-*` headers.
pub(crate) fn rate_headers(h: &mut HeaderMap, r: &RateHeaders) {
    for (name, value) in r.pairs() {
        h.insert(HeaderName::from_static(name), hv(value));
    }
}

/// The response of a request that got no answer: the error, and what is known of the attempt.
pub(crate) fn failure_response(f: Failure) -> Response {
    let Failure {
        error,
        attempts,
        deployment,
        rate,
    } = f;
    let mut resp = error.into_response();
    let h = resp.headers_mut();
    if let Some(a) = attempts {
        h.insert(H_ATTEMPTS, HeaderValue::from(a));
    }
    if let Some(d) = &deployment {
        h.insert(H_DEPLOYMENT, hv(&d.config.id));
        h.insert(H_PROVIDER, hv(&d.provider_name));
    }
    if let Some(r) = &rate {
        rate_headers(h, r);
    }
    resp
}
