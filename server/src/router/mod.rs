//! The router: which model a request deserves, by intent, difficulty and budget.
//!
//! - [`decide`]: the decision for one request (route, experiment arm, sticky tier, shadow).
//! - [`escalation`]: running a cascade (cheap first, checked, strong when a check fails).
//! - [`cascade`]: the checks a cheap answer must pass before a cascade keeps it.
//! - [`features`]: what is measured on a conversation (dense signals and hashed n-grams).
//! - [`model`]: the trained model (difficulty score and intent classifier) and its file.
//! - [`train`]: fitting the model to labelled prompts, with cross-validation.
//! - [`policy`]: routes (virtual models), the decision and its explanation.
//! - [`metrics`]: APGR, CPT, AUROC and intent accuracy, as the reference script defines them.

pub mod cascade;
pub mod decide;
pub mod escalation;
pub mod features;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod train;

use std::collections::BTreeMap;

use features::{Conversation, Features};
use metrics::{report, Outcome, Report};
use model::RouterModel;
use train::Row;

/// What `switchyard router eval` reports for a file of labelled prompts.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Routing metrics per source, over rows with both outcomes.
    pub routing: BTreeMap<String, Report>,
    /// Intent accuracy and macro-F1 per source, over rows with an intent.
    pub intent: BTreeMap<String, (usize, f64, f64)>,
    /// Every row's score, in input order.
    pub scores: Vec<(String, f64)>,
}

/// Scores every row with `model` and computes the metrics per source.
pub fn evaluate(model: &RouterModel, rows: &[Row]) -> Evaluation {
    let mut eval = Evaluation::default();
    let mut routing: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    let mut intents: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for r in rows {
        let p = model.predict(&Features::of(&Conversation::prompt(&r.prompt), model.hash_bits));
        let score = model.routing_score(&p);
        eval.scores.push((r.id.clone(), score));
        if let (Some(w), Some(s)) = (r.weak_ok, r.strong_ok) {
            routing.entry(&r.source).or_default().push(Outcome {
                weak_ok: w,
                strong_ok: s,
                needs_strong: r.needs_strong,
                score,
            });
        }
        if let Some(t) = &r.intent {
            let e = intents.entry(&r.source).or_default();
            e.0.push(t);
            e.1.push(&model.intents[p.intent]);
        }
    }
    for (s, items) in routing {
        eval.routing.insert(s.to_string(), report(&items));
    }
    for (s, (truth, predicted)) in intents {
        let (acc, f1) = metrics::classification(&truth, &predicted);
        eval.intent.insert(s.to_string(), (truth.len(), acc, f1));
    }
    eval
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MT-Bench (mixed everyday prompts, never trained on): the shipped model's routing score,
    /// which weighs intents by their expected gain, must rank far better than chance and than
    /// the bare difficulty score, which knows only knowledge and math questions.
    #[test]
    fn the_shipped_model_routes_mixed_prompts_better_than_its_difficulty_alone() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/router/eval/mt_bench.jsonl");
        let rows = train::read_rows(&path).unwrap();
        assert_eq!(rows.len(), 72);
        let model = policy::builtin_model();
        let e = evaluate(model, &rows);
        let routed = &e.routing["mt_bench"];
        let bare: Vec<Outcome> = rows
            .iter()
            .map(|r| Outcome {
                weak_ok: r.weak_ok.unwrap(),
                strong_ok: r.strong_ok.unwrap(),
                needs_strong: r.needs_strong,
                score: f64::from(
                    model
                        .predict(&Features::of(&Conversation::prompt(&r.prompt), model.hash_bits))
                        .difficulty,
                ),
            })
            .collect();
        let bare = report(&bare);
        assert!(routed.apgr >= 0.58, "{routed:?}");
        assert!(routed.apgr > bare.apgr + 0.05, "{routed:?} vs {bare:?}");
        assert!(routed.cpt50_pct < bare.cpt50_pct, "{routed:?} vs {bare:?}");
    }
}
