//! Routes: virtual models (`auto`, `support-bot`…) that pick a real model per request from the
//! trained model's intent and difficulty, the caller's remaining budget and preference, and the
//! capabilities the request needs. Every decision explains itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::features::{Conversation, Features};
use super::model::{Prediction, RouterModel};

/// A route as configured (`[routes.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Route {
    pub name: String,
    /// The cheap tier's logical model.
    pub cheap: String,
    /// The powerful tier's logical model.
    pub strong: String,
    /// Share of traffic (the hardest, by the model's percentile) sent to the strong tier.
    pub strong_share: f64,
    /// Intents sent to a specialised model regardless of difficulty.
    pub intents: BTreeMap<String, String>,
    /// How much of `strong_share` each intent gets (1 = all of it, 0 = always cheap); intents
    /// not listed get the router model's weight (the intent's expected gain from the strong
    /// model relative to the average, see [`super::model::RouterModel::intent_weights`]).
    pub intent_weights: BTreeMap<String, f64>,
    /// Below this remaining budget fraction the threshold rises toward all-cheap (soft landing).
    pub budget_soft: f64,
    pub description: Option<String>,
    /// A/B test: a share of callers is decided by another route's policy.
    pub experiment: Option<Experiment>,
    /// Another route's policy decides alongside without acting; its choice is recorded.
    pub shadow: Option<String>,
    /// Ask the cheap model first and escalate to the strong one when its answer fails a check.
    pub cascade: Option<Arc<super::cascade::Cascade>>,
    /// Store the prompt and answer bodies of this route's requests in the request log.
    pub store_bodies: bool,
}

impl Route {
    /// A route between two models with the default share (0.3) and soft landing (0.25), no
    /// specialists, intent weights, experiment or shadow.
    pub fn new(name: &str, cheap: &str, strong: &str) -> Route {
        Route {
            name: name.into(),
            cheap: cheap.into(),
            strong: strong.into(),
            strong_share: 0.3,
            intents: BTreeMap::new(),
            intent_weights: BTreeMap::new(),
            budget_soft: 0.25,
            description: None,
            experiment: None,
            shadow: None,
            cascade: None,
            store_bodies: false,
        }
    }
}

/// Splits a route's traffic between its own policy and a candidate route's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Experiment {
    /// The route whose policy the variant uses.
    pub candidate: String,
    /// Percent of callers in the variant (0..=100).
    pub percent: u8,
    /// What stays in one arm: a `key` or a `conversation`.
    pub by: StickyBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StickyBy {
    Key,
    Conversation,
}

impl Experiment {
    /// Whether the caller (or conversation) with this stable hash is in the candidate's arm.
    pub fn in_variant(&self, unit: u64) -> bool {
        // Mix the hash so callers sharing a prefix spread evenly over the 100 buckets.
        let mixed = unit.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        (mixed % 100) < u64::from(self.percent)
    }
}

pub use crate::records::keys::Prefer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Cheap,
    Strong,
    /// A model chosen for the request's intent.
    Specialist,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cheap => "cheap",
            Tier::Strong => "strong",
            Tier::Specialist => "specialist",
        }
    }
}

/// A routing decision and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub route: String,
    pub model: String,
    pub tier: Tier,
    pub intent: String,
    pub intent_confidence: f32,
    /// The model's score: the strong model's expected gain over the cheap one (0..1, 0.5: none).
    pub difficulty: f32,
    /// Where that score falls among training prompts (0..1).
    pub percentile: f32,
    /// Percentile at or above which the strong tier is chosen.
    pub threshold: f64,
    pub prefer: Prefer,
    /// Where the preference came from: the `header`, the key's default (`key`), or neither (`default`).
    pub prefer_source: &'static str,
    pub budget_remaining: Option<f64>,
    pub reason: String,
    /// With an experiment: the route whose policy decided (this route's, or the candidate's).
    pub variant: Option<String>,
    /// With a shadow policy: what it would have chosen.
    pub shadow: Option<ShadowChoice>,
    /// When the cheap tier answers first and the strong one stands behind it.
    pub cascade: Option<CascadePlan>,
    /// The conversation's key among those remembered on the strong tier; set when the decision
    /// is for a request that will be served, which remembers it once admitted.
    #[serde(skip)]
    pub thread: Option<(u64, u64)>,
    /// The route's strong model, which the request's baseline cost is counted against.
    #[serde(skip)]
    pub strong: String,
}

/// A cascade the decision runs: the cheap model's answer is checked and, if it fails, the
/// request goes to `escalate_to`.
#[derive(Debug, Clone, Serialize)]
pub struct CascadePlan {
    pub escalate_to: String,
    pub checks: Arc<super::cascade::Cascade>,
}

/// A shadow policy's choice.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowChoice {
    pub route: String,
    pub model: String,
    pub tier: Tier,
}

/// What a decision needs to know of the models behind a route.
pub trait Models {
    /// Whether this logical model can take the request (capabilities, context window).
    fn serves(&self, model: &str) -> bool;
    /// A list price to compare models by (input plus output, per token), `None` when unknown.
    fn list_price(&self, _model: &str) -> Option<i64> {
        None
    }
}

/// Any `Fn(&str) -> bool` says which models serve; it knows no prices.
impl<F: Fn(&str) -> bool> Models for F {
    fn serves(&self, model: &str) -> bool {
        self(model)
    }
}

/// Routes by name, with the model that scores requests.
pub struct Router {
    pub model: Arc<RouterModel>,
    routes: BTreeMap<String, Route>,
}

use super::model::INTENT_CONFIDENCE;

impl Router {
    pub fn new(model: Arc<RouterModel>, routes: impl IntoIterator<Item = Route>) -> Router {
        Router {
            model,
            routes: routes.into_iter().map(|r| (r.name.clone(), r)).collect(),
        }
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// Decides where a conversation goes. `serves(model)` says whether a logical model can take
    /// this request (capabilities, context window); a tier that cannot is skipped.
    pub fn decide(
        &self,
        route: &Route,
        conversation: &Conversation<'_>,
        prefer: Prefer,
        budget_remaining: Option<f64>,
        models: &dyn Models,
    ) -> Decision {
        self.decide_in_thread(route, conversation, prefer, budget_remaining, None, models)
    }

    /// Like [`Router::decide`], for a conversation that earlier went to tier `before`: one that
    /// was on the strong tier stays there (answers do not get worse mid-conversation) unless the
    /// budget is running out.
    pub fn decide_in_thread(
        &self,
        route: &Route,
        conversation: &Conversation<'_>,
        prefer: Prefer,
        budget_remaining: Option<f64>,
        before: Option<Tier>,
        models: &dyn Models,
    ) -> Decision {
        let p = self.predict(conversation);
        self.decide_predicted(route, &p, prefer, budget_remaining, before, models)
    }

    /// The model's reading of a conversation, which every policy deciding it can share.
    pub fn predict(&self, conversation: &Conversation<'_>) -> Prediction {
        self.model.predict(&Features::of(conversation, self.model.hash_bits))
    }

    /// [`Router::decide_in_thread`] from a prediction already made.
    pub fn decide_predicted(
        &self,
        route: &Route,
        p: &Prediction,
        prefer: Prefer,
        budget_remaining: Option<f64>,
        before: Option<Tier>,
        models: &dyn Models,
    ) -> Decision {
        let serves = |m: &str| models.serves(m);
        let intent = self.model.intents[p.intent].clone();
        let mut why = Vec::new();
        let sure = p.intent_confidence >= INTENT_CONFIDENCE;
        // The route's weight for the intent, else the model's (the intent's expected gain).
        let weight = match route.intent_weights.get(&intent) {
            Some(w) if sure => *w,
            _ => self.model.intent_weight(p),
        };
        if weight != 1.0 {
            why.push(format!(
                "intent {intent} ({:.2}) weighs the strong share by {weight:.2}",
                p.intent_confidence
            ));
        }
        let base = (route.strong_share * weight).clamp(0.0, 1.0);
        let share = match prefer {
            Prefer::Balanced => base,
            Prefer::Cost => base / 2.0,
            Prefer::Quality => (base * 2.0).min(1.0),
        };
        let mut threshold = 1.0 - share;
        if let Some(r) = budget_remaining {
            if r < route.budget_soft {
                // Soft landing: the closer the budget is to empty, the fewer strong calls.
                let squeeze = 1.0 - (r / route.budget_soft).clamp(0.0, 1.0);
                threshold += (1.0 - threshold) * squeeze;
                why.push(format!("budget {:.0}% left", r * 100.0));
            }
        }
        let percentile = f64::from(p.percentile);
        let wants_strong = threshold < 1.0 && percentile >= threshold;
        let squeezed = budget_remaining.is_some_and(|r| r < route.budget_soft);
        let mut specialist = route.intents.get(&intent).filter(|_| sure);
        // In the soft landing a specialist dearer than the cheap tier is held to the strong
        // tier's threshold: as the budget runs out, only the hardest of its requests go to it.
        if let Some(m) = specialist {
            let dearer = match (models.list_price(m), models.list_price(&route.cheap)) {
                (Some(a), Some(b)) => a > b,
                _ => false,
            };
            if squeezed && dearer && !wants_strong {
                why.push(format!(
                    "{m}, the model for intent {intent}, costs more than {}",
                    route.cheap
                ));
                specialist = None;
            }
        }
        let (mut tier, mut model) = match specialist {
            Some(m) => (Tier::Specialist, m.clone()),
            None if wants_strong => (Tier::Strong, route.strong.clone()),
            None => (Tier::Cheap, route.cheap.clone()),
        };
        match tier {
            Tier::Specialist => why.insert(
                0,
                format!("intent {intent} ({:.2}) has its own model", p.intent_confidence),
            ),
            Tier::Strong => why.insert(0, format!("difficulty p{percentile:.2} >= threshold {threshold:.2}")),
            Tier::Cheap => why.insert(0, format!("difficulty p{percentile:.2} < threshold {threshold:.2}")),
        }
        // A caller who asks for cost gets it, even mid-conversation.
        if tier == Tier::Cheap && before == Some(Tier::Strong) && !squeezed && prefer != Prefer::Cost {
            tier = Tier::Strong;
            model = route.strong.clone();
            why.push("the conversation is already on the strong tier".to_string());
        }
        if !serves(&model) {
            let (other_tier, other) = match tier {
                Tier::Strong => (Tier::Cheap, &route.cheap),
                _ => (Tier::Strong, &route.strong),
            };
            if serves(other) {
                why.push(format!(
                    "{model} cannot serve this request (capabilities or context), {other} can"
                ));
                tier = other_tier;
                model = other.clone();
            }
        }
        if prefer != Prefer::Balanced {
            why.push(format!(
                "caller prefers {}",
                if prefer == Prefer::Cost { "cost" } else { "quality" }
            ));
        }
        Decision {
            route: route.name.clone(),
            strong: route.strong.clone(),
            model,
            tier,
            intent,
            intent_confidence: p.intent_confidence,
            difficulty: p.difficulty,
            percentile: p.percentile,
            threshold,
            prefer,
            prefer_source: "default",
            budget_remaining,
            cascade: match (&route.cascade, tier) {
                (Some(c), Tier::Cheap) if serves(&route.strong) => {
                    why.push(format!(
                        "cascade: {} answers first, {} if a check fails",
                        route.cheap, route.strong
                    ));
                    Some(CascadePlan {
                        escalate_to: route.strong.clone(),
                        checks: c.clone(),
                    })
                }
                _ => None,
            },
            reason: why.join("; "),
            variant: None,
            shadow: None,
            thread: None,
        }
    }
}

/// The live routing table, replaced whole on a reload while requests keep reading the old one,
/// and the conversations that went to the strong tier (kept across reloads).
pub struct RouterHandle {
    table: std::sync::RwLock<Arc<Router>>,
    /// (route hash, thread) of conversations on the strong tier; bounded, forgotten after an
    /// idle hour.
    pub strong_threads: moka::sync::Cache<(u64, u64), ()>,
}

impl RouterHandle {
    pub fn new(router: Router) -> RouterHandle {
        RouterHandle {
            table: std::sync::RwLock::new(Arc::new(router)),
            strong_threads: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    /// The current table (a request keeps the one it started with).
    pub fn get(&self) -> Arc<Router> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, router: Router) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(router);
    }
}

/// The router model shipped with Switchyard (trained on the shared routing data and the intent
/// examples in `config/router/`).
pub fn builtin_model() -> &'static Arc<RouterModel> {
    static MODEL: std::sync::OnceLock<Arc<RouterModel>> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let file = serde_json::from_str(include_str!("../../../config/router/model.json"))
            .expect("the shipped router model is valid JSON (checked by a unit test)");
        Arc::new(RouterModel::from_file(file).expect("the shipped router model loads (checked by a unit test)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route::new("auto", "small", "large")
    }

    /// A route that weighs chat like any other intent (the model's default weight for chat is 0).
    fn chatty_route(strong_share: f64) -> Route {
        let mut r = Route {
            strong_share,
            ..route()
        };
        r.intent_weights.insert("chat".into(), 1.0);
        r
    }

    fn decide(r: &Route, text: &str, prefer: Prefer, budget: Option<f64>) -> Decision {
        Router::new(builtin_model().clone(), [r.clone()]).decide(
            r,
            &Conversation::prompt(text),
            prefer,
            budget,
            &|_: &str| true,
        )
    }

    const HARD: &str = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24. Then derive the \
        generalisation to p^4 - 1 and explain step by step which modular arithmetic facts each step uses, \
        without skipping any case.";
    const EASY: &str = "hi there";

    #[test]
    fn the_shipped_model_loads_and_ranks_hard_above_easy() {
        let m = builtin_model();
        assert_eq!(m.intents.len(), 7);
        let hard = m.predict(&Features::of(&Conversation::prompt(HARD), m.hash_bits));
        let easy = m.predict(&Features::of(&Conversation::prompt(EASY), m.hash_bits));
        assert!(hard.percentile > easy.percentile, "{hard:?} {easy:?}");
        assert_eq!(m.intents[easy.intent], "chat");
    }

    #[test]
    fn preference_budget_and_intent_move_the_decision() {
        let r = route();
        let d = decide(&r, HARD, Prefer::Balanced, None);
        let q = decide(&r, HARD, Prefer::Quality, None);
        let c = decide(&r, HARD, Prefer::Cost, None);
        assert!(q.threshold < d.threshold && d.threshold < c.threshold);
        // With the budget nearly gone everything goes to the cheap tier.
        let broke = decide(&r, HARD, Prefer::Quality, Some(0.0));
        assert_eq!((broke.tier, broke.model.as_str()), (Tier::Cheap, "small"), "{broke:?}");
        assert!(broke.reason.contains("budget 0% left"), "{}", broke.reason);
        // Everything to strong when the share is 1, nothing when it is 0.
        assert_eq!(
            decide(&chatty_route(1.0), EASY, Prefer::Balanced, None).tier,
            Tier::Strong
        );
        // Without a weight of its own, chat takes the model's: no gain from the strong model, never strong.
        let d = decide(
            &Route {
                strong_share: 1.0,
                ..r.clone()
            },
            EASY,
            Prefer::Quality,
            None,
        );
        assert_eq!(d.tier, Tier::Cheap, "{d:?}");
        assert!(d.reason.contains("weighs the strong share by 0.00"), "{}", d.reason);
        let none = Route {
            strong_share: 0.0,
            ..r.clone()
        };
        assert_eq!(decide(&none, HARD, Prefer::Balanced, None).tier, Tier::Cheap);
        // A specialist for the predicted intent wins over difficulty.
        let mut special = r.clone();
        special.intents.insert("chat".into(), "chatty".into());
        let s = decide(&special, "hey! how are you doing today? :)", Prefer::Balanced, None);
        assert_eq!((s.tier, s.model.as_str()), (Tier::Specialist, "chatty"), "{s:?}");
        // An intent weighted 0 never goes strong, even for a caller who prefers quality.
        let mut weighted = Route {
            strong_share: 1.0,
            ..r.clone()
        };
        weighted.intent_weights.insert("chat".into(), 0.0);
        let w = decide(&weighted, "hey! how are you doing today? :)", Prefer::Quality, None);
        assert_eq!(w.tier, Tier::Cheap, "{w:?}");
        assert!(w.reason.contains("weighs the strong share by 0"), "{}", w.reason);
    }

    /// Every model serves; `chatty` costs more than `small` (or less, with `cheaper`).
    struct Priced {
        cheaper: bool,
    }

    impl Models for Priced {
        fn serves(&self, _: &str) -> bool {
            true
        }
        fn list_price(&self, model: &str) -> Option<i64> {
            match (model, self.cheaper) {
                ("chatty", true) => Some(1),
                ("chatty", false) => Some(100),
                ("small", _) => Some(10),
                _ => None,
            }
        }
    }

    #[test]
    fn in_the_soft_landing_a_dearer_specialist_is_held_to_the_strong_threshold() {
        let mut r = route();
        r.intents.insert("chat".into(), "chatty".into());
        let router = Router::new(builtin_model().clone(), [r.clone()]);
        let c = Conversation::prompt("hey! how are you doing today? :)");
        let decide = |budget, cheaper| router.decide(&r, &c, Prefer::Balanced, budget, &Priced { cheaper });
        // With budget to spare, or a specialist cheaper than the cheap tier, the specialist serves.
        for (budget, cheaper) in [(None, false), (Some(0.9), false), (Some(0.1), true), (Some(0.0), true)] {
            let d = decide(budget, cheaper);
            assert_eq!(
                (d.tier, d.model.as_str()),
                (Tier::Specialist, "chatty"),
                "{budget:?} {cheaper}: {d:?}"
            );
        }
        // Low on budget, an easy request does not go to the dearer specialist.
        let d = decide(Some(0.05), false);
        assert_eq!((d.tier, d.model.as_str()), (Tier::Cheap, "small"), "{d:?}");
        assert!(
            d.reason
                .contains("chatty, the model for intent chat, costs more than small"),
            "{}",
            d.reason
        );
        // Unless it is as hard as what still goes to the strong tier.
        let mut all = chatty_route(1.0);
        all.intents = r.intents.clone();
        let d = router.decide(&all, &c, Prefer::Balanced, Some(0.249), &Priced { cheaper: false });
        assert_eq!(d.tier, Tier::Specialist, "{d:?}");
    }

    #[test]
    fn a_conversation_on_the_strong_tier_stays_there_unless_the_budget_runs_out() {
        let r = Route {
            strong_share: 0.0,
            ..route()
        };
        let router = Router::new(builtin_model().clone(), [r.clone()]);
        let c = Conversation::prompt(EASY);
        let fresh = router.decide_in_thread(&r, &c, Prefer::Balanced, None, None, &|_: &str| true);
        assert_eq!(fresh.tier, Tier::Cheap);
        let kept = router.decide_in_thread(&r, &c, Prefer::Balanced, None, Some(Tier::Strong), &|_: &str| true);
        assert_eq!(kept.tier, Tier::Strong, "{kept:?}");
        assert!(kept.reason.contains("already on the strong tier"));
        let broke = router.decide_in_thread(&r, &c, Prefer::Balanced, Some(0.1), Some(Tier::Strong), &|_: &str| true);
        assert_eq!(broke.tier, Tier::Cheap);
    }

    #[test]
    fn experiment_arms_are_stable_and_sized_by_percent() {
        let e = Experiment {
            candidate: "b".into(),
            percent: 20,
            by: StickyBy::Key,
        };
        let n = (0..10_000u64)
            .filter(|u| e.in_variant(crate::router::features::hash_str(&format!("key_{u}"))))
            .count();
        assert!((1_700..2_300).contains(&n), "{n} of 10000 in a 20 % arm");
        assert_eq!(e.in_variant(42), e.in_variant(42));
        let none = Experiment {
            percent: 0,
            ..e.clone()
        };
        let all = Experiment { percent: 100, ..e };
        assert!((0..1000).all(|u| !none.in_variant(u) && all.in_variant(u)));
    }

    #[test]
    fn a_tier_that_cannot_serve_is_skipped() {
        let r = chatty_route(1.0);
        let router = Router::new(builtin_model().clone(), [r.clone()]);
        let d = router.decide(&r, &Conversation::prompt(EASY), Prefer::Balanced, None, &|m: &str| {
            m != "large"
        });
        assert_eq!((d.tier, d.model.as_str()), (Tier::Cheap, "small"));
        assert!(d.reason.contains("cannot serve"), "{}", d.reason);
    }
}
