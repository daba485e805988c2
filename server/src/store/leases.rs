//! Budget spend per scope and period, the leases processes hold on it, and budget alerts.

use sqlx::Row;

use super::{Result, Store};
use crate::records::limits::BudgetAlert;

impl Store {
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

    /// Stores alerts; one per scope, period and kind (repeats are ignored).
    pub async fn insert_alerts(&self, alerts: &[BudgetAlert]) -> Result<()> {
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
    pub async fn list_alerts(&self, since_ms: i64, limit: i64) -> Result<Vec<BudgetAlert>> {
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
                Ok(BudgetAlert {
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
}
