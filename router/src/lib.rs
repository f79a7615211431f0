//! The corecast router core and the router tier.
//!
//! This crate owns what sits between server nodes and storage: sequence
//! numbers (`epoch << 40 | counter`, a fresh epoch each time an
//! owner starts), persistence through `corecast-storage`, presence (which
//! connections each user has), fan-out of stored messages to every online
//! device, SYNC/ACK/UNREAD, and groups. On a single node the server runs
//! [`RouterCore`] in-process on its control-plane thread and hands it
//! [`ChatRequest`](corecast_proto::internal::ChatRequest) frames; answers go
//! back through a [`ConnSink`] as internal frames addressed to connections.
//! The router tier (the link hub, the Redis route table behind an LRU
//! cache, dispatch ranking, health pulls, the `corecast-router` binary)
//! builds on the same core. What nodes and routers both speak (the link
//! codec, registry records, dispatch answers, the admin-key guard) is in
//! `corecast-cluster`.
#![warn(missing_docs)]

pub mod admin_chat;
mod core;
pub mod dispatch;
pub mod health;
pub mod link_hub;
pub mod node_http;
pub mod presence;
pub mod room_streams;
pub mod route_cache;
pub mod routes;
pub mod sequencer;
pub mod tier;

pub use crate::core::{ChatError, CoreConfig, RouterCore, SendReceipt};
pub use crate::routes::{ConnSink, RouteTable};
