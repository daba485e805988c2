//! Writing usage events: a batch of events, their hourly rollups and (with billing) their outbox
//! rows in one transaction.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};

use super::summary::latency_bucket;
use super::{push_placeholders, shaped, Backend, Result, Store};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::records::usage::{Cell, Outcome, UsageEvent, UsageSource};

/// Rows per multi-row INSERT on SQLite: with positional parameters 32 to 128 measured alike
/// (28–29k events/s with 37 columns; 44 now), 16 about a fifth slower.
const SQLITE_ROWS_PER_INSERT: usize = 64;
/// Rows per multi-row INSERT on Postgres (its 65,535 parameters hold 256 rows of 44 columns).
const ROWS_PER_INSERT: usize = 256;
/// Rows per INSERT into the billing outbox (two parameters a row).
const OUTBOX_ROWS_PER_INSERT: usize = 1024;

impl Store {
    /// Keeps an event the ledger refused, whole, with the database's reason.
    pub async fn quarantine_usage(&self, e: &UsageEvent, error: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO usage_quarantine (event_id, ts_ms, error, event) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(e.event_id.clone())
        .bind(e.ts_ms)
        .bind(error.chars().take(2000).collect::<String>())
        .bind(serde_json::to_string(e).unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events in the quarantine: `(event_id, error)`, oldest first.
    pub async fn quarantined(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT event_id, error FROM usage_quarantine ORDER BY ts_ms, event_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event_id")?, r.try_get("error")?)))
            .collect()
    }

    /// Writes a batch of events and their hourly rollups in one transaction. Events whose id is
    /// already stored are skipped, so a retried batch is not counted twice.
    /// With `billing`, each event's billing event goes into the outbox in the same transaction.
    pub async fn write_usage(&self, events: &[UsageEvent], billing: bool) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Almost always every event is new: the inserts then need not say which rows they wrote.
        // When one was stored already (a batch retried after a commit whose answer was lost),
        // the transaction is dropped and written again, finding out which are new.
        if self.write_batch(events, billing, false).await? {
            return Ok(());
        }
        self.write_batch(events, billing, true).await.map(|_| ())
    }

    /// One try of [`Store::write_usage`]; `Ok(false)` when, not checking, it met a stored event.
    async fn write_batch(&self, events: &[UsageEvent], billing: bool, check: bool) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let rows = match self.backend {
            Backend::Sqlite => SQLITE_ROWS_PER_INSERT,
            Backend::Postgres => ROWS_PER_INSERT,
        };
        let columns = UsageEvent::COLUMNS.join(", ");
        let mut inserted: HashSet<&str> = HashSet::new();
        for chunk in shaped(events, rows) {
            let mut sql = String::with_capacity(96 + columns.len() + chunk.len() * UsageEvent::COLUMNS.len() * 5);
            sql.push_str("INSERT INTO usage_events (");
            sql.push_str(&columns);
            sql.push_str(") VALUES ");
            push_placeholders(&mut sql, chunk.len(), UsageEvent::COLUMNS.len(), self.backend);
            sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
            if check {
                sql.push_str(" RETURNING event_id");
            }
            let q = bind_events(sqlx::query(AssertSqlSafe(sql)), chunk);
            if check {
                for row in q.fetch_all(&mut *tx).await? {
                    let id: String = row.try_get("event_id")?;
                    if let Some(e) = chunk.iter().find(|e| e.event_id == id) {
                        inserted.insert(&e.event_id);
                    }
                }
            } else if q.execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
                return Ok(false);
            }
        }
        let fresh: Vec<&UsageEvent> = if check {
            events
                .iter()
                .filter(|e| inserted.contains(e.event_id.as_str()))
                .collect()
        } else {
            events.iter().collect()
        };
        self.write_rollups_and_outbox(&mut tx, &fresh, billing, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The hourly and daily rollups of the events just written and, with billing, their outbox rows.
    async fn write_rollups_and_outbox(
        &self,
        tx: &mut AnyConnection,
        fresh: &[&UsageEvent],
        billing: bool,
        rows: usize,
    ) -> Result<()> {
        let hourly = rollup(fresh);
        // The daily rollups sum the same hours: whole days of a long range read 24 times fewer rows.
        let mut daily: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
        for (k, r) in &hourly {
            let day = RollupKey {
                hour_ms: k.hour_ms - k.hour_ms.rem_euclid(DAY_MS),
                ..k.clone()
            };
            daily.entry(day).or_default().add(r);
        }
        self.upsert_rollups(tx, "usage_hourly", "hour_ms", &hourly, rows)
            .await?;
        self.upsert_rollups(tx, "usage_daily", "day_ms", &daily, rows).await?;
        let hourly_mix = mix(fresh);
        let mut daily_mix: BTreeMap<MixKey<'_>, i64> = BTreeMap::new();
        for ((hour, dim, label), n) in &hourly_mix {
            *daily_mix
                .entry((hour - hour.rem_euclid(DAY_MS), *dim, label.clone()))
                .or_default() += n;
        }
        self.upsert_mix(tx, "usage_hourly_mix", "hour_ms", &hourly_mix, rows)
            .await?;
        self.upsert_mix(tx, "usage_daily_mix", "day_ms", &daily_mix, rows)
            .await?;
        if billing {
            // Two parameters a row bind quickly on both backends: few large statements. A row
            // is due from its event's time, so retries (due later) are not starved by new rows.
            for chunk in shaped(fresh, OUTBOX_ROWS_PER_INSERT) {
                let mut sql = String::from("INSERT INTO billing_outbox (event_id, next_attempt_ms) VALUES ");
                push_placeholders(&mut sql, chunk.len(), 2, self.backend);
                sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    q = q.bind(e.event_id.as_str()).bind(e.ts_ms);
                }
                q.execute(&mut *tx).await?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Adds `rollups` to `table` (`usage_hourly` or `usage_daily`, keyed by `time_col`).
    async fn upsert_rollups(
        &self,
        tx: &mut AnyConnection,
        table: &str,
        time_col: &str,
        rollups: &BTreeMap<RollupKey, Rollup>,
        rows: usize,
    ) -> Result<()> {
        const SUMS: [&str; 10] = [
            "requests",
            "errors",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost_nanos",
            "cache_hits",
            "saved_nanos",
            "baseline_nanos",
            "estimated_cost_nanos",
        ];
        let agg: Vec<(&RollupKey, &Rollup)> = rollups.iter().collect();
        for chunk in shaped(&agg, rows) {
            let mut sql = format!(
                "INSERT INTO {table} ({time_col}, key_id, team_id, model, {}) VALUES ",
                SUMS.join(", ")
            );
            push_placeholders(&mut sql, chunk.len(), 4 + SUMS.len(), self.backend);
            sql.push_str(&format!(
                " ON CONFLICT ({time_col}, key_id, team_id, model) DO UPDATE SET "
            ));
            let sets: Vec<String> = SUMS
                .iter()
                .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
                .collect();
            sql.push_str(&sets.join(", "));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, r) in chunk {
                q = q
                    .bind(k.hour_ms)
                    .bind(k.key_id.as_str())
                    .bind(k.team_id.as_str())
                    .bind(k.model.as_str())
                    .bind(r.requests)
                    .bind(r.errors)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cost_nanos)
                    .bind(r.cache_hits)
                    .bind(r.saved_nanos)
                    .bind(r.baseline_nanos)
                    .bind(r.estimated_cost_nanos);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Adds `counts` to `table` (`usage_hourly_mix` or `usage_daily_mix`).
    async fn upsert_mix(
        &self,
        tx: &mut AnyConnection,
        table: &str,
        time_col: &str,
        counts: &BTreeMap<MixKey<'_>, i64>,
        rows: usize,
    ) -> Result<()> {
        let agg: Vec<(&MixKey<'_>, &i64)> = counts.iter().collect();
        for chunk in shaped(&agg, rows) {
            let mut sql = format!("INSERT INTO {table} ({time_col}, dim, label, n) VALUES ");
            push_placeholders(&mut sql, chunk.len(), 4, self.backend);
            sql.push_str(&format!(
                " ON CONFLICT ({time_col}, dim, label) DO UPDATE SET n = {table}.n + excluded.n"
            ));
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for ((t, dim, label), n) in chunk {
                q = q.bind(*t).bind(*dim).bind(label.as_ref()).bind(**n);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// Binds every column of `events`, in order. Borrowed text is bound without a copy: it lives as
/// long as the events.
fn bind_events<'q>(mut q: Query<'q, Any, AnyArguments>, events: &'q [UsageEvent]) -> Query<'q, Any, AnyArguments> {
    for e in events {
        for cell in e.cells() {
            q = match cell {
                Cell::Int(v) => q.bind(v),
                Cell::Text(Some(Cow::Borrowed(t))) => q.bind(Some(t)),
                Cell::Text(Some(Cow::Owned(t))) => q.bind(Some(t)),
                Cell::Text(None) => q.bind(None::<&str>),
            };
        }
    }
    q
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RollupKey {
    /// The hour's start (or, in the daily rollups, the day's).
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
    cache_hits: i64,
    saved_nanos: i64,
    baseline_nanos: i64,
    estimated_cost_nanos: i64,
}

impl Rollup {
    fn add(&mut self, o: &Rollup) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(o.cost_nanos);
        self.cache_hits = self.cache_hits.saturating_add(o.cache_hits);
        self.saved_nanos = self.saved_nanos.saturating_add(o.saved_nanos);
        self.baseline_nanos = self.baseline_nanos.saturating_add(o.baseline_nanos);
        self.estimated_cost_nanos = self.estimated_cost_nanos.saturating_add(o.estimated_cost_nanos);
    }
}

/// Rollups in key order, so concurrent writers lock rows in the same order (no deadlocks).
fn rollup(events: &[&UsageEvent]) -> BTreeMap<RollupKey, Rollup> {
    let mut m: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    for e in events {
        let ts = e.ts_ms;
        let r = m
            .entry(RollupKey {
                hour_ms: ts - ts.rem_euclid(HOUR_MS),
                key_id: e.key_id.clone().unwrap_or_default(),
                team_id: e.team_id.clone().unwrap_or_default(),
                model: e.model.clone(),
            })
            .or_default();
        let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        r.requests = r.requests.saturating_add(1);
        r.errors = r.errors.saturating_add(i64::from(e.outcome != Outcome::Success));
        r.prompt_tokens = r.prompt_tokens.saturating_add(count(e.prompt_tokens));
        r.completion_tokens = r.completion_tokens.saturating_add(count(e.completion_tokens));
        r.cached_tokens = r.cached_tokens.saturating_add(count(e.cached_tokens));
        r.cost_nanos = r.cost_nanos.saturating_add(e.cost_nanos);
        r.cache_hits = r.cache_hits.saturating_add(i64::from(e.is_cache_hit()));
        r.saved_nanos = r.saved_nanos.saturating_add(e.cache_saved_nanos);
        r.baseline_nanos = r.baseline_nanos.saturating_add(e.baseline_cost_nanos);
        if e.usage_source == UsageSource::Estimated {
            r.estimated_cost_nanos = r.estimated_cost_nanos.saturating_add(e.cost_nanos);
        }
    }
    m
}

/// A row of `usage_hourly_mix`: the hour, the dimension and the label.
type MixKey<'e> = (i64, &'static str, Cow<'e, str>);

/// Counts per hour, dimension and label (see `usage_hourly_mix`), in key order.
fn mix<'e>(events: &[&'e UsageEvent]) -> BTreeMap<MixKey<'e>, i64> {
    let mut m: BTreeMap<MixKey<'e>, i64> = BTreeMap::new();
    for &e in events {
        let hour = e.ts_ms - e.ts_ms.rem_euclid(HOUR_MS);
        let mut add = |dim: &'static str, label: Cow<'e, str>| *m.entry((hour, dim, label)).or_default() += 1;
        // Latencies of answers only: a refusal's few microseconds say nothing of the service.
        if e.outcome == Outcome::Success {
            add("latency", Cow::Owned(latency_bucket(e.latency_ms).to_string()));
            if let Some(t) = e.ttft_ms {
                add("ttft", Cow::Owned(latency_bucket(t).to_string()));
            }
        } else {
            let kind = e.error_kind.as_deref().unwrap_or(e.outcome.as_str());
            add("error", Cow::Borrowed(kind));
        }
        if let Some(t) = e.tier.as_deref() {
            add("tier", Cow::Borrowed(t));
        }
        if let Some(i) = e.intent.as_deref() {
            add("intent", Cow::Borrowed(i));
        }
    }
    m
}
