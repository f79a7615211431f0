//! Test harness: starts the real `corecast-server` binary on free loopback
//! ports and speaks the wire protocol to it over real sockets.
#![allow(dead_code)]

pub mod chat_load;
pub mod cluster;
pub mod https;
pub mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use corecast_testkit::ports::{free_port, free_ports, StderrWatch};

use corecast_proto::{decode_server, encode_client, peek_frame, ClientRequest, Peek, PushKind, ServerMessage};

pub const JWT_SECRET: &str = "integration-test-secret-0123456789";
pub const ADMIN_KEY: &str = "integration-admin-key-0123456789";
/// Generous bound on any single wait, so a broken server fails a test
/// instead of hanging it. Not a performance assertion.
pub const WAIT: Duration = Duration::from_secs(20);

/// A fresh directory for one server's message store, removed when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> DataDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("corecast-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a server process runs: the address its listeners bind, and the
/// network namespace it runs in (through `ip netns exec`), if not the
/// test's own.
#[derive(Debug, Clone)]
pub struct Host {
    pub ip: IpAddr,
    pub netns: Option<String>,
}

impl Host {
    /// 127.0.0.1 in the test's own network namespace.
    pub fn loopback() -> Host {
        Host { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), netns: None }
    }
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub control: SocketAddr,
    /// WebSocket listener.
    pub ws: SocketAddr,
    /// Public HTTP listener (demo page, HTTP fallback).
    pub web: SocketAddr,
    /// Whether the control plane speaks only HTTPS (with the test
    /// certificate).
    pub control_tls: bool,
    /// The store directory, when this server owns it.
    _data: Option<DataDir>,
}

impl Server {
    /// Starts the server with two shards, a fresh store and the given extra
    /// flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_on(&Host::loopback(), extra)
    }

    /// As [`Server::start`], with every listener on `host`.
    pub fn start_on(host: &Host, extra: &[&str]) -> Server {
        let data = DataDir::new();
        let mut server = Server::launch(host, &data.0, None, extra, false);
        server._data = Some(data);
        server
    }

    /// As [`Server::start`], with the control plane on HTTPS only, serving
    /// the test certificate (`tests/keys/tls_cert.pem`).
    pub fn start_with_control_tls(extra: &[&str]) -> Server {
        let data = DataDir::new();
        let mut server = Server::launch(&Host::loopback(), &data.0, None, extra, true);
        server._data = Some(data);
        server
    }

    /// Starts the server on `port` with its store in `dir` (kept when the
    /// server stops, for restart tests).
    pub fn start_in(dir: &Path, port: u16, extra: &[&str]) -> Server {
        Server::launch(&Host::loopback(), dir, Some(port), extra, false)
    }

    /// Starts the server on `host`, on `port` (a free one when `None`) and
    /// fresh ports for its other listeners; again on fresh ports when one
    /// was taken before the server could bind it.
    fn launch(host: &Host, dir: &Path, port: Option<u16>, extra: &[&str], control_tls: bool) -> Server {
        const ATTEMPTS: usize = 3;
        let mut extra = extra.to_vec();
        let control_tls_config = dir.join("control-tls.toml");
        if control_tls {
            let (cert, key) = (https::key("tls_cert.pem"), https::key("tls_key.pem"));
            let body = format!("control_tls_cert_file = {cert:?}\ncontrol_tls_key_file = {key:?}\n");
            std::fs::write(&control_tls_config, body).unwrap();
            extra.extend(["--config", control_tls_config.to_str().unwrap()]);
        }
        for attempt in 1..=ATTEMPTS {
            let ports = free_ports(3);
            let at = |port: u16| SocketAddr::new(host.ip, port);
            let (addr, control, ws, web) =
                (at(port.unwrap_or_else(free_port)), at(ports[0]), at(ports[1]), at(ports[2]));
            let binary = env!("CARGO_BIN_EXE_corecast-server");
            let mut cmd = match &host.netns {
                Some(netns) => {
                    let mut cmd = Command::new("ip");
                    cmd.args(["netns", "exec", netns, binary]);
                    cmd
                }
                None => Command::new(binary),
            };
            cmd.args(["--listen", &addr.to_string(), "--control-listen", &control.to_string(), "--shards", "2"])
                .args(["--ws-listen", &ws.to_string(), "--web-listen", &web.to_string()])
                .arg("--data-dir")
                .arg(dir)
                .args(&extra)
                .env("CORECAST_JWT_SECRET", JWT_SECRET)
                .env("CORECAST_ADMIN_KEY", ADMIN_KEY)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("start corecast-server");
            let log = StderrWatch::new(&mut child);
            let mut server = Server { child, addr, control, ws, web, control_tls, _data: None };
            let Err(status) = server.wait_healthy() else { return server };
            if !log.port_was_taken() || attempt == ATTEMPTS {
                panic!("server exited at start ({status}); its log is above");
            }
            let _ = writeln!(std::io::stderr(), "a port was taken before the server bound it: starting again");
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until the server answers; its exit status if it exits first.
    fn wait_healthy(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if self.control_get("/health").is_ok_and(|(status, _)| status == 200)
                && TcpStream::connect(self.addr).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy");
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A connected, authenticated client for `user`.
    pub fn user(&self, user: &str) -> (Client, AuthOk) {
        let mut client = self.connect();
        let ok = client.auth(&token(user, 3600, None));
        (client, ok)
    }

    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        let mut resp = ureq::get(&format!("http://{}{}", self.control, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .call()
            .expect("admin GET");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// `GET path` on the admin API whatever the status: status and JSON body.
    pub fn admin_get_status(&self, path: &str) -> (u16, serde_json::Value) {
        let mut resp = ureq::get(&format!("http://{}{}", self.control, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("admin GET");
        (resp.status().as_u16(), serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap())
    }

    pub fn admin_post(&self, path: &str, body: &[u8]) -> serde_json::Value {
        let mut resp = ureq::post(&format!("http://{}{}", self.control, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .send(body)
            .expect("admin POST");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn admin_post_json(&self, path: &str, body: &str) -> serde_json::Value {
        let mut resp = ureq::post(&format!("http://{}{}", self.control, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("admin POST");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// `GET path` on the control plane (HTTPS when it speaks only that):
    /// status and body.
    pub fn control_get(&self, path: &str) -> Result<(u16, String), String> {
        if self.control_tls {
            return https::get(self.control, path);
        }
        let mut resp = ureq::get(&format!("http://{}{path}", self.control)).call().map_err(|e| e.to_string())?;
        Ok((resp.status().as_u16(), resp.body_mut().read_to_string().map_err(|e| e.to_string())?))
    }

    pub fn metrics(&self) -> String {
        self.control_get("/metrics").expect("GET /metrics").1
    }

    /// Sum of a metric over all its label sets.
    pub fn metric_sum(&self, name: &str) -> f64 {
        sum_metric(&self.metrics(), name)
    }

    /// The node's `/health` answer.
    pub fn health(&self) -> serde_json::Value {
        serde_json::from_str(&self.control_get("/health").expect("GET /health").1).unwrap()
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of metric `name` over all its label sets in a Prometheus text page.
pub fn sum_metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A token signed with the test secret.
pub fn token(user: &str, ttl_secs: i64, rooms: Option<Vec<&str>>) -> String {
    token_with_secret(JWT_SECRET, user, ttl_secs, rooms)
}

pub fn token_with_secret(secret: &str, user: &str, ttl_secs: i64, rooms: Option<Vec<&str>>) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut claims = serde_json::json!({ "sub": user, "exp": now + ttl_secs });
    if let Some(rooms) = rooms {
        claims["rooms"] = serde_json::json!(rooms);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An owned copy of a server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    AuthOk(AuthOk),
    Pong {
        rid: u32,
    },
    Ok {
        rid: u32,
    },
    Push(Push),
    Close {
        code: u16,
        reason: String,
        reconnect_after_ms: u32,
    },
    Error {
        rid: u32,
        code: u16,
        message: String,
    },
    Sent {
        rid: u32,
        conv: String,
        seq: u64,
    },
    SyncEnd {
        rid: u32,
        conv: String,
        last_seq: u64,
        more: bool,
        visible_seq: u64,
    },
    /// (conv, last_seq, read_seq) entries.
    Unread {
        rid: u32,
        entries: Vec<(String, u64, u64)>,
        more: bool,
    },
    Joined {
        rid: u32,
        room: String,
        position: u64,
        recovered: bool,
    },
    HistoryEnd {
        rid: u32,
        room: String,
        position: u64,
        complete: bool,
    },
    /// (user, devices) entries.
    Presence {
        rid: u32,
        users: u32,
        conns: u32,
        entries: Vec<(String, u16)>,
        next: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk {
    pub conn_id: u64,
    pub shard: u16,
    pub heartbeat_ms: u32,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub rid: u32,
    pub kind: PushKind,
    pub conv: String,
    pub from: String,
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What a read found.
#[derive(Debug)]
pub enum Received {
    Frame(Reply),
    /// The server closed the connection.
    Eof,
    /// Nothing arrived within the timeout.
    Timeout,
}

/// A blocking wire-protocol client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    next_rid: u32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new(), next_rid: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a request; false once the server has closed the connection.
    pub fn try_send(&mut self, flags: u16, request: &ClientRequest<'_>) -> bool {
        let mut out = Vec::new();
        encode_client(0, flags, request, &mut out).unwrap();
        self.stream.write_all(&out).is_ok()
    }

    /// Sends a request with a fresh rid and returns the rid.
    pub fn send(&mut self, flags: u16, request: &ClientRequest<'_>) -> u32 {
        self.try_request(flags, request).expect("write")
    }

    /// As [`Client::send`], but `None` once the connection is gone (or a
    /// write timeout set on the stream expired).
    pub fn try_request(&mut self, flags: u16, request: &ClientRequest<'_>) -> Option<u32> {
        let rid = self.next_rid;
        self.next_rid += 1;
        let mut out = Vec::new();
        encode_client(rid, flags, request, &mut out).unwrap();
        self.stream.write_all(&out).ok().map(|()| rid)
    }

    /// Reads the next frame, waiting at most `timeout`.
    pub fn recv_within(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Peek::Complete(h)) = peek_frame(&self.buf, u32::MAX) {
                let frame: Vec<u8> = self.buf.drain(..h.len as usize).collect();
                return Received::Frame(to_reply(&frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Received::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Received::Timeout,
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                    return Received::Eof
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next frame; panics on EOF or after [`WAIT`].
    pub fn recv(&mut self) -> Reply {
        match self.recv_within(WAIT) {
            Received::Frame(reply) => reply,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until EOF, returning every frame seen on the way.
    pub fn recv_until_eof(&mut self) -> Vec<Reply> {
        let mut frames = Vec::new();
        loop {
            match self.recv_within(WAIT) {
                Received::Frame(reply) => frames.push(reply),
                Received::Eof => return frames,
                Received::Timeout => panic!("connection not closed; frames so far: {frames:?}"),
            }
        }
    }

    pub fn auth(&mut self, token: &str) -> AuthOk {
        self.auth_device(token, "")
    }

    /// AUTH as a named device (its read cursors are its own).
    pub fn auth_device(&mut self, token: &str, device: &str) -> AuthOk {
        self.send(0, &ClientRequest::Auth { token, device });
        match self.recv() {
            Reply::AuthOk(ok) => ok,
            other => panic!("expected AUTH_OK, got {other:?}"),
        }
    }

    /// Sends a request and expects OK for it.
    pub fn expect_ok(&mut self, request: &ClientRequest<'_>) {
        let rid = self.send(0, request);
        match self.recv() {
            Reply::Ok { rid: got } => assert_eq!(got, rid),
            other => panic!("expected OK for rid {rid}, got {other:?}"),
        }
    }

    pub fn join(&mut self, room: &str) {
        self.expect_ok(&ClientRequest::Join { room, since: 0 });
    }

    pub fn next_push(&mut self) -> Push {
        match self.recv() {
            Reply::Push(push) => push,
            other => panic!("expected PUSH, got {other:?}"),
        }
    }
}

fn to_reply(frame: &[u8]) -> Reply {
    let decoded = decode_server(frame).expect("server sent an undecodable frame");
    let rid = decoded.rid;
    match decoded.message {
        ServerMessage::AuthOk { conn_id, shard, heartbeat_ms, user } => {
            Reply::AuthOk(AuthOk { conn_id, shard, heartbeat_ms, user: user.into() })
        }
        ServerMessage::Pong => Reply::Pong { rid },
        ServerMessage::Ok => Reply::Ok { rid },
        ServerMessage::Push { kind, conv, from, seq, payload, .. } => {
            Reply::Push(Push { rid, kind, conv: conv.into(), from: from.into(), seq, payload: payload.to_vec() })
        }
        ServerMessage::Close { code, reason, reconnect_after_ms } => {
            Reply::Close { code, reason: reason.into(), reconnect_after_ms }
        }
        ServerMessage::Error { code, message } => Reply::Error { rid, code, message: message.into() },
        ServerMessage::Sent { conv, seq, .. } => Reply::Sent { rid, conv: conv.into(), seq },
        ServerMessage::SyncEnd { conv, last_seq, more, visible_seq } => {
            Reply::SyncEnd { rid, conv: conv.into(), last_seq, more, visible_seq }
        }
        ServerMessage::UnreadList { entries, more } => Reply::Unread {
            rid,
            entries: entries.iter().map(|e| (e.conv.to_string(), e.last_seq, e.read_seq)).collect(),
            more,
        },
        ServerMessage::Joined { room, position, recovered } => {
            Reply::Joined { rid, room: room.into(), position, recovered }
        }
        ServerMessage::HistoryEnd { room, position, complete } => {
            Reply::HistoryEnd { rid, room: room.into(), position, complete }
        }
        ServerMessage::PresenceList { users, conns, entries, next, .. } => Reply::Presence {
            rid,
            users,
            conns,
            entries: entries.iter().map(|e| (e.user.to_string(), e.devices)).collect(),
            next: next.into(),
        },
    }
}

/// SENDs until it is acknowledged, resending the same client message id
/// after `unavailable` (a router went away, Redis failed over). Returns (conv, seq).
pub fn send_acked(client: &mut Client, kind: u8, to: &str, client_msg_id: u64, payload: &[u8]) -> (String, u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "message {client_msg_id} was never acknowledged");
        let rid = client.send(0, &ClientRequest::Send { kind, to, client_msg_id, payload });
        loop {
            match client.recv() {
                Reply::Sent { rid: got, conv, seq } if got == rid => return (conv, seq),
                Reply::Error { rid: got, code, .. }
                    if got == rid && code == corecast_proto::ErrorCode::Unavailable.as_u16() =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
                Reply::Push(_) => continue,
                other => panic!("expected SENT for rid {rid}, got {other:?}"),
            }
        }
    }
}
