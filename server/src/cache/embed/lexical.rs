//! The lexical embedder: words, word pairs and character trigrams hashed into a fixed vector.
//! It needs no model and costs microseconds, but it only sees shared spelling, so it finds
//! light rewordings (case, punctuation, filler, word order) and few real paraphrases.

use sha2::{Digest, Sha256};

use super::{normalize, Embedder};

/// Dimensions of the hashed vector.
pub const DIM: usize = 512;

/// Words too common to say anything about a question.
const STOP: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "to", "of", "and", "or", "in", "on", "for", "at", "by", "it",
    "this", "that", "i", "me", "my", "you", "your", "we", "do", "does", "did", "can", "could", "would", "should",
    "please", "pls", "thanks", "thank", "hi", "hello", "hey", "so", "just", "what", "how", "whats",
];

pub struct Lexical;

fn bucket(feature: &str) -> (usize, f32) {
    let h = Sha256::digest(feature.as_bytes());
    let i = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize % DIM;
    let sign = if h[4] & 1 == 0 { 1.0 } else { -1.0 };
    (i, sign)
}

impl Embedder for Lexical {
    fn name(&self) -> &str {
        "lexical"
    }

    fn default_threshold(&self) -> f32 {
        0.8
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let mut v = vec![0.0f32; DIM];
        let lower = text.to_lowercase();
        let words: Vec<String> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !STOP.contains(w))
            .map(|w| w.strip_suffix('s').filter(|s| s.len() > 2).unwrap_or(w).to_string())
            .collect();
        let mut add = |f: &str, weight: f32| {
            let (i, sign) = bucket(f);
            v[i] += sign * weight;
        };
        for w in &words {
            add(&format!("w:{w}"), 1.0);
            let padded: Vec<char> = format!("<{w}>").chars().collect();
            for t in padded.windows(3) {
                add(&format!("c:{}", t.iter().collect::<String>()), 0.25);
            }
        }
        for p in words.windows(2) {
            add(&format!("b:{} {}", p[0], p[1]), 0.5);
        }
        normalize(&mut v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cosine;
    use super::*;

    #[test]
    fn light_rewordings_are_close_and_other_questions_are_not() {
        let e = Lexical;
        let v = |t: &str| e.embed(t).unwrap();
        let same = cosine(&v("How do I reset my password?"), &v("how do i reset my password??"));
        assert!(same > 0.99, "{same}");
        let filler = cosine(
            &v("How do I reset my password?"),
            &v("Hi! Please, how do I reset my password? Thanks"),
        );
        assert!(filler > 0.9, "{filler}");
        let other = cosine(&v("How do I reset my password?"), &v("What is the capital of France?"));
        assert!(other < 0.3, "{other}");
        assert_eq!(v("").iter().filter(|x| **x != 0.0).count(), 0);
        let norm: f32 = v("anything at all").iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
