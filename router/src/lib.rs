//! The corecast router core and router tier.
//!
//! This crate will own what sits between server nodes: conversation
//! ownership and sequence numbers, persistence through `corecast-storage`,
//! presence and the route table (in memory on a single node, Redis in a
//! cluster, with a bounded LRU in front), the long-lived links to server
//! nodes, the cluster HTTP API and dispatch, and the `corecast-router`
//! binary. On a single node the server runs the same core in-process. Until
//! persistent messaging lands the server core needs none of it, so this crate
//! is empty.
#![warn(missing_docs)]
