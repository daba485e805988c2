//! Typed configuration: a TOML file overlaid with `SWITCHYARD_*` environment variables, validated all at once.
//!
//! Loading never stops at the first problem: every section and every entry is deserialized on its
//! own and then checked for meaning (references, ranges, secrets), and all problems come back
//! together, each with the dotted path of the value it is about. Secrets are never stored in the
//! file: a provider names the environment variable that holds its key (`api_key_env`), and the
//! value read from it is kept in a [`Secret`] that cannot be printed.

mod demo;
mod env;
mod routes;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

pub use demo::DEMO_CONFIG;
pub use types::*;

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

/// A URL with whatever stands between `://` and `@` (a user, a password, a token) shown as
/// `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 && !url[s + 3..at].contains('/') => {
            format!("{}***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
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
    pub cache: CacheConfig,
    pub dashboard: DashboardConfig,
    pub request_log: RequestLogConfig,
}

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
        env::apply_env_overlay(&mut table, env_vars, &mut problems);
        let config = validate::validate(table, base, env, &mut problems);
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

/// Deserializes one value, recording a problem (with the precise path) instead of failing.
pub(super) fn take<T: DeserializeOwned>(value: toml::Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
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

pub(super) fn as_table(value: Option<toml::Value>, path: &str, problems: &mut Vec<Problem>) -> toml::Table {
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

#[cfg(test)]
mod tests;
