//! The command line's side of the admin API: `switchyard keys …` and `switchyard usage …` call a
//! running gateway's `/admin/v1` with the master key, so the CLI and the API can never disagree
//! on validation, and a change takes effect at once in the gateway it is sent to.

use std::io::Write;

use futures_util::StreamExt;
use serde_json::Value;

/// The `User-Agent` prefix of this client: the audit log records its changes as made by the CLI.
pub const CLI_AGENT: &str = "switchyard-cli/";

/// A client of one gateway's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    master_key: String,
}

impl AdminClient {
    /// `url` is the gateway's base URL (`http://127.0.0.1:8080`).
    pub fn new(url: &str, master_key: String) -> AdminClient {
        AdminClient {
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .user_agent(format!("{CLI_AGENT}{}", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a TLS backend is available"),
            base: format!("{}/admin/v1", url.trim_end_matches('/')),
            master_key,
        }
    }

    /// Sends one request; an error answer becomes its message (and offending field).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(std::time::Duration::from_secs(300))
            .bearer_auth(&self.master_key);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| format!("reading the answer: {e}"))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(v)
        } else {
            Err(error_text(status.as_u16(), &v))
        }
    }

    /// Streams a GET answer (an export) to `out`; returns the bytes written.
    pub async fn download(&self, path: &str, out: &mut dyn Write) -> Result<u64, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.master_key)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = r.status();
        if !status.is_success() {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            return Err(error_text(status.as_u16(), &v));
        }
        let mut n = 0u64;
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("the export broke off: {e}"))?;
            out.write_all(&chunk).map_err(|e| format!("writing the export: {e}"))?;
            n += chunk.len() as u64;
        }
        out.flush().map_err(|e| format!("writing the export: {e}"))?;
        Ok(n)
    }
}

fn error_text(status: u16, v: &Value) -> String {
    let e = &v["error"];
    match (e["message"].as_str(), e["param"].as_str()) {
        (Some(m), Some(p)) => format!("HTTP {status}: {m} (field `{p}`)"),
        (Some(m), None) => format!("HTTP {status}: {m}"),
        _ => format!("HTTP {status}: {v}"),
    }
}

/// Percent-encodes a query value.
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Keys as an aligned text table.
pub fn keys_table(list: &Value) -> String {
    let rows: Vec<[String; 6]> = list["data"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|k| {
            let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
            let budget = match &k["limits"]["budget"] {
                Value::Null => "-".to_string(),
                b => format!(
                    "{} {}",
                    b["limit_usd"].as_str().unwrap_or("?"),
                    b["period"].as_str().unwrap_or("")
                ),
            };
            [
                s(&k["id"]),
                s(&k["name"]),
                s(&k["prefix"]),
                s(&k["team_id"]),
                s(&k["status"]),
                budget,
            ]
        })
        .collect();
    let header = ["ID", "NAME", "PREFIX", "TEAM", "STATUS", "BUDGET"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_show_budgets() {
        let t = keys_table(&json!({"data": [
            {"id": "key_1", "name": "search", "prefix": "sk-sy-ab", "team_id": null, "status": "active",
             "limits": {"budget": {"limit_usd": "10.000000000", "period": "monthly"}}},
            {"id": "key_22", "name": "x", "prefix": "sk-sy-cd", "team_id": "team_1", "status": "revoked", "limits": {}},
        ]}));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID      NAME"), "{t}");
        assert!(lines[1].ends_with("10.000000000 monthly"), "{t}");
        assert!(lines[2].contains("revoked") && lines[2].ends_with('-'), "{t}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("2026-01-01T00:00:00Z"), "2026-01-01T00%3A00%3A00Z");
        assert_eq!(query_value("a b&c"), "a%20b%26c");
    }

    #[test]
    fn errors_name_their_field() {
        let v = json!({"error": {"message": "must be in the future", "param": "expires_at"}});
        assert_eq!(
            error_text(400, &v),
            "HTTP 400: must be in the future (field `expires_at`)"
        );
    }
}
