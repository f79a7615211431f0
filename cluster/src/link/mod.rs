//! Links between server nodes and routers: long-lived TCP connections (TLS
//! when configured, see [`tls`]) that carry internal rkyv frames, each
//! behind a 4-byte big-endian length ([`codec`]). Both ends use this; the
//! router's end (accepting links, remembering which node holds which rooms)
//! is the router's link hub, the node's end lives in the server crate.

pub mod codec;
pub mod tls;
