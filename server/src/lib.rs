//! corecast server node.
//!
//! This crate owns everything a server node does: shards (one thread per
//! core on monoio's io_uring driver, each with its own listener,
//! connections, room members and timers), fan-out of encoded-once frames,
//! the cross-shard inboxes, client authentication, the control plane
//! (health, Prometheus metrics, admin API), the uplink to the router tier
//! in a cluster, and node start-up and shutdown.
//! The `corecast-server` binary is a thin command line over [`node::run`].
#![warn(missing_docs)]

pub mod advertised;
pub mod allocator;
pub mod auth;
pub mod chat_core;
pub mod cluster;
pub mod config;
pub mod control;
pub mod https;
pub mod metrics;
pub mod node;
pub mod revocations;
pub mod shard;
pub mod stall;
pub mod status;
pub mod tls;
pub mod web;
