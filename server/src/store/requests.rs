//! The request log: the latest usage events, newest first, filtered, page by page; one event by
//! its id; the events of one `x-request-id`; the bodies stored for one.

use sqlx::{AssertSqlSafe, Row};

use super::reports::{Arg, UsageFilter};
use super::{usage_of_row, Result, Store};
use crate::records::bodies::RequestBodies;
use crate::records::usage::UsageEvent;

/// Which events the request log shows: the usage filter, plus outcome, route and request id.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub usage: UsageFilter,
    /// `success`, `upstream_error`, `client_disconnect` or `rejected`.
    pub outcome: Option<String>,
    pub route: Option<String>,
    /// The client's `x-request-id` (or the one the gateway made).
    pub request_id: Option<String>,
    /// Only events that failed (any outcome but `success`).
    pub failed: bool,
    /// Only events a route decided.
    pub routed: bool,
}

impl Store {
    /// Up to `limit` events matching `f` before `before` (`(ts_ms, event_id)` of the last row
    /// seen), newest first.
    pub async fn latest_requests(
        &self,
        f: &RequestFilter,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<UsageEvent>> {
        let (where_sql, mut args) = f.usage.where_clause(1);
        let mut conds: Vec<String> = Vec::new();
        let mut add = |cond: &str, a: Arg, args: &mut Vec<Arg>| {
            args.push(a);
            conds.push(cond.replace('?', &format!("${}", args.len())));
        };
        if let Some(o) = &f.outcome {
            add("outcome = ?", Arg::S(o.clone()), &mut args);
        }
        if let Some(r) = &f.route {
            add("route = ?", Arg::S(r.clone()), &mut args);
        }
        if let Some(r) = &f.request_id {
            add("request_id = ?", Arg::S(r.clone()), &mut args);
        }
        if let Some((ts, id)) = before {
            args.push(Arg::I(ts));
            args.push(Arg::S(id));
            let (t, i) = (args.len() - 1, args.len());
            conds.push(format!("(ts_ms < ${t} OR (ts_ms = ${t} AND event_id < ${i}))"));
        }
        if f.failed {
            conds.push("outcome <> 'success'".into());
        }
        if f.routed {
            conds.push("route IS NOT NULL".into());
        }
        let mut sql = format!("SELECT * FROM usage_events{where_sql}");
        for (i, c) in conds.iter().enumerate() {
            sql.push_str(if i == 0 && where_sql.is_empty() {
                " WHERE "
            } else {
                " AND "
            });
            sql.push_str(c);
        }
        sql.push_str(&format!(
            " ORDER BY ts_ms DESC, event_id DESC LIMIT {}",
            limit.clamp(1, 1000)
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = a.bind_to(q);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(usage_of_row).collect()
    }

    /// One event by its id.
    pub async fn usage_event(&self, event_id: &str) -> Result<Option<UsageEvent>> {
        let row = sqlx::query("SELECT * FROM usage_events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(usage_of_row).transpose()
    }

    /// The bodies stored for one event, unless they arrived before `oldest_ms` (expired).
    pub async fn request_bodies(&self, event_id: &str, oldest_ms: i64) -> Result<Option<RequestBodies>> {
        let row = sqlx::query("SELECT * FROM request_bodies WHERE event_id = $1 AND ts_ms >= $2")
            .bind(event_id.to_string())
            .bind(oldest_ms)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let flag = |name: &str| -> Result<bool> { Ok(r.try_get::<i64, _>(name)? != 0) };
        Ok(Some(RequestBodies {
            event_id: r.try_get("event_id")?,
            ts_ms: r.try_get("ts_ms")?,
            request: r.try_get("request")?,
            response: r.try_get("response")?,
            request_truncated: flag("request_truncated")?,
            response_truncated: flag("response_truncated")?,
            redactions: r.try_get::<i64, _>("redactions")?.clamp(0, i64::from(u32::MAX)) as u32,
        }))
    }

    /// Deletes the bodies of requests that arrived before `before_ms`; how many.
    pub async fn purge_bodies(&self, before_ms: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM request_bodies WHERE ts_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
