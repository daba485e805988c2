//! The router's trained model: a logistic score of how much the strong model is needed and a multinomial intent
//! classifier over the same features, stored as one JSON file (`config/router/model.json`).
//!
//! In memory every hashed bucket keeps all its weights side by side (difficulty first, then one
//! per intent), so scoring a conversation touches one cache line per n-gram.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::features::{gate, Features, DENSE};

/// What the file says about how the model was made and how well it did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingInfo {
    pub rows: usize,
    pub intent_rows: usize,
    /// Out-of-fold metrics per source from cross-validation, when it was run.
    #[serde(default)]
    pub cross_validation: serde_json::Value,
}

/// The model file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub hash_bits: u32,
    pub dense_features: Vec<String>,
    /// Dense features are standardized with these before weighting.
    pub dense_mean: Vec<f32>,
    pub dense_scale: Vec<f32>,
    pub intents: Vec<String>,
    /// Per output (difficulty, then each intent): dense weights.
    pub dense: Vec<Vec<f32>>,
    /// Dense difficulty weights added for the predicted intent (one row per intent, then one per
    /// intent for prompts with answer choices: see `features::gate`).
    pub difficulty_by_intent: Vec<Vec<f32>>,
    /// Every hashed bucket's weights, bucket-major (difficulty, then each intent), quantized to
    /// little-endian `i16` and base64-encoded; weight = value × `hashed_scale[output]`.
    pub hashed: String,
    pub hashed_scale: Vec<f32>,
    /// Difficulty scores of the training prompts at every percentile (0..=100), so a score can be
    /// read as "the share of traffic that is harder than this".
    pub quantiles: Vec<f32>,
    /// Expected gain of the strong model over the cheap one per intent (outcomes on a 0..1
    /// scale): measured on labelled rows of the intent, or a prior (see `train::PRIORS`).
    #[serde(default)]
    pub intent_gain: std::collections::BTreeMap<String, f32>,
    /// The expected gain over all labelled rows: an intent with this gain weighs 1.
    #[serde(default)]
    pub mean_gain: f32,
    pub training: TrainingInfo,
}

/// An intent counts (for weights and specialists) only when the classifier is at least this sure.
pub const INTENT_CONFIDENCE: f32 = 0.5;

pub const FORMAT: &str = "switchyard-router";

/// A loaded model, ready to score.
#[derive(Debug, Clone)]
pub struct RouterModel {
    pub hash_bits: u32,
    pub intents: Vec<String>,
    outputs: usize,
    dense_mean: Vec<f32>,
    dense_scale: Vec<f32>,
    dense: Vec<Vec<f32>>,
    difficulty_by_intent: Vec<Vec<f32>>,
    /// `2^hash_bits × outputs` weights, bucket-major.
    hashed: Vec<f32>,
    pub quantiles: Vec<f32>,
    /// Per intent: how much of a route's strong share it gets by default (its expected gain
    /// over the mean; 1 without gains in the file).
    pub intent_weights: Vec<f64>,
    pub training: TrainingInfo,
}

/// Standard base64 with padding (the model file's encoding of its hashed weights).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// What the model says about one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// How much the strong model is expected to do better than the weak one (0..1; 0.5: no
    /// difference), as the model was trained (`--target`).
    pub difficulty: f32,
    /// Share of training prompts scoring at or below this one (0..1): 0.9 = harder than 90 %.
    pub percentile: f32,
    pub intent: usize,
    pub intent_confidence: f32,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl RouterModel {
    pub fn from_file(f: ModelFile) -> Result<RouterModel, String> {
        if f.format != FORMAT || f.version != 1 {
            return Err(format!(
                "not a version-1 {FORMAT} model (format `{}`, version {})",
                f.format, f.version
            ));
        }
        if f.dense_features != DENSE {
            return Err("the model was trained on a different feature set; retrain it with this version".into());
        }
        if !(8..=22).contains(&f.hash_bits) {
            return Err(format!("hash_bits {} is out of range 8..=22", f.hash_bits));
        }
        let outputs = 1 + f.intents.len();
        if f.intents.is_empty()
            || f.dense.len() != outputs
            || f.dense.iter().any(|d| d.len() != DENSE.len())
            || f.difficulty_by_intent.len() != 2 * f.intents.len()
            || f.difficulty_by_intent.iter().any(|d| d.len() != DENSE.len())
            || f.dense_mean.len() != DENSE.len()
            || f.dense_scale.len() != DENSE.len()
            || f.dense_scale.iter().any(|s| *s <= 0.0)
        {
            return Err("the model's weight shapes do not match its intents and features".into());
        }
        let buckets = 1usize << f.hash_bits;
        let bytes = base64_decode(&f.hashed).ok_or("the hashed weights are not base64")?;
        if bytes.len() != buckets * outputs * 2 || f.hashed_scale.len() != outputs {
            return Err("the hashed weights do not match hash_bits and the intents".into());
        }
        let hashed: Vec<f32> = bytes
            .chunks_exact(2)
            .enumerate()
            .map(|(i, b)| f32::from(i16::from_le_bytes([b[0], b[1]])) * f.hashed_scale[i % outputs])
            .collect();
        if f.quantiles.len() != 101 || f.quantiles.windows(2).any(|w| w[0] > w[1]) {
            return Err("quantiles must be 101 ascending scores".into());
        }
        if f.intent_gain.values().any(|g| !g.is_finite()) || !f.mean_gain.is_finite() {
            return Err("intent gains must be finite numbers".into());
        }
        let intent_weights = f
            .intents
            .iter()
            .map(|i| gain_weight(f.intent_gain.get(i).copied(), f.mean_gain))
            .collect();
        Ok(RouterModel {
            intent_weights,
            hash_bits: f.hash_bits,
            intents: f.intents,
            outputs,
            dense_mean: f.dense_mean,
            dense_scale: f.dense_scale,
            dense: f.dense,
            difficulty_by_intent: f.difficulty_by_intent,
            hashed,
            quantiles: f.quantiles,
            training: f.training,
        })
    }

    pub fn load(path: &Path) -> Result<RouterModel, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let f: ModelFile =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a router model: {e}", path.display()))?;
        RouterModel::from_file(f).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Raw outputs (logits) for every output.
    fn logits(&self, dense: &[f32], hashed: &[u32]) -> Vec<f32> {
        let mut out: Vec<f32> = self
            .dense
            .iter()
            .map(|w| w.iter().zip(dense).map(|(a, b)| a * b).sum())
            .collect();
        for &h in hashed {
            let base = h as usize * self.outputs;
            if let Some(ws) = self.hashed.get(base..base + self.outputs) {
                for (o, w) in out.iter_mut().zip(ws) {
                    *o += w;
                }
            }
        }
        out
    }

    /// Scores raw features (as [`Features::of`] makes them).
    pub fn predict(&self, raw: &Features) -> Prediction {
        let dense: Vec<f32> = raw
            .dense
            .iter()
            .zip(self.dense_mean.iter().zip(&self.dense_scale))
            .enumerate()
            .map(|(i, (x, (m, s)))| if i == 0 { *x } else { (x - m) / s })
            .collect();
        let logits = self.logits(&dense, &raw.hashed);
        let intent_logits = &logits[1..];
        let max = intent_logits.iter().copied().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = intent_logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let (intent, best) = exps
            .iter()
            .enumerate()
            .fold((0, 0.0f32), |(bi, bv), (i, v)| if *v > bv { (i, *v) } else { (bi, bv) });
        let gated: f32 = self.difficulty_by_intent[gate(intent, self.intents.len(), raw)]
            .iter()
            .zip(&dense)
            .map(|(w, x)| w * x)
            .sum();
        let difficulty = sigmoid(logits[0] + gated);
        Prediction {
            difficulty,
            percentile: self.percentile(difficulty),
            intent,
            intent_confidence: best / sum,
        }
    }

    /// The default intent weight for a prediction: its intent's, when the classifier is sure.
    pub fn intent_weight(&self, p: &Prediction) -> f64 {
        if p.intent_confidence >= INTENT_CONFIDENCE {
            self.intent_weights.get(p.intent).copied().unwrap_or(1.0)
        } else {
            1.0
        }
    }

    /// How strongly a prompt calls for the strong model, as a route with default settings ranks
    /// it: it goes strong when `percentile ≥ 1 − share × weight`, that is in the order of
    /// `weight / (1 − percentile)`. This is the score `router eval` reports.
    pub fn routing_score(&self, p: &Prediction) -> f64 {
        rank_score(self.intent_weight(p), f64::from(p.percentile))
    }

    /// The share of training prompts that scored at or below `score`.
    pub fn percentile(&self, score: f32) -> f32 {
        let q = &self.quantiles;
        if score <= q[0] {
            return 0.0;
        }
        if score >= q[100] {
            return 1.0;
        }
        let i = q.partition_point(|v| *v <= score).clamp(1, 100);
        let (lo, hi) = (q[i - 1], q[i]);
        let within = if hi > lo { (score - lo) / (hi - lo) } else { 1.0 };
        ((i - 1) as f32 + within) / 100.0
    }
}

/// An intent's default weight: its expected gain over the mean (1 when either is unknown).
pub fn gain_weight(gain: Option<f32>, mean_gain: f32) -> f64 {
    match gain {
        Some(g) if mean_gain > 0.0 => (f64::from(g) / f64::from(mean_gain)).clamp(0.0, 10.0),
        _ => 1.0,
    }
}

/// `weight / (1 − percentile)`, finite at the top percentile.
pub fn rank_score(weight: f64, percentile: f64) -> f64 {
    weight / (1.0 - percentile.clamp(0.0, 1.0) + 1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes, "{len}");
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert!(base64_decode("T!==").is_none());
    }
}
