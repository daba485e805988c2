//! Persistence in SQLite (the embedded default) or Postgres through one set of portable SQL
//! statements. The only module that writes SQL.
//!
//! The request path never calls this module directly: keys are cached, usage is written in
//! batches by the ledger writer, and budgets are spent from in-memory leases (`access::limits`).
//! Every integer is `BIGINT` and every statement uses `$n` parameters in order of first use,
//! which both databases accept, so the two backends run the same code and tests.
//!
//! - this file: the connection, migrations, errors and the SQL helpers the others share;
//! - [`keys`]: teams and keys;
//! - [`ledger`]: usage events with their hourly rollups and billing outbox rows, in batches;
//! - [`reports`]: totals, grouped reports, export pages and per-route statistics;
//! - [`outbox`]: claiming and marking billing events;
//! - [`leases`]: budget spend, leases and alerts;
//! - [`reprice`]: recomputing stored costs with corrected prices.

mod audit;
mod cache;
mod dashboard;
mod keys;
mod leases;
mod ledger;
mod outbox;
mod reports;
mod reprice;
mod requests;
mod summary;

pub use cache::EntryFilter;
pub use reports::{GroupBy, RouteStat, Totals, UsageFilter};
pub use reprice::RepriceReport;
pub use requests::RequestFilter;
pub use summary::{DeploymentSummary, Percentiles, Summary};

use std::time::Duration;

use std::borrow::Cow;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::records::usage::{Cell, Kind, UsageEvent};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failure of the store, with what was being done.
#[derive(Debug)]
pub struct StoreError {
    message: String,
    /// The database refused what was sent (a constraint, a value out of range, bad text), as
    /// opposed to being unreachable or failing: sending the same again fails again.
    refused: bool,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let refused = match &e {
            sqlx::Error::Database(db) => refused_by_database(db.code().as_deref(), db.kind()),
            _ => false,
        };
        StoreError {
            message: format!("database error: {e}"),
            refused,
        }
    }
}

/// Whether a database error is about the data sent rather than the database's health:
/// Postgres classes 22 (data exception) and 23 (integrity constraint); SQLite's constraint,
/// too-big, mismatch and range results (extended codes keep the primary one in the low byte).
fn refused_by_database(code: Option<&str>, kind: sqlx::error::ErrorKind) -> bool {
    if !matches!(kind, sqlx::error::ErrorKind::Other) {
        return true;
    }
    let Some(code) = code else { return false };
    if code.starts_with("22") || code.starts_with("23") {
        return true;
    }
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            refused: false,
        }
    }

    /// A uniqueness violation (for example a team name that exists).
    pub fn is_conflict(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        m.contains("unique") || m.contains("duplicate key")
    }

    /// The database refused the data itself; retrying the same write cannot succeed.
    pub fn is_refused(&self) -> bool {
        self.refused
    }
}

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, `sqlite::memory:` is refused, or `postgres://…`),
    /// creating an SQLite file if needed, and applies the backend's migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.contains(":memory:") || rest.contains("mode=memory") {
                return Err(StoreError::new(
                    "an in-memory SQLite database is not supported: every pooled connection would see a different one",
                ));
            }
            let url = if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::new(format!(
                "database url must start with sqlite:// or postgres://, got `{}`",
                redact(url)
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (reports) run beside the writer; NORMAL sync is durable
                        // across process crashes, and a 5 s busy timeout absorbs writer contention.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::new(format!("cannot open database {}: {e}", redact(&url))))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Processes starting together race to migrate; SQLite has no migration lock, so the
        // loser sees a locked database or a table that just appeared. Retrying finds the
        // migrations applied and goes on.
        let mut attempt = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(StoreError::new(format!("migrating {}: {e}", redact(&url)))),
            }
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hides a password in a connection URL.
pub fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}

/// `($first,$first+1,…)` for an `IN` list of `n` values.
pub(crate) fn push_placeholders_from(sql: &mut String, n: usize, first: usize) {
    use std::fmt::Write;
    sql.push('(');
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "${}", first + i);
    }
    sql.push(')');
}

/// Splits `items` into runs of `max`, then the rest in powers of two, largest first. Every
/// multi-row statement then has one of a few shapes, which the driver's statement cache keeps
/// prepared: preparing a statement of hundreds of parameters costs more than running it, and
/// batches of every size would prepare anew almost every time.
pub(crate) fn shaped<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << rest.len().ilog2()
        };
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// `($1,$2,…),(…)` for a multi-row `VALUES` of `rows` × `cols` parameters: numbered on
/// Postgres, anonymous `?` on SQLite. SQLite looks a numbered parameter up by name when it is
/// bound, which costs a scan of every name per parameter: with hundreds of parameters a
/// statement that was most of the ledger's CPU; anonymous ones are bound by position.
pub(crate) fn push_placeholders(sql: &mut String, rows: usize, cols: usize, backend: Backend) {
    use std::fmt::Write;
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${n}");
                }
            }
            n += 1;
        }
        sql.push(')');
    }
}

/// A stored usage event read back through the one column definition.
fn usage_of_row(r: &AnyRow) -> Result<UsageEvent> {
    UsageEvent::from_cells(|name, kind| match kind {
        Kind::Int => r
            .try_get::<Option<i64>, _>(name)
            .map(Cell::Int)
            .map_err(|e| e.to_string()),
        Kind::Text => r
            .try_get::<Option<String>, _>(name)
            .map(|t| Cell::Text(t.map(Cow::Owned)))
            .map_err(|e| e.to_string()),
    })
    .map_err(|e| StoreError::new(format!("stored usage event: {e}")))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://***@h:5432/db");
        assert_eq!(redact("postgres://token@h/db"), "postgres://***@h/db");
        assert_eq!(redact("https://h/path@x"), "https://h/path@x");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn batches_take_few_shapes() {
        let items: Vec<u32> = (0..150).collect();
        let sizes: Vec<usize> = shaped(&items, 64).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![64, 64, 16, 4, 2]);
        let all: Vec<u32> = shaped(&items, 64).flatten().copied().collect();
        assert_eq!(all, items);
        assert_eq!(shaped(&items[..1], 64).count(), 1);
        assert_eq!(shaped::<u32>(&[], 64).count(), 0);
    }

    #[test]
    fn placeholders_number_in_order() {
        let mut s = String::new();
        push_placeholders(&mut s, 2, 3, Backend::Postgres);
        assert_eq!(s, "($1,$2,$3),($4,$5,$6)");
        let mut s = String::new();
        push_placeholders(&mut s, 2, 2, Backend::Sqlite);
        assert_eq!(s, "(?,?),(?,?)");
    }
}
