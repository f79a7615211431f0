//! The thin monoio driver around a [`ShardCore`]: it owns the sockets, the
//! shard's one read buffer, the readiness set and the wakers, turns what
//! happens into the core's events, and carries out what the core lists
//! (bytes to write, sockets to close, input to read again).
//!
//! Every connection (TCP and WebSocket, plain or TLS) is driven from the
//! readiness set by one task: no task, future, waker or read buffer per
//! connection. A TLS connection adds only its rustls session, which the
//! driver keeps (`tls`); the core sees its plaintext like any other
//! connection's bytes. The core is only ever borrowed inside the synchronous
//! methods of [`Driver`], never across an `await`: every async loop here
//! awaits, then calls one of those methods.

mod readiness;
mod send_ring;
mod socket;
mod tls;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::core::{Framing, Now, Output, Released, ShardCore};
use super::inbox::ShardCommand;
use crate::allocator::{release_free_pages, QuietAfterBurst};
use crate::stall::{Activity, Pulse};
use readiness::{Readiness, Ready};
use send_ring::SendRing;
use socket::Done;
use tls::TlsConn;

/// Readiness tokens of the listeners (connection ids never reach these).
const TCP_LISTENER: u64 = u64::MAX;
const WS_LISTENER: u64 = u64::MAX - 1;
/// The shard's read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Reads per connection per round before others get their turn.
const READS_PER_ROUND: usize = 8;
/// Connections accepted per listener per round.
const ACCEPTS_PER_ROUND: usize = 512;
/// Commands taken from the inbox per round.
const COMMANDS_PER_ROUND: usize = 256;

/// A listener the shard accepts on, with what its clients speak.
pub struct Listener {
    /// The bound, listening socket.
    pub socket: std::net::TcpListener,
    /// What its clients speak.
    pub framing: Framing,
}

/// The driver of one shard.
pub struct Driver {
    core: RefCell<ShardCore>,
    started: Instant,
    readiness: Readiness,
    listeners: Vec<Listener>,
    /// The TLS configuration, when clients must speak TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The rustls session of every TLS connection, by connection id.
    tls_conns: RefCell<FxHashMap<u64, Box<TlsConn>>>,
    read_buffer: RefCell<Vec<u8>>,
    /// Connections (and listeners) with more to read than one round took.
    again: RefCell<Vec<u64>>,
    flush_waker: RefCell<Option<Waker>>,
    pulse: Arc<Pulse>,
    /// Scratch lists reused every round.
    scratch: RefCell<Scratch>,
    /// The round's writes, sent with one submission.
    send_ring: RefCell<SendRing>,
    accepting: Cell<bool>,
}

#[derive(Default)]
struct Scratch {
    ready: Vec<Ready>,
    ids: Vec<u64>,
    released: Vec<Released>,
}

impl Driver {
    /// A driver for `core` on these listeners.
    pub fn new(
        core: ShardCore,
        listeners: Vec<Listener>,
        tls: Option<Arc<rustls::ServerConfig>>,
        pulse: Arc<Pulse>,
    ) -> anyhow::Result<Rc<Driver>> {
        let readiness = Readiness::new()?;
        for (i, listener) in listeners.iter().enumerate() {
            listener.socket.set_nonblocking(true)?;
            let token = if i == 0 { TCP_LISTENER } else { WS_LISTENER };
            readiness.add_listener(listener.socket.as_raw_fd(), token)?;
        }
        Ok(Rc::new(Driver {
            core: RefCell::new(core),
            started: Instant::now(),
            readiness,
            listeners,
            tls,
            tls_conns: RefCell::new(FxHashMap::default()),
            read_buffer: RefCell::new(vec![0; READ_BUFFER]),
            again: RefCell::new(Vec::new()),
            flush_waker: RefCell::new(None),
            pulse,
            scratch: RefCell::new(Scratch::default()),
            send_ring: RefCell::new(SendRing::new()),
            accepting: Cell::new(true),
        }))
    }

    fn now(&self) -> Now {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Now { mono_ms: self.started.elapsed().as_millis() as u64, wall_ms }
    }

    /// Runs the shard until it is shut down and drained.
    pub async fn run(self: Rc<Self>, inbox: flume::Receiver<ShardCommand>) {
        monoio::spawn(self.clone().readiness_loop());
        monoio::spawn(self.clone().timer_loop());
        monoio::spawn(self.clone().flush_loop());
        monoio::spawn(self.clone().frames_loop());
        self.inbox_loop(&inbox).await;
        self.drain().await;
    }

    /// Waits for the readiness set and handles what is ready.
    async fn readiness_loop(self: Rc<Self>) {
        loop {
            if self.again.borrow().is_empty() {
                if let Err(e) = self.readiness.waiter().readable(false).await {
                    tracing::error!("waiting on the readiness set failed: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            } else {
                yield_now().await;
            }
            self.handle_ready();
        }
    }

    /// One round: everything ready now, then what the core asked for.
    fn handle_ready(&self) {
        let mut ready = std::mem::take(&mut self.scratch.borrow_mut().ready);
        ready.clear();
        if let Err(e) = self.readiness.ready_now(&mut ready) {
            tracing::error!("polling the readiness set failed: {e}");
        }
        for id in self.again.borrow_mut().drain(..) {
            ready.push(Ready { token: id, readable: true, writable: false });
        }
        for event in &ready {
            match event.token {
                TCP_LISTENER => self.accept(0),
                WS_LISTENER => self.accept(1),
                id => {
                    if event.writable {
                        self.core.borrow_mut().on_writable(id);
                    }
                    if event.readable {
                        self.read(id);
                    }
                }
            }
        }
        self.scratch.borrow_mut().ready = ready;
        self.after_round();
    }

    /// Accepts what waits on listener `index`.
    fn accept(&self, index: usize) {
        self.pulse.enter(Activity::Accept);
        let Some(listener) = self.listeners.get(index) else { return };
        if !self.accepting.get() {
            return;
        }
        for _ in 0..ACCEPTS_PER_ROUND {
            match socket::accept(listener.socket.as_raw_fd()) {
                Ok(Some((fd, source))) => self.admit(fd, source, listener.framing),
                Ok(None) => return,
                Err(e) => {
                    // EMFILE and friends: the timer retries on its next tick.
                    tracing::warn!(shard = self.core.borrow().id(), "accept failed: {e}");
                    return;
                }
            }
        }
        self.again.borrow_mut().push(if index == 0 { TCP_LISTENER } else { WS_LISTENER });
    }

    fn admit(&self, fd: i32, source: std::net::IpAddr, framing: Framing) {
        let now = self.now();
        let session = match self.tls.as_ref().map(|config| TlsConn::new(config.clone())).transpose() {
            Ok(session) => session,
            Err(e) => {
                tracing::warn!("could not start a TLS session: {e}");
                socket::close(fd);
                return;
            }
        };
        let id = self.core.borrow_mut().accept(now, fd, source, framing);
        if id == 0 {
            return;
        }
        if let Some(session) = session {
            self.tls_conns.borrow_mut().insert(id, session);
        }
        if let Err(e) = self.readiness.add(fd, id) {
            tracing::warn!("could not watch a new connection: {e}");
            self.core.borrow_mut().on_peer_closed(now, id);
        }
    }

    /// Reads what connection `id` has, into the shard's buffer.
    fn read(&self, id: u64) {
        self.pulse.enter(Activity::Read);
        let Some(fd) = self.core.borrow().fd(id) else { return };
        if self.tls.is_some() {
            return self.read_tls(id, fd);
        }
        let mut buffer = self.read_buffer.borrow_mut();
        for _ in 0..READS_PER_ROUND {
            if !self.core.borrow().wants_input(id) {
                return;
            }
            match socket::read(fd, &mut buffer) {
                Done::Bytes(n) => {
                    let now = self.now();
                    self.core.borrow_mut().on_bytes(now, id, &buffer[..n]);
                    if n < buffer.len() {
                        return;
                    }
                }
                Done::WouldBlock => return,
                Done::Closed => {
                    let now = self.now();
                    self.core.borrow_mut().on_peer_closed(now, id);
                    return;
                }
            }
        }
        self.again.borrow_mut().push(id);
    }

    /// Writes what the connections in `ids` have queued, as far as their
    /// sockets take, all of a round's sends in one submission; a connection
    /// that has more after a complete write goes again. TLS connections
    /// write their records with a plain `sendmsg` each instead.
    fn write(&self, ids: &mut Vec<u64>) {
        self.pulse.enter(Activity::Write);
        let mut ring = self.send_ring.borrow_mut();
        let mut tls_batch = Vec::new();
        while !ids.is_empty() {
            {
                let mut core = self.core.borrow_mut();
                for id in ids.drain(..) {
                    let Some(fd) = core.fd(id) else { continue };
                    if self.tls.is_some() {
                        self.write_tls(&mut core, id, fd, &mut tls_batch);
                        continue;
                    }
                    let batch = ring.next(id, fd);
                    match core.take_output(id, batch) {
                        Output::Write => {}
                        Output::Idle => ring.unused_last(),
                        Output::ShutWrite => {
                            ring.unused_last();
                            socket::shutdown_write(fd);
                        }
                    }
                }
            }
            if ring.is_empty() {
                return;
            }
            let now = self.now();
            let mut core = self.core.borrow_mut();
            for write in ring.send() {
                let total = write.bytes();
                match write.done {
                    Done::Bytes(n) => {
                        let more = core.wrote(write.id, &mut write.batch, n);
                        // A short write waits for the socket's next
                        // writable edge; a complete one with more queued
                        // goes again now.
                        if n == total && more {
                            ids.push(write.id);
                        }
                    }
                    Done::WouldBlock => {
                        core.wrote(write.id, &mut write.batch, 0);
                    }
                    Done::Closed => {
                        core.wrote(write.id, &mut write.batch, 0);
                        core.on_peer_closed(now, write.id);
                    }
                }
            }
        }
    }

    /// Carries out what the core asked for until it asks for nothing more:
    /// presence batches out, queued bytes written, sockets closed, held
    /// input read again.
    fn after_round(&self) {
        loop {
            let (mut ids, mut released) = {
                let mut scratch = self.scratch.borrow_mut();
                (std::mem::take(&mut scratch.ids), std::mem::take(&mut scratch.released))
            };
            {
                let mut core = self.core.borrow_mut();
                core.end_round();
                core.take_write_list(&mut ids);
                core.take_released(&mut released);
            }
            let resumed = {
                let mut resumed = Vec::new();
                self.core.borrow_mut().take_resumed(&mut resumed);
                resumed
            };
            let idle = ids.is_empty() && released.is_empty() && resumed.is_empty();
            self.write(&mut ids);
            for gone in &released {
                if self.tls.is_some() {
                    self.release_tls(gone.conn_id);
                }
                socket::close(gone.fd);
            }
            for id in resumed {
                self.read(id);
            }
            ids.clear();
            released.clear();
            {
                let mut scratch = self.scratch.borrow_mut();
                scratch.ids = ids;
                scratch.released = released;
            }
            if idle {
                break;
            }
        }
        if self.core.borrow().has_deferred() {
            if let Some(waker) = self.flush_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Handles commands from other shards and the control plane, a batch
    /// per wake, until a shutdown.
    async fn inbox_loop(&self, inbox: &flume::Receiver<ShardCommand>) {
        while let Ok(first) = inbox.recv_async().await {
            self.pulse.enter(Activity::Inbox);
            let now = self.now();
            {
                let mut core = self.core.borrow_mut();
                core.on_command(now, first);
                for command in inbox.try_iter().take(COMMANDS_PER_ROUND) {
                    core.on_command(now, command);
                }
            }
            self.after_round();
            if self.core.borrow().is_stopping() {
                return;
            }
        }
    }

    /// Delivers the frames other shards send, a batch per wake.
    async fn frames_loop(self: Rc<Self>) {
        let mut frames = Vec::new();
        loop {
            poll_fn(|cx| self.core.borrow_mut().poll_frames(cx, &mut frames)).await;
            self.pulse.enter(Activity::Inbox);
            let now = self.now();
            {
                let mut core = self.core.borrow_mut();
                for frame in frames.drain(..) {
                    core.on_frame(now, &frame);
                }
            }
            self.after_round();
        }
    }

    /// Advances the core's clock every tick.
    async fn timer_loop(self: Rc<Self>) {
        let tick = Duration::from_millis(self.core.borrow().config().timer_tick_ms as u64);
        // A ramp's transient memory goes back on the first quiet tick.
        let mut quiet = QuietAfterBurst::default();
        loop {
            monoio::time::sleep(tick).await;
            self.pulse.enter(Activity::Timer);
            self.pulse.beat();
            let now = self.now();
            let churned = {
                let mut core = self.core.borrow_mut();
                core.on_tick(now);
                core.take_churn()
            };
            if quiet.period(churned) {
                release_free_pages();
            }
            // A listener that hit EMFILE (and lost its edge) gets another go.
            self.accept(0);
            self.accept(1);
            self.after_round();
        }
    }

    /// Lets hot rooms' connections write, once per flush tick while any
    /// wait.
    async fn flush_loop(self: Rc<Self>) {
        let tick = Duration::from_millis(self.core.borrow().config().flush_tick_ms.max(1) as u64);
        loop {
            poll_fn(|cx| {
                if self.core.borrow().has_deferred() {
                    Poll::Ready(())
                } else {
                    *self.flush_waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            monoio::time::sleep(tick).await;
            self.pulse.enter(Activity::Flush);
            let now = self.now();
            self.core.borrow_mut().on_flush_tick(now);
            self.after_round();
        }
    }

    /// On shutdown: stop accepting, CLOSE every connection and wait, up to
    /// the grace period, for them to go.
    async fn drain(&self) {
        self.accepting.set(false);
        let (id, grace) = {
            let core = self.core.borrow();
            (core.id(), core.config().shutdown_grace_ms)
        };
        tracing::info!(shard = id, connections = self.core.borrow().len(), "shutting down: closing connections");
        let now = self.now();
        self.core.borrow_mut().close_all(now);
        self.after_round();
        let deadline = Instant::now() + Duration::from_millis(grace as u64);
        while !self.core.borrow().is_empty() && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.core.borrow().len();
        if left > 0 {
            tracing::warn!(shard = id, left, "grace period over; dropping remaining connections");
        }
    }
}

/// Gives the other tasks a turn.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
