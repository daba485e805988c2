//! Routes (`[routes.NAME]`) and the router model (`[router]`): parsed, checked against the
//! models and the router model's intents, and turned into routing policies.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::types::{ModelConfig, ModelKind};
use super::{as_table, take, Config, ConfigError, Problem};

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
pub(super) fn validate_router(
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
    #[serde(default)]
    store_bodies: bool,
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

pub(super) fn validate_routes(
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
            store_bodies: r.store_bodies,
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
