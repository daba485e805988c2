//! The routing decision for one request: which route decides (the body's `model` or the base
//! URL's), under which policy (an experiment's arm), with what the conversation did before (the
//! sticky strong tier), what a shadow policy would have done, and whether a cascade runs.

use std::time::Instant;

use crate::access::admission::{check_model, subjects};
use crate::access::limits::Limiter;
use crate::error::ApiError;
use crate::proxy::gateway::Gateway;
use crate::proxy::request::ChatRequest;
use crate::records::keys::{Prefer, Principal};
use crate::router::features::{hash_parts, hash_str, Conversation};
use crate::router::policy::{Decision, Models, Route, RouterHandle, ShadowChoice, StickyBy, Tier};

/// What a decision reads of the running gateway.
pub struct Context<'a> {
    pub router: &'a RouterHandle,
    pub gateway: &'a Gateway,
    pub limiter: &'a Limiter,
    pub now_ms: i64,
}

/// What is being decided.
pub struct Ask<'a> {
    pub request: &'a ChatRequest,
    /// The route named by the base URL (`/r/{route}/v1`), which decides whatever `model` says.
    pub path_route: Option<&'a str>,
    /// The caller's `x-switchyard-prefer`, when sent.
    pub prefer: Option<Prefer>,
    pub principal: Option<&'a Principal>,
    /// The decision is for a request that will be served: its conversation is remembered on
    /// the strong tier once admitted.
    pub remember: bool,
}

/// The caller's preference: the header's, else the key's default, else balanced, and which.
pub fn preference(header: Option<Prefer>, principal: Option<&Principal>) -> (Prefer, &'static str) {
    match header {
        Some(p) => (p, "header"),
        None => match principal.and_then(|p| p.key.route_prefer) {
            Some(p) => (p, "key"),
            None => (Prefer::Balanced, "default"),
        },
    }
}

/// The route that decides this request, if any: an unknown route in the path is a 404.
pub fn route_of<'r>(
    table: &'r crate::router::policy::Router,
    request: &ChatRequest,
    path_route: Option<&str>,
) -> Result<Option<&'r Route>, ApiError> {
    match path_route {
        Some(name) => table.route(name).map(Some).ok_or_else(|| unknown_route(name)),
        None => Ok(table.route(&request.model)),
    }
}

/// The 404 for a route name that is not in the table. It names no other route: `GET /v1/models`
/// lists what the caller may call.
pub fn unknown_route(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Unknown route `{name}` in the path; GET /v1/models lists the models and routes you can call."
    ))
}

/// Decides a request whose `model` names a route, or any request under `/r/{route}/v1`;
/// `None` for a plain model.
pub fn decide(cx: &Context<'_>, ask: &Ask<'_>) -> Result<Option<Decision>, ApiError> {
    let table = cx.router.get();
    let Some(route) = route_of(&table, ask.request, ask.path_route)? else {
        return Ok(None);
    };
    check_model(ask.principal, &route.name)?;
    let (prefer, prefer_source) = preference(ask.prefer, ask.principal);
    let budget = ask.principal.and_then(|p| cx.limiter.budget_remaining(&subjects(p)));
    let started = Instant::now();
    let conversation = Conversation::of_body(&ask.request.body);
    // Conversations are told apart by caller, by the end user the app names in `user`, and by
    // their opening.
    let end_user = ask
        .request
        .body
        .get("user")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let caller = ask.principal.map_or(0, |p| hash_str(&p.key.id));
    let thread = (
        hash_str(&route.name),
        conversation.thread ^ caller ^ hash_str(end_user).rotate_left(7),
    );
    let before =
        (conversation.assistant_turns > 0 && cx.router.strong_threads.contains_key(&thread)).then_some(Tier::Strong);
    let serves = Serving {
        gateway: cx.gateway,
        request: ask.request,
        at_ms: cx.now_ms,
    };
    // An experiment puts a stable share of callers (or conversations) under a candidate's policy.
    let policy = match &route.experiment {
        Some(e) => {
            let unit = match (e.by, ask.principal) {
                (StickyBy::Key, Some(_)) => caller,
                _ => thread.1,
            };
            // Salted per experiment, so two experiments do not put the same callers in their arms.
            let salt = hash_parts(&[&route.name, &e.candidate]);
            let arm = if e.in_variant(unit ^ salt) {
                table.route(&e.candidate)
            } else {
                None
            };
            arm.unwrap_or(route)
        }
        None => route,
    };
    let prediction = table.predict(&conversation);
    let mut d = table.decide_predicted(policy, &prediction, prefer, budget, before, &serves);
    d.prefer_source = prefer_source;
    if prefer_source == "key" && prefer != Prefer::Balanced {
        d.reason = d.reason.replace("caller prefers", "the key's default prefers");
    }
    if route.experiment.is_some() {
        d.variant = Some(policy.name.clone());
        d.route = route.name.clone();
    }
    if let Some(shadow) = route.shadow.as_deref().and_then(|s| table.route(s)) {
        // The shadow decides as if fresh: the live policy's history must not make it agree.
        let s = table.decide_predicted(shadow, &prediction, prefer, budget, None, &serves);
        d.shadow = Some(ShadowChoice {
            route: shadow.name.clone(),
            model: s.model,
            tier: s.tier,
        });
    }
    if ask.remember {
        d.thread = Some(thread);
    }
    metrics::histogram!("switchyard_route_decision_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("switchyard_route_decisions_total", "route" => d.route.clone(), "tier" => d.tier.as_str())
        .increment(1);
    Ok(Some(d))
}

/// Remembers an admitted conversation that went (or escalated) to the strong tier, so its later
/// turns stay there.
pub fn remember(router: &RouterHandle, d: &Decision) {
    if let (Some(t), Tier::Strong) = (d.thread, d.tier) {
        router.strong_threads.insert(t, ());
    }
}

/// The names of every model a route may send this request to (its tiers and specialists), for
/// counting the prompt ahead once if a context window needs it.
pub fn candidate_models(route: &Route) -> Vec<&str> {
    let mut out = vec![route.cheap.as_str(), route.strong.as_str()];
    out.extend(route.intents.values().map(String::as_str));
    out
}

/// The gateway's models as a routing decision sees them, for one request.
struct Serving<'a> {
    gateway: &'a Gateway,
    request: &'a ChatRequest,
    at_ms: i64,
}

impl Models for Serving<'_> {
    fn serves(&self, model: &str) -> bool {
        self.gateway.can_serve(model, self.request)
    }

    fn list_price(&self, model: &str) -> Option<i64> {
        self.gateway.list_price(model, self.at_ms)
    }
}
