//! The overview's summary of a period: totals, latency and time-to-first-token percentiles,
//! errors by kind, and the routing tier and intent mix.
//!
//! Latencies are counted in histogram buckets: exact below 16 ms, then eight per doubling, so
//! a percentile is within 1/16 of the true value (the bucket's middle is reported). The ledger
//! writer keeps the buckets per hour in `usage_hourly_mix`; a filter by time alone (whole
//! hours) reads them, any other filter counts raw events into the same buckets, so both answer
//! alike.

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, Row};

use super::reports::{Arg, Grain, GroupBy, Totals, UsageFilter};
use super::{Result, Store};
use crate::clock::HOUR_MS;

/// The lower bound of the histogram bucket that holds `ms`.
pub fn latency_bucket(ms: u64) -> u64 {
    if ms < 16 {
        return ms;
    }
    let shift = 63 - ms.leading_zeros() - 3;
    (ms >> shift) << shift
}

/// How many milliseconds the bucket starting at `floor` spans.
fn bucket_width(floor: u64) -> u64 {
    if floor < 16 {
        1
    } else {
        1 << (63 - floor.leading_zeros() - 3)
    }
}

/// Percentiles of a latency, in milliseconds; `None` without samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub samples: i64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl Percentiles {
    /// From bucket counts (`floor → count`).
    pub fn of_buckets(buckets: &BTreeMap<u64, i64>) -> Percentiles {
        let samples: i64 = buckets.values().copied().filter(|n| *n > 0).sum();
        let at = |q: f64| -> Option<u64> {
            if samples == 0 {
                return None;
            }
            // The smallest value with at least q of the samples at or below it.
            let rank = ((q * samples as f64).ceil() as i64).clamp(1, samples);
            let mut seen = 0i64;
            for (&floor, &n) in buckets {
                seen += n.max(0);
                if seen >= rank {
                    return Some(floor + (bucket_width(floor) - 1) / 2);
                }
            }
            None
        };
        Percentiles {
            samples,
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
        }
    }
}

/// A period's summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub totals: Totals,
    /// Of successful requests, arrival to last byte.
    pub latency: Percentiles,
    /// Of successful streams, arrival to first token.
    pub ttft: Percentiles,
    /// Failed requests by error kind (or outcome), most first.
    pub errors: Vec<(String, i64)>,
    /// Routed requests by tier, most first.
    pub tiers: Vec<(String, i64)>,
    /// Routed requests by the intent the router saw, most first.
    pub intents: Vec<(String, i64)>,
}

/// One deployment's record over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentSummary {
    pub requests: i64,
    /// Requests whose outcome was not `success`.
    pub failed: i64,
    /// Of its successful answers.
    pub latency: Percentiles,
}

impl Store {
    /// The summary of the events `f` matches.
    pub async fn usage_summary(&self, f: &UsageFilter) -> Result<Summary> {
        let mut totals = Totals::default();
        for (_, t) in self.usage_grouped(f, GroupBy::Model).await? {
            totals.add(&t);
        }
        let aligned = |v: Option<i64>| v.is_none_or(|t| t.rem_euclid(HOUR_MS) == 0);
        let by_time_only = f.key_id.is_none()
            && f.team_id.is_none()
            && f.model.is_none()
            && f.tag.is_none()
            && f.cost_center.is_none()
            && aligned(f.from_ms)
            && aligned(f.to_ms);
        let counts = if by_time_only {
            self.mix_from_rollups(f).await?
        } else {
            self.mix_from_events(f).await?
        };
        let mut latency = BTreeMap::new();
        let mut ttft = BTreeMap::new();
        let mut labels: BTreeMap<&str, Vec<(String, i64)>> = BTreeMap::new();
        for (dim, label, n) in counts {
            match dim.as_str() {
                "latency" | "ttft" => {
                    let Ok(v) = label.parse::<u64>() else { continue };
                    let h = if dim == "latency" { &mut latency } else { &mut ttft };
                    *h.entry(latency_bucket(v)).or_insert(0) += n;
                }
                "error" => labels.entry("error").or_default().push((label, n)),
                "tier" => labels.entry("tier").or_default().push((label, n)),
                "intent" => labels.entry("intent").or_default().push((label, n)),
                _ => {}
            }
        }
        let mut take = |dim: &str| {
            let mut v = labels.remove(dim).unwrap_or_default();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        Ok(Summary {
            totals,
            latency: Percentiles::of_buckets(&latency),
            ttft: Percentiles::of_buckets(&ttft),
            errors: take("error"),
            tiers: take("tier"),
            intents: take("intent"),
        })
    }

    /// Routed requests per hour or day, tier and intent: `(start, dim, label, requests)`,
    /// oldest first, from the rollups (`f` filters by time only).
    pub async fn mix_series(&self, f: &UsageFilter, group: GroupBy) -> Result<Vec<(i64, String, String, i64)>> {
        let step = if group == GroupBy::Hour {
            HOUR_MS
        } else {
            crate::clock::DAY_MS
        };
        let hourly = || format!("SELECT hour_ms - (hour_ms % {step}) AS t, dim, label, n FROM usage_hourly_mix");
        let (source, args) = if group == GroupBy::Hour {
            let (w, a) = f.rollup_where_clause(1);
            (format!("{}{w}", hourly()), a)
        } else {
            f.rollup_union(|grain| match grain {
                Grain::Hour => hourly(),
                Grain::Day => "SELECT day_ms AS t, dim, label, n FROM usage_daily_mix".to_string(),
            })
        };
        let sql = format!(
            "SELECT t, dim, label, CAST(SUM(n) AS BIGINT) AS n FROM ({source}) u \
             WHERE dim IN ('tier', 'intent') GROUP BY t, dim, label ORDER BY t, dim, label"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("t")?, r.try_get("dim")?, r.try_get("label")?, r.try_get("n")?)))
            .collect()
    }

    /// Per logical model and deployment that served (or last tried) events matching `f`:
    /// requests, failures and the latency percentiles of its successful answers. (A deployment
    /// id names a provider's model, which several logical models may share.)
    pub async fn deployment_summary(&self, f: &UsageFilter) -> Result<BTreeMap<(String, String), DeploymentSummary>> {
        let (where_sql, args) = f.where_clause(1);
        let cond = if where_sql.is_empty() {
            " WHERE deployment IS NOT NULL".to_string()
        } else {
            format!("{where_sql} AND deployment IS NOT NULL")
        };
        let sql = format!(
            "SELECT model, deployment, CASE WHEN outcome = 'success' THEN 1 ELSE 0 END AS ok, latency_ms, \
             CAST(COUNT(*) AS BIGINT) AS n FROM usage_events{cond} \
             GROUP BY model, deployment, CASE WHEN outcome = 'success' THEN 1 ELSE 0 END, latency_ms"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let mut out: BTreeMap<(String, String), (DeploymentSummary, BTreeMap<u64, i64>)> = BTreeMap::new();
        for r in q.fetch_all(&self.pool).await? {
            let (m, d, ok, ms, n): (String, String, i64, i64, i64) = (
                r.try_get("model")?,
                r.try_get("deployment")?,
                r.try_get("ok")?,
                r.try_get("latency_ms")?,
                r.try_get("n")?,
            );
            let e = out.entry((m, d)).or_default();
            e.0.requests += n;
            if ok == 1 {
                *e.1.entry(latency_bucket(ms.max(0) as u64)).or_insert(0) += n;
            } else {
                e.0.failed += n;
            }
        }
        Ok(out
            .into_iter()
            .map(|(d, (mut s, h))| {
                s.latency = Percentiles::of_buckets(&h);
                (d, s)
            })
            .collect())
    }

    async fn mix_from_rollups(&self, f: &UsageFilter) -> Result<Vec<(String, String, i64)>> {
        let (union, args) = f.rollup_union(|grain| match grain {
            Grain::Hour => "SELECT dim, label, n FROM usage_hourly_mix".to_string(),
            Grain::Day => "SELECT dim, label, n FROM usage_daily_mix".to_string(),
        });
        let sql = format!("SELECT dim, label, CAST(SUM(n) AS BIGINT) AS n FROM ({union}) u GROUP BY dim, label");
        self.fetch_counts(sql, args).await
    }

    /// The same counts from raw events: latencies as exact values (bucketed by the caller).
    async fn mix_from_events(&self, f: &UsageFilter) -> Result<Vec<(String, String, i64)>> {
        let (where_sql, args) = f.where_clause(1);
        let and = |cond: &str| {
            if where_sql.is_empty() {
                format!(" WHERE {cond}")
            } else {
                format!("{where_sql} AND {cond}")
            }
        };
        let parts = [
            ("latency", "CAST(latency_ms AS TEXT)", and("outcome = 'success'")),
            (
                "ttft",
                "CAST(ttft_ms AS TEXT)",
                and("outcome = 'success' AND ttft_ms IS NOT NULL"),
            ),
            ("error", "COALESCE(error_kind, outcome)", and("outcome <> 'success'")),
            ("tier", "tier", and("tier IS NOT NULL")),
            ("intent", "intent", and("intent IS NOT NULL")),
        ];
        let mut out = Vec::new();
        for (dim, expr, cond) in parts {
            let sql = format!(
                "SELECT '{dim}' AS dim, {expr} AS label, CAST(COUNT(*) AS BIGINT) AS n FROM usage_events{cond} GROUP BY {expr}"
            );
            out.extend(self.fetch_counts(sql, args.clone()).await?);
        }
        Ok(out)
    }

    async fn fetch_counts(&self, sql: String, args: Vec<Arg>) -> Result<Vec<(String, String, i64)>> {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("dim")?, r.try_get("label")?, r.try_get("n")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_sixteen_and_eight_per_doubling_above() {
        for ms in 0..16 {
            assert_eq!(latency_bucket(ms), ms);
        }
        assert_eq!(latency_bucket(16), 16);
        assert_eq!(latency_bucket(17), 16);
        assert_eq!(latency_bucket(18), 18);
        assert_eq!(latency_bucket(1000), 960);
        assert_eq!(bucket_width(960), 64);
        // Every value lies in its bucket, and a bucket is at most 1/8 of its floor wide.
        for ms in [16u64, 31, 100, 999, 12_345, 86_400_000, u64::MAX / 2] {
            let b = latency_bucket(ms);
            assert!(b <= ms && ms < b + bucket_width(b), "{ms}");
            assert!(bucket_width(b) * 8 <= b, "{ms}");
        }
    }

    #[test]
    fn percentiles_take_the_middle_of_the_bucket_that_reaches_the_rank() {
        let mut h = BTreeMap::new();
        assert_eq!(Percentiles::of_buckets(&h), Percentiles::default());
        // 90 answers at 5 ms, 10 at 1000 ms (bucket 960..1024).
        h.insert(5, 90);
        h.insert(latency_bucket(1000), 10);
        let p = Percentiles::of_buckets(&h);
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50_ms, Some(5));
        assert_eq!(p.p95_ms, Some(991));
        assert_eq!(p.p99_ms, Some(991));
        assert!((991f64 - 1000.0).abs() / 1000.0 <= 1.0 / 16.0);
    }
}
