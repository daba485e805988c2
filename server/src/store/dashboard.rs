//! The dashboard's users and sessions.

use sqlx::Row;

use super::{Result, Store};
use crate::records::dashboard::{Role, SessionRecord, UserRecord};

impl Store {
    pub async fn insert_user(&self, u: &UserRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_users (name, password_hash, role, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(u.name.as_str())
        .bind(u.password_hash.as_str())
        .bind(u.role.as_str())
        .bind(u.created_ms)
        .bind(u.updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT name, password_hash, role, created_ms, updated_ms FROM admin_users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| user_of(&r)).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows =
            sqlx::query("SELECT name, password_hash, role, created_ms, updated_ms FROM admin_users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(user_of).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM admin_users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Deletes a user and ends its sessions.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM admin_users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Stores a session and deletes the ones expired at its start.
    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_ms <= $1")
            .bind(s.created_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, user_name, role, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.id_hash.as_str())
        .bind(s.user.as_str())
        .bind(s.role.as_str())
        .bind(s.csrf.as_str())
        .bind(s.created_ms)
        .bind(s.expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this id hash if it is live at `now_ms`.
    pub async fn live_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id_hash, user_name, role, csrf, created_ms, expires_ms FROM ui_sessions \
             WHERE id_hash = $1 AND expires_ms > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<SessionRecord> {
            Ok(SessionRecord {
                id_hash: r.try_get("id_hash")?,
                user: r.try_get("user_name")?,
                role: role_of(&r)?,
                csrf: r.try_get("csrf")?,
                created_ms: r.try_get("created_ms")?,
                expires_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The `role` column of a user or session row.
fn role_of(r: &sqlx::any::AnyRow) -> Result<Role> {
    let role: String = r.try_get("role")?;
    Role::parse(&role).ok_or_else(|| super::StoreError::new(format!("stored role `{role}`")))
}

fn user_of(r: &sqlx::any::AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        role: role_of(r)?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}
