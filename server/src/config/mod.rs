//! Typed configuration: a TOML file overlaid with `SWITCHYARD_*` environment variables, validated all at once.
//!
//! Loading never stops at the first problem: every section and every entry is deserialized on its
//! own and then checked for meaning (references, ranges, secrets), and all problems come back
//! together, each with the dotted path of the value it is about. Secrets are never stored in the
//! file: a provider names the environment variable that holds its key (`api_key_env`), and the
//! value read from it is kept in a [`Secret`] that cannot be printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use std::sync::Arc;

use crate::money::pricing::{Price, PriceSchedule, PriceTable};

/// Prefix of environment variables that override config values (`SWITCHYARD_SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "SWITCHYARD_";

/// One thing wrong with a configuration, with the path of the value it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A secret read from the environment. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub ledger: LedgerConfig,
    pub billing: BillingConfig,
    pub pricing: PricingConfig,
    /// The router model file (`[router] model`); `None`: the shipped model.
    pub router_model: Option<std::path::PathBuf>,
    /// Virtual models that route each request (`[routes.NAME]`).
    pub routes: Vec<crate::router::policy::Route>,
    /// The file this was loaded from (watched for routing-table changes).
    pub source: Option<std::path::PathBuf>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest upstream response body read for a non-streaming call, in bytes.
    pub max_response_bytes: usize,
    /// How long in-flight requests and streams may run on after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Longest wait for a request's headers, and for the next request on an idle keep-alive
    /// connection. Behind a load balancer, set it above the balancer's idle timeout.
    pub header_read_timeout_secs: u64,
    /// Open client connections at most; at the cap, accepting pauses until one closes.
    pub max_connections: usize,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 30,
            max_connections: 10_000,
            log_format: LogFormat::Text,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Where keys, budgets and the usage ledger live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative paths are next to the config file) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://switchyard.db".into(),
            max_connections: 8,
        }
    }
}

/// Who may call the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a virtual key (`sk-sy-…`) on every `/v1` request. When false, requests without
    /// one are served anonymously (no key limits), but a presented `sk-sy-` key is still checked.
    pub required: bool,
    /// Environment variable holding the admin master key for `/admin/v1`.
    pub master_key_env: String,
    /// How long a key lookup is cached; changes made by other processes show within this time.
    pub key_cache_ttl_secs: u64,
    /// The master key itself, read from `master_key_env`.
    #[serde(skip)]
    pub master_key: Option<Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: true,
            master_key_env: "SWITCHYARD_MASTER_KEY".into(),
            key_cache_ttl_secs: 30,
            master_key: None,
        }
    }
}

/// The usage ledger writer and the budget leases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Events written per transaction at most.
    pub batch_size: usize,
    /// Longest time an event waits in memory before it is written.
    pub flush_interval_ms: u64,
    /// Share of a budget (percent) one process leases at a time beyond its immediate need.
    pub lease_pct: u8,
    /// A budget lease not renewed for this long is void (a crashed process's budget returns).
    pub lease_ttl_secs: u64,
    /// How often settled spend is written to the database and idle leases are returned.
    pub budget_flush_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batch_size: 2000,
            flush_interval_ms: 200,
            lease_pct: 10,
            lease_ttl_secs: 60,
            budget_flush_ms: 500,
        }
    }
}

/// Where versioned prices come from.
#[derive(Debug, Clone, Default)]
pub struct PricingConfig {
    /// The price table file (`[pricing] file`, relative to the config file), if any.
    pub file: Option<std::path::PathBuf>,
    /// Its contents; empty without a file.
    pub table: Arc<PriceTable>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPricing {
    file: Option<String>,
}

/// Delivery of billing events (one per usage event) to a Lago-compatible webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Base URL of the billing API; events go to `{url}/api/v1/events`. Empty: billing is off.
    pub url: String,
    /// Environment variable holding the API key sent as `Authorization: Bearer …`, if any.
    pub api_key_env: Option<String>,
    /// The billable metric code of every event.
    pub code: String,
    /// What `external_subscription_id` is: the caller's `team` (falling back to its key) or its `key`.
    pub subscription: SubscriptionFrom,
    /// `external_subscription_id` of requests made without a key (auth not required).
    pub anonymous_subscription: String,
    /// Events per request: 1 posts to `/api/v1/events`, more posts up to 100 to `/api/v1/events/batch`.
    pub batch_size: usize,
    /// Requests in flight to the webhook at most.
    pub concurrency: usize,
    /// First retry delay; doubles per failed attempt, with jitter, up to `max_backoff_secs`.
    pub backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// Timeout of one delivery request.
    pub timeout_ms: u64,
    /// How long delivered events stay in the outbox before they are pruned.
    pub retain_delivered_hours: u64,
    /// The API key itself, read from `api_key_env`.
    #[serde(skip)]
    pub api_key: Option<Secret>,
}

impl BillingConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            url: String::new(),
            api_key_env: None,
            code: "llm_usage".into(),
            subscription: SubscriptionFrom::Team,
            anonymous_subscription: "anonymous".into(),
            batch_size: 1,
            concurrency: 4,
            backoff_ms: 500,
            max_backoff_secs: 300,
            timeout_ms: 10_000,
            retain_delivered_hours: 24,
            api_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionFrom {
    Team,
    Key,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Retries happen only before the first byte has been sent to the client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts on one deployment before moving to the next (1 = no retry).
    pub attempts_per_deployment: u32,
    /// Upper bound on all attempts of one request, across deployments and fallbacks.
    pub max_total_attempts: u32,
    /// First backoff; doubles each retry, with jitter, up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts_per_deployment: 2,
            max_total_attempts: 6,
            backoff_ms: 50,
            max_backoff_ms: 2_000,
        }
    }
}

/// A deployment whose calls fail `failure_threshold` times in a row is skipped for `cooldown_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any server that speaks OpenAI's chat completions API (OpenAI, vLLM, Ollama, llama.cpp, Groq…).
    Openai,
    /// Anthropic's Messages API, translated both ways.
    Anthropic,
    /// The built-in mock: answers in-process, no network, no key.
    Mock,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    stream_idle_timeout_ms: Option<u64>,
    anthropic_version: Option<String>,
    latency_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
}

/// A provider with its secret resolved.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Base URL up to and including the API version (`https://api.openai.com/v1`).
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Extra headers sent with every upstream request.
    pub headers: BTreeMap<String, String>,
    /// Whole-call limit for non-streaming calls; time-to-first-chunk limit for streams.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Longest silence tolerated between two chunks of a stream.
    pub stream_idle_timeout_ms: u64,
    pub anthropic_version: String,
    /// Mock only: delay before the first chunk.
    pub latency_ms: u64,
    /// Mock only: delay between chunks.
    pub chunk_delay_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Random choice in proportion to `weight`.
    #[default]
    Weighted,
    /// The deployment with the fewest requests in flight (ties by weight).
    LeastBusy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Tools,
    Vision,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(default)]
    kind: ModelKind,
    #[serde(default)]
    balance: Balance,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    deployments: Vec<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    id: Option<String>,
    provider: String,
    model: String,
    #[serde(default = "one")]
    weight: u32,
    input_per_mtok: Option<toml::Value>,
    output_per_mtok: Option<toml::Value>,
    cached_input_per_mtok: Option<toml::Value>,
    context_window: u32,
    max_output_tokens: Option<u32>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    timeout_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// A logical model: the name clients send, served by one or more deployments.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub kind: ModelKind,
    pub balance: Balance,
    /// Logical models tried, in order, when every deployment of this one failed before the first byte.
    pub fallbacks: Vec<String>,
    pub description: Option<String>,
    pub deployments: Vec<DeploymentConfig>,
}

/// One place a logical model can be served: a provider, the upstream model name and its prices.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub weight: u32,
    /// Its prices over time: from the price table, or one inline price for all time.
    pub prices: PriceSchedule,
    pub context_window: u32,
    pub max_output_tokens: Option<u32>,
    pub capabilities: Vec<Capability>,
    pub timeout_ms: Option<u64>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "database",
    "auth",
    "ledger",
    "billing",
    "pricing",
    "router",
    "routes",
    "providers",
    "models",
];

impl Config {
    /// Reads `path` (or the built-in demo when `None`), overlays the environment and validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        env_vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigError(vec![Problem {
                    path: String::new(),
                    message: format!("cannot read {}: {e}", p.display()),
                }])
            })?,
            None => DEMO_CONFIG.to_string(),
        };
        let base = path.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty());
        let mut config = Config::parse(&text, base, env, env_vars)?;
        config.source = path.map(Path::to_path_buf);
        // A relative SQLite path is next to the config file.
        if let (Some(dir), Some(rest)) = (
            path.and_then(Path::parent),
            config.database.url.strip_prefix("sqlite://"),
        ) {
            let (file, query) = rest.split_once('?').map_or((rest, None), |(f, q)| (f, Some(q)));
            if !file.is_empty() && Path::new(file).is_relative() && !dir.as_os_str().is_empty() {
                let joined = dir.join(file);
                config.database.url = match query {
                    Some(q) => format!("sqlite://{}?{q}", joined.display()),
                    None => format!("sqlite://{}", joined.display()),
                };
            }
        }
        Ok(config)
    }

    /// Parses TOML text, overlays `SWITCHYARD_*` variables from `env_vars`, resolves secrets through `env`.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        env_vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::parse(text, None, env, env_vars)
    }

    /// Like [`Config::from_toml`], with relative file references (the price table) resolved in `base`.
    pub fn parse(
        text: &str,
        base: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        env_vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(vec![Problem {
                path: String::new(),
                message: format!("invalid TOML: {}", e.message()),
            }])
        })?;
        let mut problems = Vec::new();
        apply_env_overlay(&mut table, env_vars, &mut problems);
        let config = validate(table, base, env, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Every deployment id with known prices: the price table's (configured or not, so history
    /// of retired deployments can be re-priced) and the configured deployments priced inline.
    pub fn price_book(&self) -> crate::money::pricing::PriceBook {
        let mut book = crate::money::pricing::PriceBook {
            table: self
                .pricing
                .table
                .deployments()
                .map(|(d, s)| (d.to_string(), s.clone()))
                .collect(),
            versions: self.pricing.table.versions.clone(),
            ..Default::default()
        };
        for (model, m) in &self.models {
            for d in &m.deployments {
                if book.table.contains_key(&d.id) {
                    continue;
                }
                book.inline.insert((model.clone(), d.id.clone()), d.prices.clone());
                // One id may carry different inline prices under different models (a markup
                // alias); only an unambiguous one can price events whose model does not match.
                book.inline_any
                    .entry(d.id.clone())
                    .and_modify(|s| {
                        if s.as_ref() != Some(&d.prices) {
                            *s = None;
                        }
                    })
                    .or_insert_with(|| Some(d.prices.clone()));
            }
        }
        book
    }

    /// The built-in demo: two mock models and a mock embedding model, no key, no network.
    pub fn demo() -> Config {
        Config::from_toml(DEMO_CONFIG, &|_| None, std::iter::empty())
            .expect("the built-in demo configuration is valid (checked by a unit test)")
    }
}

/// The configuration used when no file is given.
pub const DEMO_CONFIG: &str = r#"
[auth]
# The demo answers without a key; keys created through the admin API are still enforced.
required = false

[providers.demo]
kind = "mock"
latency_ms = 20
chunk_delay_ms = 15

[models.demo-cheap]
description = "Built-in demo model standing in for a small, cheap model"
[[models.demo-cheap.deployments]]
provider = "demo"
model = "demo-cheap"
input_per_mtok = "0.15"
output_per_mtok = "0.60"
cached_input_per_mtok = "0.075"
context_window = 128000
max_output_tokens = 16384
capabilities = ["tools", "json", "vision"]

[models.demo-powerful]
description = "Built-in demo model standing in for a large, capable model"
[[models.demo-powerful.deployments]]
provider = "demo"
model = "demo-powerful"
input_per_mtok = "2.50"
output_per_mtok = "10.00"
cached_input_per_mtok = "1.25"
context_window = 128000
max_output_tokens = 16384
capabilities = ["tools", "json", "vision"]

[routes.auto]
description = "The cheap model unless the request looks hard (the hardest 30 %), with soft landing near the budget"
cheap = "demo-cheap"
strong = "demo-powerful"
strong_share = 0.3

[models.demo-embed]
kind = "embedding"
description = "Built-in demo embedding model (deterministic vectors)"
[[models.demo-embed.deployments]]
provider = "demo"
model = "demo-embed"
input_per_mtok = "0.02"
output_per_mtok = "0"
context_window = 8191
"#;

/// Applies `SWITCHYARD_A__B__C=value` as `a.b.c = value`. Variables without `__` are not
/// config paths (for example `SWITCHYARD_MASTER_KEY`) and are left alone. Values are read as
/// TOML scalars when they parse as one (`8080`, `true`, `"x"`), else as plain strings.
fn apply_env_overlay(
    table: &mut toml::Table,
    env_vars: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) {
    let mut vars: Vec<(String, String)> = env_vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            problems.push(Problem {
                path: key.clone(),
                message: "environment override has an empty path segment".into(),
            });
            continue;
        }
        let value = parse_env_value(&raw);
        if let Err(seg) = set_path(table, &path, value) {
            problems.push(Problem {
                path: key.clone(),
                message: format!("`{seg}` is not a table, cannot override below it"),
            });
        }
    }
}

/// Sets `path` in `table` to `value`, creating tables on the way; fails with the segment that is not a table.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(first.clone()),
            }
        }
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v) if !v.is_table() && !v.is_array() => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Deserializes one value, recording a problem (with the precise path) instead of failing.
fn take<T: DeserializeOwned>(value: toml::Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            problems.push(Problem {
                path: full,
                message: e.into_inner().message().to_string(),
            });
            None
        }
    }
}

fn validate(
    mut table: toml::Table,
    base: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Config {
    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            problems.push(Problem {
                path: key.clone(),
                message: format!("unknown section, expected one of: {}", TOP_LEVEL_KEYS.join(", ")),
            });
        }
    }

    let server = match table.remove("server") {
        Some(v) => take::<ServerConfig>(v, "server", problems).unwrap_or_default(),
        None => ServerConfig::default(),
    };
    if server.max_body_bytes == 0 {
        problems.push(Problem {
            path: "server.max_body_bytes".into(),
            message: "must be greater than 0".into(),
        });
    }
    if server.header_read_timeout_secs == 0 {
        problems.push(Problem {
            path: "server.header_read_timeout_secs".into(),
            message: "must be at least 1".into(),
        });
    }
    if server.max_connections == 0 {
        problems.push(Problem {
            path: "server.max_connections".into(),
            message: "must be at least 1".into(),
        });
    }
    if server.retry.attempts_per_deployment == 0 || server.retry.max_total_attempts == 0 {
        problems.push(Problem {
            path: "server.retry".into(),
            message: "attempts must be at least 1".into(),
        });
    }
    if server.breaker.failure_threshold == 0 {
        problems.push(Problem {
            path: "server.breaker.failure_threshold".into(),
            message: "must be at least 1".into(),
        });
    }

    let database = match table.remove("database") {
        Some(v) => take::<DatabaseConfig>(v, "database", problems).unwrap_or_default(),
        None => DatabaseConfig::default(),
    };
    if !(database.url.starts_with("sqlite://")
        || database.url.starts_with("postgres://")
        || database.url.starts_with("postgresql://"))
    {
        problems.push(Problem {
            path: "database.url".into(),
            message: "must start with sqlite:// or postgres://".into(),
        });
    }
    if database.max_connections == 0 {
        problems.push(Problem {
            path: "database.max_connections".into(),
            message: "must be at least 1".into(),
        });
    }
    let mut auth = match table.remove("auth") {
        Some(v) => take::<AuthConfig>(v, "auth", problems).unwrap_or_default(),
        None => AuthConfig::default(),
    };
    auth.master_key = env(&auth.master_key_env).filter(|v| !v.is_empty()).map(Secret::new);
    if auth.master_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
        problems.push(Problem {
            path: format!("auth.master_key_env ({})", auth.master_key_env),
            message: "the master key must be at least 16 characters".into(),
        });
    }
    let ledger = match table.remove("ledger") {
        Some(v) => take::<LedgerConfig>(v, "ledger", problems).unwrap_or_default(),
        None => LedgerConfig::default(),
    };
    if ledger.batch_size == 0 || ledger.flush_interval_ms == 0 || ledger.budget_flush_ms == 0 {
        problems.push(Problem {
            path: "ledger".into(),
            message: "batch_size, flush_interval_ms and budget_flush_ms must be at least 1".into(),
        });
    }
    if !(1..=100).contains(&ledger.lease_pct) || ledger.lease_ttl_secs == 0 {
        problems.push(Problem {
            path: "ledger".into(),
            message: "lease_pct must be 1..=100 and lease_ttl_secs at least 1".into(),
        });
    }

    let mut billing = match table.remove("billing") {
        Some(v) => take::<BillingConfig>(v, "billing", problems).unwrap_or_default(),
        None => BillingConfig::default(),
    };
    validate_billing(&mut billing, env, problems);
    let pricing = validate_pricing(table.remove("pricing"), base, problems);

    let providers = validate_providers(table.remove("providers"), env, problems);
    let models = validate_models(table.remove("models"), &providers, &pricing.table, problems);
    let (router_model, intents) = validate_router(table.remove("router"), base, problems);
    let routes = validate_routes(table.remove("routes"), &models, &intents, problems);

    Config {
        server,
        database,
        auth,
        ledger,
        billing,
        pricing,
        router_model,
        routes,
        source: None,
        providers,
        models,
    }
}

impl Config {
    /// Checks routes (for example from a reloaded file) against this configuration's models:
    /// every model a route names must be one of them, and a chat model.
    pub fn check_route_targets(&self, routes: &[crate::router::policy::Route]) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for r in routes {
            let targets = [("cheap".to_string(), &r.cheap), ("strong".to_string(), &r.strong)]
                .into_iter()
                .chain(r.intents.iter().map(|(i, m)| (format!("intents.{i}"), m)));
            for (field, m) in targets {
                if !self.models.get(m.as_str()).is_some_and(|mc| mc.kind == ModelKind::Chat) {
                    problems.push(Problem {
                        path: format!("routes.{}.{field}", r.name),
                        message: format!(
                            "`{m}` is not a chat model of the running gateway (models change only on restart)"
                        ),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Validates a routing table (what `[routes]` holds) against this configuration's models
    /// and the intents of the router model that will decide it.
    pub fn parse_routes(
        &self,
        table: toml::Value,
        intents: &[String],
    ) -> Result<Vec<crate::router::policy::Route>, ConfigError> {
        let mut problems = Vec::new();
        let routes = validate_routes(Some(table), &self.models, intents, &mut problems);
        if problems.is_empty() {
            Ok(routes)
        } else {
            Err(ConfigError(problems))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    model: Option<String>,
}

/// The router model file, if one is configured, and the intents of the model that will decide
/// (that file's, else the shipped model's), which routes may name.
fn validate_router(
    value: Option<toml::Value>,
    base: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> (Option<std::path::PathBuf>, Vec<String>) {
    let shipped = || crate::router::policy::builtin_model().intents.clone();
    let Some(raw) = value.and_then(|v| take::<RawRouter>(v, "router", problems)) else {
        return (None, shipped());
    };
    let Some(file) = raw.model else {
        return (None, shipped());
    };
    let path = match base {
        Some(dir) if Path::new(&file).is_relative() => dir.join(&file),
        _ => std::path::PathBuf::from(&file),
    };
    // Loaded here so a bad model file is a configuration problem, not a failure at start.
    match crate::router::model::RouterModel::load(&path) {
        Ok(m) => (Some(path), m.intents),
        Err(e) => {
            problems.push(Problem {
                path: "router.model".into(),
                message: e,
            });
            (Some(path), shipped())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    cheap: String,
    strong: String,
    #[serde(default = "default_strong_share")]
    strong_share: f64,
    #[serde(default)]
    intents: BTreeMap<String, String>,
    /// Intents not listed take the router model's weights.
    intent_weights: Option<BTreeMap<String, f64>>,
    #[serde(default = "default_budget_soft")]
    budget_soft: f64,
    description: Option<String>,
    experiment: Option<RawExperiment>,
    shadow: Option<String>,
    cascade: Option<RawCascade>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCascade {
    checks: Option<Vec<crate::router::cascade::Check>>,
    min_logprob: Option<f64>,
    refusal_phrases: Option<Vec<String>>,
    max_buffer_kb: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    candidate: String,
    percent: u8,
    #[serde(default = "default_sticky_by")]
    by: crate::router::policy::StickyBy,
}

fn default_sticky_by() -> crate::router::policy::StickyBy {
    crate::router::policy::StickyBy::Key
}

fn default_strong_share() -> f64 {
    0.3
}

fn default_budget_soft() -> f64 {
    0.25
}

fn validate_routes(
    value: Option<toml::Value>,
    models: &BTreeMap<String, ModelConfig>,
    intents: &[String],
    problems: &mut Vec<Problem>,
) -> Vec<crate::router::policy::Route> {
    let mut out = Vec::new();
    for (name, v) in as_table(value, "routes", problems) {
        let path = format!("routes.{name}");
        let Some(r) = take::<RawRoute>(v, &path, problems) else {
            continue;
        };
        let mut found = Vec::new();
        if models.contains_key(&name) {
            found.push((
                path.clone(),
                format!("`{name}` is also a model; a route needs a name of its own"),
            ));
        }
        let mut targets: Vec<(String, &String)> = vec![
            (format!("{path}.cheap"), &r.cheap),
            (format!("{path}.strong"), &r.strong),
        ];
        for (intent, m) in &r.intents {
            if intents.contains(intent) {
                targets.push((format!("{path}.intents.{intent}"), m));
            } else {
                found.push((
                    format!("{path}.intents.{intent}"),
                    format!("the router model has no such intent; it knows: {}", intents.join(", ")),
                ));
            }
        }
        for (field, m) in targets {
            match models.get(m.as_str()) {
                None => found.push((field, format!("unknown model `{m}`"))),
                Some(mc) if mc.kind != ModelKind::Chat => found.push((field, format!("`{m}` is not a chat model"))),
                Some(_) => {}
            }
        }
        let intent_weights = r.intent_weights.unwrap_or_default();
        for (intent, w) in &intent_weights {
            if !intents.contains(intent) {
                found.push((
                    format!("{path}.intent_weights.{intent}"),
                    format!("the router model has no such intent; it knows: {}", intents.join(", ")),
                ));
            } else if !(0.0..=10.0).contains(w) {
                found.push((
                    format!("{path}.intent_weights.{intent}"),
                    "must be between 0 and 10".into(),
                ));
            }
        }
        if !(0.0..=1.0).contains(&r.strong_share) {
            found.push((format!("{path}.strong_share"), "must be between 0 and 1".into()));
        }
        if !(0.0..=1.0).contains(&r.budget_soft) {
            found.push((format!("{path}.budget_soft"), "must be between 0 and 1".into()));
        }
        if let Some(c) = &r.cascade {
            if c.min_logprob.is_some_and(|m| !(-100.0..=0.0).contains(&m)) {
                found.push((
                    format!("{path}.cascade.min_logprob"),
                    "must be between -100 and 0 (a mean log-probability per token)".into(),
                ));
            }
            if c.max_buffer_kb.is_some_and(|k| !(1..=65_536).contains(&k)) {
                found.push((format!("{path}.cascade.max_buffer_kb"), "must be 1..=65536".into()));
            }
            if c.checks.as_ref().is_some_and(Vec::is_empty) {
                found.push((format!("{path}.cascade.checks"), "name at least one check".into()));
            }
        }
        if r.experiment.as_ref().is_some_and(|e| e.percent > 100) {
            found.push((format!("{path}.experiment.percent"), "must be 0..=100".into()));
        }
        problems.extend(found.into_iter().map(|(path, message)| Problem { path, message }));
        out.push(crate::router::policy::Route {
            name,
            cheap: r.cheap,
            strong: r.strong,
            strong_share: r.strong_share,
            intents: r.intents,
            intent_weights,
            budget_soft: r.budget_soft,
            description: r.description,
            experiment: r.experiment.map(|e| crate::router::policy::Experiment {
                candidate: e.candidate,
                percent: e.percent,
                by: e.by,
            }),
            shadow: r.shadow,
            cascade: r.cascade.map(|c| {
                let d = crate::router::cascade::Cascade::default();
                std::sync::Arc::new(crate::router::cascade::Cascade {
                    checks: c.checks.unwrap_or(d.checks),
                    min_logprob: c.min_logprob,
                    refusal_phrases: c
                        .refusal_phrases
                        .map(|p| {
                            p.iter()
                                .map(|x| crate::router::cascade::normalized(x))
                                .filter(|x| !x.is_empty())
                                .collect()
                        })
                        .unwrap_or(d.refusal_phrases),
                    max_buffer_bytes: c.max_buffer_kb.map_or(d.max_buffer_bytes, |k| k * 1024),
                })
            }),
        });
    }
    // Experiments and shadows name other routes of the same table.
    let names: Vec<&str> = out.iter().map(|r| r.name.as_str()).collect();
    for r in &out {
        let others = [
            ("experiment.candidate", r.experiment.as_ref().map(|e| &e.candidate)),
            ("shadow", r.shadow.as_ref()),
        ];
        for (field, other) in others {
            if let Some(o) = other {
                if o == &r.name || !names.contains(&o.as_str()) {
                    problems.push(Problem {
                        path: format!("routes.{}.{field}", r.name),
                        message: format!("`{o}` must be another route of this table"),
                    });
                }
            }
        }
    }
    out
}

fn validate_billing(b: &mut BillingConfig, env: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<Problem>) {
    let mut problem = |path: &str, message: String| {
        problems.push(Problem {
            path: format!("billing.{path}"),
            message,
        })
    };
    if b.enabled() {
        match reqwest::Url::parse(&b.url) {
            Ok(u)
                if (u.scheme() == "http" || u.scheme() == "https") && u.query().is_none() && u.fragment().is_none() => {
            }
            _ => problem("url", format!("`{}` is not an http(s) base URL without a query", b.url)),
        }
        b.url = b.url.trim_end_matches('/').to_string();
        // The key matters only when events are sent.
        if let Some(var) = &b.api_key_env {
            match env(var) {
                Some(v) if !v.is_empty() => b.api_key = Some(Secret::new(v)),
                _ => problem("api_key_env", format!("environment variable `{var}` is not set")),
            }
        }
    }
    if b.code.trim().is_empty() {
        problem("code", "must not be empty".into());
    }
    if !(1..=100).contains(&b.batch_size) {
        problem("batch_size", "must be 1..=100".into());
    }
    if !(1..=64).contains(&b.concurrency) {
        problem("concurrency", "must be 1..=64".into());
    }
    if !(1..=3_600_000).contains(&b.backoff_ms) {
        problem("backoff_ms", "must be 1..=3600000".into());
    }
    if !(1..=86_400).contains(&b.max_backoff_secs) {
        problem("max_backoff_secs", "must be 1..=86400".into());
    }
    if !(1..=300_000).contains(&b.timeout_ms) {
        problem("timeout_ms", "must be 1..=300000".into());
    }
    if b.retain_delivered_hours > 24 * 3650 {
        problem("retain_delivered_hours", "must be at most 87600 (ten years)".into());
    }
}

fn validate_pricing(value: Option<toml::Value>, base: Option<&Path>, problems: &mut Vec<Problem>) -> PricingConfig {
    let raw = match value {
        Some(v) => take::<RawPricing>(v, "pricing", problems).unwrap_or_default(),
        None => RawPricing::default(),
    };
    let Some(file) = raw.file else {
        return PricingConfig::default();
    };
    let path = match base {
        Some(dir) if Path::new(&file).is_relative() => dir.join(&file),
        _ => std::path::PathBuf::from(&file),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                path: "pricing.file".into(),
                message: format!("cannot read {}: {e}", path.display()),
            });
            return PricingConfig::default();
        }
    };
    match PriceTable::parse(&text) {
        Ok(table) => PricingConfig {
            file: Some(path),
            table: Arc::new(table),
        },
        Err(list) => {
            for (p, message) in list {
                problems.push(Problem {
                    path: if p.is_empty() {
                        format!("pricing.file ({})", path.display())
                    } else {
                        format!("{}: {p}", path.display())
                    },
                    message,
                });
            }
            PricingConfig::default()
        }
    }
}

fn as_table(value: Option<toml::Value>, path: &str, problems: &mut Vec<Problem>) -> toml::Table {
    match value {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            problems.push(Problem {
                path: path.into(),
                message: format!("expected a table, found {}", other.type_str()),
            });
            toml::Table::new()
        }
    }
}

fn validate_providers(
    value: Option<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, ProviderConfig> {
    let mut out = BTreeMap::new();
    for (name, v) in as_table(value, "providers", problems) {
        let path = format!("providers.{name}");
        let Some(raw) = take::<RawProvider>(v, &path, problems) else {
            continue;
        };
        let base_url = match (raw.kind, raw.base_url) {
            (ProviderKind::Mock, Some(_)) => {
                problems.push(Problem {
                    path: format!("{path}.base_url"),
                    message: "the mock provider runs in-process and takes no base_url".into(),
                });
                String::new()
            }
            (ProviderKind::Mock, None) => String::new(),
            (ProviderKind::Anthropic, None) => "https://api.anthropic.com/v1".into(),
            (ProviderKind::Openai, None) => "https://api.openai.com/v1".into(),
            (_, Some(url)) => {
                match reqwest::Url::parse(&url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    Ok(u) => problems.push(Problem {
                        path: format!("{path}.base_url"),
                        message: format!("scheme `{}` is not supported, use http or https", u.scheme()),
                    }),
                    Err(e) => problems.push(Problem {
                        path: format!("{path}.base_url"),
                        message: format!("not a valid URL: {e}"),
                    }),
                }
                url.trim_end_matches('/').to_string()
            }
        };
        if raw.kind != ProviderKind::Mock && (raw.latency_ms.is_some() || raw.chunk_delay_ms.is_some()) {
            problems.push(Problem {
                path: path.clone(),
                message: "latency_ms and chunk_delay_ms apply to the mock provider only".into(),
            });
        }
        if raw.kind != ProviderKind::Anthropic && raw.anthropic_version.is_some() {
            problems.push(Problem {
                path: format!("{path}.anthropic_version"),
                message: "applies to anthropic providers only".into(),
            });
        }
        let api_key = match &raw.api_key_env {
            None => None,
            Some(var) if var.is_empty() => {
                problems.push(Problem {
                    path: format!("{path}.api_key_env"),
                    message: "must name an environment variable".into(),
                });
                None
            }
            Some(var) => match env(var) {
                Some(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    problems.push(Problem {
                        path: format!("{path}.api_key_env"),
                        message: format!("environment variable `{var}` is not set"),
                    });
                    None
                }
            },
        };
        for (h, hv) in &raw.headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() || http::HeaderValue::from_str(hv).is_err() {
                problems.push(Problem {
                    path: format!("{path}.headers.{h}"),
                    message: "not a valid HTTP header".into(),
                });
            }
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(600_000);
        if timeout_ms == 0 {
            problems.push(Problem {
                path: format!("{path}.timeout_ms"),
                message: "must be greater than 0".into(),
            });
        }
        out.insert(
            name,
            ProviderConfig {
                kind: raw.kind,
                base_url,
                api_key,
                headers: raw.headers,
                timeout_ms,
                connect_timeout_ms: raw.connect_timeout_ms.unwrap_or(5_000),
                stream_idle_timeout_ms: raw.stream_idle_timeout_ms.unwrap_or(120_000),
                anthropic_version: raw.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
                latency_ms: raw.latency_ms.unwrap_or(0),
                chunk_delay_ms: raw.chunk_delay_ms.unwrap_or(0),
            },
        );
    }
    out
}

fn price_field(
    value: toml::Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<crate::money::pricing::PicoPerToken> {
    let text = match &value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        // Display of an f64 is its shortest round-trip form, so 0.15 reads back as "0.15".
        toml::Value::Float(f) => f.to_string(),
        other => {
            problems.push(Problem {
                path: path.into(),
                message: format!("expected a price in USD per million tokens, found {}", other.type_str()),
            });
            return None;
        }
    };
    match crate::money::pricing::PicoPerToken::parse_usd_per_mtok(&text) {
        Ok(p) => Some(p),
        Err(msg) => {
            problems.push(Problem {
                path: path.into(),
                message: msg,
            });
            None
        }
    }
}

fn validate_models(
    value: Option<toml::Value>,
    providers: &BTreeMap<String, ProviderConfig>,
    prices: &PriceTable,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, ModelConfig> {
    let raw_models = as_table(value, "models", problems);
    let names: Vec<String> = raw_models.keys().cloned().collect();
    let mut out = BTreeMap::new();
    for (name, v) in raw_models {
        let path = format!("models.{name}");
        let Some(raw) = take::<RawModel>(v, &path, problems) else {
            continue;
        };
        if raw.deployments.is_empty() {
            problems.push(Problem {
                path: format!("{path}.deployments"),
                message: "a model needs at least one deployment".into(),
            });
        }
        for fb in &raw.fallbacks {
            if fb == &name {
                problems.push(Problem {
                    path: format!("{path}.fallbacks"),
                    message: "a model cannot fall back to itself".into(),
                });
            } else if !names.contains(fb) {
                problems.push(Problem {
                    path: format!("{path}.fallbacks"),
                    message: format!("unknown model `{fb}`"),
                });
            }
        }
        let mut deployments = Vec::new();
        for (i, dv) in raw.deployments.into_iter().enumerate() {
            let dpath = format!("{path}.deployments[{i}]");
            let Some(d) = take::<RawDeployment>(dv, &dpath, problems) else {
                continue;
            };
            match providers.get(&d.provider) {
                None => problems.push(Problem {
                    path: format!("{dpath}.provider"),
                    message: format!("unknown provider `{}`", d.provider),
                }),
                Some(p) if raw.kind == ModelKind::Embedding && p.kind == ProviderKind::Anthropic => {
                    problems.push(Problem {
                        path: format!("{dpath}.provider"),
                        message: "anthropic has no embeddings API".into(),
                    })
                }
                Some(_) => {}
            }
            if d.weight == 0 {
                problems.push(Problem {
                    path: format!("{dpath}.weight"),
                    message: "must be at least 1".into(),
                });
            }
            if d.context_window == 0 {
                problems.push(Problem {
                    path: format!("{dpath}.context_window"),
                    message: "must be greater than 0".into(),
                });
            }
            if d.model.is_empty() {
                problems.push(Problem {
                    path: format!("{dpath}.model"),
                    message: "must not be empty".into(),
                });
            }
            let id = d.id.unwrap_or_else(|| format!("{}/{}", d.provider, d.model));
            let inline = d.input_per_mtok.is_some() || d.output_per_mtok.is_some() || d.cached_input_per_mtok.is_some();
            let schedule = match (prices.schedule(&id), inline) {
                (Some(_), true) => {
                    problems.push(Problem {
                        path: dpath.clone(),
                        message: format!(
                            "`{id}` is priced both inline and in the price table; keep one (the table keeps history)"
                        ),
                    });
                    None
                }
                (Some(s), false) => Some(s.clone()),
                (None, _) => {
                    let mut field = |v: Option<toml::Value>, name: &str| match v {
                        Some(v) => price_field(v, &format!("{dpath}.{name}"), problems),
                        None => {
                            problems.push(Problem {
                                path: format!("{dpath}.{name}"),
                                message: format!("missing: `{id}` has no price inline or in the price table"),
                            });
                            None
                        }
                    };
                    let input = field(d.input_per_mtok, "input_per_mtok");
                    // Embeddings produce no output tokens: their output price may be left out.
                    let output = match (d.output_per_mtok, raw.kind) {
                        (None, ModelKind::Embedding) => Some(crate::money::pricing::PicoPerToken(0)),
                        (v, _) => field(v, "output_per_mtok"),
                    };
                    let cached = match d.cached_input_per_mtok {
                        Some(v) => price_field(v, &format!("{dpath}.cached_input_per_mtok"), problems),
                        None => input,
                    };
                    match (input, output, cached) {
                        (Some(input), Some(output), Some(cached_input)) => Some(PriceSchedule::fixed(Price {
                            input,
                            output,
                            cached_input,
                        })),
                        _ => None,
                    }
                }
            };
            if deployments.iter().any(|x: &DeploymentConfig| x.id == id) {
                problems.push(Problem {
                    path: format!("{dpath}.id"),
                    message: format!("duplicate deployment id `{id}` in this model; give each an `id`"),
                });
            }
            if let Some(prices) = schedule {
                let mut capabilities = d.capabilities;
                capabilities.sort();
                capabilities.dedup();
                deployments.push(DeploymentConfig {
                    id,
                    provider: d.provider,
                    model: d.model,
                    weight: d.weight,
                    prices,
                    context_window: d.context_window,
                    max_output_tokens: d.max_output_tokens,
                    capabilities,
                    timeout_ms: d.timeout_ms,
                });
            }
        }
        out.insert(
            name,
            ModelConfig {
                kind: raw.kind,
                balance: raw.balance,
                fallbacks: raw.fallbacks,
                description: raw.description,
                deployments,
            },
        );
    }
    // A fallback must serve the same kind of request as the model it stands in for.
    for (name, m) in &out {
        for fb in &m.fallbacks {
            if let Some(other) = out.get(fb) {
                if other.kind != m.kind {
                    problems.push(Problem {
                        path: format!("models.{name}.fallbacks"),
                        message: format!("`{fb}` is a {:?} model, `{name}` is a {:?} model", other.kind, m.kind),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, &no_env, std::iter::empty())
    }

    #[test]
    fn demo_config_is_valid() {
        let c = Config::demo();
        assert!(c.models.contains_key("demo-cheap"));
        assert!(c.models.contains_key("demo-powerful"));
        assert_eq!(c.providers["demo"].kind, ProviderKind::Mock);
    }

    #[test]
    fn example_config_is_valid_with_its_secrets_set() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
        let text = std::fs::read_to_string(dir.join("switchyard.example.toml")).expect("example config exists");
        let env = |k: &str| Some(format!("test-secret-for-{k}"));
        let c = Config::parse(&text, Some(dir), &env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
        // Every real deployment is priced by the table, with its history.
        let mini = &c.models["gpt-4o-mini"].deployments[0];
        assert!(mini.prices.points().len() >= 2, "gpt-4o-mini has a price history");
        let oct_2024 = crate::clock::parse_time("2024-11-01").unwrap();
        let p = mini.prices.at(oct_2024).unwrap();
        assert_eq!((&*p.version, p.price.cached_input.0), ("2024-10-02", 75_000));
        let gpt4o = &c.models["gpt-4o"].deployments[0];
        let june_2024 = crate::clock::parse_time("2024-06-01").unwrap();
        assert_eq!(gpt4o.prices.at(june_2024).unwrap().price.input.0, 5_000_000);
        assert_eq!(&*c.models["demo"].deployments[0].prices.points()[0].version, "config");
        let kinds: Vec<ProviderKind> = c.providers.values().map(|p| p.kind).collect();
        for k in [ProviderKind::Openai, ProviderKind::Anthropic, ProviderKind::Mock] {
            assert!(kinds.contains(&k), "example covers {k:?}");
        }
    }

    #[test]
    fn reports_every_problem_at_once_with_paths() {
        let text = r#"
            colour = "blue"
            [server]
            listen = "not an address"
            [providers.a]
            kind = "openai"
            base_url = "ftp://x"
            api_key_env = "MISSING_KEY"
            [providers.b]
            kind = "nope"
            [models.m]
            fallbacks = ["ghost"]
            [[models.m.deployments]]
            provider = "zzz"
            model = "x"
            weight = 0
            input_per_mtok = "-1"
            output_per_mtok = "abc"
            context_window = 1000
            [[models.m.deployments]]
            provider = "a"
            model = "y"
            input_per_mtok = 1
            output_per_mtok = 2
            context_window = 1000
            surprise = true
        "#;
        let err = load(text).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "colour",
            "server.listen",
            "providers.a.base_url",
            "providers.a.api_key_env",
            "providers.b.kind",
            "models.m.fallbacks",
            "models.m.deployments[0].provider",
            "models.m.deployments[0].weight",
            "models.m.deployments[0].input_per_mtok",
            "models.m.deployments[0].output_per_mtok",
            "models.m.deployments[1].surprise",
        ] {
            assert!(paths.contains(&want), "missing problem at {want}; got {paths:?}");
        }
        let unknown = err
            .0
            .iter()
            .find(|p| p.path == "models.m.deployments[1].surprise")
            .unwrap();
        assert!(unknown.message.contains("unknown field"), "{}", unknown.message);
    }

    #[test]
    fn env_overlay_overrides_and_types_values() {
        let vars = vec![
            ("SWITCHYARD_SERVER__LISTEN".to_string(), "0.0.0.0:9999".to_string()),
            ("SWITCHYARD_SERVER__MAX_BODY_BYTES".to_string(), "1024".to_string()),
            ("SWITCHYARD_PROVIDERS__DEMO__LATENCY_MS".to_string(), "0".to_string()),
            ("SWITCHYARD_MASTER_KEY".to_string(), "ignored, not a path".to_string()),
        ];
        let c = Config::from_toml(DEMO_CONFIG, &no_env, vars).unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.server.max_body_bytes, 1024);
        assert_eq!(c.providers["demo"].latency_ms, 0);
    }

    #[test]
    fn env_overlay_unknown_key_is_rejected() {
        let vars = vec![("SWITCHYARD_SERVER__LISTN".to_string(), "1".to_string())];
        let err = Config::from_toml(DEMO_CONFIG, &no_env, vars).unwrap_err();
        assert!(err.0.iter().any(|p| p.message.contains("listn")), "{err}");
    }

    #[test]
    fn secrets_are_read_from_env_and_never_printed() {
        let text = r#"
            [providers.o]
            kind = "openai"
            api_key_env = "MY_KEY"
        "#;
        let env = |k: &str| (k == "MY_KEY").then(|| "sk-very-secret".to_string());
        let c = Config::from_toml(text, &env, std::iter::empty()).unwrap();
        let p = &c.providers["o"];
        assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-very-secret");
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-very-secret"));
    }

    fn table_dir(prices: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-prices-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prices.toml"), prices).unwrap();
        dir
    }

    const TWO_VERSIONS: &str = r#"
        [[versions]]
        id = "v1"
        effective = "2025-01-01"
        prices."p/a" = { input = "1", output = "2" }
        prices."p/b" = { input = "3", output = "4", cached_input = "0.5" }
        [[versions]]
        id = "v2"
        effective = "2025-06-01T12:00:00Z"
        prices."p/a" = { input = "0.5", output = 1 }
    "#;

    #[test]
    fn price_table_versions_apply_from_their_effective_time() {
        let dir = table_dir(TWO_VERSIONS);
        let text = r#"
            [pricing]
            file = "prices.toml"
            [providers.p]
            kind = "mock"
            [[models.a.deployments]]
            provider = "p"
            model = "a"
            context_window = 10
            [[models.b.deployments]]
            provider = "p"
            model = "b"
            context_window = 10
        "#;
        let c = Config::parse(text, Some(&dir), &no_env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
        let a = &c.models["a"].deployments[0].prices;
        let t = |s: &str| crate::clock::parse_time(s).unwrap();
        assert!(
            a.at(t("2024-12-31T23:59:59Z")).is_none(),
            "no price before the first version"
        );
        assert_eq!(&*a.at_or_first(t("2024-12-31")).version, "v1");
        assert_eq!(&*a.at(t("2025-06-01T11:59:59Z")).unwrap().version, "v1");
        let v2 = a.at(t("2025-06-01T12:00:00Z")).unwrap();
        assert_eq!(
            (&*v2.version, v2.price.input.0, v2.price.output.0),
            ("v2", 500_000, 1_000_000)
        );
        assert_eq!(v2.price.cached_input, v2.price.input, "cached input defaults to input");
        // b is not named by v2: it keeps v1's price.
        let b = c.models["b"].deployments[0].prices.at(t("2026-01-01")).unwrap();
        assert_eq!((&*b.version, b.price.cached_input.0), ("v1", 500_000));
        let book = c.price_book();
        assert_eq!(book.versions.len(), 2);
        assert_eq!(
            book.price_at("a", "p/a", t("2025-07-01")).unwrap().price.input.0,
            500_000
        );
        assert!(book.price_at("a", "p/zzz", t("2025-07-01")).is_none());
    }

    #[test]
    fn a_deployment_is_priced_exactly_once() {
        let dir = table_dir(TWO_VERSIONS);
        let text = r#"
            [pricing]
            file = "prices.toml"
            [providers.p]
            kind = "mock"
            [[models.a.deployments]]
            provider = "p"
            model = "a"
            input_per_mtok = "1"
            output_per_mtok = "1"
            context_window = 10
            [[models.c.deployments]]
            provider = "p"
            model = "c"
            context_window = 10
        "#;
        let err = Config::parse(text, Some(&dir), &no_env, std::iter::empty()).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"models.a.deployments[0]"), "{err}");
        assert!(paths.contains(&"models.c.deployments[0].input_per_mtok"), "{err}");
        assert!(paths.contains(&"models.c.deployments[0].output_per_mtok"), "{err}");
        assert!(err.to_string().contains("both inline and in the price table"), "{err}");
    }

    #[test]
    fn inline_prices_of_one_deployment_id_under_two_models_stay_apart() {
        let text = r#"
            [providers.p]
            kind = "mock"
            [[models.a.deployments]]
            provider = "p"
            model = "x"
            input_per_mtok = "1"
            output_per_mtok = "1"
            context_window = 10
            [[models.markup.deployments]]
            provider = "p"
            model = "x"
            input_per_mtok = "2"
            output_per_mtok = "1"
            context_window = 10
            [[models.y.deployments]]
            provider = "p"
            model = "y"
            input_per_mtok = "3"
            output_per_mtok = "1"
            context_window = 10
        "#;
        let book = load(text).unwrap().price_book();
        let input = |m: &str, d: &str| book.price_at(m, d, 0).map(|p| p.price.input.0);
        assert_eq!(input("a", "p/x"), Some(1_000_000));
        assert_eq!(input("markup", "p/x"), Some(2_000_000));
        assert_eq!(input("other", "p/x"), None, "ambiguous without its model");
        assert_eq!(
            input("other", "p/y"),
            Some(3_000_000),
            "unambiguous: a fallback's event"
        );
    }

    #[test]
    fn bad_price_tables_are_refused_with_paths() {
        let dir = table_dir(
            r#"
            [[versions]]
            id = "v2"
            effective = "2025-06-01"
            prices."p/a" = { input = "-1", output = "x" }
            [[versions]]
            id = "v2"
            effective = "2025-01-01"
            [[versions]]
            id = "v3"
            effective = "June"
            "#,
        );
        let text = "[pricing]\nfile = \"prices.toml\"\n";
        let err = Config::parse(text, Some(&dir), &no_env, std::iter::empty())
            .unwrap_err()
            .to_string();
        for want in [
            "versions[0].prices.\"p/a\".input",
            "versions[0].prices.\"p/a\".output",
            "versions[1].id: duplicate version",
            "versions[1].effective: must be later",
            "versions[2].effective",
        ] {
            assert!(err.contains(want), "missing {want} in {err}");
        }
        let missing = Config::parse(
            "[pricing]\nfile = \"nope.toml\"\n",
            Some(&dir),
            &no_env,
            std::iter::empty(),
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("pricing.file: cannot read"), "{missing}");
    }

    #[test]
    fn billing_settings_are_checked() {
        let text = r#"
            [billing]
            url = "ftp://billing"
            api_key_env = "SURELY_UNSET_BILLING_KEY"
            batch_size = 0
            concurrency = 100
        "#;
        let err = load(text).unwrap_err().to_string();
        for want in [
            "billing.url",
            "billing.api_key_env",
            "billing.batch_size",
            "billing.concurrency",
        ] {
            assert!(err.contains(want), "missing {want} in {err}");
        }
        let ok = load("[billing]\nurl = \"http://127.0.0.1:3000/\"\n").unwrap();
        assert!(ok.billing.enabled());
        assert_eq!(ok.billing.url, "http://127.0.0.1:3000");
        assert!(!load("").unwrap().billing.enabled());
    }

    #[test]
    fn float_prices_are_read_exactly() {
        let text = r#"
            [providers.o]
            kind = "mock"
            [[models.m.deployments]]
            provider = "o"
            model = "m"
            input_per_mtok = 0.15
            output_per_mtok = 0.6
            context_window = 10
        "#;
        let c = load(text).unwrap();
        let p = c.models["m"].deployments[0].prices.points()[0].price;
        assert_eq!(p.input.0, 150_000);
        assert_eq!(p.output.0, 600_000);
        assert_eq!(p.cached_input, p.input);
    }
}
