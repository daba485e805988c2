//! The request path between the HTTP face and the upstream providers.
//!
//! - [`pipeline`]: the one request path (decide, admit, look up, dispatch or cascade, meter).
//! - [`lookup`]: the pipeline's slot for answers known already (the response cache's).
//! - [`request`]: validated views of client requests, original bodies kept for pass-through.
//! - [`gateway`]: logical models → deployments; balancing, breakers, retries, fallbacks.
//! - [`relay`]: the SSE relay that streams, meters and prices a chat stream.
//! - [`replay`]: complete answers replayed as SSE chunks, and streams assembled into answers.

pub mod gateway;
pub mod lookup;
pub mod pipeline;
pub mod relay;
pub mod replay;
pub mod request;
