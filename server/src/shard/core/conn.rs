//! The record a shard keeps for each connection, and how a connection id
//! names it.
//!
//! The record is what an idle connection costs in user space, so it is kept
//! compact: ticks are `u32`, the user and device ids are shared `Rc<str>`s
//! interned per shard (a user's devices share one), the first room is kept
//! inline, and the outbound queue, the partial-frame buffer and the
//! WebSocket state are boxed and allocated only while they hold something.
//! No socket, buffer, future or waker lives here: the driver owns the
//! sockets, the shard's one read buffer and the TLS sessions (the core
//! sees a TLS connection's plaintext like any other connection's bytes).

use std::rc::Rc;

use smallvec::SmallVec;

use crate::shard::limits::TokenBucket;
use crate::shard::outbound::OutboundQueue;
use crate::shard::ws_codec::WsState;

/// A tick that has not been set (no deadline armed, not over the limit).
pub const NO_TICK: u32 = u32::MAX;

/// Bits of a connection id that hold its slab key.
const KEY_BITS: u32 = 24;
/// Bits of a connection id that hold the slot's generation.
const GENERATION_MASK: u32 = (1 << 24) - 1;

/// A connection id: the shard in the top 16 bits, then the generation of
/// its slab slot (24 bits), then the slot (24 bits). Reusing a slot bumps
/// its generation, so a frame addressed to a connection that has gone never
/// reaches the one that took its slot, and no id → slot map is needed.
pub fn conn_id(shard: u16, generation: u32, key: u32) -> u64 {
    ((shard as u64) << 48) | (((generation & GENERATION_MASK) as u64) << KEY_BITS) | key as u64
}

/// The slab key and generation a connection id names.
pub fn key_of(conn_id: u64) -> (u32, u32) {
    ((conn_id & ((1 << KEY_BITS) - 1)) as u32, ((conn_id >> KEY_BITS) as u32) & GENERATION_MASK)
}

/// Most connections one shard can name.
pub const MAX_KEYS: usize = 1 << KEY_BITS;

/// What the client speaks on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Wire frames straight on the byte stream.
    Raw,
    /// An HTTP upgrade first, then wire frames in WebSocket messages.
    WebSocket,
}

/// Who an authenticated connection is.
pub struct Identity {
    /// User id (interned per shard).
    pub user: Rc<str>,
    /// Device id (interned per shard; empty for the default device).
    pub device: Rc<str>,
    /// Room grants of the token; `None` allows every room.
    pub grants: Option<Box<[Box<str>]>>,
}

impl Identity {
    /// Whether this identity may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        match &self.grants {
            None => true,
            Some(grants) => grants.iter().any(|grant| match grant.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => &**grant == room,
            }),
        }
    }
}

/// Where a connection's closing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Open.
    No,
    /// The server is closing: flush what is queued (the CLOSE last), then
    /// shut the write side; give up at `deadline`.
    Flushing { deadline: u32 },
    /// The write side is shut; input is read and discarded until the peer
    /// closes or `deadline` passes, so the CLOSE is not destroyed by a reset.
    Lingering { deadline: u32 },
}

/// One connection owned by a shard.
pub struct Conn {
    /// The driver's handle of the socket (its descriptor); opaque here.
    pub fd: i32,
    /// Generation of this slab slot, part of the connection id.
    pub generation: u32,
    /// What the client speaks.
    pub framing: Framing,
    /// Input is not handled until a JOIN's room announcement completes.
    pub paused: bool,
    /// A JOIN of this connection waits for its room's catch-up: that
    /// room's live messages are not queued to it yet.
    pub catching_up: bool,
    /// Queued frames wait for the shard's flush tick (hot room).
    pub flush_pending: bool,
    /// The connection is in the shard's list of connections to write.
    pub in_write_list: bool,
    /// Frames refused in a row by the rate limits.
    pub rate_strikes: u16,
    /// Tick the connection was accepted.
    pub opened_tick: u32,
    /// Tick of the last frame received.
    pub last_active_tick: u32,
    /// Deadline tick of this connection's live timing-wheel entry.
    pub timer_due: u32,
    /// Tick since which the queue has been over its limit, or [`NO_TICK`].
    pub over_limit_since: u32,
    /// Closing state.
    pub closing: Closing,
    /// PUBLISH/SEND frames allowed.
    pub publish_frames: TokenBucket,
    /// PUBLISH/SEND bytes allowed.
    pub publish_bytes: TokenBucket,
    /// Set once AUTH succeeded.
    pub identity: Option<Identity>,
    /// Rooms joined (names shared with the shard's room map).
    pub rooms: SmallVec<[Rc<str>; 1]>,
    /// Frames waiting to be written; allocated only while non-empty.
    pub queue: Option<Box<OutboundQueue>>,
    /// Received bytes of a frame not yet complete (or held while paused).
    /// Boxed so that the record pays 8 bytes for it, not a `Vec`'s 24.
    #[allow(clippy::box_collection)]
    pub input: Option<Box<Vec<u8>>>,
    /// WebSocket state, for a connection that came in over WebSocket.
    pub ws: Option<Box<WsState>>,
}

impl Conn {
    /// A fresh, unauthenticated connection.
    pub fn new(fd: i32, generation: u32, framing: Framing, now: u32, frames: TokenBucket, bytes: TokenBucket) -> Conn {
        Conn {
            fd,
            generation,
            framing,
            paused: false,
            catching_up: false,
            flush_pending: false,
            in_write_list: false,
            rate_strikes: 0,
            opened_tick: now,
            last_active_tick: now,
            timer_due: NO_TICK,
            over_limit_since: NO_TICK,
            closing: Closing::No,
            publish_frames: frames,
            publish_bytes: bytes,
            identity: None,
            rooms: SmallVec::new(),
            queue: None,
            input: None,
            ws: None,
        }
    }

    /// Whether the server has started closing this connection.
    pub fn is_closing(&self) -> bool {
        self.closing != Closing::No
    }

    /// Bytes queued for writing.
    pub fn queued_bytes(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes())
    }

    /// The outbound queue, allocated on first use.
    pub fn queue_mut(&mut self) -> &mut OutboundQueue {
        self.queue.get_or_insert_with(Box::default)
    }

    /// Whether anything is waiting to be written (frames or WebSocket
    /// control frames).
    pub fn has_output(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| !q.is_empty()) || self.ws.as_ref().is_some_and(|ws| ws.has_output())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_generations_differ() {
        let id = conn_id(3, 7, 12_345);
        assert_eq!(corecast_proto::internal::shard_of(id), 3);
        assert_eq!(key_of(id), (12_345, 7));
        assert_ne!(conn_id(3, 8, 12_345), id);
        assert_eq!(key_of(conn_id(0, GENERATION_MASK + 1, 1)), (1, 0), "generations wrap within their bits");
    }

    #[test]
    fn an_idle_record_stays_small() {
        // What an idle authenticated connection costs in its slab slot.
        assert!(std::mem::size_of::<Conn>() <= 160, "Conn is {} bytes", std::mem::size_of::<Conn>());
    }
}
