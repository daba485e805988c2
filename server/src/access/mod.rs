//! Who may call and how much: virtual keys and their cached lookup, rate and concurrency limits,
//! budget reservations from leases.
//!
//! - [`admission`]: a caller's model allow-list, and admission against its limits.
//! - [`keys`]: secrets, hashing and the cached key lookup that yields a caller's principal.
//! - [`limits`]: the in-memory limiter (token buckets, concurrency permits, budget leases).
//! - [`throttle`]: waits after repeated failures (unknown API keys per address, sign-ins).

pub mod admission;
pub mod keys;
pub mod limits;
pub mod throttle;
