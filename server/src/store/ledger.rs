//! Writing usage events: a batch of events, their hourly rollups, (with billing) their outbox
//! rows and the bodies stored for them in one transaction.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row};

use super::summary::latency_bucket;
use super::{push_placeholders, shaped, Backend, Result, Store};
use crate::clock::{DAY_MS, HOUR_MS};
use crate::records::bodies::RequestBodies;
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
        self.write_ledger(events, &[], billing).await
    }

    /// [`Store::write_usage`], with the bodies stored for some of the events (matched by event
    /// id; bodies of events not in the batch are ignored).
    pub async fn write_ledger(&self, events: &[UsageEvent], bodies: &[RequestBodies], billing: bool) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Almost always every event is new: the inserts then need not say which rows they wrote.
        // When one was stored already (a batch retried after a commit whose answer was lost),
        // the transaction is dropped and written again, finding out which are new.
        if self.write_batch(events, bodies, billing, false).await? {
            return Ok(());
        }
        self.write_batch(events, bodies, billing, true).await.map(|_| ())
    }

    /// One try of [`Store::write_ledger`]; `Ok(false)` when, not checking, it met a stored event.
    async fn write_batch(
        &self,
        events: &[UsageEvent],
        bodies: &[RequestBodies],
        billing: bool,
        check: bool,
    ) -> Result<bool> {
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
        if !bodies.is_empty() {
            let ids: HashSet<&str> = fresh.iter().map(|e| e.event_id.as_str()).collect();
            for b in bodies.iter().filter(|b| ids.contains(b.event_id.as_str())) {
                insert_bodies(&mut tx, b).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The hourly and daily rollups of the events just written (daily also per tag, cost center
    /// and route arm) and, with billing, their outbox rows.
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
        let facets = facets(fresh);
        if !facets.is_empty() {
            self.upsert_facets(tx, &facets, rows).await?;
        }
        let arms = route_arms(fresh);
        if !arms.is_empty() {
            self.upsert_route_arms(tx, &arms, rows).await?;
        }
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
        let agg: Vec<(&RollupKey, &Rollup)> = rollups.iter().collect();
        for chunk in shaped(&agg, rows) {
            let sql = upsert_sql(
                table,
                &[time_col, "key_id", "team_id", "model"],
                &SUMS,
                chunk.len(),
                self.backend,
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, r) in chunk {
                q = q
                    .bind(k.hour_ms)
                    .bind(k.key_id.as_str())
                    .bind(k.team_id.as_str())
                    .bind(k.model.as_str());
                q = bind_sums(q, r);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Adds the day's sums per tag and cost center to `usage_daily_facets`.
    async fn upsert_facets(
        &self,
        tx: &mut AnyConnection,
        m: &BTreeMap<FacetKey<'_>, Rollup>,
        rows: usize,
    ) -> Result<()> {
        const KEYS: [&str; 6] = ["day_ms", "facet", "facet_value", "key_id", "team_id", "model"];
        let agg: Vec<_> = m.iter().collect();
        for chunk in shaped(&agg, rows) {
            let mut q = sqlx::query(AssertSqlSafe(upsert_sql(
                "usage_daily_facets",
                &KEYS,
                &SUMS,
                chunk.len(),
                self.backend,
            )));
            for ((day, facet, value, key, team, model), r) in chunk {
                q = q
                    .bind(*day)
                    .bind(*facet)
                    .bind(*value)
                    .bind(*key)
                    .bind(*team)
                    .bind(*model);
                q = bind_sums(q, r);
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Adds the day's sums per route arm to `usage_daily_routes`.
    async fn upsert_route_arms(
        &self,
        tx: &mut AnyConnection,
        m: &BTreeMap<RouteKey<'_>, RouteSums>,
        rows: usize,
    ) -> Result<()> {
        const KEYS: [&str; 7] = [
            "day_ms",
            "route",
            "variant",
            "model",
            "shadow_model",
            "cascade",
            "escalation_reason",
        ];
        let agg: Vec<_> = m.iter().collect();
        for chunk in shaped(&agg, rows) {
            let mut q = sqlx::query(AssertSqlSafe(upsert_sql(
                "usage_daily_routes",
                &KEYS,
                &ROUTE_SUMS,
                chunk.len(),
                self.backend,
            )));
            for ((day, route, variant, model, shadow, cascade, reason), r) in chunk {
                q = q
                    .bind(*day)
                    .bind(*route)
                    .bind(*variant)
                    .bind(*model)
                    .bind(*shadow)
                    .bind(*cascade)
                    .bind(*reason)
                    .bind(r.requests)
                    .bind(r.prompt_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cost_nanos)
                    .bind(r.escalation_cost_nanos);
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

/// The summed columns of a rollup row, in the order [`bind_sums`] binds them.
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

/// The columns of a route arm's sums, in the order they are bound.
const ROUTE_SUMS: [&str; 6] = [
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_nanos",
    "escalation_cost_nanos",
];

fn bind_sums<'q>(q: Query<'q, Any, AnyArguments>, r: &Rollup) -> Query<'q, Any, AnyArguments> {
    q.bind(r.requests)
        .bind(r.errors)
        .bind(r.prompt_tokens)
        .bind(r.completion_tokens)
        .bind(r.cached_tokens)
        .bind(r.cost_nanos)
        .bind(r.cache_hits)
        .bind(r.saved_nanos)
        .bind(r.baseline_nanos)
        .bind(r.estimated_cost_nanos)
}

/// `INSERT INTO table (keys…, sums…) VALUES … ON CONFLICT (keys…) DO UPDATE` adding the sums.
fn upsert_sql(table: &str, keys: &[&str], sums: &[&str], rows: usize, backend: Backend) -> String {
    let mut sql = format!("INSERT INTO {table} ({}, {}) VALUES ", keys.join(", "), sums.join(", "));
    push_placeholders(&mut sql, rows, keys.len() + sums.len(), backend);
    let sets: Vec<String> = sums
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    sql.push_str(&format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        keys.join(", "),
        sets.join(", ")
    ));
    sql
}

/// Stores one request's bodies.
async fn insert_bodies(tx: &mut AnyConnection, b: &RequestBodies) -> Result<()> {
    sqlx::query(
        "INSERT INTO request_bodies (event_id, ts_ms, request, response, request_truncated, response_truncated, \
         redactions) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(b.event_id.as_str())
    .bind(b.ts_ms)
    .bind(b.request.as_str())
    .bind(b.response.as_str())
    .bind(i64::from(b.request_truncated))
    .bind(i64::from(b.response_truncated))
    .bind(i64::from(b.redactions))
    .execute(&mut *tx)
    .await?;
    Ok(())
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
    fn add_event(&mut self, e: &UsageEvent) {
        self.requests = self.requests.saturating_add(1);
        self.errors = self.errors.saturating_add(i64::from(e.outcome != Outcome::Success));
        self.prompt_tokens = self.prompt_tokens.saturating_add(count(e.prompt_tokens));
        self.completion_tokens = self.completion_tokens.saturating_add(count(e.completion_tokens));
        self.cached_tokens = self.cached_tokens.saturating_add(count(e.cached_tokens));
        self.cost_nanos = self.cost_nanos.saturating_add(e.cost_nanos);
        self.cache_hits = self.cache_hits.saturating_add(i64::from(e.is_cache_hit()));
        self.saved_nanos = self.saved_nanos.saturating_add(e.cache_saved_nanos);
        self.baseline_nanos = self.baseline_nanos.saturating_add(e.baseline_cost_nanos);
        if e.usage_source == UsageSource::Estimated {
            self.estimated_cost_nanos = self.estimated_cost_nanos.saturating_add(e.cost_nanos);
        }
    }

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
        r.add_event(e);
    }
    m
}

/// A row of `usage_daily_facets`: the day, the facet (`tag` or `cost_center`) and its value,
/// the key, the team and the model.
type FacetKey<'e> = (i64, &'static str, &'e str, &'e str, &'e str, &'e str);

/// Daily rollups per tag and per cost center, in key order. An event counts once under each of
/// its distinct tags, as a filter by one tag counts it once.
fn facets<'e>(events: &[&'e UsageEvent]) -> BTreeMap<FacetKey<'e>, Rollup> {
    let mut m: BTreeMap<FacetKey<'e>, Rollup> = BTreeMap::new();
    for &e in events {
        let day = e.ts_ms - e.ts_ms.rem_euclid(DAY_MS);
        let (key, team) = (e.key_id.as_deref().unwrap_or(""), e.team_id.as_deref().unwrap_or(""));
        let mut seen: Vec<&str> = Vec::with_capacity(e.tags.0.len());
        for t in &e.tags.0 {
            if !seen.contains(&t.as_str()) {
                seen.push(t);
                m.entry((day, "tag", t, key, team, &e.model)).or_default().add_event(e);
            }
        }
        if let Some(c) = e.cost_center.as_deref() {
            m.entry((day, "cost_center", c, key, team, &e.model))
                .or_default()
                .add_event(e);
        }
    }
    m
}

/// A row of `usage_daily_routes`: the day, route, variant, model, shadow's choice, cascade
/// outcome and escalation reason ('' where none).
type RouteKey<'e> = (i64, &'e str, &'e str, &'e str, &'e str, &'e str, &'e str);

/// Routed events' sums per day and route arm.
#[derive(Debug, Default)]
struct RouteSums {
    requests: i64,
    prompt_tokens: i64,
    cached_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
    escalation_cost_nanos: i64,
}

/// Daily sums of routed events per route arm, in key order.
fn route_arms<'e>(events: &[&'e UsageEvent]) -> BTreeMap<RouteKey<'e>, RouteSums> {
    let mut m: BTreeMap<RouteKey<'e>, RouteSums> = BTreeMap::new();
    for &e in events {
        let Some(route) = e.route.as_deref() else { continue };
        let k = (
            e.ts_ms - e.ts_ms.rem_euclid(DAY_MS),
            route,
            e.route_variant.as_deref().unwrap_or(""),
            e.model.as_str(),
            e.shadow_model.as_deref().unwrap_or(""),
            e.cascade.as_deref().unwrap_or(""),
            e.escalation_reason.as_deref().unwrap_or(""),
        );
        let r = m.entry(k).or_default();
        r.requests = r.requests.saturating_add(1);
        r.prompt_tokens = r.prompt_tokens.saturating_add(count(e.prompt_tokens));
        r.cached_tokens = r.cached_tokens.saturating_add(count(e.cached_tokens));
        r.completion_tokens = r.completion_tokens.saturating_add(count(e.completion_tokens));
        r.cost_nanos = r.cost_nanos.saturating_add(e.cost_nanos);
        r.escalation_cost_nanos = r.escalation_cost_nanos.saturating_add(e.escalation_cost_nanos);
    }
    m
}

/// A stored count.
fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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
