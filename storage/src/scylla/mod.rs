//! The ScyllaDB backend, for clusters: the same [`MessageStore`](crate::MessageStore)
//! contract on a keyspace created on connect.
//!
//! `schema` holds the CQL (tables partitioned by conversation and seq
//! bucket), `statements` the prepared statements, `append` the idempotent
//! append protocol (a lightweight transaction on the dedup record first,
//! then idempotent upserts that a resend repairs), `query` paging, batches
//! and transaction outcomes, `convert` the mapping of types and errors.
//! It is always compiled (no cargo feature), needs a tokio runtime to poll
//! its futures, and is exercised by the conformance suite whenever
//! `CORECAST_SCYLLA` names a node.

mod append;
mod convert;
mod query;
mod schema;
mod statements;
mod store;

pub use store::ScyllaStore;
