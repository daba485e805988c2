//! The request path between the HTTP face and the upstream providers.
//!
//! - [`request`]: validated views of client requests, original bodies kept for pass-through.
//! - [`gateway`]: logical models → deployments; balancing, breakers, retries, fallbacks.
//! - [`relay`]: the SSE relay that streams, meters and prices a chat stream.

pub mod gateway;
pub mod relay;
pub mod request;
