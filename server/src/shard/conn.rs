//! The record a shard keeps for each of its connections: identity, rooms,
//! outbound queue, the writer's waker and the ticks its deadlines derive
//! from. It is deliberately small: an idle authenticated connection holds
//! this record, an empty queue and nothing else.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Waker;

use super::limits::TokenBucket;
use super::outbound::OutboundQueue;
use crate::auth::Identity;

/// Until when a connection being closed by the server may take to go.
#[derive(Debug, Clone, Copy)]
pub struct Closing {
    /// After this tick the socket is shut down whether or not the CLOSE was
    /// written.
    pub deadline_tick: u64,
}

/// One connection owned by a shard.
pub struct Conn {
    /// Server-wide unique id: shard in the top 16 bits, a counter below.
    pub id: u64,
    /// The socket, to shut it down from outside its tasks.
    pub fd: RawFd,
    /// Set once AUTH succeeded.
    pub identity: Option<Identity>,
    /// Rooms joined (names shared with the shard's room map).
    pub rooms: Vec<Rc<str>>,
    /// Frames waiting for the writer.
    pub queue: OutboundQueue,
    /// The writer task, parked while the queue is empty.
    pub writer: Option<Waker>,
    /// Tick the connection was accepted.
    pub opened_tick: u64,
    /// Tick of the last frame received.
    pub last_active_tick: u64,
    /// Tick since which the queue has been over its limit, if it is.
    pub over_limit_since: Option<u64>,
    /// Set once the server decided to close the connection.
    pub closing: Option<Closing>,
    /// Queued frames wait for the shard's flush tick (hot room).
    pub flush_pending: bool,
    /// Deadline tick of this connection's live timing-wheel entry; entries
    /// armed for another tick are stale and dropped when they come up.
    pub timer_due: u64,
    /// PUBLISH/SEND frames allowed.
    pub publish_frames: TokenBucket,
    /// PUBLISH/SEND bytes allowed.
    pub publish_bytes: TokenBucket,
    /// Frames refused in a row by the rate limits.
    pub rate_strikes: u32,
    /// WebSocket state, for a connection that came in over WebSocket.
    pub ws: Option<Box<WsOut>>,
}

/// What the writer of a WebSocket connection owes besides data: control
/// frames (pongs) and the closing handshake.
#[derive(Default)]
pub struct WsOut {
    /// Whole control frames to write before the next data.
    pub control: Vec<bytes::Bytes>,
    /// The close frame's code and reason, once known.
    pub close: Option<(u16, String)>,
}

impl Conn {
    /// A fresh, unauthenticated connection with full rate buckets.
    pub fn new(id: u64, fd: RawFd, now_tick: u64, frames: TokenBucket, bytes: TokenBucket) -> Conn {
        Conn {
            id,
            fd,
            identity: None,
            rooms: Vec::new(),
            queue: OutboundQueue::default(),
            writer: None,
            opened_tick: now_tick,
            last_active_tick: now_tick,
            over_limit_since: None,
            closing: None,
            flush_pending: false,
            timer_due: u64::MAX,
            publish_frames: frames,
            publish_bytes: bytes,
            rate_strikes: 0,
            ws: None,
        }
    }

    /// Wakes the writer if it is parked.
    pub fn wake_writer(&mut self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    /// Shuts the socket down in both directions, which ends a pending read
    /// (it returns 0) and a pending write (it fails), so both tasks finish.
    /// The descriptor stays open until both halves are dropped, so this never
    /// touches a reused descriptor.
    pub fn shutdown_socket(&self) {
        // SAFETY: plain syscall on a descriptor this connection's tasks keep
        // open for as long as the record exists.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }
}
