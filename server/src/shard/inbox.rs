//! What shards and the control plane send to a shard, and the mesh of
//! senders that reaches every shard's inbox.
//!
//! Message delivery travels as internal rkyv frames (one per shard that has
//! recipients, shared by reference count); room membership announcements,
//! queries from the control plane and shutdown are plain commands.

use std::sync::Arc;

use corecast_proto::internal::{shard_of, ArchivedInternalFrame, InternalFrameBytes};

pub use super::core::InterestAck;

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
        /// Acknowledgement for the waiting JOIN.
        ack: Option<InterestAck>,
    },
    /// Another shard (or the uplink) acknowledged this shard's room
    /// interest announcement `id`.
    InterestAcked {
        /// The announcement.
        id: u64,
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
    /// Send the room's owner a presence snapshot of every room with
    /// presence this shard has members of (the owner may have missed
    /// reports: a router link came back, the routers changed).
    ReportPresence,
    /// A page of a room's presence, for the admin API (answered by the
    /// room's owner shard).
    PresencePage {
        /// Room name.
        room: String,
        /// Users after this id.
        after: String,
        /// At most this many.
        limit: usize,
        /// Where to send the page.
        reply: flume::Sender<corecast_cluster::room_stream::PresencePage>,
    },
    /// A page of this shard's routes, for the node's route refresh: the
    /// authenticated connections in slots `from` and after, at most
    /// `limit` of them.
    ListRoutes {
        /// The first slot to look at.
        from: u32,
        /// At most this many routes.
        limit: usize,
        /// Where to send the page.
        reply: flume::Sender<RoutePage>,
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

/// One page of a shard's routes: each authenticated connection's user,
/// connection id and device.
#[derive(Debug, Default)]
pub struct RoutePage {
    /// The routes of this page.
    pub routes: Vec<(Box<str>, u64, Box<str>)>,
    /// The slot to ask for next; `None` when this was the last page.
    pub next: Option<u32>,
}

/// What a shard sends to the control plane: to the in-process router core
/// on a single node, to the uplink (and on to the routers) in a cluster.
pub enum CoreCommand {
    /// A chat request (an [`InternalFrame::Chat`] frame).
    ///
    /// [`InternalFrame::Chat`]: corecast_proto::internal::InternalFrame::Chat
    Request(InternalFrameBytes),
    /// A room push for the other nodes (cluster only).
    Publish(InternalFrameBytes),
    /// A frame for the owner of the room it names (cluster only): a
    /// `RoomPublish`, `StreamRequest`, `RoomPresence`,
    /// `RoomPresenceSnapshot` or `PresenceQuery` for the router that owns
    /// the room.
    ToOwner(InternalFrameBytes),
    /// The shard gained its first (`joined`) or lost its last member of
    /// `room` (cluster only). `ack` is answered once the routers know.
    RoomInterest {
        /// Room name.
        room: Box<str>,
        /// The announcing shard.
        shard: u16,
        /// First member joined (true) or last member left (false).
        joined: bool,
        /// Acknowledgement for the waiting JOIN, once the routers know.
        ack: Option<InterestAck>,
    },
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

    /// Hands a frame from the router core (or a router) to the shards that
    /// need it: connection frames to the shards of their connections, room
    /// pushes to the shards in `room_shards`, broadcasts to every shard.
    /// Frames that find a full inbox are counted as dropped: a PUSH of a
    /// stored message can be synced, a lost reply makes the client resend.
    pub fn deliver(&self, frame: &InternalFrameBytes, room_shards: impl FnOnce(&str) -> u128) {
        let mask: u128 = match frame.archived() {
            ArchivedInternalFrame::ConnFrames { conn_ids, .. } => {
                conn_ids.iter().fold(0, |mask, id| mask | 1u128 << (shard_of(id.to_native()) % 128))
            }
            ArchivedInternalFrame::StreamReply { conn_id, .. } => 1u128 << (shard_of(conn_id.to_native()) % 128),
            ArchivedInternalFrame::RoomPush { room, .. } => room_shards(room.as_str()),
            ArchivedInternalFrame::Broadcast { .. } => u128::MAX,
            _ => 0,
        };
        for (shard, sender) in self.all() {
            if mask & (1u128 << shard) != 0 && sender.try_send(ShardCommand::Deliver(frame.clone())).is_err() {
                metrics::counter!("corecast_drops_total", "shard" => shard.to_string(), "reason" => "inbox_full")
                    .increment(1);
            }
        }
    }
}
