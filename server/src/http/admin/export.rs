//! `/admin/v1/usage/export`: every matching event as CSV or JSON, streamed page by page.
//!
//! Both forms carry every column of the ledger row ([`UsageEvent::COLUMNS`]), plus two columns
//! derived for people: `timestamp` (ISO 8601) and `cost_usd` (exact decimal USD).

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;

use super::store_err;
use super::usage::{filter_of, query_of, ExportFormat, UsageQuery};
use super::wire::{ExportRow, TotalsOut, UsageExport};
use crate::clock::iso8601;
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::pricing::Nanos;
use crate::records::usage::{Cell, UsageEvent};
use crate::store::{Store, Totals, UsageFilter};

/// Rows per page read from the ledger while exporting.
const EXPORT_PAGE: usize = 1000;

/// Columns derived from the stored ones, placed first in the CSV.
const DERIVED: [&str; 2] = ["timestamp", "cost_usd"];

/// The CSV header: the derived columns, then every stored column.
pub(crate) fn csv_header() -> Vec<&'static str> {
    DERIVED.iter().copied().chain(UsageEvent::COLUMNS).collect()
}

/// A cell as CSV text. Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return: a client's own `x-request-id`, say) gets a leading `'`, which
/// spreadsheets show as text. Numbers are written as they are.
fn defused<'c>(cell: &'c Cell<'_>) -> Cow<'c, str> {
    let text = cell.text();
    match cell {
        Cell::Text(_) if text.starts_with(['=', '+', '-', '@', '\t', '\r']) => Cow::Owned(format!("'{text}")),
        _ => text,
    }
}

/// Appends one event as CSV records (quoted where needed by the `csv` crate).
fn csv_rows(rows: &[UsageEvent], out: &mut Vec<u8>) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(out);
    for r in rows {
        let derived = [iso8601(r.ts_ms), Nanos(r.cost_nanos).to_string()];
        let cells = r.cells();
        let fields = derived
            .iter()
            .map(|d| Cow::Borrowed(d.as_str()))
            .chain(cells.iter().map(defused));
        w.write_record(fields.map(|f| f.into_owned()))?;
    }
    w.flush()?;
    Ok(())
}

/// Export usage events
///
/// Streams every usage event matching the filters, oldest first (by time, then event id), as
/// CSV (the default) or JSON, page by page; the JSON form ends with totals. Both forms carry
/// every stored column plus `timestamp` and `cost_usd`; the CSV header names them in the order
/// of the JSON row's fields. The first page is read before the response starts, so a database
/// failure then is a clean 503; a failure later in the stream cuts the response off.
#[utoipa::path(get, path = "/admin/v1/usage/export", tag = "usage", params(UsageQuery),
    responses(
        (status = 200, description = "The events.", content(
            (String = "text/csv"),
            (UsageExport = "application/json"),
        )),
        (status = 400, description = "A parameter is invalid; `param` names it."),
        (status = 503, description = "The database is unavailable."),
    ))]
pub(super) async fn export_usage(
    State(state): State<Arc<AppState>>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query_of(q)?;
    let f = filter_of(&q)?;
    let format = match q.format.as_deref().unwrap_or("csv") {
        "csv" => ExportFormat::Csv,
        "json" => ExportFormat::Json,
        _ => return Err(ApiError::invalid_param("format", "must be `csv` or `json`")),
    };
    let csv = matches!(format, ExportFormat::Csv);
    // Read the first page now, so a database failure is a clean error rather than a cut stream.
    let first = state.store.usage_page(&f, None, EXPORT_PAGE).await.map_err(store_err)?;
    let stream = pages(state.store.clone(), f, first, csv);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    if csv {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        h.insert(
            http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"switchyard-usage.csv\""),
        );
    } else {
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(resp)
}

/// The export body: a header, then each page as it is read, then (JSON) the totals.
fn pages(
    store: Store,
    f: UsageFilter,
    first: Vec<UsageEvent>,
    csv: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    enum St {
        Start(Vec<UsageEvent>),
        Page(Vec<UsageEvent>),
        Done,
    }
    struct Ctx {
        store: Store,
        f: UsageFilter,
        csv: bool,
        totals: Totals,
        first_row: bool,
        st: St,
    }
    let ctx = Ctx {
        store,
        f,
        csv,
        totals: Totals::default(),
        first_row: true,
        st: St::Start(first),
    };
    futures_util::stream::unfold(ctx, |mut c| async move {
        let rows = match std::mem::replace(&mut c.st, St::Done) {
            St::Done => return None,
            St::Start(rows) => {
                let head = if c.csv {
                    format!("{}\n", csv_header().join(","))
                } else {
                    "{\"object\":\"list\",\"data\":[".to_string()
                };
                c.st = St::Page(rows);
                return Some((Ok(Bytes::from(head)), c));
            }
            St::Page(rows) => rows,
        };
        if rows.is_empty() {
            let tail = if c.csv {
                String::new()
            } else {
                let totals = serde_json::to_string(&TotalsOut::from(&c.totals)).unwrap_or_default();
                format!("],\"totals\":{totals}}}\n")
            };
            return Some((Ok(Bytes::from(tail)), c));
        }
        let mut out: Vec<u8> = Vec::with_capacity(rows.len() * 400);
        for r in &rows {
            c.totals.add_event(r);
        }
        if c.csv {
            if let Err(e) = csv_rows(&rows, &mut out) {
                return Some((Err(std::io::Error::other(e.to_string())), c));
            }
        } else {
            for r in &rows {
                if !c.first_row {
                    out.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut out, &ExportRow::from(r)) {
                    return Some((Err(std::io::Error::other(e.to_string())), c));
                }
                c.first_row = false;
            }
        }
        if rows.len() == EXPORT_PAGE {
            let last = rows.last().map(|r| (r.ts_ms, r.event_id.clone()));
            match c.store.usage_page(&c.f, last, EXPORT_PAGE).await {
                Ok(next) => c.st = St::Page(next),
                Err(e) => {
                    tracing::error!(error = %e, "usage export failed mid-stream");
                    return Some((Err(std::io::Error::other(e.to_string())), c));
                }
            }
        } else {
            c.st = St::Page(Vec::new());
        }
        Some((Ok(Bytes::from(out)), c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_keeps_every_column() {
        let mut e = UsageEvent::new("evt_1".into(), "id,with \"quotes\"".into(), 0, "chat", "m".into());
        e.tags = crate::records::usage::Tags(vec!["a".into(), "b".into()]);
        let mut out = Vec::new();
        csv_rows(&[e], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(rec.len(), csv_header().len());
        let col = |name: &str| &rec[csv_header().iter().position(|c| *c == name).unwrap()];
        assert_eq!(col("request_id"), "id,with \"quotes\"");
        assert_eq!(col("tags"), r#"["a","b"]"#);
        assert_eq!(col("timestamp"), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn text_a_spreadsheet_would_run_is_written_as_text() {
        for id in ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let mut e = UsageEvent::new("evt_1".into(), id.into(), 0, "chat", "m".into());
            e.cost_nanos = -5;
            let mut out = Vec::new();
            csv_rows(&[e], &mut out).unwrap();
            let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(&out[..]);
            let rec = r.records().next().unwrap().unwrap();
            let col = |name: &str| rec[csv_header().iter().position(|c| *c == name).unwrap()].to_string();
            assert_eq!(col("request_id"), format!("'{id}"), "{id}");
            assert_eq!(col("cost_nanos"), "-5", "numbers are left alone");
        }
    }
}
