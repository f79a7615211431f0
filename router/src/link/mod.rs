//! Links between server nodes and routers: long-lived TCP connections (TLS
//! when configured, see [`tls`]) that
//! carry internal rkyv frames, each behind a 4-byte big-endian length. Both
//! ends use this codec; the router's side (accepting links, remembering
//! which node holds which rooms) is [`hub`], the node's side lives in the
//! server crate.

pub mod codec;
pub mod hub;
pub mod tls;
