//! The audit log: written after each admin change, read newest first.

use sqlx::Row;

use super::{Result, Store};
use crate::records::audit::AuditEntry;

impl Store {
    pub async fn write_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, ts_ms, actor, via, address, action, target, method, path, status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(e.id.clone())
        .bind(e.ts_ms)
        .bind(e.actor.clone())
        .bind(e.via.clone())
        .bind(e.address.clone())
        .bind(e.action.clone())
        .bind(e.target.clone())
        .bind(e.method.clone())
        .bind(e.path.clone())
        .bind(i64::from(e.status))
        .bind(e.detail.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` entries before `before` (`(ts_ms, id)` of the last one seen), newest first.
    pub async fn audit_entries(&self, before: Option<(i64, String)>, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, 1000) as i64;
        let rows = match before {
            Some((ts, id)) => {
                sqlx::query(
                    "SELECT * FROM audit_log WHERE ts_ms < $1 OR (ts_ms = $1 AND id < $2) \
                     ORDER BY ts_ms DESC, id DESC LIMIT $3",
                )
                .bind(ts)
                .bind(id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY ts_ms DESC, id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    ts_ms: r.try_get("ts_ms")?,
                    actor: r.try_get("actor")?,
                    via: r.try_get("via")?,
                    address: r.try_get("address")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
