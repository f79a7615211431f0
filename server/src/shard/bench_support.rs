//! Entry points for the criterion benchmarks in `server/benches/`: a shard
//! holding many authenticated members of one room, with no sockets, so the
//! fan-out path itself (one encoded PUSH queued by reference to every
//! member) can be timed. Not part of the server's API.

use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, PushKind, ServerMessage};

use super::{Mesh, Shard};
use crate::auth::{Identity, TokenVerifier};
use crate::config::Config;

/// A shard with `members` idle connections in room "bench".
pub struct FanoutFixture {
    shard: Shard,
    room_push: InternalFrameBytes,
}

impl FanoutFixture {
    /// Builds the shard and its members, and encodes one 100-byte room
    /// PUSH as the internal frame another shard would send.
    pub fn new(members: usize) -> FanoutFixture {
        let config = Config { outbound_queue_bytes: usize::MAX / 2, hot_room_msgs_per_sec: 0, ..Config::default() };
        let (mesh, _inboxes) = Mesh::new(1, 16);
        let (core, _core_inbox) = flume::unbounded();
        let verifier = Arc::new(TokenVerifier::new(b"bench"));
        let shard = Shard::new(0, Arc::new(config), verifier, mesh, core, Arc::default(), "none");
        for n in 0..members {
            // -1: these connections have no socket; nothing here shuts one.
            let (key, _) = shard.register(-1);
            let (room, _) = shard.rooms.borrow_mut().join("bench", key);
            let mut conns = shard.conns.borrow_mut();
            let conn = &mut conns[key as usize];
            conn.identity = Some(Identity { user: format!("user{n}").into(), device: Box::default(), rooms: None });
            conn.rooms.push(room);
        }
        let mut push = Vec::new();
        let message = ServerMessage::Push {
            kind: PushKind::Room,
            conv: "bench",
            from: "alice",
            seq: 0,
            ts_ms: 0,
            payload: &[7; 100],
        };
        encode_server(0, 0, &message, &mut push).unwrap_or_else(|e| unreachable!("a fixed PUSH encodes: {e}"));
        let room_push =
            InternalFrameBytes::encode(&InternalFrame::RoomPush { room: "bench".into(), except_conn: 0, push });
        FanoutFixture { shard, room_push }
    }

    /// Delivers the room PUSH to every member, as the shard does when the
    /// frame arrives in its inbox.
    pub fn deliver(&self) {
        self.shard.deliver_internal(&self.room_push);
    }

    /// Empties every member's queue, releasing the shared references as
    /// writers do once the bytes are written.
    pub fn drain(&self) -> usize {
        let mut queued = 0;
        for (_, conn) in self.shard.conns.borrow_mut().iter_mut() {
            queued += conn.queue.bytes();
            conn.queue.clear_unstarted();
        }
        queued
    }

    /// The encoded PUSH every member shares.
    pub fn push(&self) -> Bytes {
        self.room_push.wire_push()
    }
}
