//! Response-cache entries kept across restarts: written in batches, read back on start, purged.

use sqlx::{AssertSqlSafe, Row};

use super::{push_placeholders, Result, Store};
use crate::records::cache::StoredEntry;

/// Entries written per statement at most (16 parameters each).
const ROWS_PER_INSERT: usize = 64;

/// What a purge of stored entries selects (every field given must match).
#[derive(Debug, Clone, Default)]
pub struct EntryFilter<'a> {
    pub scope: Option<&'a str>,
    pub target: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Only entries made before this time.
    pub created_before_ms: Option<i64>,
}

impl Store {
    /// Writes entries (a later one under the same key replaces the earlier) and deletes the ones
    /// expired at `now_ms`.
    pub async fn put_cache_entries(&self, entries: &[StoredEntry], now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO cache_entries (key, id, scope, target, model, body, cost_nanos, prompt_tokens, \
                 completion_tokens, tool_calls, created_ms, expires_ms, context_group, question, embedder, vector) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 16, self.backend);
            sql.push_str(
                " ON CONFLICT (key) DO UPDATE SET id = excluded.id, scope = excluded.scope, target = excluded.target, \
                 model = excluded.model, body = excluded.body, cost_nanos = excluded.cost_nanos, \
                 prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens, \
                 tool_calls = excluded.tool_calls, created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, \
                 context_group = excluded.context_group, question = excluded.question, \
                 embedder = excluded.embedder, vector = excluded.vector",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.key.as_str())
                    .bind(e.id.as_str())
                    .bind(e.scope.as_str())
                    .bind(e.target.as_str())
                    .bind(e.model.as_str())
                    .bind(e.body.as_str())
                    .bind(e.cost_nanos)
                    .bind(e.prompt_tokens)
                    .bind(e.completion_tokens)
                    .bind(i64::from(e.tool_calls))
                    .bind(e.created_ms)
                    .bind(e.expires_ms)
                    .bind(e.group.as_deref())
                    .bind(e.question.as_deref())
                    .bind(e.embedder.as_deref())
                    .bind(e.vector.as_deref());
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM cache_entries WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The entries live at `now_ms`, oldest first, at most `limit`.
    pub async fn live_cache_entries(&self, now_ms: i64, limit: i64) -> Result<Vec<StoredEntry>> {
        let rows = sqlx::query(
            "SELECT key, id, scope, target, model, body, cost_nanos, prompt_tokens, completion_tokens, tool_calls, \
             created_ms, expires_ms, context_group, question, embedder, vector FROM cache_entries WHERE expires_ms > $1 \
             ORDER BY created_ms, key LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredEntry {
                    key: r.try_get("key")?,
                    id: r.try_get("id")?,
                    scope: r.try_get("scope")?,
                    target: r.try_get("target")?,
                    model: r.try_get("model")?,
                    body: r.try_get("body")?,
                    cost_nanos: r.try_get("cost_nanos")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    tool_calls: r.try_get::<i64, _>("tool_calls")? != 0,
                    created_ms: r.try_get("created_ms")?,
                    expires_ms: r.try_get("expires_ms")?,
                    group: r.try_get("context_group")?,
                    question: r.try_get("question")?,
                    embedder: r.try_get("embedder")?,
                    vector: r.try_get("vector")?,
                })
            })
            .collect()
    }

    /// Deletes the stored entries `f` selects; returns how many.
    pub async fn delete_cache_entries(&self, f: &EntryFilter<'_>) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM cache_entries WHERE ($1 IS NULL OR scope = $1) AND ($2 IS NULL OR target = $2) \
             AND ($3 IS NULL OR model = $3) AND ($4 IS NULL OR created_ms < $4)",
        )
        .bind(f.scope)
        .bind(f.target)
        .bind(f.model)
        .bind(f.created_before_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}
