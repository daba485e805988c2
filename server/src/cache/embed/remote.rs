//! The remote embedder: a configured embedding model's first deployment, called over its
//! provider's API (any OpenAI-compatible `/embeddings`).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{normalize, Embedder};
use crate::proxy::gateway::Deployment;
use crate::proxy::request::EmbeddingsRequest;

pub struct Remote {
    model: String,
    deployment: Arc<Deployment>,
    name: String,
}

impl Remote {
    pub fn new(model: &str, deployment: Arc<Deployment>) -> Remote {
        Remote {
            name: format!("remote:{model}"),
            model: model.to_string(),
            deployment,
        }
    }
}

impl Embedder for Remote {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_threshold(&self) -> f32 {
        0.9
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let Value::Object(body) = json!({"model": self.model, "input": text}) else {
            unreachable!("a JSON object literal is an object")
        };
        let req = EmbeddingsRequest::from_body(body).map_err(|e| e.message)?;
        let call = self.deployment.embed(&req);
        // On a blocking thread of the runtime: wait here for the call.
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let answer = handle
            .block_on(call)
            .map_err(|e| format!("the embeddings call failed: {e:?}"))?;
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        let mut out: Vec<f32> = v["data"][0]["embedding"]
            .as_array()
            .ok_or("the embeddings answer has no vector")?
            .iter()
            .map(|x| x.as_f64().unwrap_or(0.0) as f32)
            .collect();
        if out.is_empty() {
            return Err("the embeddings answer has an empty vector".into());
        }
        normalize(&mut out);
        Ok(out)
    }
}
