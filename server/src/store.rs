//! Persistence: teams, keys, the usage ledger with hourly rollups, and budget spend with leases,
//! in SQLite (the embedded default) or Postgres through one set of portable SQL statements.
//!
//! The request path never calls this module directly: keys are cached, usage is written in
//! batches by the ledger writer, and budgets are spent from in-memory leases (`limits`).
//! Every integer is `BIGINT` and every statement uses `$n` parameters in order of first use,
//! which both databases accept, so the two backends run the same code and tests.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::clock::HOUR_MS;
use crate::keys::{KeyRecord, KeyStatus, TeamRecord};
use crate::limits::{Budget, Limits, Period};
use crate::pricing::Nanos;
use crate::usage::{Outcome, UsageEvent};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failure of the store, with what was being done.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(format!("database error: {e}"))
    }
}

impl StoreError {
    /// A uniqueness violation (for example a team name that exists).
    pub fn is_conflict(&self) -> bool {
        let m = self.0.to_ascii_lowercase();
        m.contains("unique") || m.contains("duplicate key")
    }
}

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Rows per multi-row INSERT (29 parameters a row stays under both databases' limits).
const ROWS_PER_INSERT: usize = 400;
/// Rows per INSERT into the billing outbox (one parameter a row).
const OUTBOX_ROWS_PER_INSERT: usize = 1000;

impl Store {
    /// Connects to `url` (`sqlite://PATH`, `sqlite::memory:` is refused, or `postgres://…`),
    /// creating an SQLite file if needed, and applies the backend's migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.contains(":memory:") || rest.contains("mode=memory") {
                return Err(StoreError(
                    "an in-memory SQLite database is not supported: every pooled connection would see a different one"
                        .into(),
                ));
            }
            let url = if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError(format!(
                "database url must start with sqlite:// or postgres://, got `{}`",
                redact(url)
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (reports) run beside the writer; NORMAL sync is durable
                        // across process crashes, and a 5 s busy timeout absorbs writer contention.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError(format!("cannot open database {}: {e}", redact(&url))))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Processes starting together race to migrate; SQLite has no migration lock, so the
        // loser sees a locked database or a table that just appeared. Retrying finds the
        // migrations applied and goes on.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(StoreError(format!("migrating {}: {e}", redact(&url)))),
            }
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- teams ----

    pub async fn insert_team(&self, t: &TeamRecord) -> Result<()> {
        let l = LimitCols::of(&t.limits);
        sqlx::query(
            "INSERT INTO teams (id, name, cost_center, budget_nanos, budget_period, soft_limit_pct, rpm, tpm, \
             max_concurrent, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(t.id.clone())
        .bind(t.name.clone())
        .bind(t.cost_center.clone())
        .bind(l.budget_nanos)
        .bind(l.budget_period)
        .bind(l.soft_pct)
        .bind(l.rpm)
        .bind(l.tpm)
        .bind(l.max_concurrent)
        .bind(t.created_ms)
        .bind(t.updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_team(&self, t: &TeamRecord) -> Result<bool> {
        let l = LimitCols::of(&t.limits);
        let r = sqlx::query(
            "UPDATE teams SET name = $1, cost_center = $2, budget_nanos = $3, budget_period = $4, soft_limit_pct = $5, \
             rpm = $6, tpm = $7, max_concurrent = $8, updated_ms = $9 WHERE id = $10",
        )
        .bind(t.name.clone())
        .bind(t.cost_center.clone())
        .bind(l.budget_nanos)
        .bind(l.budget_period)
        .bind(l.soft_pct)
        .bind(l.rpm)
        .bind(l.tpm)
        .bind(l.max_concurrent)
        .bind(t.updated_ms)
        .bind(t.id.clone())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn get_team(&self, id: &str) -> Result<Option<TeamRecord>> {
        let row = sqlx::query("SELECT * FROM teams WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| team_of_row(&r)).transpose()
    }

    pub async fn list_teams(&self) -> Result<Vec<TeamRecord>> {
        let rows = sqlx::query("SELECT * FROM teams ORDER BY created_ms, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(team_of_row).collect()
    }

    /// Deletes a team that no key belongs to; `Ok(false)` if it does not exist.
    pub async fn delete_team(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn team_key_count(&self, id: &str) -> Result<i64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE team_id = $1")
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    // ---- keys ----

    pub async fn insert_key(&self, k: &KeyRecord, secret_hash: &str) -> Result<()> {
        let l = LimitCols::of(&k.limits);
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, team_id, cost_center, tags, allowed_models, \
             expires_ms, status, budget_nanos, budget_period, soft_limit_pct, rpm, tpm, max_concurrent, created_ms, \
             updated_ms, rotated_ms, route_prefer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(k.id.clone())
        .bind(k.name.clone())
        .bind(k.prefix.clone())
        .bind(secret_hash.to_string())
        .bind(k.team_id.clone())
        .bind(k.cost_center.clone())
        .bind(json_list(&k.tags))
        .bind(k.allowed_models.as_deref().map(json_list))
        .bind(k.expires_ms)
        .bind(k.status.as_str())
        .bind(l.budget_nanos)
        .bind(l.budget_period)
        .bind(l.soft_pct)
        .bind(l.rpm)
        .bind(l.tpm)
        .bind(l.max_concurrent)
        .bind(k.created_ms)
        .bind(k.updated_ms)
        .bind(k.rotated_ms)
        .bind(k.route_prefer.map(|p| p.as_str()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Saves every field of the key but its secret.
    pub async fn update_key(&self, k: &KeyRecord) -> Result<bool> {
        let l = LimitCols::of(&k.limits);
        let r = sqlx::query(
            "UPDATE api_keys SET name = $1, team_id = $2, cost_center = $3, tags = $4, allowed_models = $5, \
             expires_ms = $6, status = $7, budget_nanos = $8, budget_period = $9, soft_limit_pct = $10, rpm = $11, \
             tpm = $12, max_concurrent = $13, updated_ms = $14, route_prefer = $16 WHERE id = $15",
        )
        .bind(k.name.clone())
        .bind(k.team_id.clone())
        .bind(k.cost_center.clone())
        .bind(json_list(&k.tags))
        .bind(k.allowed_models.as_deref().map(json_list))
        .bind(k.expires_ms)
        .bind(k.status.as_str())
        .bind(l.budget_nanos)
        .bind(l.budget_period)
        .bind(l.soft_pct)
        .bind(l.rpm)
        .bind(l.tpm)
        .bind(l.max_concurrent)
        .bind(k.updated_ms)
        .bind(k.id.clone())
        .bind(k.route_prefer.map(|p| p.as_str()))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces a key's secret (same id, same history); `Ok(false)` if it does not exist.
    pub async fn rotate_key(&self, id: &str, prefix: &str, secret_hash: &str, now_ms: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE api_keys SET prefix = $1, secret_hash = $2, rotated_ms = $3, updated_ms = $3 WHERE id = $4",
        )
        .bind(prefix.to_string())
        .bind(secret_hash.to_string())
        .bind(now_ms)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| key_of_row(&r)).transpose()
    }

    pub async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE secret_hash = $1")
            .bind(secret_hash.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| key_of_row(&r)).transpose()
    }

    pub async fn list_keys(&self, team_id: Option<&str>) -> Result<Vec<KeyRecord>> {
        let rows = match team_id {
            Some(t) => {
                sqlx::query("SELECT * FROM api_keys WHERE team_id = $1 ORDER BY created_ms, id")
                    .bind(t.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM api_keys ORDER BY created_ms, id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(key_of_row).collect()
    }

    // ---- usage ledger ----

    /// Writes a batch of events and their hourly rollups in one transaction. Events whose id is
    /// already stored are skipped, so a retried batch is not counted twice.
    /// With `billing`, each event's billing event goes into the outbox in the same transaction.
    pub async fn write_usage(&self, events: &[UsageEvent], billing: bool) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(events.len());
        // SQLite binds many-parameter statements slowly and pays per statement too: 8–20 rows a
        // statement measured fastest (1 row: ~21k events/s, 16: ~35k, 50: ~19k, 400: far less).
        // Postgres prefers few large statements.
        let rows = match self.backend {
            Backend::Sqlite => 16,
            Backend::Postgres => ROWS_PER_INSERT,
        };
        for chunk in events.chunks(rows) {
            let mut sql = String::with_capacity(600 + chunk.len() * 140);
            sql.push_str(
                "INSERT INTO usage_events (event_id, request_id, ts_ms, key_id, team_id, cost_center, tags, route, \
                 endpoint, model, deployment, provider, stream, status, outcome, error_kind, prompt_tokens, \
                 completion_tokens, cached_tokens, usage_source, cost_nanos, price_version, latency_ms, ttft_ms, \
                 attempts, request_bytes, response_bytes, route_variant, shadow_model, cascade, escalation_reason, \
                 escalated_from, escalated_deployment, escalation_prompt_tokens, escalation_completion_tokens, \
                 escalation_cost_nanos) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 36);
            sql.push_str(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(e.event_id.clone())
                    .bind(e.request_id.clone())
                    .bind(e.unix_ms as i64)
                    .bind(e.key_id.clone())
                    .bind(e.team_id.clone())
                    .bind(e.cost_center.clone())
                    .bind((!e.tags.is_empty()).then(|| json_list(&e.tags)))
                    .bind(e.route.clone())
                    .bind(e.endpoint)
                    .bind(e.model.clone())
                    .bind(e.deployment.clone())
                    .bind(e.provider.clone())
                    .bind(i64::from(e.stream))
                    .bind(i64::from(e.status))
                    .bind(e.outcome.as_str())
                    .bind(e.error_kind)
                    .bind(e.prompt_tokens as i64)
                    .bind(e.completion_tokens as i64)
                    .bind(e.cached_tokens as i64)
                    .bind(usage_source_str(e))
                    .bind(e.cost_nanos)
                    .bind(e.price_version.clone())
                    .bind(e.latency_ms as i64)
                    .bind(e.ttft_ms.map(|v| v as i64))
                    .bind(i64::from(e.attempts))
                    .bind(e.request_bytes as i64)
                    .bind(e.response_bytes as i64)
                    .bind(e.route_variant.clone())
                    .bind(e.shadow_model.clone())
                    .bind(e.cascade)
                    .bind(e.escalation.as_ref().map(|x| x.reason))
                    .bind(e.escalation.as_ref().map(|x| x.model.clone()))
                    .bind(e.escalation.as_ref().and_then(|x| x.deployment.clone()))
                    .bind(e.escalation.as_ref().map_or(0, |x| x.prompt_tokens as i64))
                    .bind(e.escalation.as_ref().map_or(0, |x| x.completion_tokens as i64))
                    .bind(e.escalation.as_ref().map_or(0, |x| x.cost_nanos));
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>("event_id")?);
            }
        }
        // Only events inserted now count: a batch retried after a commit that did succeed (its
        // answer lost) finds its events present and must not add them to the rollups again.
        let fresh: Vec<&UsageEvent> = events.iter().filter(|e| inserted.contains(&e.event_id)).collect();
        let rollups = rollup(&fresh);
        let agg: Vec<(&RollupKey, &Rollup)> = rollups.iter().collect();
        for chunk in agg.chunks(rows) {
            let mut sql = String::from(
                "INSERT INTO usage_hourly (hour_ms, key_id, team_id, model, requests, errors, prompt_tokens, \
                 completion_tokens, cached_tokens, cost_nanos) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 10);
            sql.push_str(
                " ON CONFLICT (hour_ms, key_id, team_id, model) DO UPDATE SET \
                 requests = usage_hourly.requests + excluded.requests, \
                 errors = usage_hourly.errors + excluded.errors, \
                 prompt_tokens = usage_hourly.prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = usage_hourly.completion_tokens + excluded.completion_tokens, \
                 cached_tokens = usage_hourly.cached_tokens + excluded.cached_tokens, \
                 cost_nanos = usage_hourly.cost_nanos + excluded.cost_nanos",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, r) in chunk {
                q = q
                    .bind(k.hour_ms)
                    .bind(k.key_id.clone())
                    .bind(k.team_id.clone())
                    .bind(k.model.clone())
                    .bind(r.requests)
                    .bind(r.errors)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cost_nanos);
            }
            q.execute(&mut *tx).await?;
        }
        if billing {
            // Two parameters a row bind quickly on both backends: few large statements. A row
            // is due from its event's time, so retries (due later) are not starved by new rows.
            for chunk in fresh.chunks(OUTBOX_ROWS_PER_INSERT) {
                let mut sql = String::from("INSERT INTO billing_outbox (event_id, next_attempt_ms) VALUES ");
                push_placeholders(&mut sql, chunk.len(), 2);
                sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    q = q.bind(e.event_id.clone()).bind(e.unix_ms as i64);
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- routing ----

    /// Routed events grouped by route, variant, model served and shadow choice.
    pub async fn route_stats(&self, f: &UsageFilter) -> Result<Vec<RouteStat>> {
        let (where_sql, args) = f.where_clause(1);
        let cond = if where_sql.is_empty() {
            " WHERE route IS NOT NULL".to_string()
        } else {
            format!("{where_sql} AND route IS NOT NULL")
        };
        let sql = format!(
            "SELECT route, COALESCE(route_variant, '') AS variant, model, COALESCE(shadow_model, '') AS shadow, \
             COALESCE(cascade, '') AS cascade, COALESCE(escalation_reason, '') AS escalation_reason, \
             COUNT(*) AS requests, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos, \
             CAST(COALESCE(SUM(escalation_cost_nanos), 0) AS BIGINT) AS escalation_cost_nanos \
             FROM usage_events{cond} GROUP BY route, COALESCE(route_variant, ''), model, COALESCE(shadow_model, ''), \
             COALESCE(cascade, ''), COALESCE(escalation_reason, '') \
             ORDER BY route, variant, model, shadow, cascade, escalation_reason"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RouteStat {
                    route: r.try_get("route")?,
                    variant: r.try_get("variant")?,
                    model: r.try_get("model")?,
                    shadow_model: r.try_get("shadow")?,
                    cascade: r.try_get("cascade")?,
                    escalation_reason: r.try_get("escalation_reason")?,
                    escalation_cost_nanos: r.try_get("escalation_cost_nanos")?,
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cost_nanos: r.try_get("cost_nanos")?,
                })
            })
            .collect()
    }

    // ---- budget alerts ----

    /// Stores alerts; one per scope, period and kind (repeats are ignored).
    pub async fn insert_alerts(&self, alerts: &[crate::limits::BudgetAlert]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for a in alerts {
            sqlx::query(
                "INSERT INTO budget_alerts (scope, period_start, kind, ts_ms, spent_nanos, limit_nanos) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, period_start, kind) DO NOTHING",
            )
            .bind(a.scope.clone())
            .bind(a.period_start)
            .bind(a.kind)
            .bind(a.ts_ms)
            .bind(a.spent_nanos)
            .bind(a.limit_nanos)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Alerts raised at or after `since_ms`, newest first.
    pub async fn list_alerts(&self, since_ms: i64, limit: i64) -> Result<Vec<crate::limits::BudgetAlert>> {
        let rows = sqlx::query(
            "SELECT scope, period_start, kind, ts_ms, spent_nanos, limit_nanos FROM budget_alerts \
             WHERE ts_ms >= $1 ORDER BY ts_ms DESC, scope LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(crate::limits::BudgetAlert {
                    scope: r.try_get("scope")?,
                    period_start: r.try_get("period_start")?,
                    kind: if kind == "hard" { "hard" } else { "soft" },
                    ts_ms: r.try_get("ts_ms")?,
                    spent_nanos: r.try_get("spent_nanos")?,
                    limit_nanos: r.try_get("limit_nanos")?,
                })
            })
            .collect()
    }

    // ---- billing outbox ----

    /// Claims up to `limit` undelivered rows due at `now` under the token `claim` until
    /// `until_ms`, and returns them. Rows another process claimed meanwhile are skipped
    /// (Postgres re-checks the condition on the locked row; SQLite has one writer).
    pub async fn claim_billing(
        &self,
        claim: &str,
        now: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<crate::billing::Pending>> {
        sqlx::query(
            "UPDATE billing_outbox SET claimed_by = $1, next_attempt_ms = $2 \
             WHERE delivered_ms IS NULL AND rejected_ms IS NULL AND next_attempt_ms <= $3 AND event_id IN \
             (SELECT event_id FROM billing_outbox WHERE delivered_ms IS NULL AND rejected_ms IS NULL AND next_attempt_ms <= $3 \
              ORDER BY next_attempt_ms LIMIT $4)",
        )
        .bind(claim)
        .bind(until_ms)
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT o.attempts AS outbox_attempts, e.* FROM billing_outbox o JOIN usage_events e ON e.event_id = o.event_id \
             WHERE o.claimed_by = $1 AND o.next_attempt_ms = $2 AND o.delivered_ms IS NULL ORDER BY e.ts_ms, e.event_id",
        )
        .bind(claim)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::billing::Pending {
                    event: usage_row(r)?,
                    attempts: r.try_get("outbox_attempts")?,
                })
            })
            .collect()
    }

    pub async fn billing_delivered(&self, ids: &[String], now: i64) -> Result<()> {
        let mut sql = String::from(
            "UPDATE billing_outbox SET delivered_ms = $1, attempts = attempts + 1, claimed_by = NULL, last_error = NULL \
             WHERE event_id IN ",
        );
        push_placeholders_from(&mut sql, ids.len(), 2);
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for id in ids {
            q = q.bind(id.clone());
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    /// Records a failed attempt under claim `claim` (rows another process claimed since are
    /// left alone) and when to try again; `rejected` marks them as refused for good.
    #[allow(clippy::too_many_arguments)]
    pub async fn billing_failed(
        &self,
        claim: &str,
        ids: &[String],
        now: i64,
        next_attempt_ms: i64,
        error: &str,
        rejected: bool,
    ) -> Result<()> {
        let mut sql = String::from(
            "UPDATE billing_outbox SET attempts = attempts + 1, next_attempt_ms = $1, last_error = $2, \
             last_attempt_ms = $3, rejected_ms = $4, claimed_by = NULL \
             WHERE delivered_ms IS NULL AND claimed_by = $5 AND event_id IN ",
        );
        push_placeholders_from(&mut sql, ids.len(), 6);
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(next_attempt_ms)
            .bind(error.to_string())
            .bind(now)
            .bind(rejected.then_some(now))
            .bind(claim.to_string());
        for id in ids {
            q = q.bind(id.clone());
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Makes rows claimed under any of `holder`'s claims due at once (at shutdown).
    pub async fn release_billing_claims(&self, holder: &str) -> Result<()> {
        sqlx::query(
            "UPDATE billing_outbox SET claimed_by = NULL, next_attempt_ms = 0 \
             WHERE delivered_ms IS NULL AND rejected_ms IS NULL AND substr(claimed_by, 1, length($1)) = $1",
        )
        .bind(format!("{holder}:"))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts rejected rows back in the queue (after the receiver or the mapping was fixed).
    pub async fn requeue_rejected_billing(&self) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE billing_outbox SET rejected_ms = NULL, next_attempt_ms = 0, attempts = 0 \
             WHERE delivered_ms IS NULL AND rejected_ms IS NOT NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Deletes rows delivered before `before_ms`.
    pub async fn prune_billing(&self, before_ms: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM billing_outbox WHERE delivered_ms IS NOT NULL AND delivered_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn billing_status(&self) -> Result<crate::billing::OutboxStatus> {
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN o.delivered_ms IS NULL AND o.rejected_ms IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending, \
             CAST(COALESCE(SUM(CASE WHEN o.rejected_ms IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS rejected, \
             CAST(COALESCE(SUM(CASE WHEN o.delivered_ms IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS delivered, \
             MIN(CASE WHEN o.delivered_ms IS NULL THEN e.ts_ms END) AS oldest, \
             CAST(COALESCE(MAX(CASE WHEN o.delivered_ms IS NULL THEN o.attempts ELSE 0 END), 0) AS BIGINT) AS max_attempts \
             FROM billing_outbox o JOIN usage_events e ON e.event_id = o.event_id",
        )
        .fetch_one(&self.pool)
        .await?;
        let last_error: Option<String> = sqlx::query(
            "SELECT last_error FROM billing_outbox WHERE delivered_ms IS NULL AND last_error IS NOT NULL \
             ORDER BY last_attempt_ms DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get("last_error"))
        .transpose()?;
        Ok(crate::billing::OutboxStatus {
            pending: r.try_get("pending")?,
            rejected: r.try_get("rejected")?,
            delivered_retained: r.try_get("delivered")?,
            oldest_pending_ms: r.try_get("oldest")?,
            max_attempts: r.try_get("max_attempts")?,
            last_error,
        })
    }

    /// Totals over raw events matching `f` (the ground truth reports are checked against).
    pub async fn usage_totals(&self, f: &UsageFilter) -> Result<Totals> {
        let (where_sql, args) = f.where_clause(1);
        let sql = format!(
            "SELECT COUNT(*) AS requests, \
             CAST(COALESCE(SUM(CASE WHEN outcome = 'success' THEN 0 ELSE 1 END), 0) AS BIGINT) AS errors, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos FROM usage_events{where_sql}"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        Totals::of_row(&q.fetch_one(&self.pool).await?)
    }

    /// Usage grouped by `group`, from the hourly rollups when the filter allows (hour-aligned
    /// bounds, no tag or cost-center filter), else from raw events; both give the same sums.
    pub async fn usage_grouped(&self, f: &UsageFilter, group: GroupBy) -> Result<Vec<(String, Totals)>> {
        let aligned = |v: Option<i64>| v.is_none_or(|t| t.rem_euclid(HOUR_MS) == 0);
        let from_rollups = f.tag.is_none() && f.cost_center.is_none() && aligned(f.from_ms) && aligned(f.to_ms);
        let key_expr = match group {
            GroupBy::Hour => "CAST(hour AS TEXT)",
            GroupBy::Day => "CAST(day AS TEXT)",
            GroupBy::Key => "key_id",
            GroupBy::Team => "team_id",
            GroupBy::Model => "model",
        };
        let (source, where_sql, args) = if from_rollups {
            let (w, a) = f.rollup_where_clause(1);
            (
                format!(
                    "SELECT hour_ms - (hour_ms % {HOUR_MS}) AS hour, hour_ms - (hour_ms % {DAY}) AS day, key_id, team_id, model, \
                     requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_nanos FROM usage_hourly",
                    DAY = crate::clock::DAY_MS
                ),
                w,
                a,
            )
        } else {
            let (w, a) = f.where_clause(1);
            (
                format!(
                    "SELECT ts_ms - (ts_ms % {HOUR_MS}) AS hour, ts_ms - (ts_ms % {DAY}) AS day, COALESCE(key_id, '') AS key_id, \
                     COALESCE(team_id, '') AS team_id, model, 1 AS requests, CASE WHEN outcome = 'success' THEN 0 ELSE 1 END AS errors, \
                     prompt_tokens, completion_tokens, cached_tokens, cost_nanos FROM usage_events",
                    DAY = crate::clock::DAY_MS
                ),
                w,
                a,
            )
        };
        let sql = format!(
            "SELECT {key_expr} AS grp, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(errors) AS BIGINT) AS errors, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos \
             FROM ({source}{where_sql}) u GROUP BY {key_expr} ORDER BY {key_expr}"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("grp")?, Totals::of_row(row)?)))
            .collect()
    }

    /// One page of raw events after `after` (`(ts_ms, event_id)` of the last row seen), oldest
    /// first: exports walk the ledger page by page instead of holding one long query.
    pub async fn usage_page(
        &self,
        f: &UsageFilter,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<UsageRow>> {
        let (mut where_sql, mut args) = f.where_clause(1);
        if let Some((ts, id)) = after {
            let n = args.len();
            let clause = format!("(ts_ms > ${} OR (ts_ms = ${} AND event_id > ${}))", n + 1, n + 1, n + 2);
            where_sql = if where_sql.is_empty() {
                format!(" WHERE {clause}")
            } else {
                format!("{where_sql} AND {clause}")
            };
            args.push(Arg::I(ts));
            args.push(Arg::S(id));
        }
        let sql = format!(
            "SELECT * FROM usage_events{where_sql} ORDER BY ts_ms, event_id LIMIT {}",
            limit.clamp(1, 10_000)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(usage_row).collect()
    }

    /// Recomputes the cost of every event matching `f` from its stored tokens with the price
    /// `price_of(model, deployment, ts_ms)` returns (the one in force at the event's time), updating
    /// changed events and their hourly rollups page by page, each page in one transaction.
    /// Events whose deployment has no price for their time are left as they are and counted.
    /// Budget spend already settled is not changed: re-pricing corrects the record.
    pub async fn reprice(
        &self,
        f: &UsageFilter,
        price_of: &(dyn Fn(&str, &str, i64) -> Option<crate::pricing::PricePoint> + Sync),
        dry_run: bool,
    ) -> Result<RepriceReport> {
        let mut report = RepriceReport {
            dry_run,
            ..RepriceReport::default()
        };
        let mut after: Option<(i64, String)> = None;
        loop {
            let page = self.usage_page(f, after.clone(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.ts_ms, last.event_id.clone()));
            let mut changes: Vec<(&UsageRow, i64, String, i64)> = Vec::new();
            for row in &page {
                report.events += 1;
                report.cost_before_nanos += row.cost_nanos;
                let Some(deployment) = row.deployment.as_deref() else {
                    // Never reached a model: nothing to price.
                    report.cost_after_nanos += row.cost_nanos;
                    continue;
                };
                let Some(point) = price_of(&row.model, deployment, row.ts_ms) else {
                    report.unpriced += 1;
                    report.cost_after_nanos += row.cost_nanos;
                    continue;
                };
                // A cascade's discarded cheap attempt is priced at its own deployment's price.
                let extra = match (row.escalated_from.as_deref(), row.escalated_deployment.as_deref()) {
                    (Some(m), Some(d)) => price_of(m, d, row.ts_ms).map(|p| {
                        p.price
                            .cost(
                                row.escalation_prompt_tokens.max(0) as u64,
                                0,
                                row.escalation_completion_tokens.max(0) as u64,
                            )
                            .0
                    }),
                    _ => Some(row.escalation_cost_nanos),
                };
                let Some(extra) = extra else {
                    report.unpriced += 1;
                    report.cost_after_nanos += row.cost_nanos;
                    continue;
                };
                let cost = point
                    .price
                    .cost(
                        row.prompt_tokens.max(0) as u64,
                        row.cached_tokens.max(0) as u64,
                        row.completion_tokens.max(0) as u64,
                    )
                    .0
                    + extra;
                report.cost_after_nanos += cost;
                let version = point.version.to_string();
                if cost != row.cost_nanos || row.price_version.as_deref() != Some(version.as_str()) {
                    report.changed += 1;
                    changes.push((row, cost, version, extra));
                }
            }
            if dry_run || changes.is_empty() {
                continue;
            }
            let mut deltas: std::collections::BTreeMap<(i64, String, String, String), i64> = Default::default();
            let mut tx = self.pool.begin().await?;
            for (row, cost, version, extra) in &changes {
                // Only if the event is still as read: a concurrent run that changed it first
                // has moved its rollup already.
                let done = sqlx::query(
                    "UPDATE usage_events SET cost_nanos = $1, price_version = $2, escalation_cost_nanos = $6 \
                     WHERE event_id = $3 AND cost_nanos = $4 AND COALESCE(price_version, '') = $5",
                )
                .bind(*cost)
                .bind(version.clone())
                .bind(row.event_id.clone())
                .bind(row.cost_nanos)
                .bind(row.price_version.clone().unwrap_or_default())
                .bind(*extra)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    continue;
                }
                let key = (
                    row.ts_ms - row.ts_ms.rem_euclid(HOUR_MS),
                    row.key_id.clone().unwrap_or_default(),
                    row.team_id.clone().unwrap_or_default(),
                    row.model.clone(),
                );
                *deltas.entry(key).or_default() += cost - row.cost_nanos;
            }
            for ((hour, key, team, model), delta) in deltas {
                if delta != 0 {
                    sqlx::query(
                        "UPDATE usage_hourly SET cost_nanos = cost_nanos + $1 \
                         WHERE hour_ms = $2 AND key_id = $3 AND team_id = $4 AND model = $5",
                    )
                    .bind(delta)
                    .bind(hour)
                    .bind(key)
                    .bind(team)
                    .bind(model)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(report)
    }

    // ---- budgets ----

    /// Leases up to `want` nanodollars of `scope`'s budget for `period_start` to `holder`,
    /// atomically with every other holder: spent + all live leases never exceed `limit`.
    /// Returns what was granted and the scope's settled spend.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire_lease(
        &self,
        scope: &str,
        period_start: i64,
        limit: i64,
        want: i64,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(i64, i64)> {
        let mut tx = self.pool.begin().await?;
        // A write first: SQLite takes its write lock here, Postgres locks the row, so
        // concurrent holders of this scope serialize on this statement.
        let spent: i64 = sqlx::query_scalar(
            "INSERT INTO budget_spend (scope, period_start, spent_nanos) VALUES ($1, $2, 0) \
             ON CONFLICT (scope, period_start) DO UPDATE SET spent_nanos = budget_spend.spent_nanos RETURNING spent_nanos",
        )
        .bind(scope.to_string())
        .bind(period_start)
        .fetch_one(&mut *tx)
        .await?;
        let leased: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_nanos), 0) AS BIGINT) FROM budget_leases \
             WHERE scope = $1 AND period_start = $2 AND (holder = $3 OR expires_ms > $4)",
        )
        .bind(scope.to_string())
        .bind(period_start)
        .bind(holder.to_string())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        let grant = want.min(limit - spent - leased).max(0);
        sqlx::query(
            "INSERT INTO budget_leases (scope, period_start, holder, amount_nanos, expires_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (scope, period_start, holder) DO UPDATE SET \
             amount_nanos = budget_leases.amount_nanos + excluded.amount_nanos, expires_ms = excluded.expires_ms",
        )
        .bind(scope.to_string())
        .bind(period_start)
        .bind(holder.to_string())
        .bind(grant)
        .bind(now_ms + ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((grant, spent))
    }

    /// Adds `used` to the scope's settled spend and sets `holder`'s lease to `lease_left`
    /// (renewing it for `ttl_ms`). Returns the settled spend after the update.
    #[allow(clippy::too_many_arguments)]
    pub async fn settle_lease(
        &self,
        scope: &str,
        period_start: i64,
        holder: &str,
        used: i64,
        lease_left: i64,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let spent: i64 = sqlx::query_scalar(
            "INSERT INTO budget_spend (scope, period_start, spent_nanos) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, period_start) DO UPDATE SET spent_nanos = budget_spend.spent_nanos + excluded.spent_nanos \
             RETURNING spent_nanos",
        )
        .bind(scope.to_string())
        .bind(period_start)
        .bind(used)
        .fetch_one(&mut *tx)
        .await?;
        if lease_left > 0 {
            sqlx::query(
                "INSERT INTO budget_leases (scope, period_start, holder, amount_nanos, expires_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scope, period_start, holder) DO UPDATE SET amount_nanos = excluded.amount_nanos, \
                 expires_ms = excluded.expires_ms",
            )
            .bind(scope.to_string())
            .bind(period_start)
            .bind(holder.to_string())
            .bind(lease_left)
            .bind(now_ms + ttl_ms)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("DELETE FROM budget_leases WHERE scope = $1 AND period_start = $2 AND holder = $3")
                .bind(scope.to_string())
                .bind(period_start)
                .bind(holder.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(spent)
    }

    /// Settled spend of a scope in a period (0 if none).
    pub async fn spent(&self, scope: &str, period_start: i64) -> Result<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT spent_nanos FROM budget_spend WHERE scope = $1 AND period_start = $2")
                .bind(scope.to_string())
                .bind(period_start)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.unwrap_or(0))
    }
}

/// Hides a password in a connection URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `($first,$first+1,…)` for an `IN` list of `n` values.
fn push_placeholders_from(sql: &mut String, n: usize, first: usize) {
    use std::fmt::Write;
    sql.push('(');
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "${}", first + i);
    }
    sql.push(')');
}

fn push_placeholders(sql: &mut String, rows: usize, cols: usize) {
    use std::fmt::Write;
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${n}");
            n += 1;
        }
        sql.push(')');
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn parse_list(text: Option<String>) -> Result<Option<Vec<String>>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError(format!("stored list `{t}` is not JSON: {e}"))))
        .transpose()
}

fn usage_source_str(e: &UsageEvent) -> &'static str {
    match e.usage_source {
        crate::usage::UsageSource::Reported => "reported",
        crate::usage::UsageSource::Estimated => "estimated",
        crate::usage::UsageSource::None => "none",
    }
}

/// Limit columns as stored.
struct LimitCols {
    budget_nanos: Option<i64>,
    budget_period: Option<&'static str>,
    soft_pct: Option<i64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_concurrent: Option<i64>,
}

impl LimitCols {
    fn of(l: &Limits) -> LimitCols {
        LimitCols {
            budget_nanos: l.budget.map(|b| b.limit.0),
            budget_period: l.budget.map(|b| b.period.as_str()),
            soft_pct: l.budget.map(|b| i64::from(b.soft_pct)),
            rpm: l.rpm.map(|v| v as i64),
            tpm: l.tpm.map(|v| v as i64),
            max_concurrent: l.max_concurrent.map(i64::from),
        }
    }
}

fn limits_of_row(r: &AnyRow) -> Result<Limits> {
    let budget_nanos: Option<i64> = r.try_get("budget_nanos")?;
    let period: Option<String> = r.try_get("budget_period")?;
    let soft: Option<i64> = r.try_get("soft_limit_pct")?;
    let budget = match (budget_nanos, period) {
        (Some(limit), Some(p)) => Some(Budget {
            limit: Nanos(limit),
            period: Period::parse(&p).map_err(StoreError)?,
            soft_pct: soft.unwrap_or(80).clamp(0, 100) as u8,
        }),
        _ => None,
    };
    let rpm: Option<i64> = r.try_get("rpm")?;
    let tpm: Option<i64> = r.try_get("tpm")?;
    let mc: Option<i64> = r.try_get("max_concurrent")?;
    Ok(Limits {
        budget,
        rpm: rpm.map(|v| v.max(0) as u64),
        tpm: tpm.map(|v| v.max(0) as u64),
        max_concurrent: mc.map(|v| v.clamp(0, i64::from(u32::MAX)) as u32),
    })
}

fn team_of_row(r: &AnyRow) -> Result<TeamRecord> {
    Ok(TeamRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        cost_center: r.try_get("cost_center")?,
        limits: limits_of_row(r)?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

fn key_of_row(r: &AnyRow) -> Result<KeyRecord> {
    let status: String = r.try_get("status")?;
    Ok(KeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        team_id: r.try_get("team_id")?,
        cost_center: r.try_get("cost_center")?,
        tags: parse_list(r.try_get("tags")?)?.unwrap_or_default(),
        allowed_models: parse_list(r.try_get("allowed_models")?)?,
        route_prefer: r
            .try_get::<Option<String>, _>("route_prefer")?
            .and_then(|p| crate::router::policy::Prefer::parse(&p)),
        expires_ms: r.try_get("expires_ms")?,
        status: KeyStatus::parse(&status).map_err(StoreError)?,
        limits: limits_of_row(r)?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
        rotated_ms: r.try_get("rotated_ms")?,
    })
}

/// One stored usage event, as exported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRow {
    pub event_id: String,
    pub request_id: String,
    pub ts_ms: i64,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub tags: Option<String>,
    pub route: Option<String>,
    pub endpoint: String,
    pub model: String,
    pub deployment: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    pub status: i64,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub usage_source: String,
    pub cost_nanos: i64,
    pub price_version: Option<String>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub attempts: i64,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub route_variant: Option<String>,
    pub shadow_model: Option<String>,
    pub cascade: Option<String>,
    pub escalation_reason: Option<String>,
    pub escalated_from: Option<String>,
    pub escalated_deployment: Option<String>,
    pub escalation_prompt_tokens: i64,
    pub escalation_completion_tokens: i64,
    pub escalation_cost_nanos: i64,
}

fn usage_row(r: &AnyRow) -> Result<UsageRow> {
    Ok(UsageRow {
        event_id: r.try_get("event_id")?,
        request_id: r.try_get("request_id")?,
        ts_ms: r.try_get("ts_ms")?,
        key_id: r.try_get("key_id")?,
        team_id: r.try_get("team_id")?,
        cost_center: r.try_get("cost_center")?,
        tags: r.try_get("tags")?,
        route: r.try_get("route")?,
        endpoint: r.try_get("endpoint")?,
        model: r.try_get("model")?,
        deployment: r.try_get("deployment")?,
        provider: r.try_get("provider")?,
        stream: r.try_get::<i64, _>("stream")? != 0,
        status: r.try_get("status")?,
        outcome: r.try_get("outcome")?,
        error_kind: r.try_get("error_kind")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        usage_source: r.try_get("usage_source")?,
        cost_nanos: r.try_get("cost_nanos")?,
        price_version: r.try_get("price_version")?,
        latency_ms: r.try_get("latency_ms")?,
        ttft_ms: r.try_get("ttft_ms")?,
        attempts: r.try_get("attempts")?,
        request_bytes: r.try_get("request_bytes")?,
        response_bytes: r.try_get("response_bytes")?,
        route_variant: r.try_get("route_variant")?,
        shadow_model: r.try_get("shadow_model")?,
        cascade: r.try_get("cascade")?,
        escalation_reason: r.try_get("escalation_reason")?,
        escalated_from: r.try_get("escalated_from")?,
        escalated_deployment: r.try_get("escalated_deployment")?,
        escalation_prompt_tokens: r.try_get("escalation_prompt_tokens")?,
        escalation_completion_tokens: r.try_get("escalation_completion_tokens")?,
        escalation_cost_nanos: r.try_get("escalation_cost_nanos")?,
    })
}

/// Routed events of one route, variant, served model, shadow choice and cascade outcome ('' where none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStat {
    pub route: String,
    pub variant: String,
    pub model: String,
    pub shadow_model: String,
    pub cascade: String,
    pub escalation_reason: String,
    /// What the discarded cheap attempts of escalated events cost (part of `cost_nanos`).
    pub escalation_cost_nanos: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    pub cost_nanos: i64,
}

/// What a re-pricing run found and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RepriceReport {
    pub dry_run: bool,
    /// Events in the range.
    pub events: u64,
    /// Events whose cost or price version differs under the table (updated unless a dry run).
    pub changed: u64,
    /// Events whose deployment has no price for their time; left as they are.
    pub unpriced: u64,
    pub cost_before_nanos: i64,
    pub cost_after_nanos: i64,
}

/// Sums of usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nanos: i64,
}

impl Totals {
    fn of_row(row: &AnyRow) -> Result<Totals> {
        Ok(Totals {
            requests: row.try_get("requests")?,
            errors: row.try_get("errors")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cached_tokens: row.try_get("cached_tokens")?,
            cost_nanos: row.try_get("cost_nanos")?,
        })
    }

    pub fn add(&mut self, t: &Totals) {
        self.requests += t.requests;
        self.errors += t.errors;
        self.prompt_tokens += t.prompt_tokens;
        self.completion_tokens += t.completion_tokens;
        self.cached_tokens += t.cached_tokens;
        self.cost_nanos += t.cost_nanos;
    }

    pub fn add_row(&mut self, r: &UsageRow) {
        self.requests += 1;
        self.errors += i64::from(r.outcome != "success");
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.cached_tokens += r.cached_tokens;
        self.cost_nanos += r.cost_nanos;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Hour,
    Day,
    Key,
    Team,
    Model,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "hour" => GroupBy::Hour,
            "day" => GroupBy::Day,
            "key" => GroupBy::Key,
            "team" => GroupBy::Team,
            "model" => GroupBy::Model,
            _ => return None,
        })
    }
}

/// Which usage events a query covers: `[from_ms, to_ms)` and optional equality filters.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub model: Option<String>,
    pub tag: Option<String>,
    pub cost_center: Option<String>,
}

enum Arg {
    I(i64),
    S(String),
}

impl Arg {
    fn bind_to<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        match self {
            Arg::I(v) => q.bind(v),
            Arg::S(v) => q.bind(v),
        }
    }
}

impl UsageFilter {
    /// `WHERE …` over raw events (`ts_ms`) with parameters numbered from `first`.
    fn where_clause(&self, first: usize) -> (String, Vec<Arg>) {
        self.clause(first, false)
    }

    /// The same over hourly rollups (`hour_ms`; an hour that starts before `to` is included).
    /// Tag and cost-center filters have no rollup column; callers use raw events for them.
    fn rollup_where_clause(&self, first: usize) -> (String, Vec<Arg>) {
        self.clause(first, true)
    }

    fn clause(&self, first: usize, rollup: bool) -> (String, Vec<Arg>) {
        let time_col = if rollup { "hour_ms" } else { "ts_ms" };
        let mut conds: Vec<(&str, &str, Arg)> = Vec::new();
        if let Some(v) = self.from_ms {
            let v = if rollup { v - v.rem_euclid(HOUR_MS) } else { v };
            conds.push((time_col, ">=", Arg::I(v)));
        }
        if let Some(v) = self.to_ms {
            conds.push((time_col, "<", Arg::I(v)));
        }
        for (col, v) in [
            ("key_id", &self.key_id),
            ("team_id", &self.team_id),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                conds.push((col, "=", Arg::S(v.clone())));
            }
        }
        if !rollup {
            if let Some(v) = &self.cost_center {
                conds.push(("cost_center", "=", Arg::S(v.clone())));
            }
            if let Some(v) = &self.tag {
                // Tags are stored as a JSON array of strings; match one element exactly.
                conds.push((
                    "tags",
                    "LIKE",
                    Arg::S(format!("%{}%", serde_json::Value::from(v.as_str()))),
                ));
            }
        }
        if conds.is_empty() {
            return (String::new(), Vec::new());
        }
        let parts: Vec<String> = conds
            .iter()
            .enumerate()
            .map(|(i, (col, op, _))| format!("{col} {op} ${}", first + i))
            .collect();
        (
            format!(" WHERE {}", parts.join(" AND ")),
            conds.into_iter().map(|(_, _, a)| a).collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RollupKey {
    hour_ms: i64,
    key_id: String,
    team_id: String,
    model: String,
}

#[derive(Debug, Default)]
struct Rollup {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    cost_nanos: i64,
}

/// Rollups in key order, so concurrent writers lock rows in the same order (no deadlocks).
fn rollup(events: &[&UsageEvent]) -> std::collections::BTreeMap<RollupKey, Rollup> {
    let mut m: std::collections::BTreeMap<RollupKey, Rollup> = std::collections::BTreeMap::new();
    for e in events {
        let ts = e.unix_ms as i64;
        let r = m
            .entry(RollupKey {
                hour_ms: ts - ts.rem_euclid(HOUR_MS),
                key_id: e.key_id.clone().unwrap_or_default(),
                team_id: e.team_id.clone().unwrap_or_default(),
                model: e.model.clone(),
            })
            .or_default();
        r.requests += 1;
        r.errors += i64::from(e.outcome != Outcome::Success);
        r.prompt_tokens += e.prompt_tokens as i64;
        r.completion_tokens += e.completion_tokens as i64;
        r.cached_tokens += e.cached_tokens as i64;
        r.cost_nanos += e.cost_nanos;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn placeholders_number_in_order() {
        let mut s = String::new();
        push_placeholders(&mut s, 2, 3);
        assert_eq!(s, "($1,$2,$3),($4,$5,$6)");
    }
}
