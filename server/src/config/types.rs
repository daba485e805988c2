//! The configuration's sections as typed, validated values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;

use super::Secret;
use crate::money::pricing::{PriceSchedule, PriceTable};

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
    /// Longest wait for a request's whole body once its headers arrived (408 after it).
    pub body_read_timeout_secs: u64,
    /// A connection whose client stops reading (its writes make no progress) is closed after this.
    pub write_stall_timeout_secs: u64,
    /// Open client connections at most; at the cap, accepting pauses until one closes.
    pub max_connections: usize,
    /// Model requests (chat, route, embeddings) running at once, streams until their last byte;
    /// beyond it a request is refused at once with 503 and `retry-after`.
    pub max_in_flight: usize,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// Browser origins (`https://app.example.com`, or `*`) whose pages may call the OpenAI API
    /// cross-origin. Empty: none (the admin API and the dashboard never answer them).
    pub cors_allow_origins: Vec<String>,
    /// Serve `/metrics` and the details of `/readyz` (deployments, breakers, load) without the
    /// master key, for a scraper on a private network. Off: they need the master key.
    pub public_ops: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            // With the drain after it (see `crate::shutdown`), inside Kubernetes' default 30 s.
            shutdown_grace_secs: 15,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            write_stall_timeout_secs: 60,
            max_connections: 10_000,
            max_in_flight: 2_048,
            log_format: LogFormat::Text,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            public_ops: false,
            cors_allow_origins: Vec::new(),
        }
    }
}

/// Where keys, budgets and the usage ledger live.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative paths are next to the config file) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

/// Printed with the URL's credentials hidden.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &super::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
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
    /// Usage events kept in memory at most while the database cannot be written. Model requests
    /// are refused (503) once the buffer has only room left for twice `server.max_in_flight`,
    /// so that every request already admitted keeps its event.
    pub max_buffered_events: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batch_size: 2000,
            flush_interval_ms: 200,
            lease_pct: 10,
            lease_ttl_secs: 60,
            budget_flush_ms: 500,
            max_buffered_events: 65_536,
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

/// Delivery of billing events (one per usage event) to a Lago-compatible webhook. Printed with
/// the URL's credentials hidden (the key is a [`Secret`]).
#[derive(Clone, Deserialize)]
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

impl std::fmt::Debug for BillingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingConfig")
            .field("url", &super::redact_url(&self.url))
            .field("api_key_env", &self.api_key_env)
            .field("code", &self.code)
            .field("subscription", &self.subscription)
            .field("batch_size", &self.batch_size)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
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

/// A provider with its secret resolved. Printed with the URL's credentials and every extra
/// header's value hidden (an Azure `api-key` header is a secret too).
#[derive(Clone)]
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
    /// Longest a whole stream may last (an upstream that never ends is cut here, or at
    /// `server.max_response_bytes`).
    pub stream_max_secs: u64,
    pub anthropic_version: String,
    /// Mock only: delay before the first chunk.
    pub latency_ms: u64,
    /// Mock only: delay between chunks.
    pub chunk_delay_ms: u64,
    /// How an OpenAI-compatible server that is not OpenAI is made to look like OpenAI.
    pub compat: Compat,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("base_url", &super::redact_url(&self.base_url))
            .field("api_key", &self.api_key)
            .field("headers", &headers)
            .field("timeout_ms", &self.timeout_ms)
            .field("compat", &self.compat)
            .finish_non_exhaustive()
    }
}

/// Fixes for OpenAI-compatible servers that differ from OpenAI (llama.cpp, older vLLM or
/// Ollama…), so clients see OpenAI's behaviour through the gateway. Both are on by default for
/// every `base_url` but OpenAI's own, where they are off (OpenAI's reasoning models refuse
/// `max_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compat {
    /// Send `max_completion_tokens` as `max_tokens` too (servers that read only `max_tokens`
    /// would otherwise generate to the model's limit).
    pub mirror_max_tokens: bool,
    /// Send a streamed tool call's `id`, `type` and function `name` once per tool-call index,
    /// as OpenAI does (servers that repeat them in every delta make the SDKs assemble
    /// `get_weatherget_weather…`).
    pub dedupe_tool_call_names: bool,
}

impl Compat {
    /// The defaults for a provider at `base_url`.
    pub fn for_base_url(base_url: &str) -> Compat {
        let openai = reqwest::Url::parse(base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .is_some_and(|h| h == "api.openai.com");
        Compat {
            mirror_max_tokens: !openai,
            dedupe_tool_call_names: !openai,
        }
    }
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

/// Whose cached answers a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeBy {
    /// Each virtual key has its own entries.
    Key,
    /// A team's keys share entries (a key without a team keeps its own).
    Team,
}

/// Which embedder the semantic tier uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2, run in-process from `model_dir`.
    Local,
    /// A configured embedding model (`deployment`), called like any embeddings request.
    Remote,
    /// Word and character n-grams hashed into a vector: no model, least paraphrase-aware.
    Lexical,
}

/// The admin dashboard (`[dashboard]`), served at `/ui`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    pub enabled: bool,
    /// How long a sign-in lasts.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure`. Unset: when the request came over TLS, as a proxy in
    /// front says with `X-Forwarded-Proto: https`.
    pub secure_cookie: Option<bool>,
    /// Where the password of the first admin user goes: on a gateway with neither a master key
    /// nor dashboard users, the user `admin` is made with a random password written here
    /// (readable by its owner only).
    pub first_password_file: std::path::PathBuf,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            session_ttl_secs: 8 * 3600,
            secure_cookie: None,
            first_password_file: "switchyard-admin-password".into(),
        }
    }
}

/// Prompt and answer bodies in the request log (`[request_log]`). Bodies are stored only for
/// keys, teams and routes with `store_bodies` on; these rules apply to what they store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLogConfig {
    /// How long stored bodies are kept.
    pub body_retention_hours: u64,
    /// Each body (the request, the answer) is cut to this many bytes.
    pub max_body_bytes: usize,
    /// Regular expressions whose matches are replaced by `[REDACTED]` before a body is stored.
    pub redact: Vec<String>,
}

impl Default for RequestLogConfig {
    fn default() -> Self {
        RequestLogConfig {
            body_retention_hours: 7 * 24,
            max_body_bytes: 32 * 1024,
            redact: [
                // API keys of the usual shapes (OpenAI, Anthropic, Switchyard), AWS access key ids,
                // bearer tokens and e-mail addresses.
                r"sk-[A-Za-z0-9_-]{16,}",
                r"AKIA[0-9A-Z]{16}",
                r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// The response cache (`[cache]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether answers are cached at all (per model or route: `[cache.models.NAME]`).
    pub enabled: bool,
    /// Memory the exact tier's entries may use, in bytes.
    pub max_bytes: u64,
    /// Answers larger than this are not kept.
    pub max_entry_bytes: usize,
    /// How long an entry answers.
    pub ttl_secs: u64,
    /// Per key or per team.
    pub scope: ScopeBy,
    /// Reuse answers that call tools (an agent's next step): off unless a route opts in.
    pub allow_tool_calls: bool,
    pub semantic: SemanticConfig,
    /// Keep entries in the database too, so a restarted gateway starts warm (the in-process
    /// tiers still answer first; writes happen behind the request path).
    pub persist: bool,
    /// Overrides per model or route name.
    pub models: BTreeMap<String, CacheRule>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            ttl_secs: 3600,
            scope: ScopeBy::Key,
            allow_tool_calls: false,
            semantic: SemanticConfig::default(),
            persist: false,
            models: BTreeMap::new(),
        }
    }
}

/// The semantic tier (`[cache.semantic]`): a reworded last user message answered from the cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticConfig {
    /// Opt-in; per model or route with `[cache.models.NAME] semantic`.
    pub enabled: bool,
    pub embedder: EmbedderKind,
    /// The folder with `model.safetensors`, `tokenizer.json` and `config.json` (`local`);
    /// relative to the config file.
    pub model_dir: Option<std::path::PathBuf>,
    /// The embedding model to call (`remote`).
    pub model: Option<String>,
    /// Cosine similarity a neighbour needs; unset, the embedder's own default.
    pub threshold: Option<f32>,
    /// Requests sampled hotter than this are not answered semantically.
    pub max_temperature: f64,
    /// Entries per scope in the index; the oldest go first.
    pub max_entries_per_scope: usize,
    /// Memory the index may use across scopes, in bytes.
    pub max_bytes: u64,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            enabled: false,
            embedder: EmbedderKind::Local,
            model_dir: None,
            model: None,
            threshold: None,
            max_temperature: 1.0,
            max_entries_per_scope: 10_000,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

/// A model's or route's own cache settings; what is not set comes from `[cache]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    pub enabled: Option<bool>,
    pub ttl_secs: Option<u64>,
    pub scope: Option<ScopeBy>,
    pub allow_tool_calls: Option<bool>,
    pub semantic: Option<bool>,
    pub threshold: Option<f32>,
    pub max_temperature: Option<f64>,
}
