//! The lookup slot of the request pipeline: where an answer known already is found.

use bytes::Bytes;

use crate::proxy::request::ChatRequest;
use crate::records::keys::Principal;

/// Answers a request without an upstream call when it can: the slot the response cache fills.
/// A lookup runs after admission (rate limits and budgets apply to every answer) and before
/// dispatch; a hit is metered like any answer, at no cost.
pub trait Lookup: Send + Sync + 'static {
    /// A complete answer (an OpenAI `chat.completion` body) for this request on `model`, if one
    /// is known for this caller.
    fn find(&self, model: &str, request: &ChatRequest, principal: Option<&Principal>) -> Option<Bytes>;
}
