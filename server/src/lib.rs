//! Switchyard: an OpenAI-compatible LLM gateway.
//!
//! # Layout
//! The folders are the map; each has a one-line `//!` and a list of its files.
//! - [`http`]: the only module that knows axum: routes, middleware, thin handlers, status codes
//!   and headers; `http::admin` is the `/admin/v1` API by resource.
//! - [`proxy`]: the request path. [`proxy::pipeline`] runs every request (decide, admit, look
//!   up, dispatch or cascade, meter) without knowing HTTP; [`proxy::request`] validates bodies,
//!   [`proxy::gateway`] balances, retries and falls back, [`proxy::relay`] streams.
//! - [`providers`]: one file per upstream protocol (OpenAI-compatible, Anthropic, mock).
//! - [`cache`]: the response cache that fills the pipeline's lookup slot: exact and semantic.
//! - [`router`]: features, the trained model, routes and decisions, cascades, training, metrics.
//! - [`access`]: virtual keys and their cached lookup; rate, concurrency and budget limits.
//! - [`money`]: tokens, prices, accounting (done once), metering, the ledger writer, billing.
//! - [`capture`]: the request log's opt-in bodies: held bounded, redacted, cut, purged.
//! - [`store`]: SQLite or Postgres, the only module that writes SQL.
//! - [`records`]: plain records (keys, limits, the usage event defined once, billing rows).
//! - [`config`]: the typed configuration, file plus `SWITCHYARD_*` overrides, validated at once.
//! - [`app`]: the running gateway's shared parts.
//! - [`clock`], [`error`], [`telemetry`], [`admin_client`]: time, the one error type clients
//!   see, logs and metrics, the CLI's client of the admin API.
//!
//! `main.rs` only parses the command line and calls [`run`].

pub mod access;
pub mod admin_client;
pub mod app;
pub mod cache;
pub mod capture;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod money;
pub mod providers;
pub mod proxy;
pub mod records;
pub mod router;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::app::{build_state, build_state_with, router_model, App};
use crate::clock::Clock;
use crate::config::Config;
use crate::money::meter::{ChannelSink, UsageSink, MAX_PENDING_ESTIMATE_BYTES};
use crate::store::Store;

/// What a running gateway is built from besides its configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Replaces the default sink (the channel to the ledger writer); tests pass a memory sink.
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Replaces the system clock (tests of budget periods and rate limits).
    pub clock: Option<Arc<dyn Clock>>,
    /// Fills the pipeline's lookup slot.
    pub lookup: Option<Arc<dyn proxy::lookup::Lookup>>,
}

/// How long each step after the grace period may take at most on shutdown: with the default
/// grace (15 s) the process exits within 28 s of SIGTERM, inside Kubernetes' default 30 s.
pub mod shutdown {
    use std::time::Duration;
    /// Cache entries still queued for the database.
    pub const CACHE: Duration = Duration::from_secs(3);
    /// The ledger's last events (normally milliseconds; the bound is for a database that is down).
    pub const LEDGER: Duration = Duration::from_secs(5);
    /// Settled spend written, leases returned.
    pub const SPEND: Duration = Duration::from_secs(3);
    /// One last billing round (the outbox is durable: the rest goes after the restart).
    pub const BILLING: Duration = Duration::from_secs(2);
}

/// How often the config file is checked for a new routing table.
const ROUTES_POLL: Duration = Duration::from_secs(2);

/// Reloads the routing table (routes and router model) when the config file changes. The whole
/// file is validated first; a file with any problem is refused and the running table stays.
/// Other sections take effect at the next restart.
async fn watch_routes(state: Arc<App>, path: std::path::PathBuf) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    loop {
        tokio::time::sleep(ROUTES_POLL).await;
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        let p = path.clone();
        let loaded =
            tokio::task::spawn_blocking(move || Config::load(Some(&p), &|k| std::env::var(k).ok(), std::env::vars()))
                .await;
        match loaded {
            Ok(Ok(new)) => {
                // Routes must name models of the running gateway, which the file may have changed.
                if let Err(e) = state.config.check_route_targets(&new.routes) {
                    tracing::error!(file = %path.display(), problems = %e, "changed routes refused; the running routing table stays");
                    state.reloaded(Some(e.to_string()));
                    continue;
                }
                let current = state.router.get().model.clone();
                let mut problem = None;
                let model = match &new.router_model {
                    None => router::policy::builtin_model().clone(),
                    Some(p) => match router::model::RouterModel::load(p) {
                        Ok(m) => Arc::new(m),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot load the changed router model; keeping the running one");
                            problem = Some(format!("router model not loaded, the running one kept: {e}"));
                            current
                        }
                    },
                };
                let names: Vec<String> = new.routes.iter().map(|r| r.name.clone()).collect();
                state
                    .router
                    .set(router::policy::Router::new(model, new.routes.iter().cloned()));
                tracing::info!(file = %path.display(), routes = ?names, "routing table reloaded");
                state.reloaded(problem);
            }
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), problems = %e, "changed config refused; the running routing table stays");
                state.reloaded(Some(e.to_string()));
            }
            Err(e) => tracing::error!(error = %e, "config reload task failed"),
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` completes; see [`run_with`].
pub async fn run(
    config: Config,
    listener: TcpListener,
    usage: Option<Arc<dyn UsageSink>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(
        config,
        listener,
        RunOptions {
            usage,
            ..RunOptions::default()
        },
        shutdown,
    )
    .await
}

/// Opens (and migrates) the database, serves the gateway on `listener` until `shutdown`
/// completes, then drains: no new connections, in-flight requests and streams get
/// `server.shutdown_grace_secs` to finish, every usage event is written to the ledger, settled
/// budget spend is written and leases are returned before this returns.
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = Store::connect(&config.database.url, config.database.max_connections)
        .await
        .map_err(std::io::Error::other)?;
    tracing::info!(backend = ?store.backend(), url = %store::redact(&config.database.url), "database ready");
    // Upstreams other than the in-process mock may report no usage; build their encoders now.
    let mut encodings: Vec<money::tokens::Encoding> = config
        .models
        .values()
        .flat_map(|m| m.deployments.iter())
        .filter(|d| {
            config
                .providers
                .get(&d.provider)
                .is_some_and(|p| p.kind != config::ProviderKind::Mock)
        })
        .map(|d| money::tokens::Encoding::for_model(&d.model))
        .collect();
    encodings.sort_by_key(|e| *e as u8);
    encodings.dedup();
    tokio::task::spawn_blocking(move || money::tokens::warm_up(&encodings));
    let (sink, consumer) = match options.usage {
        Some(s) => (s, None),
        None => {
            let backlog = money::backlog::Backlog::new(
                config.ledger.max_buffered_events,
                config.server.max_in_flight.saturating_mul(2),
            );
            let (sink, rx) = ChannelSink::with_backlog(Arc::new(backlog), MAX_PENDING_ESTIMATE_BYTES);
            let sink: Arc<dyn UsageSink> = sink;
            let writer = money::ledger::LedgerWriter {
                store: store.clone(),
                batch_size: config.ledger.batch_size,
                flush_interval: Duration::from_millis(config.ledger.flush_interval_ms),
                billing: config.billing.enabled(),
            };
            (sink, Some(tokio::spawn(money::ledger::consume(rx, Some(writer)))))
        }
    };
    let clock = options.clock.unwrap_or_else(|| Arc::new(clock::SystemClock));
    let state = build_state_with(&config, sink, store.clone(), clock, options.lookup);
    if let Some(d) = &state.dashboard {
        let file = &config.dashboard.first_password_file;
        match d.first_user(file).await {
            Ok(Some(_)) => tracing::warn!(
                user = dashboard::FIRST_USER,
                file = %file.display(),
                "no master key and no dashboard users: made the first admin user; its password is in the file \
                 (sign in at /ui, add your own users, then delete the file)"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot make the dashboard's first user"),
        }
    }
    let (flusher_stop, flusher_stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = tokio::spawn(state.limiter.clone().run_flusher(async move {
        let _ = flusher_stopped.await;
    }));
    let (billing_stop, billing_stopped) = tokio::sync::oneshot::channel::<()>();
    let deliverer = config.billing.enabled().then(|| {
        let d = money::billing::Deliverer::new(
            store.clone(),
            config.billing.clone(),
            state.clock.clone(),
            state.limiter.holder().to_string(),
        );
        tracing::info!(url = %config::redact_url(&config.billing.url), "billing events go to the webhook");
        tokio::spawn(d.run(
            async move {
                let _ = billing_stopped.await;
            },
            // Half of the time the shutdown waits for it.
            shutdown::BILLING / 2,
        ))
    });
    let (cache_stop, cache_stopped) = tokio::sync::oneshot::channel::<()>();
    let cache_writer = match (&state.cache, config.cache.persist) {
        (Some(cache), true) => {
            let rx = cache.persist_to(store.clone());
            match cache.warm_from(&store).await {
                Ok(n) => tracing::info!(entries = n, "the cache starts warm from the database"),
                Err(e) => tracing::warn!(error = %e, "cannot load the persisted cache entries; the cache starts cold"),
            }
            Some(tokio::spawn(cache::persist::write_behind(
                store.clone(),
                rx,
                state.clock.clone(),
                async move {
                    let _ = cache_stopped.await;
                },
            )))
        }
        _ => None,
    };
    let watcher = config
        .source
        .clone()
        .map(|path| tokio::spawn(watch_routes(state.clone(), path)));
    if !config.auth.required {
        tracing::warn!("auth.required = false: requests without a Switchyard key are served without limits");
    }
    let upkeep = telemetry::metrics_handle().map(|h| tokio::spawn(telemetry::run_upkeep(h)));
    let purger = state
        .bodies
        .clone()
        .map(|rules| tokio::spawn(capture::purge(store.clone(), state.clock.clone(), rules)));
    let app = http::router(state.clone());
    let limits = http::serve::ServeLimits {
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        write_stall_timeout: Duration::from_secs(config.server.write_stall_timeout_secs.max(1)),
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
    let served = http::serve::serve(listener, app, limits, shutdown, on_shutdown).await;
    if let Some(w) = watcher {
        w.abort();
    }
    if let Some(u) = upkeep {
        u.abort();
    }
    if let Some(p) = purger {
        p.abort();
    }
    // Entries still queued for the database are written before it closes.
    let _ = cache_stop.send(());
    if let Some(w) = cache_writer {
        if tokio::time::timeout(shutdown::CACHE, w).await.is_err() {
            tracing::warn!("cache entries were not all persisted in time");
        }
    }
    drop(state);
    if let Some(consumer) = consumer {
        // The consumer ends when the last sender (held by the state) is gone and everything it
        // received is written.
        if tokio::time::timeout(shutdown::LEDGER, consumer).await.is_err() {
            tracing::error!("usage ledger did not drain in time");
        }
    }
    // Every event is settled now: write the spend and return the leases first (other processes
    // may be waiting for that budget), then one last, bounded billing round (the outbox is
    // durable: what is left goes after a restart).
    let _ = flusher_stop.send(());
    if tokio::time::timeout(shutdown::SPEND, flusher).await.is_err() {
        tracing::error!("budget spend was not written in time");
    }
    let _ = billing_stop.send(());
    if let Some(d) = deliverer {
        if tokio::time::timeout(shutdown::BILLING, d).await.is_err() {
            tracing::warn!("billing delivery did not stop in time; undelivered events go after restart");
        }
    }
    store.close().await;
    tracing::info!("stopped");
    served
}
