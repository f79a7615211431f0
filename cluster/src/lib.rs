//! What server nodes and routers of a corecast cluster both speak.
//!
//! A node and a router share no code path at run time, but they must agree
//! on everything that crosses between them: the link (length-prefixed
//! internal frames, optionally over TLS, see [`link`]), the records in the
//! Redis registry and the route table ([`registry`]), which router owns a
//! conversation ([`ownership`]) and how conversation ids are spelled
//! ([`conversation`]), the answer to a dispatch request ([`dispatch`]) and
//! the admin API's key guard and operator pushes ([`admin_api`]), and how
//! room interest is kept and announced with a bounded wait ([`interest`]),
//! which shards use too, and what a room's owner keeps for rooms with
//! history or presence ([`room_stream`]). Router-only
//! code (the router core, the link hub, ranking) lives in `corecast-router`;
//! node-only code in `corecast-server`.
#![warn(missing_docs)]

pub mod admin_api;
pub mod conversation;
pub mod dispatch;
pub mod interest;
pub mod link;
pub mod ownership;
pub mod registry;
pub mod room_stream;
