//! One client connection as the worker's event loop sees it: where it is in
//! its life (connecting, handshake, subscribing, ready), what it does (its
//! [`Role`]), bytes waiting to be written, bytes of an incomplete frame, and
//! the per-publisher sequence numbers a member has seen (in a stream room,
//! also its stream position). An idle connection holds no buffer:
//! `partial` and `out` stay unallocated until needed.

use socket2::Socket;

use crate::plan::Role;
use crate::stream::Cursor;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Not started yet.
    Waiting,
    /// TCP connect in flight.
    Connecting,
    /// Hello sent, waiting for its answer.
    Handshaking,
    /// Subscribe sent, waiting for its answer.
    Subscribing,
    /// Fully set up.
    Ready,
    /// Failed or closed; its socket is gone.
    Closed,
}

impl ConnState {
    /// Whether the connection counts against the connect concurrency.
    pub fn in_flight(self) -> bool {
        matches!(self, ConnState::Connecting | ConnState::Handshaking | ConnState::Subscribing)
    }
}

/// One connection.
pub struct Conn {
    /// The socket, while open.
    pub socket: Option<Socket>,
    /// Life stage.
    pub state: ConnState,
    /// What it does.
    pub role: Role,
    /// When its connect started (monotonic ns).
    pub started_ns: u64,
    /// Bytes of an incomplete incoming frame.
    pub partial: Vec<u8>,
    /// Bytes waiting to be written.
    pub out: Vec<u8>,
    /// Events the socket is registered for with epoll.
    pub interest: u32,
    /// Member: last sequence number seen from each publisher of its room.
    pub seqs: Box<[u64]>,
    /// Member of a stream room: the last position seen; kept across a reconnect.
    pub cursor: Cursor,
    /// Publisher: next message due (monotonic ns).
    pub next_due_ns: u64,
    /// Publisher: last sequence number sent.
    pub seq: u64,
    /// Broadcast scenario: the watched broadcast arrived.
    pub broadcast_seen: bool,
}

impl Conn {
    /// A connection not started yet.
    pub fn new(role: Role, publishers_in_room: usize) -> Conn {
        let seqs = match role {
            Role::Member { .. } => vec![0; publishers_in_room].into_boxed_slice(),
            _ => Box::default(),
        };
        Conn {
            socket: None,
            state: ConnState::Waiting,
            role,
            started_ns: 0,
            partial: Vec::new(),
            out: Vec::new(),
            interest: 0,
            seqs,
            cursor: Cursor::default(),
            next_due_ns: 0,
            seq: 0,
            broadcast_seen: false,
        }
    }
}
