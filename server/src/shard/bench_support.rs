//! Entry points for the criterion benchmarks in `server/benches/`: a shard
//! core holding many authenticated members of one room, with no sockets,
//! so the fan-out path (one encoded PUSH queued by reference to every
//! member) and the admission path (accept, AUTH, AUTH_OK) can be timed and
//! counted. The members are made the way clients make them: AUTH and JOIN
//! frames fed to the core. Not part of the server's API.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_client, encode_server, ClientRequest, PushKind, ServerMessage};

use super::core::{Framing, Links, Now, Output, ShardCore};
use super::{Mesh, ShardCommand};
use crate::auth::{mint_token, TokenVerifier};
use crate::config::Config;

const SECRET: &[u8] = b"bench-secret-0123456789";

/// A shard core with no sockets.
pub struct CoreFixture {
    core: RefCell<ShardCore>,
    _inboxes: Vec<flume::Receiver<ShardCommand>>,
    /// The router core's inbox: emptied as a router core would.
    core_inbox: flume::Receiver<super::CoreCommand>,
    next_fd: RefCell<i32>,
}

impl Default for CoreFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreFixture {
    /// A core on a one-shard node with limits that do not get in the way.
    pub fn new() -> CoreFixture {
        let config = Config {
            outbound_queue_bytes: usize::MAX / 2,
            hot_room_msgs_per_sec: 0,
            auth_rate_per_sec: 0,
            connect_rate_per_source: 0,
            connect_rate_total: 0,
            max_unauthenticated: usize::MAX / 2,
            max_connections: Some(u64::MAX / 2),
            ..Config::default()
        };
        let (mesh, inboxes) = Mesh::new(1, 16);
        let (core_tx, core_inbox) = flume::unbounded();
        let frames = super::frame_mesh(1, 16).swap_remove(0);
        let links = Links { mesh, frames, core: core_tx, node_connections: Arc::default() };
        let verifier = Arc::new(TokenVerifier::new(SECRET));
        let core = ShardCore::new(0, Arc::new(config), verifier, links, "none");
        CoreFixture { core: RefCell::new(core), _inboxes: inboxes, core_inbox, next_fd: RefCell::new(1 << 20) }
    }

    fn now() -> Now {
        Now { mono_ms: 0, wall_ms: 0 }
    }

    /// A token for `user`, as a client would bring it.
    pub fn token(user: &str) -> String {
        mint_token(SECRET, user, 3600, None).unwrap_or_else(|e| unreachable!("minting a bench token: {e}"))
    }

    /// Accepts a connection and feeds it `AUTH` with `token`; returns its id.
    pub fn admit(&self, token: &str) -> u64 {
        let fd = {
            let mut next = self.next_fd.borrow_mut();
            *next += 1;
            *next
        };
        let mut core = self.core.borrow_mut();
        let id = core.accept(Self::now(), fd, IpAddr::V4(Ipv4Addr::LOCALHOST), Framing::Raw);
        let mut frame = Vec::new();
        let auth = ClientRequest::Auth { token, device: "" };
        encode_client(1, 0, &auth, &mut frame).unwrap_or_else(|e| unreachable!("encoding AUTH: {e}"));
        core.on_bytes(Self::now(), id, &frame);
        core.end_round();
        // The presence batch reaches the router core, which frees it.
        self.core_inbox.try_iter().for_each(drop);
        id
    }

    /// Feeds `JOIN room` to connection `id`.
    pub fn join(&self, id: u64, room: &str) {
        let mut frame = Vec::new();
        encode_client(2, 0, &ClientRequest::Join { room, since: 0 }, &mut frame)
            .unwrap_or_else(|e| unreachable!("{e}"));
        self.core.borrow_mut().on_bytes(Self::now(), id, &frame);
    }

    /// Hands every queued byte to a pretend socket that takes it all;
    /// returns how many bytes that was.
    pub fn drain(&self) -> usize {
        let mut core = self.core.borrow_mut();
        let mut ids = Vec::new();
        core.take_write_list(&mut ids);
        let mut written = 0;
        let mut batch = Vec::new();
        for id in ids {
            loop {
                batch.clear();
                if core.take_output(id, &mut batch) != Output::Write {
                    break;
                }
                let n: usize = batch.iter().map(Bytes::len).sum();
                written += n;
                core.wrote(id, &mut batch, n);
            }
        }
        written
    }

    /// Connection `id` goes away.
    pub fn close(&self, id: u64) {
        let mut core = self.core.borrow_mut();
        core.on_peer_closed(Self::now(), id);
        core.end_round();
        core.take_released(&mut Vec::new());
        self.core_inbox.try_iter().for_each(drop);
    }

    /// Delivers an internal frame as if another shard sent it.
    pub fn deliver(&self, frame: &InternalFrameBytes) {
        self.core.borrow_mut().on_command(Self::now(), ShardCommand::Deliver(frame.clone()));
    }
}

/// A shard with `members` idle connections in room "bench".
pub struct FanoutFixture {
    core: CoreFixture,
    room_push: InternalFrameBytes,
}

impl FanoutFixture {
    /// Builds the shard and its members, and encodes one 100-byte room
    /// PUSH as the internal frame another shard would send.
    pub fn new(members: usize) -> FanoutFixture {
        let core = CoreFixture::new();
        for n in 0..members {
            let id = core.admit(&CoreFixture::token(&format!("user{n}")));
            core.join(id, "bench");
        }
        core.drain();
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
        FanoutFixture { core, room_push }
    }

    /// Delivers the room PUSH to every member, as the shard does when the
    /// frame arrives in its inbox.
    pub fn deliver(&self) {
        self.core.deliver(&self.room_push);
    }

    /// Empties every member's queue, releasing the shared references as
    /// the driver does once the bytes are written.
    pub fn drain(&self) -> usize {
        self.core.drain()
    }

    /// The encoded PUSH every member shares.
    pub fn push(&self) -> Bytes {
        self.room_push.wire_push()
    }
}
