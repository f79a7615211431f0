//! The corecast wire protocol, sans-IO.
//!
//! This crate owns every byte format corecast speaks: the client frames
//! (a 12-byte big-endian header followed by a body, see `docs/PROTOCOL.md`),
//! the error codes a client acts on, the size limits checked before anything
//! is allocated, and the internal rkyv frames that travel between shards and
//! hosts. It has no sockets, no runtime and no clock: callers hand it bytes
//! and timestamps, it hands back typed frames or bytes to write. Decoding
//! never panics on any input; property tests and a fuzz target hold it to
//! that.
#![warn(missing_docs)]

pub mod client;
pub mod error_code;
pub mod frame;
pub mod internal;
pub mod server;
pub mod sync;
mod wire;
pub mod ws;

pub use client::{decode_client, encode_client, ClientFrame, ClientRequest, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY};
pub use error_code::ErrorCode;
pub use frame::{peek_frame, FrameError, Header, Peek, DEFAULT_MAX_FRAME_LEN, HEADER_LEN, VERSION};
pub use server::{
    decode_server, encode_server, position, position_epoch, position_offset, PresenceEntry, PushKind, ServerFrame,
    ServerMessage, UnreadEntry,
};
pub use wire::EncodeError;
