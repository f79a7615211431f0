//! The servers the harness can drive and the protocol adapter for each.
//!
//! An adapter only turns intentions into bytes (hello, subscribe, publish,
//! heartbeat) and bytes into [`Event`]s; the worker's event loop owns the
//! sockets. The peers' adapters are hand-written on purpose: load must be
//! generated inside the harness's own I/O loop, thousands of connections
//! per thread with no buffer while idle, and the client crates for NATS,
//! MQTT and Redis each bring their own async runtime and per-connection
//! tasks, which would measure those runtimes instead of the servers.

mod corecast;
mod mqtt;
mod nats;
mod redis;
mod websocket;

use serde::{Deserialize, Serialize};

use crate::plan::WorkerPlan;

/// A server the harness can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// corecast (this project).
    Corecast,
    /// corecast over WebSocket (`--transport ws`).
    CorecastWs,
    /// NATS core pub/sub (nats-server).
    Nats,
    /// MQTT 3.1.1, QoS 0 (Mosquitto).
    Mqtt,
    /// Redis pub/sub (RESP).
    Redis,
}

impl Target {
    /// Whether this is corecast, over any transport.
    pub fn is_corecast(self) -> bool {
        matches!(self, Target::Corecast | Target::CorecastWs)
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Corecast => "corecast",
            Target::CorecastWs => "corecast-ws",
            Target::Nats => "nats",
            Target::Mqtt => "mqtt",
            Target::Redis => "redis",
        }
    }

    /// The server's usual client port on loopback.
    pub fn default_addr(self) -> std::net::SocketAddr {
        let port = match self {
            Target::Corecast => 7100,
            Target::CorecastWs => 7101,
            Target::Nats => 4222,
            Target::Mqtt => 1883,
            Target::Redis => 6379,
        };
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// What a server sent, as far as the harness cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The answer to the last hello, subscribe or heartbeat.
    Ack,
    /// corecast's answer to a JOIN in a room with a stream (history): the
    /// room's position at the switch to live messages, and whether every
    /// message after the JOIN's `since` came before it. Answers the
    /// subscribe as [`Event::Ack`] does.
    Joined {
        /// The room's position; live messages follow it.
        position: u64,
        /// The server replayed everything after `since`.
        recovered: bool,
    },
    /// A message published to a room the connection is in.
    Message {
        /// The published payload.
        payload: &'a [u8],
        /// Its room stream position (corecast, a room with history); 0 where none.
        position: u64,
    },
    /// An operator broadcast (corecast only).
    Broadcast(&'a [u8]),
    /// The server wants a keep-alive answer; the worker sends [`Adapter::pong`].
    ServerPing,
    /// The answer to a heartbeat, told apart from [`Event::Ack`] (corecast).
    Pong,
    /// The heartbeat interval the server asks for, in ms (corecast's AUTH_OK).
    HeartbeatInterval(u32),
    /// The server refused a request; the connection stays open unless it is
    /// still being set up.
    Refused(String),
    /// The server is closing the connection, and why.
    Closed(String),
}

/// A protocol adapter. Stateless per connection: a parse only consumes
/// complete messages and returns how many bytes it used.
pub trait Adapter {
    /// Bytes that open connection `g` (authenticate, connect); answered by [`Event::Ack`].
    fn hello(&self, g: usize, out: &mut Vec<u8>) -> Result<(), String>;
    /// Subscribes to a room; answered by [`Event::Ack`] (or
    /// [`Event::Joined`]). A non-zero `since` asks for every message after
    /// that stream position first (corecast's JOIN `since`; only ever
    /// non-zero for corecast).
    fn subscribe(&self, room: &str, since: u64, out: &mut Vec<u8>);
    /// Whether a publisher must subscribe to the room it publishes to.
    fn publisher_subscribes(&self) -> bool {
        false
    }
    /// Publishes `payload` to a room, asking for no reply where the protocol allows.
    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>);
    /// A keep-alive request, answered by [`Event::Ack`] (may append nothing).
    fn heartbeat(&self, out: &mut Vec<u8>);
    /// Whether heartbeats may go out while a subscribe is unanswered: only
    /// when their answer is [`Event::Pong`], not an [`Event::Ack`] that would
    /// pass for the subscribe's.
    fn heartbeat_while_subscribing(&self) -> bool {
        false
    }
    /// The answer to [`Event::ServerPing`].
    fn pong(&self, _out: &mut Vec<u8>) {}
    /// The wire name of room `room`.
    fn room_name(&self, room: usize) -> String;
    /// Reports every complete message at the start of `buf` to `on` and
    /// returns the bytes consumed; an error means the stream is broken.
    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String>;
}

/// The adapter for a plan's target.
pub fn adapter(plan: &WorkerPlan) -> Result<Box<dyn Adapter>, String> {
    Ok(match plan.target {
        Target::Corecast => {
            let secret = plan.jwt_secret.as_deref().ok_or("corecast needs --jwt-secret or CORECAST_JWT_SECRET")?;
            Box::new(corecast::Corecast::new(secret, &plan.run_id, plan.first_conn, plan.conns, plan.history)?)
        }
        Target::CorecastWs => {
            let secret = plan.jwt_secret.as_deref().ok_or("corecast needs --jwt-secret or CORECAST_JWT_SECRET")?;
            let inner = corecast::Corecast::new(secret, &plan.run_id, plan.first_conn, plan.conns, plan.history)?;
            Box::new(websocket::OverWebSocket::new(inner, plan.addr, &plan.ws_path))
        }
        Target::Nats => Box::new(nats::Nats),
        Target::Mqtt => Box::new(mqtt::Mqtt::new(&plan.run_id, plan.heartbeat_ms)),
        Target::Redis => Box::new(redis::Redis),
    })
}

/// Finds `\r\n` in `buf`, returning the index of `\r`.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}
