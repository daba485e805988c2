//! The running gateway's shared parts, built once from the configuration: what the request
//! pipeline, the admin API and the background tasks work with. No HTTP here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::access::keys::{Keys, MasterKey};
use crate::access::limits::{LedgerSettings, Limiter};
use crate::cache::embed::{self, Embedder};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::{Config, EmbedderKind};
use crate::money::backlog::Backlog;
use crate::money::meter::UsageSink;
use crate::money::pricing::PriceBook;
use crate::proxy::gateway::Gateway;
use crate::proxy::lookup::Lookup;
use crate::router::model::RouterModel;
use crate::router::policy::{builtin_model, Router, RouterHandle};
use crate::store::Store;

/// Shared state of a running gateway.
pub struct App {
    pub gateway: Gateway,
    pub usage: Arc<dyn UsageSink>,
    /// The ledger's backlog behind `usage`, when it has one: admission closes when it is full.
    pub ledger: Option<Arc<Backlog>>,
    pub max_body_bytes: usize,
    /// `server.body_read_timeout_secs`.
    pub body_read_timeout: Duration,
    /// Set when shutdown begins: `/readyz` turns 503 so load balancers stop sending traffic.
    pub draining: AtomicBool,
    pub store: Store,
    pub keys: Keys,
    pub limiter: Arc<Limiter>,
    pub clock: Arc<dyn Clock>,
    /// Whether `/v1` requests must carry a virtual key.
    pub auth_required: bool,
    /// The admin master key, if one is configured.
    pub master_key: Option<MasterKey>,
    /// Every known price, for re-pricing history.
    pub prices: Arc<PriceBook>,
    /// Routes (virtual models) and the model that scores requests for them.
    pub router: RouterHandle,
    /// The configuration the gateway started with (routing tables are checked against its models).
    pub config: Arc<Config>,
    /// Answers known already, looked up before dispatch (none: every request is dispatched).
    pub lookup: Option<Arc<dyn Lookup>>,
    /// The response cache, when it fills the lookup slot (for its statistics and purges).
    pub cache: Option<Cache>,
    /// The dashboard's sign-in and sessions (`dashboard.enabled`).
    pub dashboard: Option<Arc<crate::dashboard::Dashboard>>,
    /// The rules for the bodies opted-in requests store (`[request_log]`); `None` only if they
    /// could not be compiled, and then no bodies are stored.
    pub bodies: Option<Arc<crate::capture::BodyRules>>,
    /// Waits for addresses that keep presenting unknown API keys.
    pub auth_throttle: crate::access::throttle::Throttle,
    /// The latest reload of the config file, if it changed since the start.
    pub last_reload: std::sync::Mutex<Option<ReloadOutcome>>,
}

/// What became of the latest change to the config file (shown by `/readyz` to operators).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub at_ms: i64,
    pub applied: bool,
    /// Why the change was refused; the running configuration stays then.
    pub problems: Option<String>,
}

impl App {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Records the outcome of a reload of the config file.
    pub fn reloaded(&self, problems: Option<String>) {
        let applied = problems.is_none();
        metrics::counter!("switchyard_config_reloads_total", "outcome" => if applied { "applied" } else { "refused" })
            .increment(1);
        let outcome = ReloadOutcome {
            at_ms: self.clock.now_ms(),
            applied,
            problems,
        };
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

/// The configured router model (checked when the config was loaded), else the shipped one.
pub fn router_model(config: &Config) -> Arc<RouterModel> {
    match &config.router_model {
        None => builtin_model().clone(),
        Some(path) => match RouterModel::load(path) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::error!(error = %e, "cannot load the router model; using the shipped one");
                builtin_model().clone()
            }
        },
    }
}

/// The semantic tier's embedder, where some rule turns the tier on. A local model that cannot
/// be loaded falls back to the lexical embedder, loudly: the gateway still serves.
fn semantic_embedder(config: &Config, gateway: &Gateway) -> Option<Arc<dyn Embedder>> {
    let c = &config.cache;
    if !(c.semantic.enabled || c.models.values().any(|r| r.semantic == Some(true))) {
        return None;
    }
    match embed::from_config(&c.semantic, gateway) {
        Ok(e) => {
            tracing::info!(embedder = e.name(), "the cache's semantic tier is on");
            Some(e)
        }
        Err(err) if c.semantic.embedder == EmbedderKind::Local => {
            tracing::error!(error = %err, "cannot load the local embedding model (scripts/fetch-model.sh fetches it); the semantic tier uses the lexical embedder");
            Some(Arc::new(embed::lexical::Lexical))
        }
        Err(err) => {
            tracing::error!(error = %err, "no embedder: the cache answers exact repeats only");
            None
        }
    }
}

/// Builds the shared state for `config` on an open store, sending usage events to `usage`.
pub fn build_state(config: &Config, usage: Arc<dyn UsageSink>, store: Store, clock: Arc<dyn Clock>) -> Arc<App> {
    build_state_with(config, usage, store, clock, None)
}

/// [`build_state`] with a lookup slot filled; `None` fills it with the response cache where the
/// configuration turns it on.
pub fn build_state_with(
    config: &Config,
    usage: Arc<dyn UsageSink>,
    store: Store,
    clock: Arc<dyn Clock>,
    lookup: Option<Arc<dyn Lookup>>,
) -> Arc<App> {
    let limiter = Limiter::new(
        store.clone(),
        clock.clone(),
        LedgerSettings {
            lease_pct: config.ledger.lease_pct,
            lease_ttl: Duration::from_secs(config.ledger.lease_ttl_secs),
            flush_every: Duration::from_millis(config.ledger.budget_flush_ms),
            ..LedgerSettings::default()
        },
    );
    let gateway = Gateway::new(config);
    let cache = lookup
        .is_none()
        .then(|| config.cache.enabled || config.cache.models.values().any(|r| r.enabled == Some(true)))
        .filter(|on| *on)
        .map(|_| Cache::new(&config.cache, clock.clone(), semantic_embedder(config, &gateway)));
    let lookup = lookup.or_else(|| cache.clone().map(|c| Arc::new(c) as Arc<dyn Lookup>));
    let dashboard = config.dashboard.enabled.then(|| {
        Arc::new(crate::dashboard::Dashboard::new(
            store.clone(),
            clock.clone(),
            config.auth.master_key.as_ref().map(|k| MasterKey::new(k.expose())),
            Duration::from_secs(config.dashboard.session_ttl_secs),
        ))
    });
    let bodies = match crate::capture::BodyRules::new(&config.request_log) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::error!(error = %e, "request_log.redact cannot be compiled: no request bodies are stored");
            None
        }
    };
    Arc::new(App {
        gateway,
        ledger: usage.backlog(),
        usage,
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_secs(config.server.body_read_timeout_secs.max(1)),
        draining: AtomicBool::new(false),
        keys: Keys::new(store.clone(), Duration::from_secs(config.auth.key_cache_ttl_secs)),
        store,
        limiter,
        clock,
        auth_required: config.auth.required,
        master_key: config.auth.master_key.as_ref().map(|k| MasterKey::new(k.expose())),
        prices: Arc::new(config.price_book()),
        router: RouterHandle::new(Router::new(router_model(config), config.routes.iter().cloned())),
        config: Arc::new(config.clone()),
        lookup,
        cache,
        dashboard,
        bodies,
        auth_throttle: crate::access::throttle::Throttle::new(crate::access::throttle::API_KEYS),
        last_reload: std::sync::Mutex::new(None),
    })
}
