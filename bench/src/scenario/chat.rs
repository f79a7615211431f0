//! `chat`: persistent messaging. Senders keep a window of SENDs in flight
//! (direct messages to one online receiver each, and group messages to the
//! online members of their group) and time each SEND to its SENT, which the
//! server sends once the message is stored; receivers time each PUSH from
//! the stamp in its payload. Reports stored messages per second, SENT and
//! delivery latency percentiles, and messages stored but not delivered.
//! Meanwhile it times an admin API call every `--admin-probe-ms`, to show
//! what the chat load does to the control plane.
//!
//! Chat measures the store path, not connection count: a few hundred
//! connections suffice, so this scenario runs in the parent process, one
//! thread with a blocking socket per connection, instead of the epoll
//! workers.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corecast_proto::{
    decode_server, encode_client, peek_frame, ClientRequest, ErrorCode, Peek, PushKind, ServerMessage,
};

use crate::admin::Admin;
use crate::cli::ChatArgs;
use crate::clock::now_ns;
use crate::latency::Latency;
use crate::payload::{filler, Stamp};
use crate::probe;
use crate::summary::Summary;
use crate::target::Target;
use crate::token::TokenMinter;

/// A blocking corecast connection speaking just what chat needs.
struct ChatConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ChatConn {
    fn open(addr: SocketAddr, token: &str) -> Result<ChatConn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = ChatConn { stream, buf: Vec::with_capacity(4096) };
        conn.send(1, &ClientRequest::Auth { token, device: "bench" })?;
        conn.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        match conn.next(|_, m| matches!(m, ServerMessage::AuthOk { .. }).then_some(()))? {
            Some(()) => Ok(conn),
            None => bail!("connection closed before AUTH_OK"),
        }
    }

    fn send(&mut self, rid: u32, request: &ClientRequest<'_>) -> Result<()> {
        let mut out = Vec::new();
        encode_client(rid, 0, request, &mut out)?;
        self.stream.write_all(&out).context("write")
    }

    /// Reads frames until `pick` accepts one (`Some`), the read times out
    /// (`None`) or the connection fails.
    fn next<T>(&mut self, mut pick: impl FnMut(u32, &ServerMessage<'_>) -> Option<T>) -> Result<Option<T>> {
        loop {
            while let Peek::Complete(header) = peek_frame(&self.buf, u32::MAX)? {
                let len = header.len as usize;
                let picked = {
                    let frame = decode_server(&self.buf[..len])?;
                    if let ServerMessage::Error { code, message } = &frame.message {
                        let name = ErrorCode::from_u16(*code).map_or("unknown", ErrorCode::name);
                        bail!("server error {name}: {message}");
                    }
                    pick(frame.rid, &frame.message)
                };
                self.buf.drain(..len);
                if picked.is_some() {
                    return Ok(picked);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One sender's work: where it sends and what kind.
struct Route {
    user: String,
    kind: u8,
    to: String,
    receivers: usize,
}

#[derive(Default)]
struct Shared {
    sent_latency: Mutex<Latency>,
    delivery_latency: Mutex<Latency>,
    sends: AtomicU64,
    stored: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
    errors: Mutex<HashMap<String, u64>>,
}

/// Runs the chat scenario.
pub fn run(args: &ChatArgs) -> Result<Summary> {
    let common = &args.common;
    if common.target != Target::Corecast {
        bail!("chat runs against corecast only (the peers have no persistent messaging)");
    }
    let Some(secret) = &common.jwt_secret else {
        bail!("chat needs the server's JWT secret: --jwt-secret or CORECAST_JWT_SECRET");
    };
    if args.pairs + args.groups == 0 || (args.groups > 0 && args.group_size < 2) {
        bail!("nothing to do: give --pairs, or --groups with --group-size of at least 2");
    }
    let addr = common.addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7100)));
    let admin = Admin::new(common.control, common.admin_key.clone());
    let minter = TokenMinter::new(secret, 3600);
    let run_id = format!("chat{}", now_ns() % 1_000_000_000);

    let mut routes = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..args.pairs {
        let receiver = format!("{run_id}-r{i}");
        routes.push(Route { user: format!("{run_id}-s{i}"), kind: 2, to: receiver.clone(), receivers: 1 });
        receivers.push(receiver);
    }
    for g in 0..args.groups {
        let group = format!("{run_id}-g{g}");
        let sender = format!("{group}-m0");
        let members: Vec<String> =
            std::iter::once(sender.clone()).chain((1..args.group_size).map(|m| format!("{group}-m{m}"))).collect();
        admin.create_group(&group, &members)?;
        receivers.extend(members[1..].iter().cloned());
        routes.push(Route { user: sender, kind: 3, to: group, receivers: args.group_size - 1 });
    }

    let shared = Arc::new(Shared::default());
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(routes.len() + receivers.len() + 1));
    let started = Instant::now();
    let mut threads = Vec::new();
    for user in receivers.iter() {
        let token = minter.mint(user)?;
        let (shared, stop, ready) = (shared.clone(), stop_receiving.clone(), ready.clone());
        threads.push(std::thread::spawn(move || receive(addr, &token, &shared, &stop, &ready)));
    }
    for (id, route) in routes.into_iter().enumerate() {
        let token = minter.mint(&route.user)?;
        let (shared, stop, ready) = (shared.clone(), stop_sending.clone(), ready.clone());
        let (window, payload) = (args.window.max(1), args.payload);
        threads.push(std::thread::spawn(move || {
            send(addr, &token, &route, id as u32, window, payload, &shared, &stop, &ready)
        }));
    }
    ready.wait();
    let connected = started.elapsed();
    let before = (!common.server_pid.is_empty()).then(|| probe::sample(&common.server_pid)).transpose()?;
    let window_start = Instant::now();
    let admin_probe = (args.admin_probe_ms > 0 && common.admin_key.is_some()).then(|| {
        let (admin, stop, every) =
            (Admin::new(common.control, common.admin_key.clone()), stop_sending.clone(), args.admin_probe_ms);
        std::thread::spawn(move || time_admin_calls(&admin, &stop, Duration::from_millis(every)))
    });
    std::thread::sleep(Duration::from_secs_f64(args.duration_s));
    stop_sending.store(true, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    let admin_latency = match admin_probe.map(|probe| probe.join()) {
        None => None,
        Some(Ok(Ok(latency))) => latency.percentiles(),
        Some(Ok(Err(e))) => bail!("admin API probe: {e:#}"),
        Some(Err(_)) => bail!("admin API probe panicked"),
    };
    std::thread::sleep(Duration::from_secs_f64(args.drain_s));
    stop_receiving.store(true, Ordering::Relaxed);
    let after = (!common.server_pid.is_empty()).then(|| probe::sample(&common.server_pid)).transpose()?;
    let mut failed: HashMap<String, u64> = HashMap::new();
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => *failed.entry(format!("{e:#}")).or_default() += 1,
            Err(_) => *failed.entry("thread panicked".into()).or_default() += 1,
        }
    }

    let connections = (receivers.len() + args.pairs + args.groups) as u64;
    let stored = shared.stored.load(Ordering::Relaxed);
    let expected = shared.expected.load(Ordering::Relaxed);
    let received = shared.received.load(Ordering::Relaxed);
    let server_cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    let mut server_errors: std::collections::BTreeMap<String, u64> =
        shared.errors.lock().map_or_else(|_| Default::default(), |e| e.iter().map(|(k, v)| (k.clone(), *v)).collect());
    server_errors.extend(failed);
    Ok(Summary {
        scenario: "chat".into(),
        target: "corecast".into(),
        connections,
        connections_target: connections,
        duration_s: started.elapsed().as_secs_f64(),
        connect_rate_per_s: Some(connections as f64 / connected.as_secs_f64().max(1e-9)),
        deliveries_per_s: Some(received as f64 / window),
        deliveries_per_server_cpu_s: server_cpu_s.filter(|c| *c > 0.0).map(|c| received as f64 / c),
        latency_us: shared.delivery_latency.lock().ok().and_then(|l| l.percentiles()),
        sent_latency_us: shared.sent_latency.lock().ok().and_then(|l| l.percentiles()),
        admin_latency_us: admin_latency,
        stored_per_s: Some(stored as f64 / window),
        lost: Some(expected.saturating_sub(received)),
        published: Some(shared.sends.load(Ordering::Relaxed)),
        expected: Some(expected),
        received: Some(received),
        window_s: Some(window),
        server_cpu_s,
        server_errors,
        server_rss_bytes: after.map(|a| a.rss_bytes),
        workers: 1,
        ..Summary::default()
    })
}

/// Times `GET /v1/admin/online` (it asks every shard) every `every` until
/// `stop`.
fn time_admin_calls(admin: &Admin, stop: &AtomicBool, every: Duration) -> Result<Latency> {
    let mut latency = Latency::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        admin.get("/v1/admin/online")?;
        latency.record(started.elapsed().as_nanos() as u64);
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    Ok(latency)
}

/// A sender: keeps `window` SENDs in flight until told to stop, then waits
/// for the SENTs still owed.
#[allow(clippy::too_many_arguments)]
fn send(
    addr: SocketAddr,
    token: &str,
    route: &Route,
    id: u32,
    window: usize,
    payload_len: usize,
    shared: &Shared,
    stop: &AtomicBool,
    ready: &Barrier,
) -> Result<()> {
    let connected = ChatConn::open(addr, token);
    ready.wait();
    let mut conn = connected?;
    conn.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut payload = filler(payload_len);
    let mut in_flight: HashMap<u32, u64> = HashMap::new();
    let mut next_seq = 1u64;
    let mut latency = Latency::new();
    loop {
        while !stop.load(Ordering::Relaxed) && in_flight.len() < window {
            let sent_ns = now_ns();
            Stamp { sent_ns, publisher: id, seq: next_seq }.write_into(&mut payload);
            let rid = next_seq as u32;
            let request =
                ClientRequest::Send { kind: route.kind, to: &route.to, client_msg_id: next_seq, payload: &payload };
            conn.send(rid, &request)?;
            in_flight.insert(rid, sent_ns);
            next_seq += 1;
            shared.sends.fetch_add(1, Ordering::Relaxed);
        }
        if in_flight.is_empty() {
            break;
        }
        let answered = conn.next(|rid, m| match m {
            ServerMessage::Sent { .. } => Some(rid),
            _ => None,
        });
        match answered {
            Ok(Some(rid)) => {
                let Some(sent_ns) = in_flight.remove(&rid) else { bail!("SENT for unknown rid {rid}") };
                latency.record(now_ns().saturating_sub(sent_ns));
                shared.stored.fetch_add(1, Ordering::Relaxed);
                shared.expected.fetch_add(route.receivers as u64, Ordering::Relaxed);
            }
            Ok(None) => bail!("no SENT within 5 s"),
            Err(e) => {
                *shared.errors.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.entry(format!("{e:#}")).or_default() +=
                    1;
                return Err(e);
            }
        }
    }
    if let Ok(mut shared_latency) = shared.sent_latency.lock() {
        shared_latency.add_pairs(&latency.to_pairs());
    }
    Ok(())
}

/// A receiver: counts and times every stored-message PUSH until told to stop.
fn receive(addr: SocketAddr, token: &str, shared: &Shared, stop: &AtomicBool, ready: &Barrier) -> Result<()> {
    let connected = ChatConn::open(addr, token);
    ready.wait();
    let mut conn = connected?;
    conn.stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut latency = Latency::new();
    let mut received = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let push = conn.next(|_, m| match m {
            ServerMessage::Push { kind: PushKind::Direct | PushKind::Group, payload, .. } => Stamp::read(payload),
            _ => None,
        })?;
        if let Some(stamp) = push {
            latency.record(now_ns().saturating_sub(stamp.sent_ns));
            received += 1;
        }
    }
    shared.received.fetch_add(received, Ordering::Relaxed);
    if let Ok(mut shared_latency) = shared.delivery_latency.lock() {
        shared_latency.add_pairs(&latency.to_pairs());
    }
    Ok(())
}
