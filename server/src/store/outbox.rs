//! The billing outbox: claiming due rows with their events, marking them delivered or failed.

use sqlx::{AssertSqlSafe, Row};

use super::{push_placeholders_from, usage_of_row, Result, Store};
use crate::records::billing::{OutboxStatus, Pending};

impl Store {
    /// Claims up to `limit` undelivered rows due at `now` under the token `claim` until
    /// `until_ms`, and returns them. Rows another process claimed meanwhile are skipped
    /// (Postgres re-checks the condition on the locked row; SQLite has one writer).
    pub async fn claim_billing(&self, claim: &str, now: i64, until_ms: i64, limit: i64) -> Result<Vec<Pending>> {
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
                Ok(Pending {
                    event: usage_of_row(r)?,
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

    pub async fn billing_status(&self) -> Result<OutboxStatus> {
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
        Ok(OutboxStatus {
            pending: r.try_get("pending")?,
            rejected: r.try_get("rejected")?,
            delivered_retained: r.try_get("delivered")?,
            oldest_pending_ms: r.try_get("oldest")?,
            max_attempts: r.try_get("max_attempts")?,
            last_error,
        })
    }
}
