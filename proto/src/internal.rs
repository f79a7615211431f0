//! Internal frames: what shards (and later router links) pass to each other.
//!
//! An internal frame is an rkyv archive held in a reference-counted [`Bytes`].
//! The same bytes go from the shard that made them to every other shard that
//! needs them (a clone is a reference-count increment), and each reads them
//! in place. A room PUSH is encoded into its client wire form exactly once,
//! inside the archive; a receiving shard slices that PUSH out of the archive
//! with [`InternalFrameBytes::wire_push`] and queues the slice to each of its
//! members, so every recipient on every shard shares one allocation.
//!
//! Chat requests from shards to the router core ([`ChatRequest`]) and the
//! router core's answers ([`InternalFrame::ConnFrames`]: wire frames for
//! named connections) travel the same way, so the same bytes can later cross
//! a router link unchanged.
//!
//! Frames made in this process are trusted; bytes that arrive from the
//! network are validated once with [`InternalFrameBytes::validate`].

// rkyv derives archived and resolver types whose fields carry no docs.
#![allow(missing_docs)]

use bytes::Bytes;
use rkyv::rancor;

/// An internal message between shards or hosts.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum InternalFrame {
    /// Deliver an encoded PUSH to every local member of `room`.
    RoomPush {
        /// The room.
        room: String,
        /// Connection id that must not receive it (the publisher asked to be
        /// excluded), or 0.
        except_conn: u64,
        /// The client wire PUSH frame, encoded once.
        push: Vec<u8>,
    },
    /// Deliver an encoded PUSH to every authenticated local connection.
    Broadcast {
        /// The client wire PUSH frame, encoded once.
        push: Vec<u8>,
    },
    /// Deliver wire bytes (one or more whole client frames) to the named
    /// local connections: a stored message's PUSH to a user's devices, or
    /// the router core's reply to one request.
    ConnFrames {
        /// Connection ids (the shard is in their top 16 bits).
        conn_ids: Vec<u64>,
        /// Whole encoded client frames.
        frames: Vec<u8>,
        /// A reply to a request: queued regardless of the outbound limit.
        reply: bool,
    },
    /// A request for the router core.
    Chat(ChatRequest),
    /// Node → router, the first frame on a link: who the node is and every
    /// room it has members of (a reconnecting node re-announces its state).
    NodeHello {
        /// Node id.
        node: String,
        /// The cluster's admin key: a router refuses a link without it.
        key: String,
        /// Rooms with at least one member on the node.
        rooms: Vec<String>,
    },
    /// Node → router: the node gained its first (`joined`) or lost its last
    /// member of `room`. The router answers [`InternalFrame::InterestAck`]
    /// with the same `id` once recorded.
    RoomInterest {
        /// Room name.
        room: String,
        /// First member joined (true) or last member left (false).
        joined: bool,
        /// Matches the acknowledgement to the announcement.
        id: u64,
    },
    /// Router → node: a [`InternalFrame::RoomInterest`] is recorded.
    InterestAck {
        /// The announcement's id.
        id: u64,
    },
    /// Node → routers: these users' connections changed; drop their cached
    /// routes. One frame per batch of route writes, not one per user: a
    /// login storm would otherwise queue a frame per connection on every
    /// router link.
    RouteChanged {
        /// User ids.
        users: Vec<String>,
    },
    /// A message for a room with a stream, on its way to the room's owner
    /// (its owner shard, or in a cluster its owner router), which gives it
    /// the next position and sends it to every member as a `RoomPush`.
    RoomPublish {
        /// The room.
        room: String,
        /// Publisher's user id.
        from: String,
        /// Connection that must not receive it, or 0.
        except_conn: u64,
        /// Payload, as published.
        payload: Vec<u8>,
    },
    /// To a room's owner: answer connection `conn_id` from the room's
    /// stream. For a JOIN (`join`), the messages after `since` (none when 0)
    /// then JOINED; for a HISTORY, up to `limit` messages then HISTORY_END.
    /// The owner also records that the sender has members of the room, so
    /// the live messages after the answer follow it on the same path.
    StreamRequest {
        /// The room.
        room: String,
        /// Who asked.
        conn_id: u64,
        /// The request's rid.
        rid: u32,
        /// Position to continue after, or 0.
        since: u64,
        /// HISTORY's limit (a JOIN takes everything after `since`).
        limit: u16,
        /// A JOIN (true) or a HISTORY (false).
        join: bool,
    },
    /// Owner → the asker's shard: the answer to a `StreamRequest`, whole
    /// client frames. After a JOIN's answer the connection takes the room's
    /// live messages.
    StreamReply {
        /// The room.
        room: String,
        /// Who asked.
        conn_id: u64,
        /// Whole encoded client frames.
        frames: Vec<u8>,
        /// Answers a JOIN.
        join: bool,
    },
    /// To the owner of a room with presence: one of `user`'s connections
    /// on shard `shard` (of the sending node) joined or left it.
    RoomPresence {
        /// The room.
        room: String,
        /// User id.
        user: String,
        /// The member's shard.
        shard: u16,
        /// Joined (true) or left (false).
        joined: bool,
    },
    /// To the owner of a room with presence: every member connection shard
    /// `shard` has in `room`, replacing what it reported before (sent when
    /// the owner may have missed reports: a link came back, the routers
    /// changed).
    RoomPresenceSnapshot {
        /// The room.
        room: String,
        /// The reporting shard.
        shard: u16,
        /// The user of each member connection (a user once per connection).
        users: Vec<String>,
    },
    /// To the owner of a room with presence: a PRESENCE request, answered
    /// with `ConnFrames`.
    PresenceQuery {
        /// The room.
        room: String,
        /// Who asked.
        conn_id: u64,
        /// The request's rid.
        rid: u32,
        /// Users after this id.
        after: String,
        /// At most this many users.
        limit: u16,
    },
}

/// What a shard asks of the router core for persistent chat. `conn_id` and
/// `rid` say where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum ChatRequest {
    /// Connections that authenticated or closed since the shard's last
    /// batch, in the order it saw them.
    Presence { changes: Vec<PresenceChange> },
    /// SEND.
    Send {
        conn_id: u64,
        rid: u32,
        user: String,
        device: String,
        kind: u8,
        to: String,
        client_msg_id: u64,
        payload: Vec<u8>,
    },
    /// SYNC.
    Sync { conn_id: u64, rid: u32, user: String, conv: String, after_seq: u64, limit: u16 },
    /// ACK.
    Ack { conn_id: u64, rid: u32, user: String, device: String, conv: String, seq: u64 },
    /// UNREAD.
    Unread { conn_id: u64, rid: u32, user: String, device: String },
}

/// One connection coming online (it authenticated) or going offline.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct PresenceChange {
    pub conn_id: u64,
    pub user: String,
    /// Empty when going offline.
    pub device: String,
    pub online: bool,
}

impl ArchivedInternalFrame {
    /// The frame's kind as the links' metrics label it
    /// (`corecast_router_link_frames_in_total`, `corecast_uplink_frames_in_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            ArchivedInternalFrame::RoomPush { .. } => "room_push",
            ArchivedInternalFrame::Broadcast { .. } => "broadcast",
            ArchivedInternalFrame::ConnFrames { .. } => "conn_frames",
            ArchivedInternalFrame::Chat(_) => "chat",
            ArchivedInternalFrame::NodeHello { .. } => "node_hello",
            ArchivedInternalFrame::RoomInterest { .. } => "room_interest",
            ArchivedInternalFrame::InterestAck { .. } => "interest_ack",
            ArchivedInternalFrame::RouteChanged { .. } => "route_changed",
            ArchivedInternalFrame::RoomPublish { .. } => "room_publish",
            ArchivedInternalFrame::StreamRequest { .. } => "stream_request",
            ArchivedInternalFrame::StreamReply { .. } => "stream_reply",
            ArchivedInternalFrame::RoomPresence { .. } => "room_presence",
            ArchivedInternalFrame::RoomPresenceSnapshot { .. } => "room_presence_snapshot",
            ArchivedInternalFrame::PresenceQuery { .. } => "presence_query",
        }
    }
}

/// The shard that owns a connection id.
pub fn shard_of(conn_id: u64) -> u16 {
    (conn_id >> 48) as u16
}

/// Longest internal frame a link accepts (its 4-byte length prefix counts
/// the archive only). Checked before anything is allocated.
pub const MAX_LINK_FRAME_LEN: u32 = 16 << 20;

/// Why received internal bytes were refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid internal frame: {0}")]
pub struct InvalidInternalFrame(String);

/// An encoded internal frame: aligned rkyv bytes, cheap to clone.
#[derive(Debug, Clone)]
pub struct InternalFrameBytes(Bytes);

impl InternalFrameBytes {
    /// Serializes a frame once. The bytes start 16-byte aligned, as rkyv
    /// needs for in-place access.
    pub fn encode(frame: &InternalFrame) -> InternalFrameBytes {
        // Serializing a plain enum of strings and byte vectors into memory
        // cannot fail; the error type is rkyv's generic one.
        match rkyv::to_bytes::<rancor::Error>(frame) {
            Ok(aligned) => InternalFrameBytes(Bytes::from_owner(aligned)),
            Err(e) => unreachable!("in-memory rkyv serialization failed: {e}"),
        }
    }

    /// Checks bytes that came from outside this process (a router link) and
    /// wraps them. The bytes must start at a 16-byte aligned address.
    pub fn validate(bytes: Bytes) -> Result<InternalFrameBytes, InvalidInternalFrame> {
        rkyv::access::<ArchivedInternalFrame, rancor::Error>(&bytes)
            .map_err(|e| InvalidInternalFrame(e.to_string()))?;
        Ok(InternalFrameBytes(bytes))
    }

    /// Reads the archive in place.
    pub fn archived(&self) -> &ArchivedInternalFrame {
        // SAFETY: the bytes were produced by `encode` in this process, or were
        // checked by `validate`; both guarantee a valid, aligned archive of
        // `InternalFrame` that ends at the end of the slice.
        unsafe { rkyv::access_unchecked::<ArchivedInternalFrame>(&self.0) }
    }

    /// The client wire frames inside this frame (empty for requests and link
    /// control frames),
    /// as a slice that shares this frame's allocation (no copy).
    pub fn wire_push(&self) -> Bytes {
        let push = match self.archived() {
            ArchivedInternalFrame::RoomPush { push, .. } => push.as_slice(),
            ArchivedInternalFrame::Broadcast { push } => push.as_slice(),
            ArchivedInternalFrame::ConnFrames { frames, .. } => frames.as_slice(),
            ArchivedInternalFrame::StreamReply { frames, .. } => frames.as_slice(),
            _ => &[],
        };
        if push.is_empty() {
            return Bytes::new();
        }
        self.0.slice_ref(push)
    }

    /// The raw archive bytes, to send over a link.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_push_is_read_in_place_and_sliced_without_copy() {
        let frame = InternalFrame::RoomPush { room: "r".into(), except_conn: 7, push: vec![1, 2, 3] };
        let bytes = InternalFrameBytes::encode(&frame);
        match bytes.archived() {
            ArchivedInternalFrame::RoomPush { room, except_conn, .. } => {
                assert_eq!(room.as_str(), "r");
                assert_eq!(except_conn.to_native(), 7);
            }
            other => panic!("unexpected {other:?}"),
        }
        let push = bytes.wire_push();
        assert_eq!(&push[..], &[1, 2, 3]);
        let base = bytes.as_bytes().as_ptr() as usize;
        let sliced = push.as_ptr() as usize;
        assert!(sliced >= base && sliced < base + bytes.as_bytes().len());
    }

    fn aligned(bytes: &[u8]) -> Bytes {
        let mut v = rkyv::util::AlignedVec::<16>::new();
        v.extend_from_slice(bytes);
        Bytes::from_owner(v)
    }

    #[test]
    fn validate_accepts_own_bytes_and_refuses_garbage() {
        let bytes = InternalFrameBytes::encode(&InternalFrame::Broadcast { push: vec![9; 40] });
        let copy = aligned(bytes.as_bytes());
        assert!(InternalFrameBytes::validate(copy).is_ok());
        let garbage = aligned(&[0xffu8; 32]);
        assert!(InternalFrameBytes::validate(garbage).is_err());
    }
}
