//! What a request costs and where that is written down.
//!
//! - [`tokens`]: token estimates with tiktoken (pure).
//! - [`pricing`]: integer money, prices over time, the price table (pure).
//! - [`accounting`]: usage, source, cost and flag of a call, decided in one place.
//! - [`meter`]: one usage event per accepted request, through a bounded sink.
//! - [`backlog`]: accepted events not yet written, and whether admission must close for them.
//! - [`ledger`]: the ledger writer, from the channel to the store in batches.
//! - [`billing`]: billing events from the durable outbox, delivered to a Lago-format webhook.

pub mod accounting;
pub mod backlog;
pub mod billing;
pub mod ledger;
pub mod meter;
pub mod pricing;
pub mod tokens;
