//! The lookup slot of the request pipeline: where an answer known already is found, and where a
//! new answer is handed to be kept.
//!
//! The pipeline knows only this interface; the response cache (`crate::cache`) fills it. A lookup
//! runs after admission (rate limits and budgets apply to every answer) and before dispatch; a
//! hit is metered like any answer, at no cost, with what it saved.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::money::pricing::Nanos;
use crate::proxy::request::ChatRequest;
use crate::records::keys::Principal;
use crate::records::usage::Usage;

/// What the client's `Cache-Control` request header asks of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-cache`: do not answer from the cache; ask the model and keep its fresh answer.
    pub no_cache: bool,
    /// `no-store`: do not keep this answer (a kept one may still answer).
    pub no_store: bool,
}

impl Directives {
    /// Reads a `Cache-Control` header value (directives are case-insensitive, comma-separated).
    pub fn parse(value: &str) -> Directives {
        let mut d = Directives::default();
        for part in value.split(',') {
            let name = part.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
            }
        }
        d
    }
}

/// One request to look up.
pub struct Query<'a> {
    /// What the client asked for: the route named by the path or the body's `model`.
    pub target: &'a str,
    /// The logical model that will answer a miss.
    pub model: &'a str,
    pub request: &'a ChatRequest,
    pub principal: Option<&'a Principal>,
    pub directives: Directives,
}

/// A complete answer, as kept and as served.
#[derive(Debug, Clone)]
pub struct Answer {
    /// An OpenAI `chat.completion` body.
    pub body: Bytes,
    /// The logical model that produced it.
    pub model: String,
    /// What producing it used and cost: what a hit saves.
    pub usage: Usage,
    pub cost: Nanos,
    /// Whether it calls tools (such answers are reused only where a route allows it). Whoever
    /// keeps an answer reads this from the body itself; callers of [`Keep::keep`] may pass false.
    pub tool_calls: bool,
}

/// How a hit was found.
#[derive(Debug, Clone, PartialEq)]
pub enum HitKind {
    /// The same request, exactly.
    Exact,
    /// The same conversation with a reworded last user message.
    Semantic {
        similarity: f32,
        /// Why the guard let it through.
        verdict: String,
    },
}

/// An answer found for a request.
#[derive(Debug, Clone)]
pub struct Hit {
    pub answer: Arc<Answer>,
    pub kind: HitKind,
    /// The entry it came from.
    pub entry: Arc<str>,
    /// Seconds since the entry was kept.
    pub age_secs: u64,
}

/// Keeps a new answer for later requests, if it can be kept.
pub trait Keep: Send + 'static {
    /// The largest answer (in bytes of JSON) worth assembling for it.
    fn max_bytes(&self) -> usize;
    fn keep(self: Box<Self>, answer: Answer);
}

/// The lookup's outcome for one request.
pub enum Found {
    Hit(Hit),
    /// Not found. A kept answer goes to `keep`, when this answer may be kept.
    Miss {
        keep: Option<Box<dyn Keep>>,
        why: String,
    },
    /// Not looked up (the route does not cache, or the client said `no-cache`); `keep` as above.
    Bypass {
        keep: Option<Box<dyn Keep>>,
        why: String,
    },
}

/// The reason of a [`Found::Bypass`] for a model or route the cache is off for: the request is
/// then served as if there were no cache (no header, nothing in the ledger).
pub const OFF: &str = "off";

/// What the response says about the lookup (`x-switchyard-cache` and its companions).
#[derive(Debug, Clone)]
pub struct CacheNote {
    /// `hit`, `semantic-hit`, `miss` or `bypass`.
    pub status: &'static str,
    pub similarity: Option<f32>,
    pub age_secs: Option<u64>,
    pub entry: Option<Arc<str>>,
    /// Why: the guard's verdict for a semantic hit, the reason for a miss or a bypass.
    pub detail: String,
    /// What the answer would have cost without the cache.
    pub saved: Nanos,
}

/// A boxed lookup future.
pub type Finding<'a> = Pin<Box<dyn Future<Output = Found> + Send + 'a>>;

/// Answers a request without an upstream call when it can: the slot the response cache fills.
pub trait Lookup: Send + Sync + 'static {
    /// Looks the request up (embedding, when there is one, runs off the async executor).
    fn find<'a>(&'a self, query: Query<'a>) -> Finding<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives_are_read_case_insensitively() {
        assert_eq!(
            Directives::parse("No-Cache"),
            Directives {
                no_cache: true,
                no_store: false
            }
        );
        assert_eq!(
            Directives::parse("max-age=0, no-store ,NO-CACHE"),
            Directives {
                no_cache: true,
                no_store: true
            }
        );
        assert_eq!(Directives::parse("private, max-age=60"), Directives::default());
        assert_eq!(Directives::parse(""), Directives::default());
    }
}
