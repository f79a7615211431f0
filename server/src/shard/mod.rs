//! A shard: one thread pinned to one core, running a monoio runtime, owning
//! its listener, its connections, its slice of every room and its timers.
//!
//! Nothing here is shared with other threads except the inboxes (flume) and
//! the metrics handles; all state lives in `RefCell`s on this thread and is
//! never borrowed across an `await`. The submodules hold one concept each:
//! connection records, the outbound queue, rooms, the timing wheel, the
//! inbox commands, fan-out and closing (`delivery`), the per-connection read
//! loop (`session`), the per-connection writer and the threads (`threads`).

#[doc(hidden)]
pub mod bench_support;
mod conn;
mod delivery;
mod inbox;
mod limits;
mod outbound;
mod rooms;
mod session;
mod threads;
mod timer_wheel;
mod websocket;
mod writer;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context;
use monoio::net::TcpListener;
use rustc_hash::FxHashMap;
use slab::Slab;

pub use inbox::{CoreCommand, Mesh, ShardCommand};
pub use threads::ShardThreads;

use crate::auth::TokenVerifier;
use crate::config::{Config, DriverChoice};
use crate::metrics::ShardMetrics;
use crate::stall::{Activity, Pulse};
use conn::Conn;
use limits::{ConnectLimiter, Rate, TokenBucket};
use rooms::Rooms;
use timer_wheel::TimerWheel;

/// Most shards one server runs (room interest is a 128-bit mask).
pub const MAX_SHARDS: usize = 128;

/// Everything a shard thread is started with.
pub struct ShardContext {
    /// Shard id, 0-based.
    pub id: u16,
    /// CPU to pin the thread to.
    pub cpu: Option<usize>,
    /// This shard's SO_REUSEPORT listener.
    pub listener: std::net::TcpListener,
    /// This shard's SO_REUSEPORT WebSocket listener.
    pub ws_listener: std::net::TcpListener,
    /// This shard's inbox.
    pub inbox: flume::Receiver<ShardCommand>,
    /// Every shard's inbox.
    pub mesh: Mesh,
    /// Server configuration.
    pub config: Arc<Config>,
    /// Token verifier shared by all shards.
    pub verifier: Arc<TokenVerifier>,
    /// The control plane's inbox: chat requests for the router core, and in
    /// a cluster room pushes and room interest for the uplink.
    pub core: flume::Sender<CoreCommand>,
    /// This shard's heartbeat for the stall watchdog.
    pub pulse: Arc<Pulse>,
    /// TLS for client connections, when configured.
    pub tls: Option<monoio_rustls::TlsAcceptor>,
    /// Connections open on the whole node (every shard counts its own).
    pub node_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the shard says it has started (its runtime built, its
    /// listeners registered) and, from its thread, that it has stopped.
    pub events: std::sync::mpsc::Sender<ShardEvent>,
}

/// What a shard thread tells the node about itself.
pub enum ShardEvent {
    /// The shard is accepting connections.
    Started(u16),
    /// The shard has stopped, with its result.
    Stopped(u16, anyhow::Result<()>),
}

/// One connection's place under the node's ceiling: counted from accept
/// until its task ends, whatever way it ends (handshake failure included).
struct NodeSlot {
    counter: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections open on the node, this one included.
    count: usize,
}

impl NodeSlot {
    fn take(counter: &Arc<std::sync::atomic::AtomicUsize>) -> NodeSlot {
        let count = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        NodeSlot { counter: counter.clone(), count }
    }
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How clients on a listener speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Wire frames straight on TCP (or TLS).
    Tcp,
    /// Wire frames in binary WebSocket messages.
    WebSocket,
}

/// Deadlines and limits converted to this shard's ticks.
struct Settings {
    tick: Duration,
    auth_ticks: u64,
    idle_ticks: u64,
    slow_grace_ticks: u64,
    linger_ticks: u64,
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

impl Settings {
    fn new(config: &Config, shards: usize) -> Settings {
        let tick_ms = config.timer_tick_ms as u64;
        let ticks = |ms: u32| (ms as u64).div_ceil(tick_ms).max(1);
        Settings {
            tick: Duration::from_millis(tick_ms),
            auth_ticks: ticks(config.auth_timeout_ms),
            idle_ticks: ticks(config.idle_timeout_ms()),
            slow_grace_ticks: ticks(config.slow_consumer_grace_ms),
            linger_ticks: ticks(config.close_linger_ms),
            hot_window_ticks: ticks(1000),
            // Rate per second, counted over one second's worth of ticks.
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

/// The state of one shard, shared by its tasks through `Rc`.
pub struct Shard {
    id: u16,
    config: Arc<Config>,
    settings: Settings,
    verifier: Arc<TokenVerifier>,
    mesh: Mesh,
    metrics: ShardMetrics,
    conns: RefCell<Slab<Conn>>,
    /// Connection id → slab key, for frames addressed by connection id.
    keys_by_id: RefCell<FxHashMap<u64, u32>>,
    core: flume::Sender<CoreCommand>,
    /// Part of a cluster: room traffic also goes to the uplink.
    clustered: bool,
    rooms: RefCell<Rooms>,
    wheel: RefCell<TimerWheel>,
    /// Deadlines armed while the wheel is busy; moved in on the next tick.
    wheel_inserts: RefCell<Vec<(timer_wheel::TimerEntry, u64)>>,
    started: Instant,
    now_tick: Cell<u64>,
    next_conn_seq: Cell<u64>,
    flush_list: RefCell<Vec<(u32, u64)>>,
    flush_waker: RefCell<Option<Waker>>,
    stopping: Cell<bool>,
    /// The parked accept loops, one slot per [`Transport`].
    stop_wakers: RefCell<[Option<Waker>; 2]>,
    connect_limiter: RefCell<ConnectLimiter>,
    unauthenticated: Cell<usize>,
    /// AUTH verifications left in this tick's budget.
    auth_budget: Cell<TokenBucket>,
    /// Connections open on the whole node, for the ceiling.
    node_connections: Arc<std::sync::atomic::AtomicUsize>,
    pulse: Arc<Pulse>,
}

/// Runs a shard on the calling thread until it is shut down.
pub fn run(ctx: ShardContext) -> anyhow::Result<()> {
    if let Some(cpu) = ctx.cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(shard = ctx.id, cpu, "could not pin shard to its cpu: {e:?}");
        }
    }
    let entries = ctx.config.io_uring_entries;
    match ctx.config.driver {
        DriverChoice::Auto => {
            match monoio::RuntimeBuilder::<monoio::FusionDriver>::new().with_entries(entries).enable_timer().build() {
                Ok(mut rt) => {
                    let driver = match rt {
                        monoio::FusionRuntime::Uring(_) => "io_uring",
                        monoio::FusionRuntime::Legacy(_) => "epoll",
                    };
                    rt.block_on(shard_main(ctx, driver))
                }
                // io_uring is there but this ring could not be set up (memory,
                // a ring limit): epoll serves the same protocol, a little slower.
                Err(e) => {
                    tracing::warn!(shard = ctx.id, "io_uring runtime failed ({e}); this shard uses epoll");
                    epoll_runtime()?.block_on(shard_main(ctx, "epoll"))
                }
            }
        }
        DriverChoice::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .context("building the io_uring runtime (driver = io_uring)")?
            .block_on(shard_main(ctx, "io_uring")),
        DriverChoice::Epoll => epoll_runtime()?.block_on(shard_main(ctx, "epoll")),
    }
}

fn epoll_runtime() -> anyhow::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().context("building the epoll runtime")
}

async fn shard_main(ctx: ShardContext, driver: &'static str) -> anyhow::Result<()> {
    let listener = TcpListener::from_std(ctx.listener).context("registering the listener")?;
    let ws_listener = TcpListener::from_std(ctx.ws_listener).context("registering the WebSocket listener")?;
    let mut shard = Shard::new(ctx.id, ctx.config, ctx.verifier, ctx.mesh, ctx.core, ctx.pulse, driver);
    shard.node_connections = ctx.node_connections;
    let shard = Rc::new(shard);
    tracing::info!(shard = shard.id, driver, addr = ?listener.local_addr().ok(), "shard started");
    let _ = ctx.events.send(ShardEvent::Started(shard.id));

    monoio::spawn(shard.clone().inbox_loop(ctx.inbox));
    monoio::spawn(shard.clone().timer_loop());
    monoio::spawn(shard.clone().flush_loop());

    monoio::spawn(shard.clone().accept_loop(ws_listener, ctx.tls.clone(), Transport::WebSocket));
    shard.clone().accept_loop(listener, ctx.tls, Transport::Tcp).await;
    shard.drain().await;
    tracing::info!(shard = shard.id, "shard stopped");
    Ok(())
}

impl Shard {
    /// A shard's state with no connections yet.
    fn new(
        id: u16,
        config: Arc<Config>,
        verifier: Arc<TokenVerifier>,
        mesh: Mesh,
        core: flume::Sender<CoreCommand>,
        pulse: Arc<Pulse>,
        driver: &'static str,
    ) -> Shard {
        let tick_ms = config.timer_tick_ms as u64;
        // Enough slots that the usual deadlines fit in one lap.
        let wheel_slots = (config.idle_timeout_ms().max(config.auth_timeout_ms) as u64 / tick_ms + 2) as usize;
        let shards = mesh.len() as u32;
        let per_source =
            Rate::new(config.connect_rate_per_source, config.connect_rate_per_source, config.timer_tick_ms);
        // Each shard admits its share of the node's total.
        let total_share = config.connect_rate_total.div_ceil(shards.max(1));
        let total = Rate::new(total_share, total_share, config.timer_tick_ms);
        let settings = Settings::new(&config, mesh.len());
        Shard {
            id,
            clustered: config.redis_url.is_some(),
            auth_budget: Cell::new(settings.auths.full(0)),
            settings,
            connect_limiter: RefCell::new(ConnectLimiter::new(per_source, total)),
            unauthenticated: Cell::new(0),
            node_connections: Arc::default(),
            pulse,
            config,
            verifier,
            mesh,
            metrics: ShardMetrics::new(id, driver),
            conns: RefCell::new(Slab::new()),
            keys_by_id: RefCell::new(FxHashMap::default()),
            core,
            rooms: RefCell::new(Rooms::default()),
            wheel: RefCell::new(TimerWheel::new(wheel_slots.min(1 << 16))),
            wheel_inserts: RefCell::new(Vec::new()),
            started: Instant::now(),
            now_tick: Cell::new(0),
            next_conn_seq: Cell::new(1),
            flush_list: RefCell::new(Vec::new()),
            flush_waker: RefCell::new(None),
            stopping: Cell::new(false),
            stop_wakers: RefCell::new([None, None]),
        }
    }

    fn now_tick(&self) -> u64 {
        self.now_tick.get()
    }

    /// Accepts connections until the shard is told to stop.
    async fn accept_loop(
        self: Rc<Self>,
        listener: TcpListener,
        tls: Option<monoio_rustls::TlsAcceptor>,
        transport: Transport,
    ) {
        loop {
            let stop = poll_fn(|cx| {
                if self.stopping.get() {
                    Poll::Ready(())
                } else {
                    self.stop_wakers.borrow_mut()[transport as usize] = Some(cx.waker().clone());
                    Poll::Pending
                }
            });
            monoio::select! {
                _ = stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        self.pulse.enter(Activity::Accept);
                        self.metrics.accepts.increment(1);
                        let slot = NodeSlot::take(&self.node_connections);
                        let refusal = self.admission(peer.ip(), slot.count);
                        let shard = self.clone();
                        // The slot lives as long as the connection's task.
                        match (transport, &tls) {
                            (Transport::Tcp, None) => monoio::spawn(async move {
                                session::serve(shard, stream, refusal).await;
                                drop(slot);
                            }),
                            (Transport::Tcp, Some(acceptor)) => {
                                let acceptor = acceptor.clone();
                                monoio::spawn(async move {
                                    session::serve_tls(shard, acceptor, stream, refusal).await;
                                    drop(slot);
                                })
                            }
                            (Transport::WebSocket, tls) => {
                                let tls = tls.clone();
                                monoio::spawn(async move {
                                    websocket::serve(shard, tls, stream, refusal).await;
                                    drop(slot);
                                })
                            }
                        };
                    }
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(shard = self.id, "accept failed: {e}");
                        monoio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Whether a new connection from `source` is refused, and why: the node
    /// is at its connection ceiling, over the connection rate (per source or
    /// in total), or too many connections have not authenticated yet.
    fn admission(&self, source: std::net::IpAddr, node_connections: usize) -> Option<session::Refusal> {
        use corecast_proto::ErrorCode;
        if node_connections > self.settings.max_connections {
            self.metrics.limit_hit("connections");
            return Some((ErrorCode::LimitExceeded, "this node is full; connect through dispatch"));
        }
        if self.unauthenticated.get() >= self.settings.max_unauthenticated {
            self.metrics.limit_hit("unauthenticated");
            return Some((ErrorCode::LimitExceeded, "too many connections are authenticating; retry later"));
        }
        if !self.connect_limiter.borrow_mut().admit(source, self.now_tick()) {
            self.metrics.limit_hit("connect_rate");
            return Some((ErrorCode::RateLimited, "too many new connections; retry later"));
        }
        None
    }

    /// Takes one AUTH verification from this tick's budget.
    fn auth_allowed(&self) -> bool {
        let mut bucket = self.auth_budget.get();
        let allowed = bucket.take(&self.settings.auths, 1, self.now_tick());
        self.auth_budget.set(bucket);
        if !allowed {
            self.metrics.limit_hit("auth_rate");
        }
        allowed
    }

    /// A reconnect hint with jitter, so refused or closed clients spread
    /// their return.
    fn reconnect_hint(&self) -> u32 {
        let jitter = rand::random_range(0..=self.config.reconnect_jitter_ms);
        self.config.reconnect_base_ms.saturating_add(jitter)
    }

    /// Handles commands from other shards and the control plane.
    async fn inbox_loop(self: Rc<Self>, inbox: flume::Receiver<ShardCommand>) {
        while let Ok(command) = inbox.recv_async().await {
            self.handle_command(command);
        }
    }

    fn handle_command(&self, command: ShardCommand) {
        self.pulse.enter(Activity::Inbox);
        match command {
            ShardCommand::Deliver(frame) => self.deliver_internal(&frame),
            ShardCommand::RoomInterest { room, shard, joined, ack } => {
                self.rooms.borrow_mut().set_remote(&room, shard, joined);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ShardCommand::CountRoomMembers { room, reply } => {
                let count = self.rooms.borrow().get(&room).map_or(0, |r| r.members.len());
                let _ = reply.send(count);
            }
            ShardCommand::CountConnections { reply } => {
                let count = self.conns.borrow().iter().filter(|(_, c)| c.identity.is_some()).count();
                let _ = reply.send(count);
            }
            ShardCommand::Kick { user, reply } => {
                let keys: Vec<u32> = self
                    .conns
                    .borrow()
                    .iter()
                    .filter(|(_, c)| c.identity.as_ref().is_some_and(|id| *id.user == *user))
                    .map(|(key, _)| key as u32)
                    .collect();
                for &key in &keys {
                    let hint = self.config.reconnect_base_ms;
                    self.begin_close(key, corecast_proto::ErrorCode::Kicked, "removed by an operator", hint);
                }
                let _ = reply.send(keys.len());
            }
            ShardCommand::Shutdown => {
                self.stopping.set(true);
                for waker in self.stop_wakers.borrow_mut().iter_mut().filter_map(Option::take) {
                    waker.wake();
                }
            }
        }
    }

    /// Advances the timing wheel every tick: auth and idle deadlines, slow
    /// consumers, and the linger limit of connections being closed.
    async fn timer_loop(self: Rc<Self>) {
        loop {
            monoio::time::sleep(self.settings.tick).await;
            self.pulse.enter(Activity::Timer);
            self.pulse.beat();
            let now = (self.started.elapsed().as_millis() / self.settings.tick.as_millis().max(1)) as u64;
            self.now_tick.set(now);
            let mut wheel = self.wheel.borrow_mut();
            for (entry, due) in self.wheel_inserts.borrow_mut().drain(..) {
                wheel.insert(entry, due);
            }
            wheel.advance(now, |entry, due, tick| self.check_deadline(entry, due, tick));
        }
    }

    /// Wakes the writers of connections whose frames wait for the flush
    /// tick (members of hot rooms), once per tick while there are any.
    async fn flush_loop(self: Rc<Self>) {
        let tick = Duration::from_millis(self.config.flush_tick_ms.max(1) as u64);
        loop {
            poll_fn(|cx| {
                if self.flush_list.borrow().is_empty() {
                    *self.flush_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            monoio::time::sleep(tick).await;
            self.pulse.enter(Activity::Flush);
            let pending = std::mem::take(&mut *self.flush_list.borrow_mut());
            let mut conns = self.conns.borrow_mut();
            for (key, id) in pending {
                if let Some(conn) = conns.get_mut(key as usize).filter(|c| c.id == id) {
                    conn.flush_pending = false;
                    conn.wake_writer();
                }
            }
        }
    }

    /// On shutdown: CLOSE every connection with a jittered reconnect hint
    /// and wait, up to the grace period, for them to go.
    async fn drain(&self) {
        let keys: Vec<usize> = self.conns.borrow().iter().map(|(k, _)| k).collect();
        tracing::info!(shard = self.id, connections = keys.len(), "shutting down: closing connections");
        for key in keys {
            let hint = self.config.reconnect_base_ms + rand::random_range(0..=self.config.reconnect_jitter_ms);
            self.begin_close(key as u32, corecast_proto::ErrorCode::ShuttingDown, "server shutting down", hint);
        }
        let deadline = Instant::now() + Duration::from_millis(self.config.shutdown_grace_ms as u64);
        while !self.conns.borrow().is_empty() && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.conns.borrow().len();
        if left > 0 {
            tracing::warn!(shard = self.id, left, "grace period over; dropping remaining connections");
        }
    }
}
