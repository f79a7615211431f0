//! A worker process: one thread, one epoll instance, up to ~18,000 client
//! connections, driven by the plan and commands its parent sends on stdin.
//!
//! Why plain epoll and not monoio/io_uring here: a load generator's limit is
//! connections per core and bytes per idle connection. With io_uring (and so
//! monoio) every connection keeps a read in flight, and every in-flight read
//! owns its buffer, so 18,000 idle connections pin 18,000 buffers. With a
//! level-triggered epoll loop a connection owns no buffer at all while idle:
//! all reads go through one shared 256 KiB buffer and only the tail of an
//! incomplete frame is copied into a per-connection `Vec`. The per-connection
//! state is ~150 bytes. Readiness batching (one `epoll_wait` for many
//! sockets) keeps the syscall count close to one read per busy socket per
//! wake, which is what io_uring would do too for this traffic pattern.
//!
//! The loop: start connects at the planned rate and concurrency, write the
//! hello, subscribe once the hello is answered, publish on schedule (or as
//! fast as the sockets take it), read and account for every delivery (in
//! stream rooms, checking each member's stream positions), send
//! heartbeats to every connection past its AUTH_OK once per heartbeat
//! interval (the server's, from AUTH_OK) whatever else is going on, time
//! out stuck connects, play a recovery storm when told ([`storm`]),
//! report progress every 200 ms, and stop on `Stop`, on stdin EOF (the
//! parent died) or at the plan's deadline.

mod conn;
mod control;
mod epoll;
mod heartbeat;
mod socket;
mod stats;
mod storm;

use std::io::{self, Read};

use anyhow::{bail, Context, Result};

use crate::clock::now_ns;
use crate::payload::{filler, Stamp};
use crate::plan::{Command, Progress, Ready, Role, WorkerMsg, WorkerPlan};
use crate::target::{self, Adapter, Event};
use conn::{Conn, ConnState};
use control::StdinLines;
use epoll::{Epoll, ERR_OR_HUP, IN, OUT};
use heartbeat::Sweep;
use stats::{Stats, Window};
use storm::{Arrival, Storm};

const STDIN_TOKEN: u64 = u64::MAX;
const TICK_NS: u64 = 100_000_000;
const READ_BUF: usize = 256 * 1024;
/// A publisher whose socket has this much unwritten skips messages (counted).
const MAX_PUBLISH_BACKLOG: usize = 1 << 20;
/// Bytes an open-loop publisher prepares per write.
const MAX_BURST: usize = 64 * 1024;
/// Connections started per loop turn, so reads are not starved while ramping.
const CONNECT_BATCH: usize = 256;

/// Entry point of the hidden `worker` subcommand.
pub fn main() -> Result<()> {
    let mut stdin = StdinLines::default();
    let Some(line) = stdin.read_line_blocking().context("reading the plan")? else {
        bail!("no plan on stdin");
    };
    let plan: WorkerPlan = serde_json::from_str(&line).context("parsing the plan")?;
    stdin.set_nonblocking()?;
    crate::limits::raise_nofile();
    let result = target::adapter(&plan).map_err(anyhow::Error::msg).and_then(|a| Worker::new(plan, a, stdin)?.run());
    if let Err(e) = &result {
        control::send(&WorkerMsg::Fatal { error: format!("{e:#}") });
    }
    result
}

struct Worker {
    plan: WorkerPlan,
    adapter: Box<dyn Adapter>,
    epoll: Epoll,
    stdin: StdinLines,
    conns: Vec<Conn>,
    /// Local indices of publishers.
    publishers: Vec<usize>,
    room_names: Vec<String>,
    payload: Vec<u8>,
    rbuf: Vec<u8>,
    next_connect: usize,
    in_flight: usize,
    settled: usize,
    started_ns: u64,
    window: Window,
    publish: Option<(u64, u64)>,
    watching: bool,
    stop: bool,
    ready_sent: bool,
    next_tick_ns: u64,
    ticks: u64,
    /// Heartbeats; `None` when the plan asks for none.
    sweep: Option<Sweep>,
    /// The recovery storm, once the parent announced it.
    storm: Option<Storm>,
    last_progress: Progress,
    stats: Stats,
}

impl Worker {
    fn new(plan: WorkerPlan, adapter: Box<dyn Adapter>, stdin: StdinLines) -> Result<Worker> {
        let conns: Vec<Conn> = (plan.first_conn..plan.first_conn + plan.conns)
            .map(|g| {
                let role = plan.role(g);
                let per_room = match role {
                    Role::Member { room } => plan.publishers_in_room(room),
                    _ => 0,
                };
                Conn::new(role, per_room)
            })
            .collect();
        let publishers = conns.iter().enumerate().filter(|(_, c)| matches!(c.role, Role::Publisher { .. }));
        let publishers = publishers.map(|(i, _)| i).collect();
        let room_names = (0..plan.rooms).map(|r| adapter.room_name(r)).collect();
        let mut stats = Stats::default();
        stats.result.sent_in_window_per_room = vec![0; plan.rooms];
        Ok(Worker {
            payload: filler(plan.payload_len),
            epoll: Epoll::new(1024)?,
            adapter,
            stdin,
            conns,
            publishers,
            room_names,
            rbuf: vec![0; READ_BUF],
            next_connect: 0,
            in_flight: 0,
            settled: 0,
            started_ns: 0,
            window: Window::default(),
            publish: None,
            watching: false,
            stop: false,
            ready_sent: false,
            next_tick_ns: 0,
            ticks: 0,
            sweep: None,
            storm: None,
            last_progress: Progress::default(),
            stats,
            plan,
        })
    }

    fn run(mut self) -> Result<()> {
        self.epoll.add(0, STDIN_TOKEN, IN)?;
        self.started_ns = now_ns();
        self.next_tick_ns = self.started_ns;
        self.sweep = (self.plan.heartbeat_ms > 0).then(|| Sweep::new(self.plan.heartbeat_ms, self.started_ns));
        while !self.stop {
            let now = now_ns();
            if now >= self.plan.deadline_ns {
                tracing::warn!(worker = self.plan.worker, "deadline reached, reporting what was measured");
                break;
            }
            self.start_storm(now);
            self.start_connects(now);
            let busy = self.publish_due(now);
            if now >= self.next_tick_ns {
                self.tick(now);
                self.next_tick_ns = now + TICK_NS;
            }
            let timeout = if busy { 0 } else { self.timeout_ms(now) };
            let n = self.epoll.wait(timeout)?;
            for i in 0..n {
                let (token, flags) = self.epoll.event(i);
                if token == STDIN_TOKEN {
                    self.on_stdin()?;
                } else {
                    self.on_socket(token as usize, flags);
                }
            }
        }
        self.finish();
        Ok(())
    }

    fn timeout_ms(&self, now: u64) -> i32 {
        let mut next = self.next_tick_ns.min(self.plan.deadline_ns);
        if let (Some((from, until)), Some(_)) = (self.publish, self.plan.rate) {
            if now < until {
                for &idx in &self.publishers {
                    let conn = &self.conns[idx];
                    if conn.state == ConnState::Ready {
                        next = next.min(conn.next_due_ns.max(from));
                    }
                }
            }
        }
        if self.next_connect < self.conns.len() && self.in_flight < self.plan.connect_concurrency {
            let due = match self.plan.connect_rate {
                Some(rate) => self.started_ns + (self.next_connect as f64 / rate * 1e9) as u64,
                None => now,
            };
            next = next.min(due);
        }
        if let Some(storm) = &self.storm {
            if let Some(at) = storm.pending_at() {
                next = next.min(at);
            }
            if storm.has_queued() && self.in_flight < self.plan.connect_concurrency {
                next = now;
            }
        }
        (next.saturating_sub(now).div_ceil(1_000_000)).min(1000) as i32
    }

    /// Starts first connections at the planned rate, then the storm's
    /// reconnects at once, both within the connect concurrency.
    fn start_connects(&mut self, now: u64) {
        let mut budget = self.plan.connect_concurrency.saturating_sub(self.in_flight).min(CONNECT_BATCH);
        let pending = self.conns.len() - self.next_connect;
        if pending > 0 {
            let by_rate = match self.plan.connect_rate {
                None => usize::MAX,
                Some(rate) => {
                    let due = (now.saturating_sub(self.started_ns) as f64 / 1e9 * rate) as usize + 1;
                    due.saturating_sub(self.next_connect)
                }
            };
            for _ in 0..pending.min(by_rate).min(budget) {
                let idx = self.next_connect;
                self.next_connect += 1;
                budget -= 1;
                self.start_one(idx, now);
            }
        }
        while budget > 0 {
            let Some(idx) = self.storm.as_mut().and_then(Storm::next_reconnect) else { break };
            budget -= 1;
            self.start_one(idx, now);
        }
    }

    /// Whether connection `idx` is a storm reconnect, not a first connection.
    fn reconnecting(&self, idx: usize) -> bool {
        self.storm.as_ref().is_some_and(|s| s.took_part(idx))
    }

    /// At the storm's instant: every member that is set up drops its
    /// connection (a reset, as a lost network looks to nobody in
    /// particular) and is queued to reconnect from its last position.
    fn start_storm(&mut self, now: u64) {
        let Some(storm) = self.storm.as_mut() else { return };
        if storm.pending_at().is_none_or(|at| now < at) {
            return;
        }
        let members: Vec<usize> = (0..self.conns.len())
            .filter(|&idx| {
                let conn = &self.conns[idx];
                matches!(conn.role, Role::Member { .. }) && conn.state == ConnState::Ready
            })
            .collect();
        for &idx in &members {
            let conn = &mut self.conns[idx];
            if let Some(s) = conn.socket.take() {
                socket::close_now(s);
            }
            conn.state = ConnState::Waiting;
            conn.out = Vec::new();
            conn.partial = Vec::new();
        }
        storm.start(members, self.conns.len());
        self.stats.result.stream.dropped = storm.dropped() as u64;
    }

    fn start_one(&mut self, idx: usize, now: u64) {
        let first = !self.reconnecting(idx);
        let r = &mut self.stats.result;
        if first {
            r.attempted += 1;
            if r.first_attempt_ns == 0 {
                r.first_attempt_ns = now;
            }
        }
        let conn = &mut self.conns[idx];
        conn.started_ns = now;
        let source = (!self.plan.source_ips.is_empty()).then(|| self.plan.source_ips[idx % self.plan.source_ips.len()]);
        let registered = socket::start_connect(self.plan.addr, source).and_then(|s| {
            use std::os::fd::AsRawFd;
            self.epoll.add(s.as_raw_fd(), idx as u64, OUT)?;
            Ok(s)
        });
        match registered {
            Ok(s) => {
                conn.socket = Some(s);
                conn.state = ConnState::Connecting;
                conn.interest = OUT;
                self.in_flight += 1;
            }
            Err(e) => {
                conn.state = ConnState::Closed;
                let reason = format!("connect: {}", socket::reason(&e));
                self.settled += usize::from(first);
                self.stats.failed(if first { reason } else { format!("reconnect: {reason}") });
            }
        }
    }

    fn on_socket(&mut self, idx: usize, flags: u32) {
        let Some(conn) = self.conns.get(idx) else { return };
        match conn.state {
            ConnState::Waiting | ConnState::Closed => {}
            ConnState::Connecting => {
                if flags & (OUT | ERR_OR_HUP) != 0 {
                    self.on_connected(idx);
                }
            }
            _ => {
                if flags & (IN | ERR_OR_HUP) != 0 {
                    self.on_readable(idx);
                }
                if flags & OUT != 0 && self.conns[idx].state != ConnState::Closed {
                    self.flush(idx);
                }
            }
        }
    }

    fn on_connected(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        let Some(sock) = conn.socket.as_ref() else { return };
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {}", socket::reason(&e))),
        }
        conn.state = ConnState::Handshaking;
        let g = self.plan.first_conn + idx;
        if let Err(e) = self.adapter.hello(g, &mut conn.out) {
            return self.fail(idx, e);
        }
        self.flush(idx);
    }

    /// Closes a connection and counts why.
    fn fail(&mut self, idx: usize, reason: String) {
        let conn = &mut self.conns[idx];
        let was = conn.state;
        if let Some(s) = conn.socket.take() {
            socket::close_now(s);
        }
        conn.state = ConnState::Closed;
        conn.out = Vec::new();
        conn.partial = Vec::new();
        match was {
            ConnState::Ready => {
                let phase = self.phase();
                self.stats.disconnected(format!("{phase}: {reason}"))
            }
            ConnState::Closed | ConnState::Waiting => {}
            _ if self.reconnecting(idx) => {
                self.in_flight -= 1;
                self.stats.failed(format!("reconnect: {reason}"));
            }
            _ => {
                self.in_flight -= 1;
                self.settled += 1;
                self.stats.failed(reason);
            }
        }
    }

    /// The step of the run this worker is in, as drops are reported by it:
    /// `connect` until its connections are settled, then `hold`, then
    /// `broadcast` once watching, then `fanout` once publishing started.
    fn phase(&self) -> &'static str {
        if !self.ready_sent {
            "connect"
        } else if self.publish.is_some() {
            "fanout"
        } else if self.watching {
            "broadcast"
        } else {
            "hold"
        }
    }

    fn on_readable(&mut self, idx: usize) {
        let now = now_ns();
        loop {
            let Some(sock) = self.conns[idx].socket.as_ref() else { return };
            let n = match (&*sock).read(&mut self.rbuf) {
                Ok(0) => return self.fail(idx, "closed by server".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(idx, socket::reason(&e)),
            };
            if let Err(reason) = self.consume(idx, n, now) {
                return self.fail(idx, reason);
            }
            if n < self.rbuf.len() {
                break;
            }
        }
        if !self.conns[idx].out.is_empty() {
            self.flush(idx);
        }
    }

    /// Parses `rbuf[..n]` (after any partial frame) and acts on every event.
    /// A member counts room messages from its JOIN on: replayed ones come
    /// before the answer to a rejoin, live ones may share its read.
    fn consume(&mut self, idx: usize, n: usize, now: u64) -> Result<(), String> {
        let Worker { conns, rbuf, adapter, stats, plan, window, watching, storm, .. } = self;
        let conn = &mut conns[idx];
        let mut partial = std::mem::take(&mut conn.partial);
        let buffered = !partial.is_empty();
        if buffered {
            partial.extend_from_slice(&rbuf[..n]);
        }
        let data: &[u8] = if buffered { &partial } else { &rbuf[..n] };
        let (mut acks, mut pings, mut refused, mut closed, mut interval) = (0usize, 0usize, Vec::new(), None, None);
        let mut plain_join = false;
        let (role, state, rooms, window, watching) = (conn.role, conn.state, plan.rooms, *window, *watching);
        let (seqs, broadcast_seen, cursor) = (&mut conn.seqs, &mut conn.broadcast_seen, &mut conn.cursor);
        let history = plan.history;
        let used = adapter.parse(data, &mut |event| match event {
            Event::Ack => {
                acks += 1;
                plain_join |= state == ConnState::Subscribing;
            }
            Event::Joined { position, recovered } => {
                acks += 1;
                if !matches!(role, Role::Member { .. }) {
                    return;
                }
                stats.result.stream.count(cursor.joined(position, recovered));
                if let Some(since_drop) = storm.as_mut().and_then(|s| s.rejoined(idx, now, recovered)) {
                    stats.rejoined(since_drop, recovered, now);
                }
            }
            Event::ServerPing => pings += 1,
            Event::Pong => {}
            Event::HeartbeatInterval(ms) => interval = Some(ms),
            Event::Refused(message) => refused.push(message),
            Event::Closed(reason) => closed = closed.take().or(Some(reason)),
            Event::Message { payload, position } => {
                let (Role::Member { room }, ConnState::Subscribing | ConnState::Ready) = (role, state) else { return };
                if history {
                    stats.result.stream.count(cursor.push(position));
                }
                match Stamp::read(payload) {
                    Some(stamp) if rooms > 0 && stamp.publisher as usize % rooms == room => {
                        stats.member_received(stamp, stamp.publisher as usize / rooms, seqs, window, now);
                        match storm.as_mut().map_or(Arrival::Live, |s| s.arrival(idx, stamp.sent_ns, now)) {
                            Arrival::Live => {}
                            Arrival::Replayed => stats.result.stream.replayed += 1,
                            Arrival::CaughtUp(since_drop) => stats.caught_up(since_drop, now),
                        }
                    }
                    _ => stats.server_error("message without a harness stamp".into()),
                }
            }
            Event::Broadcast(payload) => {
                if let (true, false, Some(stamp)) = (watching, *broadcast_seen, Stamp::read(payload)) {
                    *broadcast_seen = true;
                    stats.result.broadcast_received += 1;
                    stats.result.broadcast_last_ns = stats.result.broadcast_last_ns.max(now);
                    stats.broadcast_latency.record(now.saturating_sub(stamp.sent_ns));
                }
            }
        })?;
        conn.partial = if buffered {
            partial.drain(..used);
            if partial.is_empty() {
                Vec::new()
            } else {
                partial
            }
        } else {
            rbuf[used..n].to_vec()
        };
        for _ in 0..pings {
            adapter.pong(&mut conn.out);
        }
        if let (Some(ms), Some(sweep)) = (interval.filter(|&ms| ms > 0), self.sweep.as_mut()) {
            if u64::from(ms) != sweep.interval_ms() {
                sweep.set_interval(ms.into(), now);
            }
        }
        if let Some(reason) = closed {
            return Err(reason);
        }
        if history && plain_join {
            return Err("JOIN answered OK, not JOINED: no [[rooms]] rule with history matches the room".into());
        }
        for message in refused {
            if state == ConnState::Ready {
                stats.server_error(message);
            } else {
                return Err(format!("refused: {message}"));
            }
        }
        for _ in 0..acks {
            self.advance(idx, now);
        }
        Ok(())
    }

    /// The server answered the hello or the subscribe.
    fn advance(&mut self, idx: usize, now: u64) {
        let conn = &mut self.conns[idx];
        match conn.state {
            ConnState::Handshaking => {
                let rejoin = self.storm.as_ref().is_some_and(|s| s.took_part(idx));
                if !rejoin {
                    self.stats.connect_latency.record(now.saturating_sub(conn.started_ns));
                }
                let room = match conn.role {
                    Role::Member { room } => Some(room),
                    Role::Publisher { room, .. } if self.adapter.publisher_subscribes() => Some(room),
                    _ => None,
                };
                match room {
                    Some(room) => {
                        let since = if rejoin { conn.cursor.position() } else { 0 };
                        self.adapter.subscribe(&self.room_names[room], since, &mut conn.out);
                        conn.state = ConnState::Subscribing;
                    }
                    None => self.mark_ready(idx, now),
                }
            }
            ConnState::Subscribing => self.mark_ready(idx, now),
            _ => {}
        }
    }

    fn mark_ready(&mut self, idx: usize, now: u64) {
        self.conns[idx].state = ConnState::Ready;
        self.in_flight -= 1;
        if self.reconnecting(idx) {
            return;
        }
        self.settled += 1;
        self.stats.result.ready += 1;
        self.stats.result.last_ready_ns = now;
    }

    /// Writes what is pending and keeps the epoll interest in step.
    fn flush(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        let Some(sock) = conn.socket.as_ref() else { return };
        let mut error = None;
        while !conn.out.is_empty() {
            match sock.send(&conn.out) {
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            // A server that closed the connection often said why first (a
            // CLOSE frame not read yet): read what is there, so the drop is
            // counted under that reason rather than as a broken pipe.
            conn.out = Vec::new();
            self.on_readable(idx);
            if self.conns[idx].state != ConnState::Closed {
                self.fail(idx, socket::reason(&e));
            }
            return;
        }
        if conn.out.is_empty() && !matches!(conn.role, Role::Publisher { .. }) {
            conn.out = Vec::new();
        }
        let want = if conn.out.is_empty() { IN } else { IN | OUT };
        if want != conn.interest {
            use std::os::fd::AsRawFd;
            let fd = sock.as_raw_fd();
            match self.epoll.modify(fd, idx as u64, want) {
                Ok(()) => conn.interest = want,
                Err(e) => self.fail(idx, format!("epoll: {e}")),
            }
        }
    }

    /// Publishes what is due; returns whether an open-loop publisher could
    /// write more right away.
    fn publish_due(&mut self, now: u64) -> bool {
        let Some((from, until)) = self.publish else { return false };
        if now < from || now >= until {
            return false;
        }
        let mut busy = false;
        for k in 0..self.publishers.len() {
            let idx = self.publishers[k];
            let Worker { conns, adapter, room_names, payload, stats, window, plan, .. } = self;
            let conn = &mut conns[idx];
            let Role::Publisher { room, id } = conn.role else { continue };
            if conn.state != ConnState::Ready {
                continue;
            }
            let mut wrote = false;
            let mut publish = |conn: &mut Conn| {
                conn.seq += 1;
                Stamp { sent_ns: now, publisher: id as u32, seq: conn.seq }.write_into(payload);
                adapter.publish(&room_names[room], payload, &mut conn.out);
                stats.result.sent_total += 1;
                if window.contains(now) {
                    stats.result.sent_in_window_per_room[room] += 1;
                }
            };
            match plan.rate {
                Some(rate) => {
                    let interval = ((1e9 / rate) as u64).max(1);
                    while conn.next_due_ns <= now {
                        if conn.out.len() >= MAX_PUBLISH_BACKLOG {
                            stats.result.publish_skipped += 1;
                        } else {
                            publish(conn);
                            wrote = true;
                        }
                        conn.next_due_ns += interval;
                    }
                }
                None => {
                    while conn.out.len() < MAX_BURST {
                        publish(conn);
                        wrote = true;
                    }
                }
            }
            if wrote {
                self.flush(idx);
                busy |= self.plan.rate.is_none() && self.conns[idx].out.is_empty();
            }
        }
        busy
    }

    fn tick(&mut self, now: u64) {
        if self.in_flight > 0 {
            let timeout = self.plan.connect_timeout_ms * 1_000_000;
            for idx in 0..self.conns.len() {
                let conn = &self.conns[idx];
                if conn.state.in_flight() && now.saturating_sub(conn.started_ns) > timeout {
                    let state = format!("{:?}", conn.state).to_lowercase();
                    self.fail(idx, format!("timeout while {state}"));
                }
            }
        }
        self.heartbeats(now);
        self.ticks += 1;
        if !self.ready_sent && self.settled == self.conns.len() {
            self.ready_sent = true;
            let mut members_per_room = vec![0u64; self.plan.rooms];
            for conn in &self.conns {
                if let (Role::Member { room }, ConnState::Ready) = (conn.role, conn.state) {
                    members_per_room[room] += 1;
                }
            }
            let r = &self.stats.result;
            control::send(&WorkerMsg::Ready(Ready { ready: r.ready, failed: r.failed.clone(), members_per_room }));
        }
        if self.ticks.is_multiple_of(2) {
            let r = &self.stats.result;
            let publish_done = self.publishers.is_empty() || self.publish.is_some_and(|(_, until)| now >= until);
            let progress = Progress {
                ready: r.ready,
                failed: r.failed.values().sum(),
                dropped: r.disconnected.values().sum(),
                broadcast_received: r.broadcast_received,
                received: r.received_total,
                received_in_window: r.received_in_window,
                sent_in_window_per_room: if self.publishers.is_empty() {
                    Vec::new()
                } else {
                    r.sent_in_window_per_room.clone()
                },
                publish_done,
                rejoined: r.stream.rejoined,
                caught_up: r.stream.caught_up,
            };
            if progress != self.last_progress {
                control::send(&WorkerMsg::Progress(progress.clone()));
                self.last_progress = progress;
            }
        }
    }

    /// Pings the connections whose heartbeat is due: every one past its
    /// AUTH_OK, whatever the scenario is doing.
    fn heartbeats(&mut self, now: u64) {
        let Some(mut sweep) = self.sweep.take() else { return };
        let while_subscribing = self.adapter.heartbeat_while_subscribing();
        for idx in sweep.due(now, self.conns.len()) {
            let conn = &mut self.conns[idx];
            let authenticated = match conn.state {
                ConnState::Ready => true,
                ConnState::Subscribing => while_subscribing,
                _ => false,
            };
            if authenticated && conn.out.len() < MAX_BURST {
                self.adapter.heartbeat(&mut conn.out);
                self.flush(idx);
            }
        }
        self.sweep = Some(sweep);
    }

    fn on_stdin(&mut self) -> Result<()> {
        let (lines, eof) = self.stdin.read_available()?;
        for line in lines {
            match serde_json::from_str::<Command>(&line).with_context(|| format!("command {line:?}"))? {
                Command::Go { publish_from, measure_from, measure_until, publish_until } => {
                    self.window = Window { from: measure_from, until: measure_until };
                    self.publish = Some((publish_from, publish_until));
                    let spread = self.plan.rate.map_or(0, |r| (1e9 / r) as u64) / self.publishers.len().max(1) as u64;
                    for (k, &idx) in self.publishers.iter().enumerate() {
                        self.conns[idx].next_due_ns = publish_from + k as u64 * spread;
                    }
                }
                Command::Watch => self.watching = true,
                Command::Storm { at_ns } => self.storm = Some(Storm::new(at_ns)),
                Command::Stop => self.stop = true,
            }
        }
        if eof {
            self.stop = true;
        }
        Ok(())
    }

    fn finish(mut self) {
        for conn in &mut self.conns {
            if let Some(s) = conn.socket.take() {
                socket::close_now(s);
            }
        }
        control::send(&WorkerMsg::Result(Box::new(self.stats.finish())));
    }
}
