//! The request pipeline: every chat, embeddings and routing request runs here, in this order,
//! whoever calls it (the HTTP handlers, an in-process test, a queued job):
//!
//! 1. **decide**: the route decision, with its experiment and shadow ([`crate::router::decide`]);
//! 2. **admit**: the key's allow-list, then rate limits, concurrency and the budget reservation
//!    ([`crate::access::admission`]); from here the request is *accepted* and its [`Meter`]
//!    records exactly one usage event;
//! 3. **look up**: an answer known already ([`Lookup`], the slot the response cache fills);
//! 4. **dispatch**, or a **cascade** ([`crate::router::escalation`]);
//! 5. **meter and settle**: usage accounted once ([`crate::money::accounting`]), the event
//!    recorded, the reservation settled by the ledger writer.
//!
//! It takes a validated request and the caller's principal and returns an answer or a stream,
//! plus what the response should say about it; it knows nothing of HTTP.
//!
//! Token counting happens at most once per request (per encoding), never before
//! authentication, and off the async executor when the prompt is long: before the decision,
//! the prompt is counted ahead in exactly the encodings some candidate's context window needs
//! ([`Gateway::encodings_to_count`]), and everything later reads that count.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;

use crate::access::admission::{self, check_model, Standing};
use crate::access::limits::RateHeaders;
use crate::app::App;
use crate::capture::Capture;
use crate::config::ModelKind;
use crate::error::ApiError;
use crate::money::accounting::{self, Accounted, Verdict, COUNT_INLINE_BYTES};
use crate::money::meter::{Meter, RouteMark};
use crate::money::pricing::Nanos;
use crate::money::tokens::Encoding;
use crate::providers::completion_text_of_body;
use crate::proxy::gateway::{ChatAnswer, Deployment, DispatchError, LogicalModel, Routed};
pub use crate::proxy::lookup::Lookup;
use crate::proxy::lookup::{Answer, CacheNote, Directives, Found, Hit, HitKind, Keep, Query, OFF};
use crate::proxy::relay;
use crate::proxy::replay;
use crate::proxy::request::{ChatRequest, EmbeddingsRequest};
use crate::records::keys::{Prefer, Principal};
use crate::records::usage::{Outcome, Usage};
use crate::router::decide::{self, Ask, Context};
use crate::router::escalation;
use crate::router::policy::{Decision, Tier};

/// A chat completion to run.
pub struct ChatCall {
    pub request: ChatRequest,
    pub principal: Option<Arc<Principal>>,
    pub request_id: Arc<str>,
    /// When the request reached the gateway.
    pub received: Instant,
    /// The request body as received: its size is metered, and it is stored where the key, its
    /// team or the route opts in to stored bodies.
    pub body: Bytes,
    /// The route named by the base URL (`/r/{route}/v1`), which decides whatever `model` says.
    pub path_route: Option<String>,
    /// The caller's `x-switchyard-prefer`, when sent.
    pub prefer: Option<Prefer>,
    /// The caller's `Cache-Control`.
    pub directives: Directives,
}

/// An SSE body: chunks as the client should receive them, pulled by its connection.
pub type SseBody = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>>;

/// What a served request answers with.
pub enum ServedBody {
    /// A complete JSON answer, accounted.
    Json { body: Bytes, accounted: Accounted },
    /// A stream; its usage is accounted when it ends (and rides on its last chunk).
    Stream(SseBody),
}

/// A request that got an answer.
pub struct Served {
    /// The logical model that answered.
    pub model: Arc<LogicalModel>,
    /// The deployment that answered; `None` for a lookup hit.
    pub deployment: Option<Arc<Deployment>>,
    pub attempts: u32,
    /// Time spent waiting on upstream calls and retry backoff (for streams: until the first chunk).
    pub upstream: Duration,
    pub body: ServedBody,
}

/// A request that did not get an answer.
#[derive(Debug)]
pub struct Failure {
    pub error: ApiError,
    /// Upstream attempts made, once dispatch was tried.
    pub attempts: Option<u32>,
    /// The deployment tried last, if any.
    pub deployment: Option<Arc<Deployment>>,
    /// Rate-limit values of a refusal.
    pub rate: Option<RateHeaders>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure {
            error,
            attempts: None,
            deployment: None,
            rate: None,
        }
    }
}

/// The outcome of a chat request and what its response should say about it.
pub struct ChatReply {
    /// The routing decision, for a routed request.
    pub decision: Option<Decision>,
    /// Where an admitted caller stands against its limits.
    pub standing: Option<Standing>,
    /// A cascade's outcome: `accepted`, `unchecked` or `escalated:REASON`.
    pub cascade: Option<String>,
    /// What the response cache did, where one is configured.
    pub cache: Option<CacheNote>,
    pub outcome: Result<Served, Failure>,
}

impl ChatReply {
    fn failed(decision: Option<Decision>, f: impl Into<Failure>) -> ChatReply {
        ChatReply {
            decision,
            standing: None,
            cascade: None,
            cache: None,
            outcome: Err(f.into()),
        }
    }
}

/// Finds a logical model that serves `kind` requests: 404 if unknown, 400 if it serves the other kind.
pub fn model_of_kind(app: &App, name: &str, kind: ModelKind) -> Result<Arc<LogicalModel>, ApiError> {
    let model = app.gateway.model(name).ok_or_else(|| ApiError::model_not_found(name))?;
    if model.kind != kind {
        let hint = match model.kind {
            ModelKind::Embedding => "an embedding model; use /v1/embeddings",
            ModelKind::Chat => "a chat model; use /v1/chat/completions",
        };
        return Err(ApiError::invalid_param("model", format!("`{}` is {hint}.", model.name)));
    }
    Ok(model.clone())
}

/// Counts the prompt ahead in the encodings some candidate's context window needs, off the
/// executor when it is long, so the checks during the decision and dispatch only read the count.
async fn count_ahead(app: &App, request: &ChatRequest, path_route: Option<&str>) {
    let table = app.router.get();
    let mut models: Vec<&str> = Vec::new();
    match decide::route_of(&table, request, path_route) {
        Ok(Some(route)) => {
            let related = std::iter::once(route)
                .chain(route.experiment.as_ref().and_then(|e| table.route(&e.candidate)))
                .chain(route.shadow.as_deref().and_then(|s| table.route(s)));
            for r in related {
                models.extend(decide::candidate_models(r));
            }
        }
        Ok(None) => models.push(&request.model),
        Err(_) => return,
    }
    for enc in app.gateway.encodings_to_count(&models, request) {
        if request.prompt.text.len() <= COUNT_INLINE_BYTES {
            request.prompt.count(enc);
            continue;
        }
        let prompt = request.prompt.clone();
        // A failed blocking task leaves the count to the check, which makes it inline.
        let _ = tokio::task::spawn_blocking(move || prompt.count(enc)).await;
    }
}

/// Runs a chat completion through the pipeline.
pub async fn chat(app: &Arc<App>, call: ChatCall) -> ChatReply {
    let ChatCall {
        request,
        principal,
        request_id,
        received,
        body,
        path_route,
        prefer,
        directives,
    } = call;
    count_ahead(app, &request, path_route.as_deref()).await;

    // 1. Decide.
    let cx = Context {
        router: &app.router,
        gateway: &app.gateway,
        limiter: &app.limiter,
        now_ms: app.clock.now_ms(),
    };
    let ask = Ask {
        request: &request,
        path_route: path_route.as_deref(),
        prefer,
        principal: principal.as_deref(),
        remember: true,
    };
    let mut decision = match decide::decide(&cx, &ask) {
        Ok(d) => d,
        Err(e) => return ChatReply::failed(None, e),
    };
    let model = match &decision {
        Some(d) => model_of_kind(app, &d.model, ModelKind::Chat),
        None => model_of_kind(app, &request.model, ModelKind::Chat)
            .and_then(|m| check_model(principal.as_deref(), &m.name).map(|()| m)),
    };
    let model = match model {
        Ok(m) => m,
        Err(e) => return ChatReply::failed(decision, e),
    };
    // A cascade stands the strong model behind the cheap one: admission reserves for both.
    let cascade = match decision.as_ref().and_then(|d| d.cascade.as_ref()) {
        Some(plan) => match model_of_kind(app, &plan.escalate_to, ModelKind::Chat) {
            Ok(strong) => Some((strong, plan.checks.clone())),
            Err(e) => return ChatReply::failed(decision, e),
        },
        None => None,
    };

    // 2. Admit. From here on the request is accepted: it yields exactly one usage event.
    let mut meter = Meter::start(
        app.usage.clone(),
        received,
        &request_id,
        "chat",
        &model.name,
        request.stream,
        body.len(),
    );
    meter.set_chat_limits(request.max_output_tokens, request.n);
    if let Some(d) = decision.as_ref() {
        let at = meter.arrived_ms();
        meter.set_route(RouteMark {
            route: &d.route,
            variant: d.variant.as_deref(),
            shadow_model: d.shadow.as_ref().map(|s| s.model.as_str()),
            tier: d.tier.as_str(),
            intent: &d.intent,
            reason: &d.reason,
            strong_price: app.gateway.first_price(&d.strong, at),
        });
    }
    meter.set_prompt(request.prompt.clone());
    if let Some(p) = &principal {
        meter.set_principal(p);
    }
    match &app.bodies {
        Some(rules) if stores_bodies(app, principal.as_deref(), decision.as_ref()) => {
            meter.capture_bodies(Capture::new(rules.clone(), body));
        }
        _ => drop(body),
    }
    let prompt_bound = request.prompt.upper_bound();
    let mut worst = app.gateway.worst_case_cost(
        &model,
        meter.arrived_ms(),
        prompt_bound,
        request.max_output_tokens,
        request.n,
    );
    if let Some((strong, _)) = &cascade {
        worst = worst.saturating_add(app.gateway.worst_case_cost(
            strong,
            meter.arrived_ms(),
            prompt_bound,
            request.max_output_tokens,
            request.n,
        ));
    }
    let tokens = (prompt_bound / 4).saturating_add(u64::from(request.max_output_tokens.unwrap_or(0)));
    let mut metered = Some(meter);
    let standing = match admission::admit(
        &app.limiter,
        principal.as_deref(),
        &mut metered,
        admission::Ask {
            tokens,
            worst_cost: worst,
        },
    )
    .await
    {
        Ok(s) => s,
        Err(refused) => {
            return ChatReply::failed(
                decision,
                Failure {
                    error: refused.error,
                    attempts: None,
                    deployment: None,
                    rate: Some(refused.rate),
                },
            )
        }
    };
    let mut meter = metered.expect("an admitted request keeps its meter");

    // 3. Look up.
    let mut keep = None;
    let mut cache = None;
    if let Some(lookup) = &app.lookup {
        let query = Query {
            target: path_route.as_deref().unwrap_or(&request.model),
            model: &model.name,
            request: &request,
            principal: principal.as_deref(),
            directives,
        };
        let (status, k, why) = match lookup.find(query).await {
            Found::Hit(hit) => match from_cache(hit, &request, &mut meter) {
                Ok((body, note)) => {
                    meter.finish(200, Outcome::Success, None);
                    return ChatReply {
                        decision,
                        standing,
                        cascade: None,
                        cache: Some(note),
                        outcome: Ok(Served {
                            model,
                            deployment: None,
                            attempts: 0,
                            upstream: Duration::ZERO,
                            body,
                        }),
                    };
                }
                // An entry that cannot be replayed answers nothing; the model does.
                Err(why) => ("miss", None, why.to_string()),
            },
            Found::Miss { keep, why } => ("miss", keep, why),
            Found::Bypass { keep, why } => ("bypass", keep, why),
        };
        keep = k;
        // A model or route the cache is off for: as if there were no cache.
        if why != OFF {
            meter.set_cache(status);
            cache = Some(CacheNote {
                status,
                similarity: None,
                age_secs: None,
                entry: None,
                detail: why,
                saved: Nanos::ZERO,
            });
        }
    }

    // 4. Dispatch, or a cascade.
    let mut cascaded = None;
    let (dispatched, model) = match cascade {
        Some((strong, checks)) => {
            let run = escalation::run(&app.gateway, &model, &strong, &request, &checks, &mut meter).await;
            let route = decision.as_ref().map_or("", |d| d.route.as_str());
            let (outcome, reason) = run.outcome();
            metrics::counter!("switchyard_cascade_total", "route" => route.to_string(), "outcome" => outcome, "reason" => reason)
                .increment(1);
            if let (Some(f), Some(d)) = (&run.escalated, decision.as_mut()) {
                d.tier = Tier::Strong;
                d.reason
                    .push_str(&format!("; escalated to {}: {}", strong.name, f.detail));
            }
            cascaded = Some(match &run.escalated {
                Some(f) => format!("escalated:{}", f.reason.as_str()),
                None => outcome.to_string(),
            });
            (run.dispatched, run.model)
        }
        None => {
            let attempting = meter.dispatching();
            (app.gateway.chat_attempting(&model, &request, &attempting).await, model)
        }
    };
    // An admitted conversation that went (or escalated) to the strong tier stays there.
    if let Some(d) = decision.as_ref() {
        decide::remember(&app.router, d);
    }

    // 5. Meter and settle.
    let outcome = match dispatched {
        Ok(routed) => Ok(serve(routed, &request, model, meter, keep).await),
        Err(de) => Err(dispatch_failed(de, meter)),
    };
    ChatReply {
        decision,
        standing,
        cascade: cascaded,
        cache,
        outcome,
    }
}

/// Whether this request's bodies are stored: its key, the key's team or its route opted in.
fn stores_bodies(app: &App, principal: Option<&Principal>, decision: Option<&Decision>) -> bool {
    principal.is_some_and(Principal::stores_bodies)
        || decision.is_some_and(|d| app.router.get().route(&d.route).is_some_and(|r| r.store_bodies))
}

/// Serves a cache hit in the shape the client asked for (a JSON answer or its SSE replay),
/// metered at no cost with what it saved. `Err` when the entry cannot be replayed.
fn from_cache(hit: Hit, request: &ChatRequest, meter: &mut Meter) -> Result<(ServedBody, CacheNote), &'static str> {
    let (status, ledger, similarity, detail) = match &hit.kind {
        HitKind::Exact => ("hit", "hit", None, "exact".to_string()),
        HitKind::Semantic { similarity, verdict } => {
            ("semantic-hit", "semantic_hit", Some(*similarity), verdict.clone())
        }
    };
    let saved = hit.answer.cost;
    let body = if request.stream {
        let ext = serde_json::json!({
            "cost_usd": Nanos::ZERO.to_string(),
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "usage_source": "none",
            "cache": status,
            "cache_entry": &*hit.entry,
            "saved_usd": saved.to_string(),
        })
        .to_string();
        let chunks = replay::chunks_of(&hit.answer.body, request.include_usage, &ext).ok_or("unreadable entry")?;
        let mut events: Vec<Result<Bytes, Infallible>> = Vec::with_capacity(chunks.len() + 1);
        for c in chunks {
            let mut framed = bytes::BytesMut::new();
            relay::frame(&mut framed, &c);
            events.push(Ok(framed.freeze()));
        }
        events.push(Ok(Bytes::from_static(relay::DONE)));
        meter.answered_from_cache(ledger, &hit.entry, saved);
        for e in events.iter().flatten() {
            meter.add_response(e);
        }
        ServedBody::Stream(Box::pin(futures_util::stream::iter(events)))
    } else {
        let accounted = meter.answered_from_cache(ledger, &hit.entry, saved);
        meter.add_response(&hit.answer.body);
        ServedBody::Json {
            body: hit.answer.body.clone(),
            accounted,
        }
    };
    let note = CacheNote {
        status,
        similarity,
        age_secs: Some(hit.age_secs),
        entry: Some(hit.entry.clone()),
        detail,
        saved,
    };
    Ok((body, note))
}

/// Records a dispatch that found no answer.
fn dispatch_failed(de: DispatchError, mut meter: Meter) -> Failure {
    meter.set_attempts(de.attempts);
    let outcome = if de.attempts == 0 && de.last_deployment.is_none() && de.error.status.as_u16() < 500 {
        Outcome::Rejected
    } else {
        Outcome::UpstreamError
    };
    meter.finish(de.error.status.as_u16(), outcome, Some(de.kind));
    Failure {
        error: de.error,
        attempts: Some(de.attempts),
        deployment: de.last_deployment,
        rate: None,
    }
}

/// Accounts a complete answer, or wraps a stream in the relay that accounts it at its end.
async fn serve(
    routed: Routed<ChatAnswer>,
    request: &ChatRequest,
    model: Arc<LogicalModel>,
    mut meter: Meter,
    keep: Option<Box<dyn Keep>>,
) -> Served {
    let deployment = routed.deployment.clone();
    meter.set_deployment(&deployment, routed.attempts);
    let (attempts, upstream) = (routed.attempts, routed.upstream);
    let body = match routed.value {
        ChatAnswer::Complete(c) => {
            let estimate = match meter.verdict(c.usage.as_ref()) {
                Verdict::Believe(..) => None,
                // Rare: an upstream that reports no (believable) usage. Count so the headers stay honest.
                Verdict::Estimate(_) => Some(
                    accounting::estimate_chat_off_executor(
                        Some(request.prompt.clone()),
                        completion_text_of_body(&c.body).into(),
                        deployment.encoding,
                    )
                    .await,
                ),
            };
            let accounted = meter.account(c.usage.as_ref(), || estimate.unwrap_or_default());
            meter.add_response(&c.body);
            drop(routed.guard);
            meter.finish(200, Outcome::Success, None);
            if let Some(k) = keep {
                k.keep(Answer {
                    body: c.body.clone(),
                    model: model.name.clone(),
                    usage: accounted.usage,
                    cost: accounted.cost,
                    tool_calls: false,
                });
            }
            ServedBody::Json {
                body: c.body,
                accounted,
            }
        }
        ChatAnswer::Stream(started) => ServedBody::Stream(Box::pin(relay::sse_body(
            started,
            request.include_usage,
            meter,
            routed.guard,
            deployment.config.id.clone(),
            keep.map(|k| relay::Keeper::new(k, model.name.clone())),
        ))),
    };
    Served {
        model,
        deployment: Some(deployment),
        attempts,
        upstream,
        body,
    }
}

/// A routing decision to explain (`POST /v1/route`), without calling any model.
pub struct RouteCall {
    pub request: ChatRequest,
    pub principal: Option<Arc<Principal>>,
    pub path_route: Option<String>,
    pub prefer: Option<Prefer>,
}

/// A decision explained, and where the caller stands.
pub struct RouteReply {
    pub decision: Decision,
    pub standing: Option<Standing>,
}

/// Explains the routing decision for a chat request. It is authenticated and admitted like a
/// chat request (rate and concurrency limits); it calls no model, so it costs nothing, reserves
/// no budget and records no usage event.
pub async fn route(app: &Arc<App>, call: RouteCall) -> Result<RouteReply, Failure> {
    count_ahead(app, &call.request, call.path_route.as_deref()).await;
    let cx = Context {
        router: &app.router,
        gateway: &app.gateway,
        limiter: &app.limiter,
        now_ms: app.clock.now_ms(),
    };
    let ask = Ask {
        request: &call.request,
        path_route: call.path_route.as_deref(),
        prefer: call.prefer,
        principal: call.principal.as_deref(),
        remember: false,
    };
    let Some(decision) = decide::decide(&cx, &ask)? else {
        // Other routes are not named: `GET /v1/models` lists what the caller may call.
        return Err(ApiError::invalid_param(
            "model",
            format!(
                "`{}` is not a route; GET /v1/models lists the models and routes you can call",
                call.request.model
            ),
        )
        .into());
    };
    // Counted against the caller's rate and concurrency limits like any request; it calls no
    // model, so it reserves no budget and leaves no usage event.
    let standing = admission::admit(
        &app.limiter,
        call.principal.as_deref(),
        &mut None,
        admission::Ask {
            tokens: 0,
            worst_cost: Nanos::ZERO,
        },
    )
    .await
    .map_err(|r| Failure {
        error: r.error,
        attempts: None,
        deployment: None,
        rate: Some(r.rate),
    })?;
    Ok(RouteReply { decision, standing })
}

/// An embeddings request to run.
pub struct EmbeddingsCall {
    pub request: EmbeddingsRequest,
    pub principal: Option<Arc<Principal>>,
    pub request_id: Arc<str>,
    pub received: Instant,
    pub request_bytes: usize,
}

/// The outcome of an embeddings request.
pub struct EmbeddingsReply {
    pub standing: Option<Standing>,
    pub outcome: Result<Served, Failure>,
}

/// Runs an embeddings request: admit, dispatch, account.
pub async fn embeddings(app: &Arc<App>, call: EmbeddingsCall) -> EmbeddingsReply {
    let EmbeddingsCall {
        request,
        principal,
        request_id,
        received,
        request_bytes,
    } = call;
    let failed = |f: Failure| EmbeddingsReply {
        standing: None,
        outcome: Err(f),
    };
    let model = match model_of_kind(app, &request.model, ModelKind::Embedding)
        .and_then(|m| check_model(principal.as_deref(), &m.name).map(|()| m))
    {
        Ok(m) => m,
        Err(e) => return failed(e.into()),
    };
    let mut meter = Meter::start(
        app.usage.clone(),
        received,
        &request_id,
        "embeddings",
        &request.model,
        false,
        request_bytes,
    );
    meter.set_embedding_inputs((request.texts.len() as u64).saturating_add(request.token_inputs).max(1));
    if let Some(p) = &principal {
        meter.set_principal(p);
    }
    let input_bound: u64 = request
        .texts
        .iter()
        .map(|t| t.len() as u64)
        .fold(request.token_inputs, u64::saturating_add);
    let worst = app
        .gateway
        .worst_case_cost(&model, meter.arrived_ms(), input_bound, Some(0), 1);
    let mut metered = Some(meter);
    let standing = match admission::admit(
        &app.limiter,
        principal.as_deref(),
        &mut metered,
        admission::Ask {
            tokens: input_bound / 4,
            worst_cost: worst,
        },
    )
    .await
    {
        Ok(s) => s,
        Err(r) => {
            return failed(Failure {
                error: r.error,
                attempts: None,
                deployment: None,
                rate: Some(r.rate),
            })
        }
    };
    let mut meter = metered.expect("an admitted request keeps its meter");
    let routed = match app.gateway.embeddings(&model, &request).await {
        Ok(r) => r,
        Err(de) => {
            meter.set_attempts(de.attempts);
            meter.finish(de.error.status.as_u16(), Outcome::UpstreamError, Some(de.kind));
            return EmbeddingsReply {
                standing,
                outcome: Err(Failure {
                    error: de.error,
                    attempts: Some(de.attempts),
                    deployment: None,
                    rate: None,
                }),
            };
        }
    };
    let d = routed.deployment.clone();
    meter.set_deployment(&d, routed.attempts);
    let c = routed.value;
    let estimate = match meter.verdict(c.usage.as_ref()) {
        Verdict::Believe(..) => None,
        Verdict::Estimate(_) => Some(count_embedding_inputs(&request, d.encoding).await),
    };
    let accounted = meter.account(c.usage.as_ref(), || estimate.unwrap_or_default());
    meter.add_response(&c.body);
    drop(routed.guard);
    meter.finish(200, Outcome::Success, None);
    EmbeddingsReply {
        standing,
        outcome: Ok(Served {
            model,
            deployment: Some(d),
            attempts: routed.attempts,
            upstream: routed.upstream,
            body: ServedBody::Json {
                body: c.body,
                accounted,
            },
        }),
    }
}

/// An embeddings request's input tokens, counted off the executor when there is much text.
async fn count_embedding_inputs(request: &EmbeddingsRequest, enc: Encoding) -> Usage {
    let count = move |texts: &[String], tokens: u64| Usage {
        prompt_tokens: texts.iter().map(|t| enc.count(t)).fold(tokens, u64::saturating_add),
        completion_tokens: 0,
        cached_tokens: 0,
    };
    let bytes: usize = request.texts.iter().map(String::len).sum();
    if bytes <= COUNT_INLINE_BYTES {
        return count(&request.texts, request.token_inputs);
    }
    let (texts, tokens) = (request.texts.clone(), request.token_inputs);
    tokio::task::spawn_blocking(move || count(&texts, tokens))
        .await
        .unwrap_or_else(|_| count(&request.texts, request.token_inputs))
}
