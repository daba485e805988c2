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

use crate::pricing::Price;

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
    input_per_mtok: toml::Value,
    output_per_mtok: toml::Value,
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
    pub price: Price,
    pub context_window: u32,
    pub max_output_tokens: Option<u32>,
    pub capabilities: Vec<Capability>,
    pub timeout_ms: Option<u64>,
}

const TOP_LEVEL_KEYS: &[&str] = &["server", "database", "auth", "ledger", "providers", "models"];

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
        let mut config = Config::from_toml(&text, env, env_vars)?;
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
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(vec![Problem {
                path: String::new(),
                message: format!("invalid TOML: {}", e.message()),
            }])
        })?;
        let mut problems = Vec::new();
        apply_env_overlay(&mut table, env_vars, &mut problems);
        let config = validate(table, env, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
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

fn validate(mut table: toml::Table, env: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<Problem>) -> Config {
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

    let providers = validate_providers(table.remove("providers"), env, problems);
    let models = validate_models(table.remove("models"), &providers, problems);

    Config {
        server,
        database,
        auth,
        ledger,
        providers,
        models,
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

fn price_field(value: toml::Value, path: &str, problems: &mut Vec<Problem>) -> Option<crate::pricing::PicoPerToken> {
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
    match crate::pricing::PicoPerToken::parse_usd_per_mtok(&text) {
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
            let input = price_field(d.input_per_mtok, &format!("{dpath}.input_per_mtok"), problems);
            let output = price_field(d.output_per_mtok, &format!("{dpath}.output_per_mtok"), problems);
            let cached = match d.cached_input_per_mtok {
                Some(v) => price_field(v, &format!("{dpath}.cached_input_per_mtok"), problems),
                None => input,
            };
            let id = d.id.unwrap_or_else(|| format!("{}/{}", d.provider, d.model));
            if deployments.iter().any(|x: &DeploymentConfig| x.id == id) {
                problems.push(Problem {
                    path: format!("{dpath}.id"),
                    message: format!("duplicate deployment id `{id}` in this model; give each an `id`"),
                });
            }
            if let (Some(input), Some(output), Some(cached_input)) = (input, output, cached) {
                let mut capabilities = d.capabilities;
                capabilities.sort();
                capabilities.dedup();
                deployments.push(DeploymentConfig {
                    id,
                    provider: d.provider,
                    model: d.model,
                    weight: d.weight,
                    price: Price {
                        input,
                        output,
                        cached_input,
                    },
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
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/switchyard.example.toml"
        ))
        .expect("example config exists");
        let env = |k: &str| Some(format!("test-secret-for-{k}"));
        let c = Config::from_toml(&text, &env, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
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
        let p = c.models["m"].deployments[0].price;
        assert_eq!(p.input.0, 150_000);
        assert_eq!(p.output.0, 600_000);
        assert_eq!(p.cached_input, p.input);
    }
}
