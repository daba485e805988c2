//! Embedders for the semantic tier, behind one trait: the built-in local model
//! (all-MiniLM-L6-v2, [`local`]), any configured OpenAI-compatible embeddings deployment
//! ([`remote`]), and a cheap lexical fallback ([`lexical`]).
//!
//! Embedding is called on a blocking thread (never on the async executor), so the trait is
//! synchronous; the remote embedder waits for its HTTP call there.

pub mod lexical;
pub mod local;
pub mod remote;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{EmbedderKind, SemanticConfig};
use crate::proxy::gateway::Gateway;

/// Where the local model's files are when `model_dir` is not set (relative to the working
/// directory): where `scripts/fetch-model.sh` puts them.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// The configured embedder.
pub fn from_config(s: &SemanticConfig, gateway: &Gateway) -> Result<Arc<dyn Embedder>, String> {
    match s.embedder {
        EmbedderKind::Lexical => Ok(Arc::new(lexical::Lexical)),
        EmbedderKind::Local => {
            let dir = s.model_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR));
            Ok(Arc::new(local::Local::load(&dir)?))
        }
        EmbedderKind::Remote => {
            let name = s
                .model
                .as_deref()
                .ok_or("the remote embedder needs `cache.semantic.model`")?;
            let d = gateway
                .model(name)
                .and_then(|m| m.deployments.first())
                .ok_or_else(|| format!("the embedding model `{name}` has no deployment"))?;
            Ok(Arc::new(remote::Remote::new(name, d.clone())))
        }
    }
}

/// Turns a question into a unit vector; similar questions get a high dot product.
pub trait Embedder: Send + Sync + 'static {
    /// Which embedder this is, for statistics and the evaluation.
    fn name(&self) -> &str;
    /// The similarity a neighbour needs when the configuration names none.
    fn default_threshold(&self) -> f32;
    /// The vector of `text`, L2-normalised. Called on a blocking thread.
    fn embed(&self, text: &str) -> Result<Vec<f32>, String>;
}

/// Normalises `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

/// The dot product of two unit vectors: their cosine similarity. Eight running sums let the
/// compiler keep them in vector registers (one sum would have to add in order).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Embeds on a blocking thread.
pub async fn embed_off_executor(e: &Arc<dyn Embedder>, text: &str) -> Result<Vec<f32>, String> {
    let (e, text) = (e.clone(), text.to_string());
    tokio::task::spawn_blocking(move || e.embed(&text))
        .await
        .map_err(|err| format!("the embedding task failed: {err}"))?
}
