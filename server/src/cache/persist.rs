//! Entries kept across restarts (`cache.persist`): written behind the request path in batches,
//! loaded back into both tiers when the gateway starts. The in-process tiers stay first: a
//! lookup never waits for the database.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::exact::Entry;
use super::key::Digest256;
use super::{semantic, Cache};
use crate::proxy::lookup::Answer;
use crate::records::cache::StoredEntry;
use crate::records::usage::Usage;
use crate::store::Store;

/// Entries waiting to be written at most; beyond, new ones are not persisted (and counted).
pub const QUEUE: usize = 4096;

/// Entries loaded on start at most.
pub const LOAD_LIMIT: i64 = 1_000_000;

/// Entries written per transaction at most.
const BATCH: usize = 256;

fn vector_text(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn vector_of(text: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn digest_of(hex_text: &str) -> Option<Digest256> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// The row for an entry just kept.
pub fn row_of(
    key: &Digest256,
    e: &Entry,
    semantic: Option<(&Digest256, &str, &[f32])>,
    embedder: Option<&str>,
) -> StoredEntry {
    let ttl_ms = i64::try_from(e.ttl.as_millis()).unwrap_or(i64::MAX);
    StoredEntry {
        key: hex::encode(key),
        id: e.id.to_string(),
        scope: e.scope.to_string(),
        target: e.target.to_string(),
        model: e.answer.model.clone(),
        body: String::from_utf8_lossy(&e.answer.body).into_owned(),
        cost_nanos: e.answer.cost.0,
        prompt_tokens: i64::try_from(e.answer.usage.prompt_tokens).unwrap_or(i64::MAX),
        completion_tokens: i64::try_from(e.answer.usage.completion_tokens).unwrap_or(i64::MAX),
        tool_calls: e.answer.tool_calls,
        created_ms: e.created_ms,
        expires_ms: e.created_ms.saturating_add(ttl_ms),
        group: semantic.map(|(g, _, _)| hex::encode(g)),
        question: semantic.map(|(_, q, _)| q.to_string()),
        embedder: semantic.and(embedder).map(str::to_string),
        vector: semantic.map(|(_, _, v)| vector_text(v)),
    }
}

/// Writes what it receives in batches until every sender is gone or `stop` completes, then
/// writes what is left.
pub async fn write_behind(
    store: Store,
    mut rx: mpsc::Receiver<StoredEntry>,
    clock: Arc<dyn crate::clock::Clock>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        let mut batch = Vec::new();
        if stopping {
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
        } else {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(e) => batch.push(e),
                    None => stopping = true,
                },
                _ = &mut stop => stopping = true,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            let mut tries = 0;
            while let Err(e) = store.put_cache_entries(&batch, clock.now_ms()).await {
                tries += 1;
                tracing::warn!(error = %e, entries = batch.len(), "cannot persist cache entries");
                if tries >= 3 || stopping {
                    metrics::counter!("switchyard_cache_persist_dropped_total").increment(batch.len() as u64);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
        if stopping && rx.is_empty() {
            return;
        }
    }
}

impl Cache {
    /// Loads the live stored entries into both tiers (a question's vector only when the same
    /// embedder made it); returns how many entries were loaded.
    pub async fn warm_from(&self, store: &Store) -> Result<usize, String> {
        let inner = &self.inner;
        let rows = store
            .live_cache_entries(inner.clock.now_ms(), LOAD_LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        let embedder = inner.embedder.as_ref().map(|e| e.name().to_string());
        let mut loaded = 0;
        for r in rows {
            let Some(key) = digest_of(&r.key) else { continue };
            let ttl = Duration::from_millis(r.expires_ms.saturating_sub(r.created_ms).max(0) as u64);
            let answer = Answer {
                body: Bytes::from(r.body),
                model: r.model,
                usage: Usage {
                    prompt_tokens: r.prompt_tokens.max(0) as u64,
                    completion_tokens: r.completion_tokens.max(0) as u64,
                    cached_tokens: 0,
                },
                cost: crate::money::pricing::Nanos(r.cost_nanos),
                tool_calls: r.tool_calls,
            };
            let scope: Arc<str> = r.scope.into();
            let entry = Entry {
                id: r.id.into(),
                scope: scope.clone(),
                target: r.target.into(),
                answer: Arc::new(answer),
                created_ms: r.created_ms,
                ttl,
            };
            inner.exact.insert(key, Arc::new(entry));
            let same_embedder = embedder.is_some() && r.embedder == embedder;
            if let (true, Some(group), Some(question), Some(vector)) = (
                same_embedder,
                r.group.as_deref().and_then(digest_of),
                r.question,
                r.vector.as_deref().and_then(vector_of),
            ) {
                let item = semantic::Item {
                    key,
                    text: question.into(),
                };
                inner.index.insert(&scope, group, &vector, item);
            }
            loaded += 1;
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_digests_read_back_as_written() {
        let v = vec![0.25f32, -1.5, 3.0e-7, 0.0];
        assert_eq!(vector_of(&vector_text(&v)), Some(v));
        assert_eq!(vector_of("not base64!"), None);
        assert_eq!(
            vector_of(&base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3])),
            None
        );
        let d = [7u8; 32];
        assert_eq!(digest_of(&hex::encode(d)), Some(d));
        assert_eq!(digest_of("abcd"), None);
    }
}
