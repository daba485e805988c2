//! Reading the ledger: totals, grouped reports (from the hourly, daily and per-facet rollups
//! when they can answer), export pages and per-route statistics (from their daily rollups).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{usage_of_row, Result, Store};

/// Per event: 1 for a cache hit (`UsageEvent::is_cache_hit`), else 0.
const HIT: &str = "CASE WHEN cache IN ('hit', 'semantic_hit') THEN 1 ELSE 0 END";
/// Per event: its cost when its usage was estimated rather than reported, else 0.
const ESTIMATED: &str = "CASE WHEN usage_source = 'estimated' THEN cost_nanos ELSE 0 END";
use crate::clock::{DAY_MS, HOUR_MS};
use crate::records::usage::{Outcome, UsageEvent};

impl Store {
    /// Totals over raw events matching `f` (the ground truth reports are checked against).
    pub async fn usage_totals(&self, f: &UsageFilter) -> Result<Totals> {
        let (where_sql, args) = f.where_clause(1);
        let sql = format!(
            "SELECT COUNT(*) AS requests, \
             CAST(COALESCE(SUM(CASE WHEN outcome = 'success' THEN 0 ELSE 1 END), 0) AS BIGINT) AS errors, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos, \
             CAST(COALESCE(SUM({HIT}), 0) AS BIGINT) AS cache_hits, \
             CAST(COALESCE(SUM(cache_saved_nanos), 0) AS BIGINT) AS saved_nanos, \
             CAST(COALESCE(SUM(baseline_cost_nanos), 0) AS BIGINT) AS baseline_nanos, \
             CAST(COALESCE(SUM({ESTIMATED}), 0) AS BIGINT) AS estimated_cost_nanos FROM usage_events{where_sql}"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        Totals::of_row(&q.fetch_one(&self.pool).await?)
    }

    /// Usage grouped by `group`, from the hourly and daily rollups when the filter allows
    /// (hour-aligned bounds, no tag or cost-center filter), from the daily rollups per tag or
    /// cost center plus the raw events of the partial days at either end (one of the two, not
    /// grouped by hour), else from raw events; all give the same sums.
    pub async fn usage_grouped(&self, f: &UsageFilter, group: GroupBy) -> Result<Vec<(String, Totals)>> {
        let aligned = |v: Option<i64>| v.is_none_or(|t| t.rem_euclid(HOUR_MS) == 0);
        let from_rollups = f.tag.is_none() && f.cost_center.is_none() && aligned(f.from_ms) && aligned(f.to_ms);
        // One tag or one cost center, by day or coarser: whole days from their daily rollups.
        let by_facet = f.facet().is_some() && group != GroupBy::Hour;
        let key_expr = match group {
            GroupBy::Hour => "CAST(hour AS TEXT)",
            GroupBy::Day => "CAST(day AS TEXT)",
            GroupBy::Key => "key_id",
            GroupBy::Team => "team_id",
            GroupBy::Model => "model",
        };
        const SUMS: &str =
            "requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_nanos, cache_hits, \
                            saved_nanos, baseline_nanos, estimated_cost_nanos";
        let hourly = || {
            format!(
                "SELECT hour_ms - (hour_ms % {HOUR_MS}) AS hour, hour_ms - (hour_ms % {DAY_MS}) AS day, key_id, team_id, \
                 model, {SUMS} FROM usage_hourly"
            )
        };
        let raw = || {
            format!(
                "SELECT ts_ms - (ts_ms % {HOUR_MS}) AS hour, ts_ms - (ts_ms % {DAY_MS}) AS day, COALESCE(key_id, '') AS key_id, \
                 COALESCE(team_id, '') AS team_id, model, 1 AS requests, CASE WHEN outcome = 'success' THEN 0 ELSE 1 END AS errors, \
                 prompt_tokens, completion_tokens, cached_tokens, cost_nanos, {HIT} AS cache_hits, \
                 cache_saved_nanos AS saved_nanos, baseline_cost_nanos AS baseline_nanos, {ESTIMATED} AS estimated_cost_nanos \
                 FROM usage_events"
            )
        };
        let (source, where_sql, args) = if by_facet {
            let daily =
                format!("SELECT day_ms AS hour, day_ms AS day, key_id, team_id, model, {SUMS} FROM usage_daily_facets");
            let (union, a) = f.day_union(&daily, &raw(), true);
            (union, String::new(), a)
        } else if from_rollups && group == GroupBy::Hour {
            let (w, a) = f.rollup_where_clause(1);
            (hourly(), w, a)
        } else if from_rollups {
            // Whole days from the daily rollups: a year is 365 rows per key, team and model.
            let (union, a) = f.rollup_union(|grain| match grain {
                Grain::Hour => hourly(),
                Grain::Day => {
                    format!("SELECT day_ms AS hour, day_ms AS day, key_id, team_id, model, {SUMS} FROM usage_daily")
                }
            });
            (union, String::new(), a)
        } else {
            let (w, a) = f.where_clause(1);
            (raw(), w, a)
        };
        let sql = format!(
            "SELECT {key_expr} AS grp, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(errors) AS BIGINT) AS errors, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos, \
             CAST(SUM(cache_hits) AS BIGINT) AS cache_hits, CAST(SUM(saved_nanos) AS BIGINT) AS saved_nanos, \
             CAST(SUM(baseline_nanos) AS BIGINT) AS baseline_nanos, \
             CAST(SUM(estimated_cost_nanos) AS BIGINT) AS estimated_cost_nanos \
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
    ) -> Result<Vec<UsageEvent>> {
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
        rows.iter().map(usage_of_row).collect()
    }

    /// Routed events grouped by route, variant, model served, shadow choice and cascade outcome:
    /// whole days from `usage_daily_routes` and the partial days at either end from raw events
    /// (when the filter names no key, team, tag or cost center, which that table does not
    /// keep), else from raw events alone.
    pub async fn route_stats(&self, f: &UsageFilter) -> Result<Vec<RouteStat>> {
        let raw = "SELECT route, COALESCE(route_variant, '') AS variant, model, COALESCE(shadow_model, '') AS shadow_model, \
                   COALESCE(cascade, '') AS cascade, COALESCE(escalation_reason, '') AS escalation_reason, 1 AS requests, \
                   prompt_tokens, cached_tokens, completion_tokens, cost_nanos, escalation_cost_nanos FROM usage_events";
        let daily = f.key_id.is_none() && f.team_id.is_none() && f.tag.is_none() && f.cost_center.is_none();
        let (source, args) = if daily {
            let day =
                "SELECT route, variant, model, shadow_model, cascade, escalation_reason, requests, prompt_tokens, \
                       cached_tokens, completion_tokens, cost_nanos, escalation_cost_nanos FROM usage_daily_routes";
            f.day_union(day, raw, false)
        } else {
            let (w, a) = f.where_clause(1);
            (format!("{raw}{w}"), a)
        };
        let sql = format!(
            "SELECT route, variant, model, shadow_model AS shadow, cascade, escalation_reason, \
             CAST(SUM(requests) AS BIGINT) AS requests, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
             CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos, \
             CAST(COALESCE(SUM(escalation_cost_nanos), 0) AS BIGINT) AS escalation_cost_nanos \
             FROM ({source}) u WHERE route IS NOT NULL \
             GROUP BY route, variant, model, shadow_model, cascade, escalation_reason \
             ORDER BY route, variant, model, shadow_model, cascade, escalation_reason"
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

/// Sums of usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nanos: i64,
    /// Requests the cache answered.
    pub cache_hits: i64,
    /// What those answers cost when they were made.
    pub saved_nanos: i64,
    /// The events' baselines (see `UsageEvent::baseline_cost_nanos`).
    pub baseline_nanos: i64,
    /// The part of `cost_nanos` whose usage was estimated, not reported by the upstream.
    pub estimated_cost_nanos: i64,
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
            cache_hits: row.try_get("cache_hits")?,
            saved_nanos: row.try_get("saved_nanos")?,
            baseline_nanos: row.try_get("baseline_nanos")?,
            estimated_cost_nanos: row.try_get("estimated_cost_nanos")?,
        })
    }

    pub fn add(&mut self, t: &Totals) {
        self.requests = self.requests.saturating_add(t.requests);
        self.errors = self.errors.saturating_add(t.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(t.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(t.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(t.cached_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(t.cost_nanos);
        self.cache_hits = self.cache_hits.saturating_add(t.cache_hits);
        self.saved_nanos = self.saved_nanos.saturating_add(t.saved_nanos);
        self.baseline_nanos = self.baseline_nanos.saturating_add(t.baseline_nanos);
        self.estimated_cost_nanos = self.estimated_cost_nanos.saturating_add(t.estimated_cost_nanos);
    }

    /// Adds one stored event.
    pub fn add_event(&mut self, e: &UsageEvent) {
        let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.add(&Totals {
            requests: 1,
            errors: i64::from(e.outcome != Outcome::Success),
            prompt_tokens: count(e.prompt_tokens),
            completion_tokens: count(e.completion_tokens),
            cached_tokens: count(e.cached_tokens),
            cost_nanos: e.cost_nanos,
            cache_hits: i64::from(e.is_cache_hit()),
            saved_nanos: e.cache_saved_nanos,
            baseline_nanos: e.baseline_cost_nanos,
            estimated_cost_nanos: if e.usage_source == crate::records::usage::UsageSource::Estimated {
                e.cost_nanos
            } else {
                0
            },
        });
    }
}

/// The grain of a rollup table: `usage_hourly`(`_mix`) or `usage_daily`(`_mix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grain {
    Hour,
    Day,
}

/// How a usage report groups its totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
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

#[derive(Clone)]
pub(crate) enum Arg {
    I(i64),
    S(String),
}

impl Arg {
    pub(super) fn bind_to<'q>(
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
    pub(super) fn where_clause(&self, first: usize) -> (String, Vec<Arg>) {
        self.clause(first, false)
    }

    /// The same over hourly rollups (`hour_ms`; an hour that starts before `to` is included).
    /// Tag and cost-center filters have no rollup column; callers use raw events for them.
    pub(super) fn rollup_where_clause(&self, first: usize) -> (String, Vec<Arg>) {
        self.clause(first, true)
    }

    fn clause(&self, first: usize, rollup: bool) -> (String, Vec<Arg>) {
        self.clause_on(first, if rollup { "hour_ms" } else { "ts_ms" }, rollup)
    }

    /// The rows of rollup tables that cover the filter's range, as one `UNION ALL`: whole days
    /// from the daily table (`select(Grain::Day)`), the hours before the first midnight and
    /// from the last one from the hourly table (`select(Grain::Hour)`). `select` gives a
    /// `SELECT … FROM table`; each part gets its own `WHERE`, parameters numbered from 1.
    pub(super) fn rollup_union(&self, select: impl Fn(Grain) -> String) -> (String, Vec<Arg>) {
        let from = self.from_ms.map(|v| v - v.rem_euclid(HOUR_MS));
        let to = self.to_ms;
        let first_midnight = from.map(|v| v + (DAY_MS - v.rem_euclid(DAY_MS)) % DAY_MS);
        let last_midnight = to.map(|v| v - v.rem_euclid(DAY_MS));
        let mut parts: Vec<(Grain, Option<i64>, Option<i64>)> = Vec::new();
        match (first_midnight, last_midnight) {
            (Some(a), Some(b)) if a >= b => parts.push((Grain::Hour, from, to)),
            (a, b) => {
                if let (Some(f), Some(a)) = (from, a) {
                    if f < a {
                        parts.push((Grain::Hour, Some(f), Some(a)));
                    }
                }
                parts.push((Grain::Day, a, b));
                if let (Some(b), Some(t)) = (b, to) {
                    if b < t {
                        parts.push((Grain::Hour, Some(b), Some(t)));
                    }
                }
            }
        }
        let mut sql = String::new();
        let mut args = Vec::new();
        for (grain, lo, hi) in parts {
            let part = UsageFilter {
                from_ms: lo,
                to_ms: hi,
                ..self.clone()
            };
            let time_col = if grain == Grain::Day { "day_ms" } else { "hour_ms" };
            let (w, a) = part.clause_on(args.len() + 1, time_col, true);
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            sql.push_str(&select(grain));
            sql.push_str(&w);
            args.extend(a);
        }
        (sql, args)
    }

    /// The one tag or cost center the filter names, as `usage_daily_facets` keeps it (`None`
    /// when it names neither, or both).
    pub(super) fn facet(&self) -> Option<(&'static str, &str)> {
        match (&self.tag, &self.cost_center) {
            (Some(t), None) => Some(("tag", t)),
            (None, Some(c)) => Some(("cost_center", c)),
            _ => None,
        }
    }

    /// The rows that cover the filter's range, as one `UNION ALL`: whole days from a daily
    /// table (`day`, a `SELECT … FROM table` with a `day_ms` column; filtered by the filter's
    /// tag or cost center as a facet when `facet`), and the partial days at either end from
    /// raw events (`raw`, a `SELECT … FROM usage_events`, filtered exactly). Each part gets its
    /// own `WHERE`, parameters numbered from 1.
    pub(super) fn day_union(&self, day: &str, raw: &str, facet: bool) -> (String, Vec<Arg>) {
        let (from, to) = (self.from_ms, self.to_ms);
        let first_midnight = from.map(|v| v + (DAY_MS - v.rem_euclid(DAY_MS)) % DAY_MS);
        let last_midnight = to.map(|v| v - v.rem_euclid(DAY_MS));
        // (from the daily table, from, to)
        let mut parts: Vec<(bool, Option<i64>, Option<i64>)> = Vec::new();
        match (first_midnight, last_midnight) {
            (Some(a), Some(b)) if a >= b => parts.push((false, from, to)),
            (a, b) => {
                if let (Some(f), Some(a)) = (from, a) {
                    if f < a {
                        parts.push((false, Some(f), Some(a)));
                    }
                }
                parts.push((true, a, b));
                if let (Some(b), Some(t)) = (b, to) {
                    if b < t {
                        parts.push((false, Some(b), Some(t)));
                    }
                }
            }
        }
        let mut sql = String::new();
        let mut args = Vec::new();
        for (daily, lo, hi) in parts {
            let part = UsageFilter {
                from_ms: lo,
                to_ms: hi,
                ..self.clone()
            };
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            if daily {
                let (mut w, a) = part.clause_on(args.len() + 1, "day_ms", true);
                args.extend(a);
                if let Some((name, value)) = self.facet().filter(|_| facet) {
                    let n = args.len();
                    let cond = format!("facet = ${} AND facet_value = ${}", n + 1, n + 2);
                    w = if w.is_empty() {
                        format!(" WHERE {cond}")
                    } else {
                        format!("{w} AND {cond}")
                    };
                    args.push(Arg::S(name.to_string()));
                    args.push(Arg::S(value.to_string()));
                }
                sql.push_str(day);
                sql.push_str(&w);
            } else {
                let (w, a) = part.clause_on(args.len() + 1, "ts_ms", false);
                args.extend(a);
                sql.push_str(raw);
                sql.push_str(&w);
            }
        }
        (sql, args)
    }

    fn clause_on(&self, first: usize, time_col: &str, rollup: bool) -> (String, Vec<Arg>) {
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
