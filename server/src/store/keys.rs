//! Teams and keys.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::money::pricing::Nanos;
use crate::records::keys::{KeyRecord, KeyStatus, Prefer, TeamRecord};
use crate::records::limits::{Budget, Limits, Period};

impl Store {
    pub async fn insert_team(&self, t: &TeamRecord) -> Result<()> {
        let l = LimitCols::of(&t.limits);
        sqlx::query(
            "INSERT INTO teams (id, name, cost_center, budget_nanos, budget_period, soft_limit_pct, rpm, tpm, \
             max_concurrent, created_ms, updated_ms, store_bodies) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12)",
        )
        .bind(t.id.clone())
        .bind(t.name.clone())
        .bind(t.cost_center.clone())
        .bind_limits(&l)
        .bind(t.created_ms)
        .bind(t.updated_ms)
        .bind(i64::from(t.store_bodies))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_team(&self, t: &TeamRecord) -> Result<bool> {
        let l = LimitCols::of(&t.limits);
        let r = sqlx::query(
            "UPDATE teams SET name = $1, cost_center = $2, budget_nanos = $3, budget_period = $4, soft_limit_pct = $5, \
             rpm = $6, tpm = $7, max_concurrent = $8, updated_ms = $9, store_bodies = $11 WHERE id = $10",
        )
        .bind(t.name.clone())
        .bind(t.cost_center.clone())
        .bind_limits(&l)
        .bind(t.updated_ms)
        .bind(t.id.clone())
        .bind(i64::from(t.store_bodies))
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

    pub async fn insert_key(&self, k: &KeyRecord, secret_hash: &str) -> Result<()> {
        let l = LimitCols::of(&k.limits);
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, team_id, cost_center, tags, allowed_models, \
             expires_ms, status, budget_nanos, budget_period, soft_limit_pct, rpm, tpm, max_concurrent, created_ms, \
             updated_ms, rotated_ms, route_prefer, store_bodies) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
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
        .bind_limits(&l)
        .bind(k.created_ms)
        .bind(k.updated_ms)
        .bind(k.rotated_ms)
        .bind(k.route_prefer.map(|p| p.as_str()))
        .bind(i64::from(k.store_bodies))
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
             tpm = $12, max_concurrent = $13, updated_ms = $14, route_prefer = $16, store_bodies = $17 WHERE id = $15",
        )
        .bind(k.name.clone())
        .bind(k.team_id.clone())
        .bind(k.cost_center.clone())
        .bind(json_list(&k.tags))
        .bind(k.allowed_models.as_deref().map(json_list))
        .bind(k.expires_ms)
        .bind(k.status.as_str())
        .bind_limits(&l)
        .bind(k.updated_ms)
        .bind(k.id.clone())
        .bind(k.route_prefer.map(|p| p.as_str()))
        .bind(i64::from(k.store_bodies))
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
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn parse_list(text: Option<String>) -> Result<Option<Vec<String>>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::new(format!("stored list `{t}` is not JSON: {e}"))))
        .transpose()
}

/// The six limit columns of a team or a key, in the order every statement here binds them.
struct LimitCols {
    budget_nanos: Option<i64>,
    budget_period: Option<&'static str>,
    soft_pct: Option<i64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_concurrent: Option<i64>,
}

/// Binds a [`LimitCols`] in one call, in their column order.
trait BindLimits {
    fn bind_limits(self, l: &LimitCols) -> Self;
}

impl<'q> BindLimits for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_limits(self, l: &LimitCols) -> Self {
        self.bind(l.budget_nanos)
            .bind(l.budget_period)
            .bind(l.soft_pct)
            .bind(l.rpm)
            .bind(l.tpm)
            .bind(l.max_concurrent)
    }
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
            period: Period::parse(&p).map_err(StoreError::new)?,
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
        store_bodies: r.try_get::<i64, _>("store_bodies")? != 0,
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
            .and_then(|p| Prefer::parse(&p)),
        expires_ms: r.try_get("expires_ms")?,
        status: KeyStatus::parse(&status).map_err(StoreError::new)?,
        limits: limits_of_row(r)?,
        store_bodies: r.try_get::<i64, _>("store_bodies")? != 0,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
        rotated_ms: r.try_get("rotated_ms")?,
    })
}
