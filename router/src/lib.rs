//! The corecast router core and, later, the router tier.
//!
//! This crate owns what sits between server nodes and storage: conversation
//! ids, sequence numbers (`epoch << 40 | counter`, a fresh epoch each time an
//! owner starts), persistence through `corecast-storage`, presence (which
//! connections each user has), fan-out of stored messages to every online
//! device, SYNC/ACK/UNREAD, and groups. On a single node the server runs
//! [`RouterCore`] in-process on its control-plane thread and hands it
//! [`ChatRequest`](corecast_proto::internal::ChatRequest) frames; answers go
//! back through a [`ConnSink`] as internal frames addressed to connections.
//! The cluster parts (Redis route table, router links, dispatch, the
//! `corecast-router` binary) build on the same core.
#![warn(missing_docs)]

pub mod admin;
pub mod conversation;
mod core;
pub mod dispatch;
pub mod health;
pub mod link;
pub mod node_http;
pub mod ownership;
pub mod presence;
pub mod registry;
pub mod routes;
pub mod sequencer;
pub mod tier;

pub use crate::core::{ChatError, CoreConfig, RouterCore, SendReceipt};
pub use crate::ownership::Ownership;
pub use crate::routes::{ConnSink, RouteTable};
