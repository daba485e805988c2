//! Switchyard: an OpenAI-compatible LLM gateway.
//!
//! # Layout
//! - [`config`]: the typed configuration, file plus `SWITCHYARD_*` overrides, validated all at once.
//! - [`http`]: the only module that knows axum; routes, middleware, handlers, status codes.
//! - [`request`]: validated views of client requests, original bodies kept for pass-through.
//! - [`gateway`]: logical models → deployments; balancing, breakers, retries, fallbacks.
//! - [`providers`]: one file per upstream protocol (OpenAI-compatible, Anthropic, mock).
//! - [`relay`]: the SSE relay that streams, meters and prices a chat stream.
//! - [`usage`]: one usage event per accepted request, through a bounded sink.
//! - [`tokens`], [`pricing`]: pure token estimates and integer money.
//! - [`error`]: the OpenAI-shaped error every failure becomes.
//! - [`telemetry`]: logs and Prometheus metrics.
//!
//! `main.rs` only parses the command line and calls [`run`].

pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod pricing;
pub mod providers;
pub mod relay;
pub mod request;
pub mod telemetry;
pub mod tokens;
pub mod usage;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::AppState;
use crate::usage::{ChannelSink, UsageSink, USAGE_CHANNEL_CAPACITY};

/// Builds the shared state for `config`, sending usage events to `usage`.
pub fn build_state(config: &Config, usage: Arc<dyn UsageSink>) -> Arc<AppState> {
    Arc::new(AppState {
        gateway: gateway::Gateway::new(config),
        usage,
        max_body_bytes: config.server.max_body_bytes,
        metrics: telemetry::metrics_handle(),
        draining: AtomicBool::new(false),
        http_metrics: http::HttpMetrics::new(),
    })
}

/// Serves the gateway on `listener` until `shutdown` completes, then drains: no new connections,
/// in-flight requests and streams get `server.shutdown_grace_secs` to finish, and the usage
/// consumer is drained before returning. `usage` replaces the default sink (tests pass one).
pub async fn run(
    config: Config,
    listener: TcpListener,
    usage: Option<Arc<dyn UsageSink>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Upstreams other than the in-process mock may report no usage; build their encoders now.
    let mut encodings: Vec<tokens::Encoding> = config
        .models
        .values()
        .flat_map(|m| m.deployments.iter())
        .filter(|d| {
            config
                .providers
                .get(&d.provider)
                .is_some_and(|p| p.kind != config::ProviderKind::Mock)
        })
        .map(|d| tokens::Encoding::for_model(&d.model))
        .collect();
    encodings.sort_by_key(|e| *e as u8);
    encodings.dedup();
    tokio::task::spawn_blocking(move || tokens::warm_up(&encodings));
    let (sink, consumer) = match usage {
        Some(s) => (s, None),
        None => {
            let (sink, rx) = ChannelSink::new(USAGE_CHANNEL_CAPACITY);
            let sink: Arc<dyn UsageSink> = sink;
            (sink, Some(tokio::spawn(usage::consume(rx))))
        }
    };
    let state = build_state(&config, sink);
    let app = http::router(state.clone());
    let limits = http::serve::ServeLimits {
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        max_connections: config.server.max_connections,
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
    };
    let signal_state = state.clone();
    let on_shutdown = move || {
        signal_state.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "shutting down: draining in-flight requests"
        );
    };
    http::serve::serve(listener, app, limits, shutdown, on_shutdown).await?;
    drop(state);
    if let Some(consumer) = consumer {
        // The consumer ends when the last sender (held by the state) is gone.
        if tokio::time::timeout(Duration::from_secs(5), consumer).await.is_err() {
            tracing::warn!("usage consumer did not drain within 5 s");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
