//! Re-pricing: each stored event's cost recomputed from its tokens with the price in force at
//! its time, events and rollups changed together.

use serde::Serialize;

use sqlx::AssertSqlSafe;

use super::{Result, Store, UsageFilter};
use crate::clock::HOUR_MS;
use crate::records::usage::{UsageEvent, UsageSource};

impl Store {
    /// Recomputes the cost of every event matching `f` from its stored tokens with the price
    /// `price_of(model, deployment, ts_ms)` returns (the one in force at the event's time), updating
    /// changed events and their hourly rollups page by page, each page in one transaction.
    /// Events whose deployment has no price for their time are left as they are and counted.
    /// Budget spend already settled is not changed: re-pricing corrects the record.
    pub async fn reprice(
        &self,
        f: &UsageFilter,
        price_of: &(dyn Fn(&str, &str, i64) -> Option<crate::money::pricing::PricePoint> + Sync),
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
            let mut changes: Vec<(&UsageEvent, i64, String, i64)> = Vec::new();
            for row in &page {
                report.events += 1;
                report.cost_before_nanos = report.cost_before_nanos.saturating_add(row.cost_nanos);
                let Some(deployment) = row.deployment.as_deref() else {
                    // Never reached a model: nothing to price.
                    report.cost_after_nanos = report.cost_after_nanos.saturating_add(row.cost_nanos);
                    continue;
                };
                let Some(point) = price_of(&row.model, deployment, row.ts_ms) else {
                    report.unpriced += 1;
                    report.cost_after_nanos = report.cost_after_nanos.saturating_add(row.cost_nanos);
                    continue;
                };
                // A cascade's discarded cheap attempt is priced at its own deployment's price.
                let extra = match (row.escalated_from.as_deref(), row.escalated_deployment.as_deref()) {
                    (Some(m), Some(d)) => price_of(m, d, row.ts_ms).map(|p| {
                        p.price
                            .cost(row.escalation_prompt_tokens, 0, row.escalation_completion_tokens)
                            .0
                    }),
                    _ => Some(row.escalation_cost_nanos),
                };
                let Some(extra) = extra else {
                    report.unpriced += 1;
                    report.cost_after_nanos = report.cost_after_nanos.saturating_add(row.cost_nanos);
                    continue;
                };
                let cost = point
                    .price
                    .cost(row.prompt_tokens, row.cached_tokens, row.completion_tokens)
                    .0
                    .saturating_add(extra);
                report.cost_after_nanos = report.cost_after_nanos.saturating_add(cost);
                let version = point.version.to_string();
                if cost != row.cost_nanos || row.price_version.as_deref() != Some(version.as_str()) {
                    report.changed += 1;
                    changes.push((row, cost, version, extra));
                }
            }
            if dry_run || changes.is_empty() {
                continue;
            }
            // Per rollup: the change of cost, of baseline and of estimated cost.
            let mut deltas: std::collections::BTreeMap<(i64, String, String, String), [i64; 3]> = Default::default();
            let mut tx = self.pool.begin().await?;
            for (row, cost, version, extra) in &changes {
                // Only if the event is still as read: a concurrent run that changed it first
                // has moved its rollup already.
                let delta = cost.saturating_sub(row.cost_nanos);
                // A baseline counted at the strong model's price stays; one that is the event's
                // own cost moves with it.
                let baseline_delta = if row.route.is_none() { delta } else { 0 };
                let done = sqlx::query(
                    "UPDATE usage_events SET cost_nanos = $1, price_version = $2, escalation_cost_nanos = $6, \
                     baseline_cost_nanos = baseline_cost_nanos + $7 \
                     WHERE event_id = $3 AND cost_nanos = $4 AND COALESCE(price_version, '') = $5",
                )
                .bind(*cost)
                .bind(version.clone())
                .bind(row.event_id.clone())
                .bind(row.cost_nanos)
                .bind(row.price_version.clone().unwrap_or_default())
                .bind(*extra)
                .bind(baseline_delta)
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
                let estimated = row.usage_source == UsageSource::Estimated;
                let d = deltas.entry(key).or_default();
                d[0] = d[0].saturating_add(delta);
                d[1] = d[1].saturating_add(baseline_delta);
                d[2] = d[2].saturating_add(if estimated { delta } else { 0 });
            }
            // The daily rollups move with the hours they sum.
            let mut days: std::collections::BTreeMap<(i64, String, String, String), [i64; 3]> = Default::default();
            for ((hour, key, team, model), d) in &deltas {
                let day = days
                    .entry((
                        hour - hour.rem_euclid(crate::clock::DAY_MS),
                        key.clone(),
                        team.clone(),
                        model.clone(),
                    ))
                    .or_default();
                for i in 0..3 {
                    day[i] = day[i].saturating_add(d[i]);
                }
            }
            for (table, time_col, deltas) in [("usage_hourly", "hour_ms", deltas), ("usage_daily", "day_ms", days)] {
                self.move_rollups(&mut tx, table, time_col, deltas).await?;
            }
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Adds the cost, baseline and estimated-cost deltas to the rows of one rollup table.
    async fn move_rollups(
        &self,
        tx: &mut sqlx::AnyConnection,
        table: &str,
        time_col: &str,
        deltas: std::collections::BTreeMap<(i64, String, String, String), [i64; 3]>,
    ) -> Result<()> {
        for ((hour, key, team, model), delta) in deltas {
            if delta != [0; 3] {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET cost_nanos = cost_nanos + $1, baseline_nanos = baseline_nanos + $6, \
                         estimated_cost_nanos = estimated_cost_nanos + $7 \
                         WHERE {time_col} = $2 AND key_id = $3 AND team_id = $4 AND model = $5"
                )))
                .bind(delta[0])
                .bind(hour)
                .bind(key)
                .bind(team)
                .bind(model)
                .bind(delta[1])
                .bind(delta[2])
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }
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
