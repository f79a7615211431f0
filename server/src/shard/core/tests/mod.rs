//! Deterministic tests of [`ShardCore`]: no sockets, no threads, no sleeps.
//! A [`Harness`] plays the driver (it feeds bytes, "writes" what the core
//! hands out, and moves a simulated clock) and plays the other shards and
//! the router core by holding their inboxes. Deadlines, limits, slow
//! consumers, closing and the room-interest handshake are checked tick by
//! tick.

mod closing;
mod deadlines;
mod interest;
mod limits;
mod memory;
mod routes;
mod streams;
mod websocket;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame};
use corecast_proto::{decode_server, encode_client, peek_frame, ClientRequest, Peek, ServerMessage};

use super::{Framing, Links, Now, Output, Released, ShardCore};
use crate::auth::{mint_token, TokenVerifier};
use crate::config::Config;
use crate::shard::inbox::{CoreCommand, Mesh, ShardCommand};

const SECRET: &[u8] = b"core-test-secret-0123456789";

/// What a frame the server sent says, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    AuthOk,
    Pong(u32),
    Ok(u32),
    Push(String, Vec<u8>),
    Error(u32, u16),
    Close(u16),
    Other,
}

fn parse(bytes: &[u8]) -> Vec<Got> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Peek::Complete(header)) = peek_frame(&bytes[at..], u32::MAX) {
        let end = at + header.len as usize;
        let frame = decode_server(&bytes[at..end]).expect("the server sends valid frames");
        out.push(match frame.message {
            ServerMessage::AuthOk { .. } => Got::AuthOk,
            ServerMessage::Pong => Got::Pong(frame.rid),
            ServerMessage::Ok => Got::Ok(frame.rid),
            ServerMessage::Push { conv, payload, .. } => Got::Push(conv.to_string(), payload.to_vec()),
            ServerMessage::Error { code, .. } => Got::Error(frame.rid, code),
            ServerMessage::Close { code, .. } => Got::Close(code),
            _ => Got::Other,
        });
        at = end;
    }
    assert_eq!(at, bytes.len(), "only whole frames are written");
    out
}

/// One shard core with its peers' inboxes and a simulated clock.
pub struct Harness {
    pub core: ShardCore,
    pub config: Arc<Config>,
    /// Every shard's inbox (index = shard id; this core is shard 0).
    pub inboxes: Vec<flume::Receiver<ShardCommand>>,
    /// The router core's inbox.
    pub core_inbox: flume::Receiver<CoreCommand>,
    pub now_ms: u64,
    /// Connections whose writes the pretend socket refuses (a client that
    /// does not read).
    pub stalled: Vec<u64>,
    /// What each connection was sent and what it was told at the end.
    pub shut_write: Vec<u64>,
    pub released: Vec<Released>,
    /// Bytes written to each connection not yet looked at.
    mail: std::collections::HashMap<u64, Vec<u8>>,
    next_fd: i32,
    next_rid: u32,
}

impl Harness {
    /// A core on a node of `shards` shards with `config`.
    pub fn new(shards: usize, config: Config) -> Harness {
        Harness::with_inbox_capacity(shards, config, 1024)
    }

    /// The same with shard inboxes of `capacity` commands.
    pub fn with_inbox_capacity(shards: usize, config: Config, capacity: usize) -> Harness {
        let config = Arc::new(config);
        let (mesh, inboxes) = Mesh::new(shards, capacity);
        let (core_tx, core_inbox) = flume::unbounded();
        let frames = crate::shard::frame_mesh(shards, 1024).swap_remove(0);
        let links = Links { mesh, frames, core: core_tx, node_connections: Arc::default() };
        let core = ShardCore::new(0, config.clone(), Arc::new(TokenVerifier::new(SECRET)), links, "test");
        Harness {
            core,
            config,
            inboxes,
            core_inbox,
            now_ms: 0,
            stalled: Vec::new(),
            shut_write: Vec::new(),
            released: Vec::new(),
            mail: Default::default(),
            next_fd: 100,
            next_rid: 1,
        }
    }

    pub fn now(&self) -> Now {
        Now { mono_ms: self.now_ms, wall_ms: 1_700_000_000_000 + self.now_ms }
    }

    /// A plain TCP client connects.
    pub fn connect(&mut self) -> u64 {
        self.connect_as(Framing::Raw)
    }

    pub fn connect_as(&mut self, framing: Framing) -> u64 {
        self.next_fd += 1;
        let now = self.now();
        let id = self.core.accept(now, self.next_fd, IpAddr::V4(Ipv4Addr::LOCALHOST), framing);
        assert_ne!(id, 0);
        id
    }

    pub fn rid(&mut self) -> u32 {
        self.next_rid += 1;
        self.next_rid
    }

    /// Client `id` sends `request`; returns its rid.
    pub fn send(&mut self, id: u64, request: &ClientRequest<'_>) -> u32 {
        let rid = self.rid();
        let mut frame = Vec::new();
        encode_client(rid, 0, request, &mut frame).expect("encodes");
        self.bytes(id, &frame);
        rid
    }

    /// Raw bytes from client `id`.
    pub fn bytes(&mut self, id: u64, bytes: &[u8]) {
        let now = self.now();
        self.core.on_bytes(now, id, bytes);
        self.core.end_round();
    }

    /// A connected and authenticated client of `user`.
    pub fn user(&mut self, user: &str) -> u64 {
        let id = self.connect();
        let token = mint_token(SECRET, user, 3600, None).expect("mints");
        self.send(id, &ClientRequest::Auth { token: &token, device: "" });
        assert_eq!(self.written(id), vec![Got::AuthOk]);
        id
    }

    /// Moves the clock by `ms`, one tick at a time.
    pub fn advance(&mut self, ms: u64) {
        let tick = self.config.timer_tick_ms as u64;
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.now_ms = (self.now_ms + tick).min(end);
            let now = self.now();
            self.core.on_tick(now);
            self.core.end_round();
            // The driver writes after every round.
            for (who, bytes) in self.flush() {
                self.mail.entry(who).or_default().extend(bytes);
            }
        }
    }

    /// Plays the driver's write step for every connection on the write
    /// list, and returns the raw bytes each one's socket took.
    pub fn flush(&mut self) -> Vec<(u64, Vec<u8>)> {
        let mut ids = Vec::new();
        self.core.take_write_list(&mut ids);
        let mut out = Vec::new();
        for id in ids {
            let mut taken = Vec::new();
            loop {
                let mut batch: Vec<Bytes> = Vec::new();
                match self.core.take_output(id, &mut batch) {
                    Output::Idle => break,
                    Output::ShutWrite => {
                        self.shut_write.push(id);
                        break;
                    }
                    Output::Write => {}
                }
                if self.stalled.contains(&id) {
                    self.core.wrote(id, &mut batch, 0);
                    break;
                }
                let n: usize = batch.iter().map(Bytes::len).sum();
                for frame in &batch {
                    taken.extend_from_slice(frame);
                }
                if !self.core.wrote(id, &mut batch, n) {
                    break;
                }
            }
            out.push((id, taken));
        }
        self.core.take_released(&mut self.released);
        out
    }

    /// The frames client `id` received since the last look (everyone's
    /// writes are played, the others' kept for them).
    pub fn written(&mut self, id: u64) -> Vec<Got> {
        let raw = self.written_raw(id);
        parse(&raw)
    }

    pub fn written_raw(&mut self, id: u64) -> Vec<u8> {
        for (who, bytes) in self.flush() {
            self.mail.entry(who).or_default().extend(bytes);
        }
        self.mail.remove(&id).unwrap_or_default()
    }

    /// Whether connection `id`'s socket was handed back to be closed.
    pub fn is_released(&mut self, id: u64) -> bool {
        self.core.take_released(&mut self.released);
        self.released.iter().any(|r| r.conn_id == id)
    }

    /// The presence batches the router core received: (online, offline)
    /// counts per batch.
    pub fn presence_batches(&self) -> Vec<(usize, usize)> {
        let mut batches = Vec::new();
        for command in self.core_inbox.try_iter() {
            let CoreCommand::Request(frame) = command else { continue };
            if let ArchivedInternalFrame::Chat(ArchivedChatRequest::Presence { changes }) = frame.archived() {
                let online = changes.iter().filter(|c| c.online).count();
                batches.push((online, changes.len() - online));
            }
        }
        batches
    }
}

/// A configuration with the admission limits out of the way.
pub fn config() -> Config {
    Config {
        connect_rate_per_source: 0,
        connect_rate_total: 0,
        auth_rate_per_sec: 0,
        max_connections: Some(1_000_000),
        ..Config::default()
    }
}
