//! The embedded backend: messages on local disk in a fjall LSM database, the
//! default of a single node.
//!
//! Layout: one engine keyspace per table, keys made of order-preserving,
//! prefix-free fields so that range scans return a conversation's messages
//! in seq order (`keys`), messages encoded with a format byte and postcard
//! (`codec`). Writes are serialized through one writer thread that
//! group-commits them in atomic batches and fsyncs per the configured
//! [`Durability`] (`writer`, `apply`, `txn`); reads run on the caller's
//! thread (`reads`). Nothing here depends on an async runtime.

mod apply;
mod codec;
mod config;
mod keys;
mod reads;
mod store;
mod tables;
mod txn;
mod writer;

pub use config::Durability;
pub use store::EmbeddedStore;
