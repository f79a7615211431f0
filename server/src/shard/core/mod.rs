//! `ShardCore`: everything a shard knows and decides, as a plain state
//! machine with no sockets, no futures and no clock of its own.
//!
//! The driver (`super::driver`) feeds it events: a connection was accepted,
//! bytes arrived for connection `c`, `c`'s peer closed, a command came from
//! another shard or the control plane, a tick at `now`. The core answers by
//! queueing frames on connections and listing what the driver must do next:
//! which connections have bytes to write ([`ShardCore::take_write_list`]),
//! which sockets to close ([`ShardCore::take_released`]) and which
//! connections to read again ([`ShardCore::take_resumed`]). Frames for other
//! shards and for the router core go out on their channels directly: those
//! are queues, not I/O. Time is always passed in as [`Now`], so deadlines,
//! rate limits, slow consumers and the room-interest handshake are tested
//! with simulated time (`tests/`), the way quinn-proto's `Connection` is.
//!
//! The submodules hold one concept each: the connection record (`conn`),
//! reading frames and acting on them (`input`), queueing and handing out
//! bytes to write and closing (`output`), fan-out and shard commands
//! (`fanout`), deadlines (`deadlines`), room-interest announcements with a
//! bounded wait (`interest`), presence batching (`presence`), and the
//! shard's side of room streams: history, catch-up, room presence (`streams`).

mod conn;
mod deadlines;
mod fanout;
mod input;
mod interest;
mod output;
mod presence;
mod routes;
mod streams;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corecast_cluster::room_stream::StreamOwner;
use corecast_proto::internal::InternalFrameBytes;
use corecast_proto::ErrorCode;
use rustc_hash::FxHashSet;
use slab::Slab;

pub use conn::{conn_id, Framing};
pub use interest::InterestAck;
pub use output::Output;
pub use streams::owner_shard;

use super::frame_mesh::FrameLinks;
use super::inbox::{CoreCommand, Mesh};
use super::limits::{ConnectLimiter, Rate, TokenBucket};
use super::rooms::Rooms;
use super::timer_wheel::TimerWheel;
use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::metrics::ShardMetrics;
use conn::{key_of, Conn, MAX_KEYS};
use interest::{InterestPeer, JoinWaits};
use presence::PresenceBatch;
use streams::PendingJoin;

/// The time of an event: milliseconds on the shard's monotonic clock (from
/// its start) and the wall clock (for message timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the shard started.
    pub mono_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

/// A socket the driver must close: the connection is gone from the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The id the connection had.
    pub conn_id: u64,
    /// Its socket.
    pub fd: i32,
}

/// Deadlines and limits converted to this shard's ticks.
struct Settings {
    tick_ms: u64,
    auth_ticks: u64,
    idle_ticks: u64,
    slow_grace_ticks: u64,
    linger_ticks: u64,
    interest_ticks: u64,
    hot_window_ticks: u64,
    hot_per_window: u32,
    publish_frames: Rate,
    publish_bytes: Rate,
    /// This shard's share of the node's unauthenticated connections.
    max_unauthenticated: usize,
    /// The node's connection ceiling.
    max_connections: usize,
    /// This shard's share of the node's AUTH verifications.
    auths: Rate,
}

/// How long a first JOIN waits for the other shards (and in a cluster the
/// routers) to acknowledge the room's interest before it is answered
/// anyway. Bounds what a stuck shard can cost everyone else.
const INTEREST_WAIT_MS: u32 = 5_000;

impl Settings {
    fn new(config: &Config, shards: usize) -> Settings {
        let tick_ms = config.timer_tick_ms as u64;
        let ticks = |ms: u32| (ms as u64).div_ceil(tick_ms).max(1);
        Settings {
            tick_ms,
            auth_ticks: ticks(config.auth_timeout_ms),
            idle_ticks: ticks(config.idle_timeout_ms()),
            slow_grace_ticks: ticks(config.slow_consumer_grace_ms),
            linger_ticks: ticks(config.close_linger_ms),
            interest_ticks: ticks(INTEREST_WAIT_MS),
            hot_window_ticks: ticks(1000),
            hot_per_window: config.hot_room_msgs_per_sec,
            publish_frames: Rate::new(config.publish_rate_per_sec, config.publish_burst, config.timer_tick_ms),
            publish_bytes: Rate::new(config.publish_bytes_per_sec, config.publish_bytes_burst, config.timer_tick_ms),
            max_unauthenticated: config.max_unauthenticated.div_ceil(shards.max(1)),
            max_connections: config.connection_ceiling() as usize,
            auths: {
                // At most a little over one tick's share at once: AUTH work
                // per tick stays bounded however many clients arrive.
                let share = config.auth_rate_per_sec.div_ceil(shards.max(1) as u32);
                let per_tick = (share as u64 * config.timer_tick_ms as u64).div_ceil(1000) as u32;
                Rate::new(share, per_tick.saturating_mul(2), config.timer_tick_ms)
            },
        }
    }
}

/// The channels a shard core talks on.
pub struct Links {
    /// Every shard's inbox (this one's included, for acknowledgements).
    pub mesh: Mesh,
    /// This shard's ends of the lock-free frame mesh.
    pub frames: FrameLinks,
    /// The control plane's inbox.
    pub core: flume::Sender<CoreCommand>,
    /// Connections open on the whole node (every shard counts its own).
    pub node_connections: Arc<AtomicUsize>,
}

/// The state of one shard and the logic that changes it.
pub struct ShardCore {
    id: u16,
    config: Arc<Config>,
    settings: Settings,
    verifier: Arc<TokenVerifier>,
    links: Links,
    metrics: ShardMetrics,
    /// Part of a cluster: room traffic also goes to the uplink.
    clustered: bool,
    conns: Slab<Conn>,
    next_generation: u32,
    /// Interned user and device ids, shared by records.
    users: FxHashSet<Rc<str>>,
    devices: FxHashSet<Rc<str>>,
    rooms: Rooms,
    wheel: TimerWheel,
    announcements: JoinWaits,
    /// Announcements a full inbox refused, to send again (interest.rs).
    unsent_interest: Vec<(Rc<str>, InterestPeer)>,
    presence: PresenceBatch,
    /// The room streams this shard owns (single node).
    owner: StreamOwner<()>,
    /// JOINs in rooms with history waiting for their catch-up.
    pending_joins: Vec<PendingJoin>,
    /// Frames for rooms this shard owns, sent by itself this round.
    owned_here: Vec<InternalFrameBytes>,
    /// History evictions already counted in the metric.
    evictions_counted: u64,
    /// When the owned histories last dropped expired messages.
    histories_expired_tick: u64,
    now_tick: u64,
    wall_ms: u64,
    connect_limiter: ConnectLimiter,
    unauthenticated: usize,
    /// AUTH verifications left in this tick's budget.
    auth_budget: TokenBucket,
    /// Connections with bytes to write now.
    write_list: Vec<u64>,
    /// Connections whose bytes wait for the flush tick (hot rooms).
    deferred: Vec<u64>,
    /// Sockets to close.
    released: Vec<Released>,
    /// Connections to read again (their input was held and is free now).
    resumed: Vec<u64>,
    /// Connections accepted or released since the last look.
    churn: u32,
    stopping: bool,
}

impl ShardCore {
    /// A shard's state with no connections yet.
    pub fn new(
        id: u16,
        config: Arc<Config>,
        verifier: Arc<TokenVerifier>,
        links: Links,
        driver: &'static str,
    ) -> ShardCore {
        let tick_ms = config.timer_tick_ms as u64;
        // Enough slots that the usual deadlines fit in one lap.
        let wheel_slots = (config.idle_timeout_ms().max(config.auth_timeout_ms) as u64 / tick_ms + 2) as usize;
        let shards = links.mesh.len();
        let per_source =
            Rate::new(config.connect_rate_per_source, config.connect_rate_per_source, config.timer_tick_ms);
        // Each shard admits its share of the node's total.
        let total_share = config.connect_rate_total.div_ceil(shards.max(1) as u32);
        let total = Rate::new(total_share, total_share, config.timer_tick_ms);
        let settings = Settings::new(&config, shards);
        // Room for this shard's share of the ceiling up front: the slab
        // never doubles (and copies) under a ramp, and pages nobody has
        // touched cost no memory.
        let capacity = (settings.max_connections.div_ceil(shards.max(1)) + 64).min(MAX_KEYS);
        ShardCore {
            id,
            clustered: config.redis_url.is_some(),
            auth_budget: settings.auths.full(0),
            connect_limiter: ConnectLimiter::new(per_source, total),
            settings,
            unauthenticated: 0,
            verifier,
            links,
            metrics: ShardMetrics::new(id, driver),
            conns: Slab::with_capacity(capacity),
            next_generation: 0,
            users: FxHashSet::default(),
            devices: FxHashSet::default(),
            rooms: Rooms::new(config.room_policy()),
            owner: StreamOwner::new(
                config.room_policy(),
                (config.room_history_budget_bytes / shards.max(1) as u64) as usize,
            ),
            pending_joins: Vec::new(),
            owned_here: Vec::new(),
            evictions_counted: 0,
            histories_expired_tick: 0,
            wheel: TimerWheel::new(wheel_slots.min(1 << 16)),
            announcements: JoinWaits::default(),
            unsent_interest: Vec::new(),
            presence: PresenceBatch::default(),
            now_tick: 0,
            wall_ms: 0,
            write_list: Vec::new(),
            deferred: Vec::new(),
            released: Vec::new(),
            resumed: Vec::new(),
            churn: 0,
            stopping: false,
            config,
        }
    }

    /// This shard's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The configuration the shard runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// This shard's metrics handles.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Moves the clock to `now` (never backwards).
    fn set_now(&mut self, now: Now) {
        self.now_tick = self.now_tick.max(now.mono_ms / self.settings.tick_ms);
        self.wall_ms = now.wall_ms;
    }

    fn tick32(&self) -> u32 {
        self.now_tick as u32
    }

    /// The slab key of a live connection id.
    fn live_key(&self, id: u64) -> Option<usize> {
        let (key, generation) = key_of(id);
        self.conns.get(key as usize).filter(|c| c.generation == generation).map(|_| key as usize)
    }

    fn id_of(&self, key: usize, conn: &Conn) -> u64 {
        conn_id(self.id, conn.generation, key as u32)
    }

    /// A connection by id.
    fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        let key = self.live_key(id)?;
        self.conns.get_mut(key)
    }

    /// Admits (or refuses) a freshly accepted socket and returns its
    /// connection id. A refused connection is told why with CLOSE (after
    /// the handshake, for WebSocket) and closed.
    pub fn accept(&mut self, now: Now, fd: i32, source: IpAddr, framing: Framing) -> u64 {
        self.set_now(now);
        self.metrics.accepts.increment(1);
        self.churn = self.churn.saturating_add(1);
        let node_count = self.links.node_connections.fetch_add(1, Ordering::Relaxed) + 1;
        let refusal = self.admission(source, node_count);
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation & ((1 << 24) - 1);
        let tick = self.tick32();
        let frames = self.settings.publish_frames.full(self.now_tick);
        let bytes = self.settings.publish_bytes.full(self.now_tick);
        let mut conn = Conn::new(fd, generation, framing, tick, frames, bytes);
        if framing == Framing::WebSocket {
            let mut ws = crate::shard::ws_codec::WsState::new(self.config.ws_max_message_len as u64);
            ws.refusal = refusal;
            conn.ws = Some(Box::new(ws));
        }
        let key = self.conns.insert(conn);
        if key >= MAX_KEYS {
            // Beyond what an id can name: drop the socket without a word.
            let conn = self.conns.remove(key);
            self.links.node_connections.fetch_sub(1, Ordering::Relaxed);
            self.released.push(Released { conn_id: 0, fd: conn.fd });
            return 0;
        }
        let id = conn_id(self.id, generation, key as u32);
        self.unauthenticated += 1;
        self.metrics.connections.increment(1.0);
        // The first check comes at the earlier of the two deadlines; the
        // check itself then re-arms at the deadline that applies.
        let due = self.now_tick + self.settings.auth_ticks.min(self.settings.idle_ticks);
        self.arm_deadline(key, due);
        if let (Some((code, reason)), Framing::Raw) = (refusal, framing) {
            let hint = self.reconnect_hint();
            self.begin_close(id, code, reason, hint);
        }
        id
    }

    /// Whether a new connection from `source` is refused, and why: the node
    /// is at its connection ceiling, over the connection rate (per source or
    /// in total), or too many connections have not authenticated yet.
    fn admission(&mut self, source: IpAddr, node_connections: usize) -> Option<(ErrorCode, &'static str)> {
        if node_connections > self.settings.max_connections {
            self.metrics.limit_hit("connections");
            return Some((ErrorCode::LimitExceeded, "this node is full; connect through dispatch"));
        }
        if self.unauthenticated >= self.settings.max_unauthenticated {
            self.metrics.limit_hit("unauthenticated");
            return Some((ErrorCode::LimitExceeded, "too many connections are authenticating; retry later"));
        }
        if !self.connect_limiter.admit(source, self.now_tick) {
            self.metrics.limit_hit("connect_rate");
            return Some((ErrorCode::RateLimited, "too many new connections; retry later"));
        }
        None
    }

    /// A reconnect hint with jitter, so refused or closed clients spread
    /// their return.
    fn reconnect_hint(&self) -> u32 {
        let jitter = rand::random_range(0..=self.config.reconnect_jitter_ms);
        self.config.reconnect_base_ms.saturating_add(jitter)
    }

    /// The peer closed its side, or the socket failed: the connection is
    /// gone.
    pub fn on_peer_closed(&mut self, now: Now, id: u64) {
        self.set_now(now);
        if let Some(key) = self.live_key(id) {
            self.release(key);
        }
    }

    /// Removes a connection: leaves its rooms (telling other shards about
    /// rooms this shard no longer has members of), reports it offline, and
    /// hands its socket to the driver to close.
    fn release(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else { return };
        let id = conn_id(self.id, conn.generation, key as u32);
        if conn.catching_up {
            self.forget_pending_joins(key, conn.generation);
        }
        let user = conn.identity.as_ref().map(|identity| identity.user.clone());
        for room in conn.rooms.drain(..) {
            // Out of the member list first: the report may fan out a
            // leave event on this shard.
            self.leave_room(&room, key as u32);
            if let Some(user) = &user {
                self.report_member(&room, user, false);
            }
        }
        // Dropped before `forget_interned`, which counts the id's holders.
        drop(user);
        self.churn = self.churn.saturating_add(1);
        self.links.node_connections.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections.decrement(1.0);
        match conn.identity.take() {
            Some(identity) => {
                self.presence.offline(id, &identity.user);
                self.forget_interned(identity);
            }
            // A closing one was taken off the count when it started closing.
            None if !conn.is_closing() => self.unauthenticated = self.unauthenticated.saturating_sub(1),
            None => {}
        }
        self.released.push(Released { conn_id: id, fd: conn.fd });
    }

    /// Interns a user or device id: one shared string per distinct id on
    /// this shard.
    fn intern(set: &mut FxHashSet<Rc<str>>, value: &str) -> Rc<str> {
        match set.get(value) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Rc<str> = Rc::from(value);
                set.insert(shared.clone());
                shared
            }
        }
    }

    /// Drops interned ids no record uses any more.
    fn forget_interned(&mut self, identity: conn::Identity) {
        for (set, value) in [(&mut self.users, identity.user), (&mut self.devices, identity.device)] {
            // The set's copy and this one: nobody else holds it.
            if Rc::strong_count(&value) == 2 {
                set.remove(&*value);
            }
        }
    }

    /// Connections with bytes to write, since the last call.
    pub fn take_write_list(&mut self, into: &mut Vec<u64>) {
        into.append(&mut self.write_list);
    }

    /// Sockets to close, since the last call.
    pub fn take_released(&mut self, into: &mut Vec<Released>) {
        into.append(&mut self.released);
    }

    /// Connections whose held input may be read again, since the last call.
    pub fn take_resumed(&mut self, into: &mut Vec<u64>) {
        into.append(&mut self.resumed);
    }

    /// Ends a round of events: frames this shard sent itself as a room's
    /// owner are handled, presence changes go to the router core as one
    /// batch.
    pub fn end_round(&mut self) {
        self.run_owned_here();
        self.flush_presence();
        self.links.frames.ring();
    }

    /// Frames from other shards: `Ready` once some are in `out`, or
    /// `Pending` with the waker registered.
    pub fn poll_frames(
        &mut self,
        cx: &mut std::task::Context<'_>,
        out: &mut Vec<InternalFrameBytes>,
    ) -> std::task::Poll<()> {
        self.links.frames.poll_receive(cx, out)
    }

    /// A frame from another shard arrived.
    pub fn on_frame(&mut self, now: Now, frame: &InternalFrameBytes) {
        self.set_now(now);
        self.deliver_internal(frame);
    }

    /// Whether the driver should read more for this connection now (false
    /// while its held input is at the limit, or once it is gone).
    pub fn wants_input(&self, id: u64) -> bool {
        let Some(key) = self.live_key(id) else { return false };
        let conn = &self.conns[key];
        !conn.paused || conn.input.as_ref().is_none_or(|i| i.len() < self.config.max_frame_len as usize)
    }

    /// The socket of connection `id`, while it is open.
    pub fn fd(&self, id: u64) -> Option<i32> {
        self.live_key(id).map(|key| self.conns[key].fd)
    }

    /// Whether connection `id` holds an outbound queue and an input buffer.
    #[cfg(test)]
    pub fn held(&self, id: u64) -> (bool, bool) {
        self.live_key(id).map_or((false, false), |key| {
            let conn = &self.conns[key];
            (conn.queue.is_some(), conn.input.is_some())
        })
    }

    /// Connections open on this shard.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the shard holds no connections.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Whether connections came or went since the last call.
    pub fn take_churn(&mut self) -> bool {
        std::mem::take(&mut self.churn) > 0
    }

    /// Whether a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Ids of every open connection.
    pub fn conn_ids(&self) -> Vec<u64> {
        self.conns.iter().map(|(key, conn)| self.id_of(key, conn)).collect()
    }
}
