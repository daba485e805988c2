//! Training the router's model from labelled prompts: logistic regression for "needs the strong
//! model" and multinomial logistic regression for the intent, both by AdaGrad over sparse
//! features, deterministic for a given seed. Cross-validation reports out-of-fold routing metrics
//! so the numbers describe prompts the model did not see.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::features::{gate, Conversation, Features, DENSE};
use super::metrics::{report, Outcome, Report};
use super::model::{ModelFile, RouterModel, TrainingInfo, FORMAT};

/// One labelled prompt (the format of `train.jsonl`; unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// Defaults to `FILE:LINE`.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub source: String,
    pub prompt: String,
    #[serde(default)]
    pub intent: Option<String>,
    #[serde(default, deserialize_with = "outcome")]
    pub weak_ok: Option<f64>,
    #[serde(default, deserialize_with = "outcome")]
    pub strong_ok: Option<f64>,
    #[serde(default)]
    pub needs_strong: Option<bool>,
}

/// `true`/`false`, a number, or null.
fn outcome<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(b))),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    })
}

impl Row {
    /// Whether the row says how both models did.
    pub fn has_outcome(&self) -> bool {
        self.weak_ok.is_some() && self.strong_ok.is_some()
    }

    /// The "needs the strong model" label: given, or strong right and weak wrong.
    pub fn needs(&self) -> Option<bool> {
        let derived = match (self.weak_ok, self.strong_ok) {
            (Some(w), Some(s)) => Some(s > 0.5 && w < 0.5),
            _ => None,
        };
        self.needs_strong.or(derived)
    }
}

/// Reads JSON Lines rows; a bad line is an error naming the file and line.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut row: Row = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if row.id.is_empty() {
            row.id = format!("{}:{}", path.display(), i + 1);
        }
        if row.source.is_empty() {
            // Rows without a source are reported under their file's name.
            row.source = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        rows.push(row);
    }
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub hash_bits: u32,
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
    /// Cross-validation folds for the report (0 or 1: none).
    pub folds: usize,
    /// What the difficulty score learns to predict.
    pub target: Target,
    /// Learning rate of n-gram weights relative to dense ones (below 1: n-grams, which are many
    /// and sparse, move more slowly and overfit less).
    pub ngram_rate: f32,
    /// Learning rate of the intent classifier.
    pub intent_learning_rate: f32,
}

/// The label the difficulty score is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Strong right and weak wrong (what routing gains from).
    NeedsStrong,
    /// The weak model got it wrong (more positives; routing gains only where strong is right).
    WeakFails,
    /// The expected gain of the strong model over the weak one, `(strong − weak + 1) / 2` as a
    /// soft label (0: only weak right, ½: both or neither, 1: only strong right): what the
    /// quality-versus-cost curve adds up.
    Gain,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hash_bits: 16,
            epochs: 6,
            learning_rate: 0.01,
            l2: 1e-5,
            seed: 20261123,
            folds: 5,
            target: Target::Gain,
            ngram_rate: 0.3,
            intent_learning_rate: 0.05,
        }
    }
}

/// What an intent without enough labelled rows is assumed to gain from the strong model.
#[derive(Debug, Clone, Copy)]
pub enum Prior {
    /// A gain on the 0..1 outcome scale.
    Fixed(f32),
    /// The gain measured for another intent.
    Like(&'static str),
}

/// Priors for the shipped intents. The shared data measures `knowledge` (MMLU) and `math`
/// (GSM8K); `code` takes the published HumanEval pass@1 gap between the two models the data
/// compares (GPT-4 Turbo 1106: 85.4 % on the EvalPlus leaderboard; Mixtral 8x7B: 40.2 % in its
/// paper); multi-step `reasoning` is assumed to gain like math, `extraction` like knowledge;
/// open-ended `writing` and `chat`, where both models give acceptable answers, little or nothing.
pub const PRIORS: &[(&str, Prior)] = &[
    ("code", Prior::Fixed(0.45)),
    ("reasoning", Prior::Like("math")),
    ("extraction", Prior::Like("knowledge")),
    ("writing", Prior::Fixed(0.02)),
    ("chat", Prior::Fixed(0.0)),
];

/// Labelled rows an intent needs for its gain to be measured rather than taken from a prior.
const MIN_ROWS_FOR_GAIN: usize = 30;

/// Each intent's expected gain (strong − weak outcome) and the mean over all labelled rows.
fn intent_gains(rows: &[Row], intents: &[String]) -> (BTreeMap<String, f32>, f32) {
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    let (mut total, mut n) = (0f64, 0usize);
    for r in rows {
        if let (Some(w), Some(s)) = (r.weak_ok, r.strong_ok) {
            total += s - w;
            n += 1;
            if let Some(i) = &r.intent {
                let e = sums.entry(i).or_default();
                e.0 += s - w;
                e.1 += 1;
            }
        }
    }
    let mean = if n > 0 { (total / n as f64) as f32 } else { 0.0 };
    let measured = |i: &str| {
        sums.get(i)
            .filter(|(_, k)| *k >= MIN_ROWS_FOR_GAIN)
            .map(|(t, k)| (t / *k as f64) as f32)
    };
    let gains = intents
        .iter()
        .map(|i| {
            let prior = PRIORS.iter().find(|(name, _)| name == i).map(|(_, p)| *p);
            let g = measured(i)
                .or(match prior {
                    Some(Prior::Fixed(g)) => Some(g),
                    Some(Prior::Like(other)) => measured(other),
                    None => None,
                })
                .unwrap_or(mean);
            (i.clone(), (g * 1e4).round() / 1e4)
        })
        .collect();
    (gains, (mean * 1e4).round() / 1e4)
}

/// Weights of one or more outputs over dense and hashed features, with AdaGrad state.
struct Learner {
    outputs: usize,
    ngram_rate: f32,
    dense: Vec<f32>,
    dense_g: Vec<f32>,
    /// Dense weights per intent (difficulty only): length and structure mean different things
    /// for a math word problem and for a knowledge question.
    gated: Vec<f32>,
    gated_g: Vec<f32>,
    hashed: Vec<f32>,
    hashed_g: Vec<f32>,
}

impl Learner {
    fn new(outputs: usize, hash_bits: u32) -> Learner {
        let n = (1usize << hash_bits) * outputs;
        Learner {
            outputs,
            ngram_rate: 1.0,
            dense: vec![0.0; DENSE.len() * outputs],
            dense_g: vec![0.0; DENSE.len() * outputs],
            gated: Vec::new(),
            gated_g: Vec::new(),
            hashed: vec![0.0; n],
            hashed_g: vec![0.0; n],
        }
    }

    fn with_gates(mut self, gates: usize) -> Learner {
        self.gated = vec![0.0; gates * DENSE.len()];
        self.gated_g = vec![0.0; gates * DENSE.len()];
        self
    }

    /// The difficulty logit with the dense weights of intent `gate` added.
    fn gated_logit(&self, f: &Features, gate: usize) -> f32 {
        let g = &self.gated[gate * DENSE.len()..(gate + 1) * DENSE.len()];
        self.logits(f)[0] + f.dense.iter().zip(g).map(|(x, w)| x * w).sum::<f32>()
    }

    fn gated_step(&mut self, f: &Features, gate: usize, err: f32, lr: f32, l2: f32) {
        self.step(f, &[err], 1.0, lr, l2);
        for (i, x) in f.dense.iter().enumerate() {
            let k = gate * DENSE.len() + i;
            let g = err * x + l2 * self.gated[k];
            self.gated_g[k] += g * g;
            self.gated[k] -= lr * g / (self.gated_g[k].sqrt() + 1e-6);
        }
    }

    fn logits(&self, f: &Features) -> Vec<f32> {
        let mut out = vec![0f32; self.outputs];
        for (o, v) in out.iter_mut().enumerate() {
            *v = f
                .dense
                .iter()
                .enumerate()
                .map(|(i, x)| x * self.dense[o * DENSE.len() + i])
                .sum();
        }
        for &h in &f.hashed {
            let base = h as usize * self.outputs;
            for (o, v) in out.iter_mut().enumerate() {
                *v += self.hashed[base + o];
            }
        }
        out
    }

    /// One AdaGrad step with per-output errors `err` (prediction − target), scaled by `weight`.
    fn step(&mut self, f: &Features, err: &[f32], weight: f32, lr: f32, l2: f32) {
        let ngram_lr = lr * self.ngram_rate;
        for (o, e) in err.iter().enumerate() {
            let e = e * weight;
            for (i, x) in f.dense.iter().enumerate() {
                let k = o * DENSE.len() + i;
                let g = e * x + l2 * self.dense[k];
                self.dense_g[k] += g * g;
                self.dense[k] -= lr * g / (self.dense_g[k].sqrt() + 1e-6);
            }
            for &h in &f.hashed {
                let k = h as usize * self.outputs + o;
                let g = e + l2 * self.hashed[k];
                self.hashed_g[k] += g * g;
                self.hashed[k] -= ngram_lr * g / (self.hashed_g[k].sqrt() + 1e-6);
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    idx
}

/// Difficulty examples: features, intent gate, label.
fn train_difficulty(examples: &[(&Features, usize, f32)], gates: usize, opts: &Options) -> Learner {
    let mut l = Learner::new(1, opts.hash_bits).with_gates(gates);
    l.ngram_rate = opts.ngram_rate;
    for epoch in 0..opts.epochs {
        for i in shuffled(examples.len(), opts.seed ^ epoch as u64) {
            let (f, gate, y) = examples[i];
            let p = sigmoid(l.gated_logit(f, gate));
            l.gated_step(f, gate, p - y, opts.learning_rate, opts.l2);
        }
    }
    l
}

/// The intent a row is gated by: its label when it has one, else the classifier's guess.
fn gate_of(row: &Row, intents: &[String], classifier: &Learner, f: &Features) -> usize {
    let intent = row
        .intent
        .as_ref()
        .and_then(|t| intents.binary_search(t).ok())
        .unwrap_or_else(|| argmax(&classifier.logits(f)));
    gate(intent, intents.len(), f)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, x)| if *x > bv { (i, *x) } else { (bi, bv) },
        )
        .0
}

fn train_intent(examples: &[(&Features, usize)], classes: usize, opts: &Options) -> Learner {
    // Classes are weighted to count equally: the benchmark rows are mostly one intent.
    let mut counts = vec![0usize; classes];
    for (_, c) in examples {
        counts[*c] += 1;
    }
    let n = examples.len() as f32;
    let weights: Vec<f32> = counts
        .iter()
        .map(|c| {
            if *c == 0 {
                0.0
            } else {
                (n / (classes as f32 * *c as f32)).min(20.0)
            }
        })
        .collect();
    let mut l = Learner::new(classes, opts.hash_bits);
    for epoch in 0..opts.epochs {
        for i in shuffled(examples.len(), opts.seed ^ (epoch as u64).wrapping_mul(31)) {
            let (f, c) = examples[i];
            let mut err = softmax(&l.logits(f));
            err[c] -= 1.0;
            l.step(f, &err, weights[c], opts.intent_learning_rate, opts.l2);
        }
    }
    l
}

/// Trains a model from `rows` (difficulty from rows with outcomes, intent from rows with an
/// intent); with `opts.folds` > 1 also cross-validates and records out-of-fold metrics.
pub fn train(rows: &[Row], opts: &Options) -> Result<(ModelFile, BTreeMap<String, Report>), String> {
    let mut features: Vec<Features> = rows
        .iter()
        .map(|r| Features::of(&Conversation::prompt(&r.prompt), opts.hash_bits))
        .collect();
    // Dense features are standardized, so each moves its weight at the same pace.
    let n = features.len().max(1) as f32;
    let mut mean = vec![0f32; DENSE.len()];
    let mut scale = vec![1f32; DENSE.len()];
    for i in 1..DENSE.len() {
        mean[i] = features.iter().map(|f| f.dense[i]).sum::<f32>() / n;
        let var = features.iter().map(|f| (f.dense[i] - mean[i]).powi(2)).sum::<f32>() / n;
        scale[i] = if var.sqrt() > 1e-3 { var.sqrt() } else { 1.0 };
    }
    // (Stored as the f32 values themselves, so serving standardizes exactly as training did: a
    // constant feature stays exactly 0 and learns nothing.)
    let raw = features.clone();
    for f in &mut features {
        f.standardize(&mean, &scale);
    }
    let diff: Vec<(usize, f32)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.has_outcome())
        .filter_map(|(i, r)| match opts.target {
            Target::NeedsStrong => r.needs().map(|y| (i, f32::from(u8::from(y)))),
            Target::WeakFails => r.weak_ok.map(|w| (i, f32::from(u8::from(w < 0.5)))),
            Target::Gain => match (r.weak_ok, r.strong_ok) {
                (Some(w), Some(s)) => Some((i, ((s - w + 1.0) / 2.0).clamp(0.0, 1.0) as f32)),
                _ => None,
            },
        })
        .collect();
    if diff.is_empty() {
        return Err("no row has weak_ok and strong_ok: nothing to learn the difficulty score from".into());
    }
    let mut intents: Vec<String> = rows.iter().filter_map(|r| r.intent.clone()).collect();
    intents.sort();
    intents.dedup();
    if intents.len() < 2 {
        return Err("rows need at least two different intents to learn the intent classifier".into());
    }
    let intent_rows: Vec<(usize, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.intent
                .as_ref()
                .map(|t| (i, intents.binary_search(t).expect("collected above")))
        })
        .collect();

    let (intent_gain, mean_gain) = intent_gains(rows, &intents);
    let weight_of = |intent: usize| super::model::gain_weight(intent_gain.get(&intents[intent]).copied(), mean_gain);
    let intent_set: Vec<(&Features, usize)> = intent_rows.iter().map(|&(i, c)| (&features[i], c)).collect();
    let t = train_intent(&intent_set, intents.len(), opts);
    let gates: Vec<usize> = diff
        .iter()
        .map(|&(i, _)| gate_of(&rows[i], &intents, &t, &features[i]))
        .collect();

    // Cross-validation of the difficulty score.
    let mut cv = BTreeMap::new();
    if opts.folds > 1 {
        let order = shuffled(diff.len(), opts.seed.wrapping_add(1));
        let mut oof = vec![0f64; diff.len()];
        // The default intent weight of each held-out row, from its fold's intent classifier.
        let mut oof_weight = vec![1f64; diff.len()];
        for fold in 0..opts.folds {
            // The fold's held-out rows are unseen by both models: the intent classifier that
            // gates them is trained without them too.
            let held_out: std::collections::HashSet<usize> = order
                .iter()
                .enumerate()
                .filter(|(k, _)| k % opts.folds == fold)
                .map(|(_, &j)| diff[j].0)
                .collect();
            let fold_intents: Vec<(&Features, usize)> = intent_rows
                .iter()
                .filter(|(i, _)| !held_out.contains(i))
                .map(|&(i, c)| (&features[i], c))
                .collect();
            let fold_t = train_intent(&fold_intents, intents.len(), opts);
            let train_set: Vec<(&Features, usize, f32)> = order
                .iter()
                .enumerate()
                .filter(|(k, _)| k % opts.folds != fold)
                .map(|(_, &j)| (&features[diff[j].0], gates[j], diff[j].1))
                .collect();
            let l = train_difficulty(&train_set, 2 * intents.len(), opts);
            for (k, &j) in order.iter().enumerate() {
                if k % opts.folds == fold {
                    // Held-out rows are gated by the predicted intent, as at serving time.
                    let f = &features[diff[j].0];
                    let logits = fold_t.logits(f);
                    let intent = argmax(&logits);
                    oof[j] = f64::from(sigmoid(l.gated_logit(f, gate(intent, intents.len(), f))));
                    if softmax(&logits)[intent] >= super::model::INTENT_CONFIDENCE {
                        oof_weight[j] = weight_of(intent);
                    }
                }
            }
        }
        // Scored as a route ranks: intent weight / (1 − percentile among the out-of-fold scores).
        let mut sorted = oof.clone();
        sorted.sort_by(f64::total_cmp);
        let pct = |v: f64| sorted.partition_point(|x| *x <= v) as f64 / sorted.len() as f64;
        let scores: Vec<f64> = oof
            .iter()
            .zip(&oof_weight)
            .map(|(&v, &w)| super::model::rank_score(w, pct(v)))
            .collect();
        let mut by_source: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
        for (j, &(i, _)) in diff.iter().enumerate() {
            let r = &rows[i];
            by_source.entry(&r.source).or_default().push(Outcome {
                weak_ok: r.weak_ok.unwrap_or(0.0),
                strong_ok: r.strong_ok.unwrap_or(0.0),
                // As the reference script: only an explicit label counts for AUROC.
                needs_strong: r.needs_strong,
                score: scores[j],
            });
        }
        for (s, items) in by_source {
            cv.insert(s.to_string(), report(&items));
        }
    }

    let diff_set: Vec<(&Features, usize, f32)> = diff
        .iter()
        .zip(&gates)
        .map(|(&(i, y), &g)| (&features[i], g, y))
        .collect();
    let d = train_difficulty(&diff_set, 2 * intents.len(), opts);

    let outputs = 1 + intents.len();
    let round = |w: f32| (w * 1e4).round() / 1e4;
    let mut dense = vec![d.dense.iter().map(|w| round(*w)).collect::<Vec<f32>>()];
    for c in 0..intents.len() {
        dense.push(
            t.dense[c * DENSE.len()..(c + 1) * DENSE.len()]
                .iter()
                .map(|w| round(*w))
                .collect(),
        );
    }
    let difficulty_by_intent: Vec<Vec<f32>> = (0..2 * intents.len())
        .map(|c| {
            d.gated[c * DENSE.len()..(c + 1) * DENSE.len()]
                .iter()
                .map(|w| round(*w))
                .collect()
        })
        .collect();
    // Hashed weights, bucket-major, quantized to i16 per output.
    let buckets = 1usize << opts.hash_bits;
    let weight = |b: usize, o: usize| {
        if o == 0 {
            d.hashed[b]
        } else {
            t.hashed[b * intents.len() + o - 1]
        }
    };
    let hashed_scale: Vec<f32> = (0..outputs)
        .map(|o| (0..buckets).map(|b| weight(b, o).abs()).fold(0f32, f32::max).max(1e-6) / 32767.0)
        .collect();
    let mut bytes = Vec::with_capacity(buckets * outputs * 2);
    for b in 0..buckets {
        for (o, scale) in hashed_scale.iter().enumerate() {
            let q = (weight(b, o) / scale).round().clamp(-32767.0, 32767.0) as i16;
            bytes.extend_from_slice(&q.to_le_bytes());
        }
    }
    let hashed = super::model::base64_encode(&bytes);
    let mut file = ModelFile {
        format: FORMAT.into(),
        version: 1,
        hash_bits: opts.hash_bits,
        dense_features: DENSE.iter().map(|s| s.to_string()).collect(),
        intents,
        dense_mean: mean,
        dense_scale: scale,
        dense,
        difficulty_by_intent,
        hashed,
        hashed_scale,
        quantiles: vec![0.0; 101],
        intent_gain,
        mean_gain,
        training: TrainingInfo {
            rows: diff.len(),
            intent_rows: intent_rows.len(),
            cross_validation: serde_json::to_value(&cv).unwrap_or_default(),
        },
    };
    // Percentiles of the final model's scores on the training prompts.
    let model = RouterModel::from_file(ModelFile {
        quantiles: (0..=100).map(|i| i as f32).collect(),
        ..file.clone()
    })?;
    let mut scores: Vec<f32> = diff.iter().map(|&(i, _)| model.predict(&raw[i]).difficulty).collect();
    scores.sort_by(f32::total_cmp);
    file.quantiles = (0..=100).map(|p| scores[((scores.len() - 1) * p) / 100]).collect();
    Ok((file, cv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: usize, prompt: &str, intent: &str, weak: Option<bool>) -> Row {
        Row {
            id: id.to_string(),
            source: "t".into(),
            prompt: prompt.into(),
            intent: Some(intent.into()),
            weak_ok: weak.map(|w| f64::from(u8::from(w))),
            strong_ok: weak.map(|_| 1.0),
            // The strong model always answers: the prompt needs it exactly when the weak one fails.
            needs_strong: weak.map(|w| !w),
        }
    }

    #[test]
    fn learns_a_separable_signal_and_round_trips_through_the_file() {
        // "quantum" prompts need the strong model, "apple" prompts do not.
        let mut rows = Vec::new();
        for i in 0..200 {
            let hard = i % 2 == 0;
            let p = if hard {
                format!("explain quantum field renormalization case {i}")
            } else {
                format!("what color is an apple number {i}")
            };
            rows.push(row(i, &p, if hard { "knowledge" } else { "chat" }, Some(!hard)));
        }
        let opts = Options {
            hash_bits: 12,
            folds: 4,
            ..Options::default()
        };
        let (file, cv) = train(&rows, &opts).unwrap();
        assert!(cv["t"].auroc > 0.95, "{cv:?}");
        let text = serde_json::to_string(&file).unwrap();
        let model = RouterModel::from_file(serde_json::from_str(&text).unwrap()).unwrap();
        let hard = model.predict(&Features::of(&Conversation::prompt("explain quantum field theory"), 12));
        let easy = model.predict(&Features::of(&Conversation::prompt("what color is an apple"), 12));
        assert!(hard.difficulty > easy.difficulty && hard.percentile > easy.percentile);
        assert_eq!(model.intents[hard.intent], "knowledge");
        assert_eq!(model.intents[easy.intent], "chat");
    }

    #[test]
    fn the_gain_target_ranks_prompts_where_the_weak_model_wins_last() {
        // "quantum": only strong is right; "apple": both are; "riddle": only weak is right.
        let mut rows = Vec::new();
        for i in 0..300 {
            let (p, w, s) = match i % 3 {
                0 => (format!("explain quantum field renormalization {i}"), 0.0, 1.0),
                1 => (format!("what color is an apple {i}"), 1.0, 1.0),
                _ => (format!("solve this riddle about mirrors {i}"), 1.0, 0.0),
            };
            let mut r = row(i, &p, "knowledge", Some(true));
            r.weak_ok = Some(w);
            r.strong_ok = Some(s);
            r.needs_strong = Some(w < 0.5 && s > 0.5);
            rows.push(r);
        }
        rows.push(row(300, "hello there", "chat", None));
        let score = |target: Target, prompt: &str| {
            let opts = Options {
                hash_bits: 12,
                folds: 0,
                target,
                epochs: 20,
                ..Options::default()
            };
            let model = RouterModel::from_file(train(&rows, &opts).unwrap().0).unwrap();
            model
                .predict(&Features::of(&Conversation::prompt(prompt), 12))
                .difficulty
        };
        let (q, a, r) = (
            score(Target::Gain, "explain quantum field renormalization"),
            score(Target::Gain, "what color is an apple"),
            score(Target::Gain, "solve this riddle about mirrors"),
        );
        assert!(q > a && a > r, "gain: {q} > {a} > {r}");
        // "Needs strong" cannot tell the weak model's wins from ties.
        let (a, r) = (
            score(Target::NeedsStrong, "what color is an apple"),
            score(Target::NeedsStrong, "solve this riddle about mirrors"),
        );
        assert!((a - r).abs() < 0.1, "needs-strong: {a} vs {r}");
    }

    #[test]
    fn intent_gains_are_measured_where_labelled_and_taken_from_priors_elsewhere() {
        let mut rows = Vec::new();
        for k in 0..40 {
            // knowledge: strong right, weak right half the time (gain 0.5); math: gain 0.25.
            rows.push(Row {
                intent: Some("knowledge".into()),
                weak_ok: Some(if k % 2 == 0 { 0.0 } else { 1.0 }),
                strong_ok: Some(1.0),
                ..row(k, "q", "knowledge", None)
            });
            rows.push(Row {
                intent: Some("math".into()),
                weak_ok: Some(if k % 4 == 0 { 0.0 } else { 1.0 }),
                strong_ok: Some(1.0),
                ..row(k, "q", "math", None)
            });
        }
        // Too few labelled rows for code to be measured: its prior holds.
        for k in 0..5 {
            rows.push(Row {
                intent: Some("code".into()),
                weak_ok: Some(1.0),
                strong_ok: Some(1.0),
                ..row(k, "q", "code", None)
            });
        }
        let intents: Vec<String> = ["chat", "code", "extraction", "knowledge", "math", "reasoning", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (g, mean) = intent_gains(&rows, &intents);
        assert_eq!(mean, ((20.0 * 1.0 + 10.0 * 1.0) / 85.0f32 * 1e4).round() / 1e4);
        assert_eq!(g["knowledge"], 0.5);
        assert_eq!(g["math"], 0.25);
        assert_eq!(g["code"], 0.45, "published prior");
        assert_eq!(g["reasoning"], 0.25, "like math");
        assert_eq!(g["extraction"], 0.5, "like knowledge");
        assert_eq!(g["chat"], 0.0);
        assert_eq!(g["other"], mean, "no prior: the mean, weight 1");
    }

    #[test]
    fn training_is_deterministic() {
        let rows: Vec<Row> = (0..50)
            .map(|i| {
                row(
                    i,
                    &format!("prompt {} words {}", i % 7, i % 3),
                    ["a", "b"][i % 2],
                    Some(i % 3 == 0),
                )
            })
            .collect();
        let opts = Options {
            hash_bits: 10,
            folds: 0,
            ..Options::default()
        };
        assert_eq!(train(&rows, &opts).unwrap().0, train(&rows, &opts).unwrap().0);
    }
}
