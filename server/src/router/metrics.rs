//! Routing quality metrics, defined exactly as RouteLLM's APGR and CPT (and as
//! `routing_metrics.py`, the reference script, computes them): route the k highest-scoring
//! prompts to the strong model for every k and trace quality against the share of strong calls.

use serde::Serialize;

/// One labelled prompt: whether each model answered it well, and the router's score.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub weak_ok: f64,
    pub strong_ok: f64,
    /// Strong right and weak wrong; `None` when that is not known.
    pub needs_strong: Option<bool>,
    pub score: f64,
}

/// The metrics of one source, rounded as the reference prints them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Report {
    pub n: usize,
    #[serde(rename = "APGR")]
    pub apgr: f64,
    #[serde(rename = "CPT50_pct")]
    pub cpt50_pct: f64,
    #[serde(rename = "CPT80_pct")]
    pub cpt80_pct: f64,
    pub strong_at_95_pct: f64,
    #[serde(rename = "AUROC")]
    pub auroc: f64,
}

/// Rounds like Python's `round(x, digits)` for the values seen here (correctly rounded decimal).
fn round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

/// Computes the report. Ties in score keep the input order, as a stable sort does.
pub fn report(items: &[Outcome]) -> Report {
    let n = items.len();
    let nf = n.max(1) as f64;
    let mut order: Vec<usize> = (0..n).collect();
    // Equal scores keep their order, as Python's stable sort does; NaN sorts last, not by panic.
    order.sort_by(|&a, &b| {
        let (x, y) = (items[b].score, items[a].score);
        x.partial_cmp(&y).unwrap_or_else(|| x.total_cmp(&y))
    });
    let weak_total: f64 = items.iter().map(|x| x.weak_ok).sum();
    let strong_total: f64 = items.iter().map(|x| x.strong_ok).sum();
    let (q_weak, q_strong) = (weak_total / nf, strong_total / nf);
    let mut points = Vec::with_capacity(n + 1);
    let mut total = weak_total;
    points.push((0.0, total / nf));
    for (k, &i) in order.iter().enumerate() {
        total += items[i].strong_ok - items[i].weak_ok;
        points.push(((k + 1) as f64 / nf, total / nf));
    }
    let gap = q_strong - q_weak;
    let pgr: Vec<(f64, f64)> = points.iter().map(|&(f, q)| (f, (q - q_weak) / gap)).collect();
    let apgr: f64 = (1..pgr.len())
        .map(|i| (pgr[i].0 - pgr[i - 1].0) * (pgr[i].1 + pgr[i - 1].1) / 2.0)
        .sum();
    let cpt = |x: f64| pgr.iter().find(|(_, p)| *p >= x - 1e-12).map_or(f64::NAN, |(f, _)| *f);
    let strong_at_95 = points
        .iter()
        .find(|(_, q)| *q >= 0.95 * q_strong - 1e-12)
        .map_or(1.0, |(f, _)| *f);
    let pos: Vec<f64> = items
        .iter()
        .filter(|x| x.needs_strong == Some(true))
        .map(|x| x.score)
        .collect();
    let neg: Vec<f64> = items
        .iter()
        .filter(|x| x.needs_strong == Some(false))
        .map(|x| x.score)
        .collect();
    Report {
        n,
        apgr: round(apgr, 3),
        cpt50_pct: round(100.0 * cpt(0.5), 1),
        cpt80_pct: round(100.0 * cpt(0.8), 1),
        strong_at_95_pct: round(100.0 * strong_at_95, 1),
        auroc: round(auroc(&pos, &neg), 3),
    }
}

/// Area under the ROC curve by the rank-sum, ties sharing their average rank.
pub fn auroc(pos: &[f64], neg: &[f64]) -> f64 {
    let mut values: Vec<(f64, bool)> = pos
        .iter()
        .map(|v| (*v, true))
        .chain(neg.iter().map(|v| (*v, false)))
        .collect();
    values.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1].0 == values[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * values[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let (p, q) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * q).max(1.0)
}

/// Accuracy and macro-F1 of predicted against true labels.
pub fn classification(truth: &[&str], predicted: &[&str]) -> (f64, f64) {
    let n = truth.len().max(1) as f64;
    let correct = truth.iter().zip(predicted).filter(|(a, b)| a == b).count() as f64;
    let mut labels: Vec<&str> = truth.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let f1s: Vec<f64> = labels
        .iter()
        .map(|l| {
            let tp = truth.iter().zip(predicted).filter(|(t, p)| *t == l && *p == l).count() as f64;
            let fp = truth.iter().zip(predicted).filter(|(t, p)| *t != l && *p == l).count() as f64;
            let fn_ = truth.iter().zip(predicted).filter(|(t, p)| *t == l && *p != l).count() as f64;
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            }
        })
        .collect();
    (correct / n, f1s.iter().sum::<f64>() / f1s.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(weak: bool, strong: bool, score: f64) -> Outcome {
        Outcome {
            weak_ok: f64::from(u8::from(weak)),
            strong_ok: f64::from(u8::from(strong)),
            needs_strong: Some(strong && !weak),
            score,
        }
    }

    #[test]
    fn a_perfect_router_and_a_backwards_one() {
        // Two prompts need the strong model, two do not.
        let perfect = [
            o(false, true, 0.9),
            o(false, true, 0.8),
            o(true, true, 0.2),
            o(true, true, 0.1),
        ];
        let r = report(&perfect);
        assert_eq!((r.cpt50_pct, r.cpt80_pct, r.auroc), (25.0, 50.0, 1.0));
        let backwards = [
            o(false, true, 0.1),
            o(false, true, 0.2),
            o(true, true, 0.8),
            o(true, true, 0.9),
        ];
        let r = report(&backwards);
        assert_eq!((r.cpt50_pct, r.auroc), (75.0, 0.0));
        assert!(report(&perfect).apgr > r.apgr);
    }

    #[test]
    fn auroc_shares_ties() {
        assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
        assert_eq!(auroc(&[2.0, 3.0], &[1.0]), 1.0);
    }

    #[test]
    fn macro_f1_weighs_classes_equally() {
        let (acc, f1) = classification(&["a", "a", "a", "b"], &["a", "a", "a", "a"]);
        assert_eq!(acc, 0.75);
        assert!((f1 - (6.0 / 7.0) / 2.0).abs() < 1e-12);
    }
}
