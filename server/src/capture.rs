//! Prompt and answer bodies for the request log, kept only where a key, its team or the route
//! opts in (`store_bodies`); never by default.
//!
//! On the request path a [`Capture`] holds the request body and the answer's bytes as they are
//! sent, each up to the cap plus [`REDACTION_MARGIN`], so memory per request is bounded. Off the
//! request path (the ledger writer) [`Capture::finish`] replaces every match of the configured
//! patterns with [`REDACTED`], then cuts each body to the cap; the bodies are written in the
//! same transaction as their usage event. Expired bodies are never read back and are deleted
//! by [`purge`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use regex::Regex;

use crate::clock::Clock;
use crate::config::RequestLogConfig;
use crate::records::bodies::RequestBodies;
use crate::store::Store;

/// What replaces a redacted match.
pub const REDACTED: &str = "[REDACTED]";

/// Bytes kept past the cap, so that a match that starts before the cut is found whole and
/// redacted rather than stored in part. Matches longer than this may be cut before they are seen.
pub const REDACTION_MARGIN: usize = 1024;

/// The compiled size limit of the redaction patterns together.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// How often expired bodies are deleted.
pub const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The rules for stored bodies: the cap, the retention and the redaction patterns.
#[derive(Debug)]
pub struct BodyRules {
    pub max_bytes: usize,
    pub retention_ms: i64,
    redact: Option<Regex>,
}

impl BodyRules {
    pub fn new(c: &RequestLogConfig) -> Result<BodyRules, String> {
        Ok(BodyRules {
            max_bytes: c.max_body_bytes,
            retention_ms: i64::try_from(c.body_retention_hours)
                .unwrap_or(i64::MAX)
                .saturating_mul(3_600_000),
            redact: compile(&c.redact)?,
        })
    }

    /// The oldest arrival time whose bodies are still kept at `now_ms`.
    pub fn oldest_kept(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.retention_ms)
    }

    /// `text` with every match replaced, and how many there were.
    pub fn redact<'t>(&self, text: &'t str) -> (Cow<'t, str>, u32) {
        let Some(re) = &self.redact else {
            return (Cow::Borrowed(text), 0);
        };
        let mut n = 0u32;
        let out = re.replace_all(text, |_: &regex::Captures<'_>| {
            n = n.saturating_add(1);
            REDACTED
        });
        (out, n)
    }

    /// How many bytes of a body are held before it is redacted and cut.
    fn held(&self) -> usize {
        self.max_bytes.saturating_add(REDACTION_MARGIN)
    }
}

/// The patterns as one expression (each a branch of it), or why one is not valid.
pub fn compile(patterns: &[String]) -> Result<Option<Regex>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for (i, p) in patterns.iter().enumerate() {
        regex::RegexBuilder::new(p)
            .size_limit(MAX_PATTERN_BYTES)
            .build()
            .map_err(|e| format!("pattern {i} (`{p}`) is not a valid regular expression: {e}"))?;
    }
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    regex::RegexBuilder::new(&joined)
        .size_limit(MAX_PATTERN_BYTES)
        .build()
        .map(Some)
        .map_err(|e| format!("the patterns together are too large: {e}"))
}

/// A request's bodies while it runs: bounded, not yet redacted.
#[derive(Debug)]
pub struct Capture {
    rules: Arc<BodyRules>,
    request: Bytes,
    request_len: usize,
    response: Vec<u8>,
    response_len: usize,
}

impl Capture {
    pub fn new(rules: Arc<BodyRules>, request: Bytes) -> Capture {
        let request_len = request.len();
        let held = rules.held();
        // A slice would keep the whole body alive; a long one is copied down to what is kept.
        let request = if request.len() > held {
            Bytes::copy_from_slice(&request[..held])
        } else {
            request
        };
        Capture {
            rules,
            request,
            request_len,
            response: Vec::new(),
            response_len: 0,
        }
    }

    /// Takes bytes of the answer as they are sent.
    pub fn push(&mut self, data: &[u8]) {
        self.response_len = self.response_len.saturating_add(data.len());
        let room = self.rules.held().saturating_sub(self.response.len());
        self.response.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The bytes this capture holds in memory.
    pub fn held_bytes(&self) -> usize {
        self.request.len() + self.response.len()
    }

    /// The bodies to store: redacted, then cut to the cap.
    pub fn finish(self, event_id: &str, ts_ms: i64) -> RequestBodies {
        let (request, request_truncated, a) = kept(&self.rules, &self.request, self.request_len);
        let (response, response_truncated, b) = kept(&self.rules, &self.response, self.response_len);
        RequestBodies {
            event_id: event_id.to_string(),
            ts_ms,
            request,
            response,
            request_truncated,
            response_truncated,
            redactions: a.saturating_add(b),
        }
    }
}

/// One body redacted and cut: the text, whether it was cut, how many matches were replaced.
fn kept(rules: &BodyRules, bytes: &[u8], total: usize) -> (String, bool, u32) {
    let text = String::from_utf8_lossy(utf8_prefix(bytes));
    let (redacted, n) = rules.redact(&text);
    let cut = floor_char_boundary(&redacted, rules.max_bytes);
    // Cut when some of it was never held, or what was held is still over the cap once redacted.
    let truncated = total > bytes.len() || cut < redacted.len();
    (redacted[..cut].to_string(), truncated, n)
}

/// `bytes` without a character cut off at its end.
fn utf8_prefix(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    }
}

/// The largest index at most `max` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0)
}

/// Deletes expired bodies every [`PURGE_EVERY`], until the gateway stops.
pub async fn purge(store: Store, clock: Arc<dyn Clock>, rules: Arc<BodyRules>) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.purge_bodies(rules.oldest_kept(clock.now_ms())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bodies = n, "expired request bodies deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired request bodies; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: usize, redact: &[&str]) -> Arc<BodyRules> {
        Arc::new(
            BodyRules::new(&RequestLogConfig {
                max_body_bytes: max,
                body_retention_hours: 1,
                redact: redact.iter().map(|s| s.to_string()).collect(),
            })
            .unwrap(),
        )
    }

    #[test]
    fn bodies_are_redacted_before_they_are_cut() {
        let r = rules(20, &[r"sk-[A-Za-z0-9]{8,}"]);
        // The key starts before the cap and ends after it: it is redacted, not stored in part.
        let mut c = Capture::new(r.clone(), Bytes::from_static(b"{\"k\":\"sk-abcdefghijklmnop\"}"));
        c.push(b"hello ");
        c.push(b"world");
        let b = c.finish("evt_1", 7);
        assert_eq!(b.request, "{\"k\":\"[REDACTED]\"}");
        assert!(!b.request_truncated, "after redaction it fits");
        assert_eq!(b.response, "hello world");
        assert_eq!(b.redactions, 1);
        assert_eq!((b.event_id.as_str(), b.ts_ms), ("evt_1", 7));
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_and_held_within_the_cap_and_margin() {
        let r = rules(10, &[]);
        let mut c = Capture::new(r, Bytes::from("é".repeat(5000)));
        for _ in 0..1000 {
            c.push("ü".repeat(10).as_bytes());
        }
        assert!(c.held_bytes() <= 2 * (10 + REDACTION_MARGIN));
        let b = c.finish("e", 0);
        assert_eq!(b.request, "ééééé");
        assert_eq!(b.response, "üüüüü");
        assert!(b.request_truncated && b.response_truncated);
        assert_eq!(b.redactions, 0);
    }

    #[test]
    fn invalid_patterns_are_named() {
        let e = compile(&["ok".into(), "(".into()]).unwrap_err();
        assert!(e.contains("pattern 1"), "{e}");
        assert!(compile(&[]).unwrap().is_none());
    }
}
