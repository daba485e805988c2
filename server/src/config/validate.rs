//! Checking each section for meaning (references, ranges, secrets) and turning it into typed values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::routes::{validate_router, validate_routes};
use super::types::{
    AuthConfig, Balance, BillingConfig, CacheConfig, Capability, Compat, DashboardConfig, DatabaseConfig,
    DeploymentConfig, EmbedderKind, LedgerConfig, ModelConfig, ModelKind, PricingConfig, ProviderConfig, ProviderKind,
    RequestLogConfig, ServerConfig,
};
use super::{as_table, take, Config, Problem, Secret};
use crate::money::pricing::{Price, PriceSchedule, PriceTable};

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
    "cache",
    "dashboard",
    "request_log",
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPricing {
    file: Option<String>,
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
    stream_max_secs: Option<u64>,
    anthropic_version: Option<String>,
    latency_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
    compat: Option<RawCompat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompat {
    mirror_max_tokens: Option<bool>,
    dedupe_tool_call_names: Option<bool>,
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

pub(super) fn validate(
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
    for (name, v) in [
        ("header_read_timeout_secs", server.header_read_timeout_secs),
        ("body_read_timeout_secs", server.body_read_timeout_secs),
        ("write_stall_timeout_secs", server.write_stall_timeout_secs),
        ("max_in_flight", server.max_in_flight as u64),
    ] {
        if v == 0 {
            problems.push(Problem {
                path: format!("server.{name}"),
                message: "must be at least 1".into(),
            });
        }
    }
    for (i, o) in server.cors_allow_origins.iter().enumerate() {
        let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
        if o != "*" && !host.is_some_and(|h| !h.is_empty() && !h.contains('/')) {
            problems.push(Problem {
                path: format!("server.cors_allow_origins[{i}]"),
                message: format!("`{o}` is not an origin (`https://host[:port]`, no path) or `*`"),
            });
        }
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
    if ledger.max_buffered_events <= server.max_in_flight.saturating_mul(2) {
        problems.push(Problem {
            path: "ledger.max_buffered_events".into(),
            message: format!(
                "must be more than twice server.max_in_flight ({}): that much room is kept for requests already admitted",
                server.max_in_flight
            ),
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
    let cache = match table.remove("cache") {
        Some(v) => take::<CacheConfig>(v, "cache", problems).unwrap_or_default(),
        None => CacheConfig::default(),
    };
    let cache = validate_cache(cache, base, &models, &routes, problems);
    let dashboard = match table.remove("dashboard") {
        Some(v) => take::<DashboardConfig>(v, "dashboard", problems).unwrap_or_default(),
        None => DashboardConfig::default(),
    };
    if dashboard.session_ttl_secs == 0 {
        problems.push(Problem {
            path: "dashboard.session_ttl_secs".into(),
            message: "must be at least 1".into(),
        });
    }
    let request_log = match table.remove("request_log") {
        Some(v) => take::<RequestLogConfig>(v, "request_log", problems).unwrap_or_default(),
        None => RequestLogConfig::default(),
    };
    validate_request_log(&request_log, problems);

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
        cache,
        dashboard,
        request_log,
    }
}

/// Bounds of the stored bodies, and patterns that compile.
fn validate_request_log(c: &RequestLogConfig, problems: &mut Vec<Problem>) {
    if !(1..=MAX_STORED_BODY_BYTES).contains(&c.max_body_bytes) {
        problems.push(Problem {
            path: "request_log.max_body_bytes".into(),
            message: format!("must be 1..={MAX_STORED_BODY_BYTES}"),
        });
    }
    if !(1..=24 * 3660).contains(&c.body_retention_hours) {
        problems.push(Problem {
            path: "request_log.body_retention_hours".into(),
            message: "must be 1..=87840 (ten years)".into(),
        });
    }
    if let Err(message) = crate::capture::compile(&c.redact) {
        problems.push(Problem {
            path: "request_log.redact".into(),
            message,
        });
    }
}

/// The largest cap of one stored body.
pub const MAX_STORED_BODY_BYTES: usize = 1 << 20;

fn validate_cache(
    mut c: CacheConfig,
    base: Option<&Path>,
    models: &BTreeMap<String, ModelConfig>,
    routes: &[crate::router::policy::Route],
    problems: &mut Vec<Problem>,
) -> CacheConfig {
    let mut problem = |path: &str, message: &str| {
        problems.push(Problem {
            path: format!("cache{path}"),
            message: message.into(),
        })
    };
    if c.max_bytes == 0 || c.max_entry_bytes == 0 || c.ttl_secs == 0 {
        problem("", "max_bytes, max_entry_bytes and ttl_secs must be at least 1");
    }
    let s = &c.semantic;
    if s.threshold.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
        problem(".semantic.threshold", "must be in (0, 1]");
    }
    if !(0.0..=2.0).contains(&s.max_temperature) {
        problem(".semantic.max_temperature", "must be from 0 to 2");
    }
    if s.max_entries_per_scope == 0 || s.max_bytes == 0 {
        problem(".semantic", "max_entries_per_scope and max_bytes must be at least 1");
    }
    let semantic_anywhere = s.enabled || c.models.values().any(|r| r.semantic == Some(true));
    if semantic_anywhere && s.embedder == EmbedderKind::Remote {
        match s.model.as_deref().map(|m| (m, models.get(m))) {
            None => problem(
                ".semantic.model",
                "the remote embedder needs an embedding model to call",
            ),
            Some((m, None)) => problem(".semantic.model", &format!("unknown model `{m}`")),
            Some((m, Some(mc))) if mc.kind != ModelKind::Embedding => {
                problem(".semantic.model", &format!("`{m}` is not an embedding model"))
            }
            Some(_) => {}
        }
    }
    for (name, rule) in &c.models {
        if !models.contains_key(name) && !routes.iter().any(|r| &r.name == name) {
            problem(&format!(".models.{name}"), "not a model or route name");
        }
        if rule.ttl_secs == Some(0) {
            problem(&format!(".models.{name}.ttl_secs"), "must be at least 1");
        }
        if rule.threshold.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
            problem(&format!(".models.{name}.threshold"), "must be in (0, 1]");
        }
        if rule.max_temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            problem(&format!(".models.{name}.max_temperature"), "must be from 0 to 2");
        }
    }
    if let (Some(dir), Some(base)) = (c.semantic.model_dir.as_mut(), base) {
        if dir.is_relative() {
            *dir = base.join(&*dir);
        }
    }
    c
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
        if raw.kind != ProviderKind::Openai && raw.compat.is_some() {
            problems.push(Problem {
                path: format!("{path}.compat"),
                message: "applies to openai providers only".into(),
            });
        }
        let mut compat = Compat::for_base_url(&base_url);
        if let Some(c) = &raw.compat {
            compat.mirror_max_tokens = c.mirror_max_tokens.unwrap_or(compat.mirror_max_tokens);
            compat.dedupe_tool_call_names = c.dedupe_tool_call_names.unwrap_or(compat.dedupe_tool_call_names);
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(600_000);
        let stream_max_secs = raw.stream_max_secs.unwrap_or(3_600);
        for (field, v) in [("timeout_ms", timeout_ms), ("stream_max_secs", stream_max_secs)] {
            if v == 0 {
                problems.push(Problem {
                    path: format!("{path}.{field}"),
                    message: "must be greater than 0".into(),
                });
            }
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
                stream_max_secs,
                anthropic_version: raw.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
                latency_ms: raw.latency_ms.unwrap_or(0),
                chunk_delay_ms: raw.chunk_delay_ms.unwrap_or(0),
                compat,
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
