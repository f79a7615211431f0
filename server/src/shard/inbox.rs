//! What shards and the control plane send to a shard, and the mesh of
//! senders that reaches every shard's inbox.
//!
//! Message delivery travels as internal rkyv frames (one per shard that has
//! recipients, shared by reference count); room membership announcements,
//! queries from the control plane and shutdown are plain commands.

use std::sync::Arc;

use corecast_proto::internal::InternalFrameBytes;

/// A command in a shard's inbox.
pub enum ShardCommand {
    /// Deliver a room push or a broadcast to local connections.
    Deliver(InternalFrameBytes),
    /// Shard `shard` gained its first (`joined`) or lost its last member of
    /// `room`. When `ack` is given, send on it once recorded.
    RoomInterest {
        /// Room name.
        room: Box<str>,
        /// The announcing shard.
        shard: u16,
        /// First member joined (true) or last member left (false).
        joined: bool,
        /// Acknowledgement channel of the waiting JOIN.
        ack: Option<flume::Sender<()>>,
    },
    /// How many local members `room` has.
    CountRoomMembers {
        /// Room name.
        room: String,
        /// Where to send the count.
        reply: flume::Sender<usize>,
    },
    /// How many authenticated connections this shard holds.
    CountConnections {
        /// Where to send the count.
        reply: flume::Sender<usize>,
    },
    /// Close every connection of `user` with CLOSE kicked.
    Kick {
        /// User id.
        user: String,
        /// Where to send how many connections were closed.
        reply: flume::Sender<usize>,
    },
    /// Stop accepting, close every connection with a reconnect hint, exit.
    Shutdown,
}

/// Senders to every shard's inbox, indexed by shard id.
#[derive(Clone)]
pub struct Mesh(Arc<[flume::Sender<ShardCommand>]>);

impl Mesh {
    /// Creates one bounded inbox per shard; returns the mesh and the
    /// receivers, in shard order.
    pub fn new(shards: usize, capacity: usize) -> (Mesh, Vec<flume::Receiver<ShardCommand>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| flume::bounded(capacity)).unzip();
        (Mesh(senders.into()), receivers)
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no shards (never, once a node runs).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sender to `shard`'s inbox.
    pub fn to(&self, shard: u16) -> &flume::Sender<ShardCommand> {
        &self.0[shard as usize]
    }

    /// Every shard's sender, with its id.
    pub fn all(&self) -> impl Iterator<Item = (u16, &flume::Sender<ShardCommand>)> {
        self.0.iter().enumerate().map(|(i, s)| (i as u16, s))
    }
}
