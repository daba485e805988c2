//! Logical models → deployments: balancing, circuit breakers, retries and fallbacks before the first byte.
//!
//! A call walks an ordered list of candidate deployments (the model's own, ordered by its
//! balancer, then each fallback model's). Transient failures retry the same deployment with
//! exponential backoff and jitter; other retryable failures move on to the next one. For a
//! stream, the first chunk is awaited before the call counts as a success, so a stream that
//! breaks before its first byte is retried too. Once a byte has gone to the client nothing is
//! retried: the stream ends with an error event instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::config::{
    Balance, BreakerConfig, Capability, Config, DeploymentConfig, ModelKind, ProviderKind, RetryConfig,
};
use crate::error::ApiError;
use crate::money::pricing::{Nanos, PicoPerToken, Price};
use crate::money::tokens::Encoding;
use crate::providers::{self, CallLimits, ChatOutcome, Chunk, ChunkStream, Complete, Provider, UpstreamError};
use crate::proxy::request::{ChatRequest, EmbeddingsRequest, Needs};

/// The deployment a request is being sent to, shared with its meter.
pub type Attempting = Arc<std::sync::Mutex<Option<Arc<Deployment>>>>;

/// Consecutive failures and the moment a tripped breaker lets a trial call through.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    /// Milliseconds since the gateway's epoch until which the deployment is skipped (0 = closed).
    open_until_ms: AtomicU64,
}

impl Breaker {
    fn allows(&self, now_ms: u64) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        until == 0 || now_ms >= until
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    /// Records a failure; returns true when this failure opened the breaker.
    fn failure(&self, cfg: &BreakerConfig, now_ms: u64) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= cfg.failure_threshold {
            // Half-open after the cooldown: one more failure re-opens it at once.
            self.failures
                .store(cfg.failure_threshold.saturating_sub(1), Ordering::Relaxed);
            self.open_until_ms
                .store(now_ms + cfg.cooldown_secs * 1000, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn is_open(&self, now_ms: u64) -> bool {
        !self.allows(now_ms)
    }
}

/// One deployment with its live state.
pub struct Deployment {
    pub config: DeploymentConfig,
    pub provider_name: String,
    pub provider_kind: ProviderKind,
    pub encoding: Encoding,
    provider: Arc<dyn Provider>,
    limits: CallLimits,
    inflight: AtomicU32,
    pub breaker: Breaker,
}

impl Deployment {
    /// One embeddings call to this deployment, without the gateway's retries (the cache's
    /// remote embedder calls it for its own lookups).
    pub fn embed(
        &self,
        req: &EmbeddingsRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<Complete, UpstreamError>> {
        self.provider.embeddings(&self.config, req, self.limits)
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    fn serves(&self, needs: Needs) -> bool {
        let has = |c| self.config.capabilities.contains(&c);
        (!needs.tools || has(Capability::Tools))
            && (!needs.vision || has(Capability::Vision))
            && (!needs.json || has(Capability::Json))
            // Anthropic's Messages API returns one choice per call.
            && (!needs.choices || self.provider_kind != ProviderKind::Anthropic)
    }
}

/// Keeps a deployment's in-flight count up for as long as a call (or its stream) lives.
pub struct InflightGuard(Arc<Deployment>);

impl InflightGuard {
    fn new(d: &Arc<Deployment>) -> Self {
        d.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(d.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A logical model as clients name it.
pub struct LogicalModel {
    pub name: String,
    pub kind: ModelKind,
    pub balance: Balance,
    pub fallbacks: Vec<String>,
    pub description: Option<String>,
    pub deployments: Vec<Arc<Deployment>>,
}

/// What a successful dispatch returns: the answer and where it came from.
pub struct Routed<T> {
    pub value: T,
    pub deployment: Arc<Deployment>,
    pub guard: InflightGuard,
    pub attempts: u32,
    /// Time spent waiting on upstream calls and retry backoff (for streams: until the first chunk).
    pub upstream: Duration,
}

/// The first chunk of a stream, already received, and the rest.
pub struct StartedStream {
    pub first: Chunk,
    pub rest: ChunkStream,
}

pub enum ChatAnswer {
    Complete(Complete),
    Stream(StartedStream),
}

/// Why a request could not be dispatched, with what was learnt on the way.
#[derive(Debug)]
pub struct DispatchError {
    pub error: ApiError,
    pub attempts: u32,
    pub last_deployment: Option<Arc<Deployment>>,
    pub kind: &'static str,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment").field("id", &self.config.id).finish()
    }
}

/// A built provider, its kind and its settings.
type ProviderEntry = (Arc<dyn Provider>, ProviderKind, Arc<crate::config::ProviderConfig>);

pub struct Gateway {
    pub models: HashMap<String, Arc<LogicalModel>>,
    /// Model names in config order, for `/v1/models`.
    pub model_names: Vec<String>,
    retry: RetryConfig,
    breaker: BreakerConfig,
    epoch: Instant,
}

impl Gateway {
    pub fn new(config: &Config) -> Gateway {
        let mut providers: HashMap<String, ProviderEntry> = HashMap::new();
        for (name, p) in &config.providers {
            let pc = Arc::new(p.clone());
            // One client (and connection pool) per provider, with that provider's connect timeout.
            let client = providers::http_client(Duration::from_millis(p.connect_timeout_ms));
            let provider: Arc<dyn Provider> = match p.kind {
                ProviderKind::Openai => Arc::new(providers::openai::OpenAi::new(client.clone(), pc.clone())),
                ProviderKind::Anthropic => Arc::new(providers::anthropic::Anthropic::new(client.clone(), pc.clone())),
                ProviderKind::Mock => Arc::new(providers::mock::Mock::new(pc.clone())),
            };
            providers.insert(name.clone(), (provider, p.kind, pc));
        }
        let mut models = HashMap::new();
        let mut model_names = Vec::new();
        for (name, m) in &config.models {
            let deployments = m
                .deployments
                .iter()
                .filter_map(|d| {
                    let (provider, kind, pc) = providers.get(&d.provider)?;
                    Some(Arc::new(Deployment {
                        config: d.clone(),
                        provider_name: d.provider.clone(),
                        provider_kind: *kind,
                        encoding: Encoding::for_model(&d.model),
                        provider: provider.clone(),
                        limits: CallLimits {
                            timeout: Duration::from_millis(d.timeout_ms.unwrap_or(pc.timeout_ms)),
                            idle_timeout: Duration::from_millis(pc.stream_idle_timeout_ms),
                            max_stream: Duration::from_secs(pc.stream_max_secs),
                            max_response_bytes: config.server.max_response_bytes,
                        },
                        inflight: AtomicU32::new(0),
                        breaker: Breaker::default(),
                    }))
                })
                .collect();
            model_names.push(name.clone());
            models.insert(
                name.clone(),
                Arc::new(LogicalModel {
                    name: name.clone(),
                    kind: m.kind,
                    balance: m.balance,
                    fallbacks: m.fallbacks.clone(),
                    description: m.description.clone(),
                    deployments,
                }),
            );
        }
        Gateway {
            models,
            model_names,
            retry: config.server.retry.clone(),
            breaker: config.server.breaker.clone(),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the gateway started (never 0), the clock of the circuit breakers.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn model(&self, name: &str) -> Option<&Arc<LogicalModel>> {
        self.models.get(name)
    }

    /// A logical model's price at `at_ms`: its first deployment's (the one the balancer prefers
    /// when all are healthy); `None` for a model with no deployment.
    pub fn first_price(&self, model: &str, at_ms: i64) -> Option<Price> {
        let m = self.models.get(model)?;
        m.deployments.first().map(|d| d.config.prices.at_or_first(at_ms).price)
    }

    /// The most a chat request to `model` can cost: `prompt_tokens` (an upper bound) at the
    /// highest input price and the output cap at the highest output price of any deployment it
    /// may reach, fallbacks included. Budgets reserve this before forwarding.
    /// Prices are those in force at `at_ms`, the request's time; `choices` is the request's `n`.
    pub fn worst_case_cost(
        &self,
        model: &LogicalModel,
        at_ms: i64,
        prompt_tokens: u64,
        max_output: Option<u32>,
        choices: u32,
    ) -> Nanos {
        let mut input = 0i64;
        let mut output = 0i64;
        let mut cap = 0u64;
        let chain =
            std::iter::once(model).chain(model.fallbacks.iter().filter_map(|f| self.models.get(f).map(|m| &**m)));
        for m in chain {
            for d in &m.deployments {
                let price = d.config.prices.at_or_first(at_ms).price;
                input = input.max(price.input.0).max(price.cached_input.0);
                output = output.max(price.output.0);
                cap = cap.max(u64::from(d.config.max_output_tokens.unwrap_or(d.config.context_window)));
            }
        }
        // Every choice may run to the cap.
        let out_tokens = max_output.map_or(cap, u64::from) * u64::from(choices.max(1));
        Price {
            input: PicoPerToken(input),
            output: PicoPerToken(output),
            cached_input: PicoPerToken(input),
        }
        .cost(prompt_tokens, 0, out_tokens)
    }

    /// Orders one model's deployments by its balancing policy.
    fn order(model: &LogicalModel, candidates: Vec<Arc<Deployment>>) -> Vec<Arc<Deployment>> {
        match model.balance {
            Balance::LeastBusy => {
                let mut c = candidates;
                // Ties go to the larger weight, then to a random pick so equal deployments share load.
                let mut keyed: Vec<(u32, std::cmp::Reverse<u32>, u32, Arc<Deployment>)> = c
                    .drain(..)
                    .map(|d| (d.inflight(), std::cmp::Reverse(d.config.weight), fastrand::u32(..), d))
                    .collect();
                keyed.sort_by_key(|k| (k.0, k.1, k.2));
                keyed.into_iter().map(|k| k.3).collect()
            }
            Balance::Weighted => {
                // Weighted random order without replacement.
                let mut pool = candidates;
                let mut out = Vec::with_capacity(pool.len());
                while !pool.is_empty() {
                    let total: u64 = pool.iter().map(|d| u64::from(d.config.weight)).sum();
                    let mut pick = fastrand::u64(..total.max(1));
                    let mut idx = 0;
                    for (i, d) in pool.iter().enumerate() {
                        let w = u64::from(d.config.weight);
                        if pick < w {
                            idx = i;
                            break;
                        }
                        pick -= w;
                    }
                    out.push(pool.swap_remove(idx));
                }
                out
            }
        }
    }

    /// The lowest list price (input plus output, picodollars per token) among a logical model's
    /// deployments at `at_ms`; `None` for an unknown model.
    pub fn list_price(&self, model: &str, at_ms: i64) -> Option<i64> {
        self.models
            .get(model)?
            .deployments
            .iter()
            .map(|d| {
                let p = d.config.prices.at_or_first(at_ms).price;
                p.input.0.saturating_add(p.output.0)
            })
            .min()
    }

    /// Whether some deployment of `model` (or its fallbacks) can take this chat request.
    pub fn can_serve(&self, model: &str, req: &ChatRequest) -> bool {
        self.models
            .get(model)
            .is_some_and(|m| self.chat_candidates(m, req).is_ok_and(|c| !c.is_empty()))
    }

    /// The encodings in which `req`'s prompt must be counted exactly to check the context
    /// windows of `models` (and their fallbacks): usually none. The request path counts these
    /// ahead, off the async executor, so the checks themselves only read the result.
    pub fn encodings_to_count(&self, models: &[&str], req: &ChatRequest) -> Vec<Encoding> {
        let mut out: Vec<Encoding> = Vec::new();
        let reserve = u64::from(req.max_output_tokens.unwrap_or(0));
        for name in models {
            let Some(model) = self.models.get(*name) else { continue };
            let chain = std::iter::once(model).chain(model.fallbacks.iter().filter_map(|f| self.models.get(f)));
            for d in chain.flat_map(|m| m.deployments.iter()) {
                let limit = u64::from(d.config.context_window).saturating_sub(reserve);
                if d.serves(req.needs)
                    && window_check(&req.prompt, limit) == WindowCheck::Count
                    && !req.prompt.is_counted(d.encoding)
                    && !out.contains(&d.encoding)
                {
                    out.push(d.encoding);
                }
            }
        }
        out
    }

    /// Candidate deployments for a chat request, in the order they will be tried.
    fn chat_candidates(&self, model: &LogicalModel, req: &ChatRequest) -> Result<Vec<Arc<Deployment>>, ApiError> {
        let mut chain: Vec<&LogicalModel> = vec![model];
        for fb in &model.fallbacks {
            if let Some(m) = self.models.get(fb) {
                chain.push(m);
            }
        }
        let mut capable = 0usize;
        let mut smallest_window = u64::MAX;
        let mut prompt_tokens_seen: Option<u64> = None;
        let mut out = Vec::new();
        for m in chain {
            let mut fits = Vec::new();
            for d in &m.deployments {
                if !d.serves(req.needs) {
                    continue;
                }
                capable += 1;
                let window = u64::from(d.config.context_window);
                let limit = window.saturating_sub(u64::from(req.max_output_tokens.unwrap_or(0)));
                // The byte bound settles almost every request, and a window that cannot hold
                // even the chat format's own tokens settles it the other way; only in between
                // is the prompt counted (once per encoding, whoever asks).
                let fits_window = match window_check(&req.prompt, limit) {
                    WindowCheck::Fits => true,
                    WindowCheck::Never => false,
                    WindowCheck::Count => {
                        let n = req.prompt.count(d.encoding);
                        prompt_tokens_seen = Some(n);
                        n <= limit
                    }
                };
                if fits_window {
                    fits.push(d.clone());
                } else {
                    smallest_window = smallest_window.min(window);
                }
            }
            out.extend(Self::order(m, fits));
        }
        if capable == 0 {
            // Name the first need that no deployment in the chain can serve.
            let chain_serves = |one: Needs| {
                std::iter::once(model)
                    .chain(
                        model
                            .fallbacks
                            .iter()
                            .filter_map(|f| self.models.get(f).map(|m| m.as_ref())),
                    )
                    .flat_map(|m| m.deployments.iter())
                    .any(|d| d.serves(one))
            };
            let none = Needs::default();
            let candidates = [
                (req.needs.tools, Needs { tools: true, ..none }, "tools", "tool calls"),
                (
                    req.needs.vision,
                    Needs { vision: true, ..none },
                    "messages",
                    "image input",
                ),
                (
                    req.needs.json,
                    Needs { json: true, ..none },
                    "response_format",
                    "JSON mode",
                ),
                (
                    req.needs.choices,
                    Needs { choices: true, ..none },
                    "n",
                    "several choices (n > 1)",
                ),
            ];
            let (param, what) = candidates
                .iter()
                .find(|(wanted, one, _, _)| *wanted && !chain_serves(*one))
                .map(|(_, _, p, w)| (*p, *w))
                .unwrap_or(("model", "this combination of features"));
            return Err(ApiError::invalid_param(
                param,
                format!("The model `{}` does not support {what}.", model.name),
            ));
        }
        if out.is_empty() {
            let seen = match prompt_tokens_seen {
                Some(n) => format!("{n} tokens"),
                None => "more tokens than fit".to_string(),
            };
            return Err(ApiError::context_length_exceeded(format!(
                "This model's maximum context length is {smallest_window} tokens. However, your messages resulted in {seen}{}. Please reduce the length of the messages.",
                match req.max_output_tokens {
                    Some(m) => format!(" plus {m} requested for the completion"),
                    None => String::new(),
                }
            )));
        }
        Ok(out)
    }

    fn embedding_candidates(&self, model: &LogicalModel) -> Vec<Arc<Deployment>> {
        let mut out = Self::order(model, model.deployments.clone());
        for fb in &model.fallbacks {
            if let Some(m) = self.models.get(fb) {
                out.extend(Self::order(m, m.deployments.clone()));
            }
        }
        out
    }

    fn backoff(&self, attempt_on_deployment: u32, hint: Option<Duration>) -> Duration {
        let base = self
            .retry
            .backoff_ms
            .saturating_mul(1u64 << attempt_on_deployment.min(16));
        let capped = base.min(self.retry.max_backoff_ms);
        let jittered = capped / 2 + fastrand::u64(..=capped / 2 + 1);
        let d = Duration::from_millis(jittered);
        match hint {
            Some(h) if h <= Duration::from_millis(self.retry.max_backoff_ms) => h.max(d),
            _ => d,
        }
    }

    /// Dispatches a chat request, retrying and falling back before the first byte.
    pub async fn chat(&self, model: &LogicalModel, req: &ChatRequest) -> Result<Routed<ChatAnswer>, DispatchError> {
        self.chat_attempting(model, req, &Attempting::default()).await
    }

    /// [`Gateway::chat`], keeping in `attempting` the deployment each attempt goes to, so that
    /// whoever holds it knows where the request went if it is dropped before an answer.
    pub async fn chat_attempting(
        &self,
        model: &LogicalModel,
        req: &ChatRequest,
        attempting: &Attempting,
    ) -> Result<Routed<ChatAnswer>, DispatchError> {
        let candidates = self.chat_candidates(model, req).map_err(|error| DispatchError {
            kind: error.kind(),
            error,
            attempts: 0,
            last_deployment: None,
        })?;
        self.run_attempts(&model.name, candidates, |d| {
            let d = d.clone();
            *attempting.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
            let fut = d.provider.chat(&d.config, req, d.limits);
            async move {
                match fut.await? {
                    ChatOutcome::Complete(c) => Ok(ChatAnswer::Complete(c)),
                    ChatOutcome::Stream(mut s) => {
                        // The first chunk decides whether the attempt succeeded.
                        match tokio::time::timeout(d.limits.idle_timeout, s.next()).await {
                            Err(_) => Err(UpstreamError::Timeout),
                            Ok(None) => Err(UpstreamError::Cut),
                            Ok(Some(Err(e))) => Err(e),
                            Ok(Some(Ok(first))) => Ok(ChatAnswer::Stream(StartedStream { first, rest: s })),
                        }
                    }
                }
            }
        })
        .await
    }

    /// Dispatches an embeddings request with the same retry rules.
    pub async fn embeddings(
        &self,
        model: &LogicalModel,
        req: &EmbeddingsRequest,
    ) -> Result<Routed<Complete>, DispatchError> {
        let candidates = self.embedding_candidates(model);
        self.run_attempts(&model.name, candidates, |d| {
            d.provider.embeddings(&d.config, req, d.limits)
        })
        .await
    }

    async fn run_attempts<T, F, Fut>(
        &self,
        model: &str,
        candidates: Vec<Arc<Deployment>>,
        mut call: F,
    ) -> Result<Routed<T>, DispatchError>
    where
        F: FnMut(&Arc<Deployment>) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut attempts = 0u32;
        let mut upstream = Duration::ZERO;
        let mut last: Option<(UpstreamError, Arc<Deployment>)> = None;
        let mut min_retry_after: Option<Duration> = None;
        let mut all_rate_limited = true;
        'deployments: for d in &candidates {
            if !d.breaker.allows(self.now_ms()) {
                continue;
            }
            for try_no in 0..self.retry.attempts_per_deployment {
                if attempts >= self.retry.max_total_attempts {
                    break 'deployments;
                }
                attempts += 1;
                let guard = InflightGuard::new(d);
                let called = Instant::now();
                let result = call(d).await;
                upstream += called.elapsed();
                match result {
                    Ok(value) => {
                        d.breaker.success();
                        return Ok(Routed {
                            value,
                            deployment: d.clone(),
                            guard,
                            attempts,
                            upstream,
                        });
                    }
                    Err(e) => {
                        drop(guard);
                        metrics::counter!("switchyard_upstream_errors_total",
                            "deployment" => d.config.id.clone(), "kind" => e.kind())
                        .increment(1);
                        tracing::warn!(model, deployment = %d.config.id, attempt = attempts, error = %e, "upstream attempt failed");
                        if e.counts_against_deployment() && d.breaker.failure(&self.breaker, self.now_ms()) {
                            tracing::warn!(deployment = %d.config.id, cooldown_secs = self.breaker.cooldown_secs, "circuit breaker opened");
                            metrics::counter!("switchyard_breaker_opened_total", "deployment" => d.config.id.clone())
                                .increment(1);
                        }
                        if let UpstreamError::Status {
                            status: 429,
                            retry_after,
                            ..
                        } = &e
                        {
                            if let Some(r) = retry_after {
                                min_retry_after = Some(min_retry_after.map_or(*r, |m: Duration| m.min(*r)));
                            }
                        } else {
                            all_rate_limited = false;
                        }
                        let retryable = e.retryable();
                        let transient = e.transient();
                        let hint = match &e {
                            UpstreamError::Status { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        last = Some((e, d.clone()));
                        if !retryable {
                            break 'deployments;
                        }
                        if !transient || try_no + 1 >= self.retry.attempts_per_deployment {
                            continue 'deployments;
                        }
                        let pause = self.backoff(try_no, hint);
                        tokio::time::sleep(pause).await;
                        upstream += pause;
                        if !d.breaker.allows(self.now_ms()) {
                            continue 'deployments;
                        }
                    }
                }
            }
        }
        let (error, kind, last_deployment) = match last {
            None => (ApiError::no_healthy_deployment(model), "no_healthy_deployment", None),
            Some((e, d)) => {
                let kind = e.kind();
                let api = match &e {
                    UpstreamError::Status { status: 429, .. } if all_rate_limited => {
                        ApiError::upstream_rate_limited(min_retry_after)
                    }
                    UpstreamError::Status { status, message, .. } if (400..500).contains(status) && !e.retryable() => {
                        ApiError::upstream_bad_request(
                            http::StatusCode::from_u16(*status).unwrap_or(http::StatusCode::BAD_REQUEST),
                            message.clone(),
                        )
                    }
                    UpstreamError::Timeout => ApiError::upstream_timeout(),
                    UpstreamError::Status { status, .. } => {
                        ApiError::upstream_error(format!("The upstream provider failed (status {status})"))
                    }
                    // The words are the gateway's own (refused, TLS, unreachable), never the upstream's.
                    UpstreamError::Connect(why) => {
                        ApiError::upstream_error(format!("Could not reach the upstream provider: {why}"))
                    }
                    UpstreamError::OverBound(why) => {
                        ApiError::upstream_error(format!("The upstream stream was cut: {why}"))
                    }
                    UpstreamError::Protocol(_) => {
                        ApiError::upstream_error("The upstream provider sent a malformed response")
                    }
                    UpstreamError::Cut => ApiError::upstream_error("The upstream provider closed the connection early"),
                };
                (api, kind, Some(d))
            }
        };
        Err(DispatchError {
            error,
            attempts,
            last_deployment,
            kind,
        })
    }
}

/// What a context window of `limit` tokens (after the reserved output) says of a prompt
/// without counting it, when it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowCheck {
    Fits,
    /// Not even the chat format's own tokens fit (say, `max_tokens` at the window).
    Never,
    Count,
}

fn window_check(prompt: &crate::money::tokens::PromptText, limit: u64) -> WindowCheck {
    if prompt.upper_bound() <= limit {
        WindowCheck::Fits
    } else if prompt.lower_bound() > limit {
        WindowCheck::Never
    } else {
        WindowCheck::Count
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
