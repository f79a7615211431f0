//! TLS against the real server: a rustls client completes the handshake
//! (checking the server's certificate), authenticates, joins and receives a
//! published message over TLS; a plain-TCP client gets nothing and does not
//! disturb the TLS clients; the certificate is replaced without a restart
//! (admin call and SIGHUP), a bad file changes nothing; WebSocket over TLS
//! (wss) on the WebSocket port; the public HTTP listener speaks HTTPS and
//! its fallback gateway works through the node's TLS listener. The shard
//! drives TLS connections from its readiness set like plain ones: 200 TLS
//! clients at once each get every room message exactly once; a burst to a
//! client that reads slowly at first (the socket full, rustls holding the
//! rest) arrives whole and in order; a client that never completes its
//! handshake is closed by the authentication deadline; one that sends
//! garbage instead of a ClientHello is closed and disturbs nobody; a
//! server-side close ends with close_notify.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::https::key;
use common::{token, DataDir, Server};
use corecast_proto::server::op;
use corecast_proto::{
    decode_server, encode_client, peek_frame, ClientRequest, Peek, PushKind, ServerMessage, PUBLISH_EXCLUDE_SELF,
    PUBLISH_NO_REPLY,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

fn tls_server() -> (Server, DataDir) {
    tls_server_with(&key("tls_cert.pem"), &key("tls_key.pem"))
}

fn tls_server_with(cert: &std::path::Path, private_key: &std::path::Path) -> (Server, DataDir) {
    tls_server_configured(cert, private_key, "")
}

/// A TLS server with the test certificate and `extra` configuration lines.
fn tls_server_with_config(extra: &str) -> (Server, DataDir) {
    tls_server_configured(&key("tls_cert.pem"), &key("tls_key.pem"), extra)
}

fn tls_server_configured(cert: &std::path::Path, private_key: &std::path::Path, extra: &str) -> (Server, DataDir) {
    let dir = DataDir::new();
    let config = dir.0.join("tls.toml");
    let body = format!("tls_cert_file = {cert:?}\ntls_key_file = {private_key:?}\n{extra}");
    std::fs::write(&config, body).unwrap();
    (Server::start(&["--config", config.to_str().unwrap()]), dir)
}

/// A blocking TLS client that trusts only the test certificate.
struct TlsClient {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    fn connect(server: &Server) -> TlsClient {
        TlsClient::connect_to(server.addr)
    }

    fn connect_to(addr: std::net::SocketAddr) -> TlsClient {
        TlsClient::over(TcpStream::connect(addr).unwrap())
    }

    /// A TLS client over an already connected socket.
    fn over(tcp: TcpStream) -> TlsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(key("tls_ca.pem")).unwrap()).unwrap();
        roots.add(CertificateDer::from_pem_file(key("tls_ca_2.pem")).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        tcp.set_read_timeout(Some(common::WAIT)).unwrap();
        TlsClient { tls: rustls::StreamOwned::new(conn, tcp), buf: Vec::new() }
    }

    /// Completes the handshake and returns the certificate the server showed.
    fn server_certificate(&mut self) -> CertificateDer<'static> {
        while self.tls.conn.is_handshaking() {
            self.tls.conn.complete_io(&mut self.tls.sock).expect("TLS handshake");
        }
        self.tls.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned()
    }

    fn send(&mut self, request: &ClientRequest<'_>) {
        self.send_flagged(0, request);
    }

    fn send_flagged(&mut self, flags: u16, request: &ClientRequest<'_>) {
        let mut out = Vec::new();
        encode_client(1, flags, request, &mut out).unwrap();
        self.tls.write_all(&out).unwrap();
    }

    /// Authenticates as `user` and joins `room`.
    fn auth_and_join(&mut self, user: &str, room: &str) {
        self.send(&ClientRequest::Auth { token: &token(user, 600, None), device: "" });
        assert_eq!(self.recv().0, op::AUTH_OK);
        self.send(&ClientRequest::Join { room, since: 0 });
        assert_eq!(self.recv().0, op::OK);
    }

    /// The payloads of the room pushes that arrive before the answer to a
    /// PING sent now: everything queued to this client before it.
    fn pushes_until_pong(&mut self) -> Vec<Vec<u8>> {
        self.send(&ClientRequest::Ping);
        let mut pushes = Vec::new();
        loop {
            match self.recv() {
                (op::PONG, _) => return pushes,
                (_, Some((PushKind::Room, payload))) => pushes.push(payload),
                (other, _) => panic!("unexpected frame op {other}"),
            }
        }
    }

    /// The next frame's op and, for a PUSH, its kind and payload.
    fn recv(&mut self) -> (u8, Option<(PushKind, Vec<u8>)>) {
        loop {
            if let Ok(Peek::Complete(h)) = peek_frame(&self.buf, u32::MAX) {
                let frame: Vec<u8> = self.buf.drain(..h.len as usize).collect();
                let decoded = decode_server(&frame).unwrap();
                let push = match decoded.message {
                    ServerMessage::Push { kind, payload, .. } => Some((kind, payload.to_vec())),
                    _ => None,
                };
                return (decoded.message.op(), push);
            }
            let mut chunk = [0u8; 4096];
            let n = self.tls.read(&mut chunk).expect("TLS read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn tls_handshake_auth_join_publish_and_receive() {
    let (server, _dir) = tls_server();
    let mut alice = TlsClient::connect(&server);
    let mut bob = TlsClient::connect(&server);
    for (client, user) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        client.send(&ClientRequest::Auth { token: &token(user, 600, None), device: "" });
        assert_eq!(client.recv().0, corecast_proto::server::op::AUTH_OK);
        client.send(&ClientRequest::Join { room: "secure", since: 0 });
        assert_eq!(client.recv().0, corecast_proto::server::op::OK);
    }
    alice.send(&ClientRequest::Publish { room: "secure", payload: b"over tls" });
    for client in [&mut alice, &mut bob] {
        let push = loop {
            if let (_, Some(push)) = client.recv() {
                break push;
            }
        };
        assert_eq!(push, (PushKind::Room, b"over tls".to_vec()));
    }
}

#[test]
fn plain_tcp_to_a_tls_port_gets_no_protocol_and_others_are_unaffected() {
    let (server, _dir) = tls_server();
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut auth = Vec::new();
    encode_client(1, 0, &ClientRequest::Auth { token: &token("mallory", 600, None), device: "" }, &mut auth).unwrap();
    plain.write_all(&auth).unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(peek_frame(&reply, u32::MAX).map_or(true, |p| !matches!(p, Peek::Complete(_))), "{reply:?}");
    let mut ok = TlsClient::connect(&server);
    ok.send(&ClientRequest::Auth { token: &token("carol", 600, None), device: "" });
    assert_eq!(ok.recv().0, corecast_proto::server::op::AUTH_OK);
    assert!(server.metric_sum("corecast_tls_handshake_failures_total") >= 1.0);
}

#[test]
fn the_certificate_is_replaced_without_a_restart_and_a_bad_one_is_refused() {
    let files = DataDir::new();
    let (cert, private_key) = (files.0.join("cert.pem"), files.0.join("key.pem"));
    let install = |name: &str, key_name: &str| {
        std::fs::copy(key(name), &cert).unwrap();
        std::fs::copy(key(key_name), &private_key).unwrap();
    };
    let der = |name: &str| CertificateDer::from_pem_file(key(name)).unwrap();
    install("tls_cert.pem", "tls_key.pem");
    let (server, _dir) = tls_server_with(&cert, &private_key);
    let mut early = TlsClient::connect(&server);
    assert_eq!(early.server_certificate(), der("tls_cert.pem"));
    early.send(&ClientRequest::Auth { token: &token("early", 600, None), device: "" });
    assert_eq!(early.recv().0, corecast_proto::server::op::AUTH_OK);

    // Through the admin API.
    install("tls_cert_2.pem", "tls_key_2.pem");
    assert_eq!(server.admin_post("/v1/admin/tls/reload", b"")["reloaded"], true);
    assert_eq!(TlsClient::connect(&server).server_certificate(), der("tls_cert_2.pem"));
    // The connection made before keeps working.
    early.send(&ClientRequest::Ping);
    assert_eq!(early.recv().0, corecast_proto::server::op::PONG);

    // A certificate that does not match its key is refused; nothing changes.
    std::fs::copy(key("tls_cert.pem"), &cert).unwrap();
    let refused = ureq::post(&format!("http://{}/v1/admin/tls/reload", server.control))
        .header("Authorization", &format!("Bearer {}", common::ADMIN_KEY))
        .send(&b""[..]);
    assert!(refused.is_err(), "a mismatched key must be refused");
    assert_eq!(TlsClient::connect(&server).server_certificate(), der("tls_cert_2.pem"));

    // Through SIGHUP.
    install("tls_cert.pem", "tls_key.pem");
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + common::WAIT;
    while TlsClient::connect(&server).server_certificate() != der("tls_cert.pem") {
        assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload the certificate");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn websocket_over_tls() {
    let (server, _dir) = tls_server();
    let tls = TlsClient::connect_to(server.ws).tls;
    let url = format!("wss://localhost:{}/ws", server.ws.port());
    let (mut ws, _) = tungstenite::client(url, tls).expect("wss handshake");
    let mut auth = Vec::new();
    encode_client(1, 0, &ClientRequest::Auth { token: &token("secure", 600, None), device: "" }, &mut auth).unwrap();
    ws.send(tungstenite::Message::binary(auth)).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Binary(bytes) => {
            assert_eq!(decode_server(&bytes).unwrap().message.op(), corecast_proto::server::op::AUTH_OK)
        }
        other => panic!("expected AUTH_OK in a binary message, got {other:?}"),
    }
}

/// Sends one HTTP/1.1 request over TLS to the node's public listener and
/// returns the stream, positioned after the response head, and the status.
fn https_request(server: &Server, request: &str, body: &[u8]) -> (BufReader<TlsClient>, u16) {
    let mut client = TlsClient::connect_to(server.web);
    client.tls.write_all(request.as_bytes()).unwrap();
    client.tls.write_all(body).unwrap();
    let mut reader = BufReader::new(client);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status line");
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim_end().is_empty() {
            return (reader, status);
        }
    }
}

impl Read for TlsClient {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.tls.read(out)
    }
}

#[test]
fn the_demo_and_the_http_fallback_speak_https_on_a_tls_node() {
    use base64::Engine;
    let (server, _dir) = tls_server();
    let (mut config, status) =
        https_request(&server, "GET /demo/config HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", b"");
    assert_eq!(status, 200);
    let mut body = Vec::new();
    let _ = config.read_to_end(&mut body); // a close without close_notify is not the test's concern
    let config: serde_json::Value = serde_json::from_slice(&body).expect("the demo config as JSON");
    assert!(config["sse_url"].as_str().unwrap().starts_with("https://"), "{config}");
    assert!(config["ws_url"].as_str().unwrap().starts_with("wss://"), "{config}");

    // An SSE receiver over HTTPS: the gateway reaches the shards over TLS.
    let sse = format!("GET /v1/sse?token={} HTTP/1.1\r\nHost: localhost\r\n\r\n", token("sse-user", 600, None));
    let (mut events, status) = https_request(&server, &sse, b"");
    assert_eq!(status, 200);
    let mut next_event = move || -> (String, Vec<u8>) {
        let mut name = String::new();
        loop {
            let mut line = String::new();
            assert!(events.read_line(&mut line).unwrap() > 0, "event stream closed");
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                let bytes = if name == "session" {
                    data.as_bytes().to_vec()
                } else {
                    base64::engine::general_purpose::STANDARD.decode(data).unwrap()
                };
                return (name.clone(), bytes);
            }
        }
    };
    let (name, session) = next_event();
    assert_eq!(name, "session");
    let session = String::from_utf8(session).unwrap();
    assert_eq!(next_event().1[5], corecast_proto::server::op::AUTH_OK);
    let mut join = Vec::new();
    encode_client(2, 0, &ClientRequest::Join { room: "secure-sse", since: 0 }, &mut join).unwrap();
    let post = format!(
        "POST /v1/send?session={session} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        join.len()
    );
    assert_eq!(https_request(&server, &post, &join).1, 204);
    assert_eq!(next_event().1[5], corecast_proto::server::op::OK);

    let mut publisher = TlsClient::connect(&server);
    publisher.send(&ClientRequest::Auth { token: &token("publisher", 600, None), device: "" });
    assert_eq!(publisher.recv().0, corecast_proto::server::op::AUTH_OK);
    publisher.send(&ClientRequest::Join { room: "secure-sse", since: 0 });
    assert_eq!(publisher.recv().0, corecast_proto::server::op::OK);
    publisher.send(&ClientRequest::Publish { room: "secure-sse", payload: b"hello over https" });
    let (name, frame) = next_event();
    assert_eq!(name, "frame");
    match decode_server(&frame).unwrap().message {
        ServerMessage::Push { kind, payload, .. } => {
            assert_eq!((kind, payload), (PushKind::Room, &b"hello over https"[..]))
        }
        other => panic!("expected a PUSH, got {other:?}"),
    }
}

#[test]
fn many_tls_clients_at_once_each_get_every_room_message_exactly_once() {
    const CLIENTS: usize = 200;
    const MESSAGES: usize = 5;
    // Not a test of the authentication deadline: 200 handshakes at once on
    // a busy machine may take a while.
    let (server, _dir) = tls_server_with_config("auth_timeout_ms = 60000\n");
    let expected: Vec<Vec<u8>> = (0..MESSAGES).map(|i| format!("crowd message {i}").into_bytes()).collect();
    let (joined_tx, joined_rx) = mpsc::channel();
    // Every client connects, handshakes, authenticates and joins at the
    // same time as the others, each on its own thread.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, joined_tx, expected) = (server.addr, joined_tx.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut client = TlsClient::connect_to(addr);
                client.auth_and_join(&format!("crowd-{i}"), "crowd");
                joined_tx.send(()).unwrap();
                let mut pushes = Vec::new();
                while pushes.len() < expected.len() {
                    match client.recv() {
                        (_, Some((PushKind::Room, payload))) => pushes.push(payload),
                        (other, _) => panic!("client {i}: unexpected frame op {other}"),
                    }
                }
                // Anything sent twice would come before the PONG.
                pushes.extend(client.pushes_until_pong());
                assert_eq!(pushes, expected, "client {i}");
            })
        })
        .collect();
    drop(joined_tx);
    for _ in 0..CLIENTS {
        joined_rx.recv_timeout(common::WAIT).expect("every client authenticated and joined");
    }
    let mut publisher = TlsClient::connect(&server);
    publisher.auth_and_join("crowd-publisher", "crowd");
    for payload in &expected {
        publisher
            .send_flagged(PUBLISH_EXCLUDE_SELF | PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "crowd", payload });
    }
    assert!(publisher.pushes_until_pong().is_empty());
    for (i, client) in clients.into_iter().enumerate() {
        if let Err(panic) = client.join() {
            panic!("client {i} failed: {panic:?}");
        }
    }
}

/// Payload `i` of a burst: its index, then a byte pattern of its own.
fn burst_payload(i: usize, len: usize) -> Vec<u8> {
    let mut payload = (i as u32).to_be_bytes().to_vec();
    payload.extend((0..len - 4).map(|j| (i + j) as u8));
    payload
}

#[test]
fn a_burst_to_a_slow_tls_reader_arrives_whole_and_in_order() {
    // 8 MiB for one client: more than the loopback socket buffers hold
    // (the client's receive buffer is made small), so the server's socket
    // fills, rustls keeps what it could not send and the core keeps the
    // rest, under limits raised so that nothing is dropped.
    const FRAMES: usize = 512;
    const PAYLOAD: usize = 16 * 1024;
    let (server, _dir) = tls_server_with_config(
        "outbound_queue_bytes = 33554432\nslow_consumer_grace_ms = 60000\n\
         publish_bytes_per_sec = 67108864\npublish_bytes_burst = 67108864\n",
    );
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut slow = TlsClient::over(socket.into());
    slow.auth_and_join("slow-reader", "burst");

    let mut publisher = TlsClient::connect(&server);
    publisher.auth_and_join("burst-publisher", "burst");
    for i in 0..FRAMES {
        let payload = burst_payload(i, PAYLOAD);
        publisher.send_flagged(
            PUBLISH_EXCLUDE_SELF | PUBLISH_NO_REPLY,
            &ClientRequest::Publish { room: "burst", payload: &payload },
        );
    }
    // The server has taken every PUBLISH once it answers the PING.
    assert!(publisher.pushes_until_pong().is_empty());

    let mut received = Vec::new();
    // Slowly at first, then as fast as it comes.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(100));
        match slow.recv() {
            (_, Some((PushKind::Room, payload))) => received.push(payload),
            (other, _) => panic!("unexpected frame op {other}"),
        }
    }
    while received.len() < FRAMES {
        match slow.recv() {
            (_, Some((PushKind::Room, payload))) => received.push(payload),
            (other, _) => panic!("unexpected frame op {other}"),
        }
    }
    received.extend(slow.pushes_until_pong());
    assert_eq!(received.len(), FRAMES, "frames missing or repeated");
    for (i, payload) in received.iter().enumerate() {
        assert!(*payload == burst_payload(i, PAYLOAD), "frame {i} is not the {i}th published, or is damaged");
    }
}

/// Waits until the node's `name` counter reaches `at_least`; its value.
fn wait_for_counter(server: &Server, name: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let value = server.metric_sum(name);
        if value >= at_least {
            return value;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}, expected at least {at_least}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The count of server-initiated closes with `code`.
fn closes_with(server: &Server, code: &str) -> f64 {
    let label = format!("code=\"{code}\"");
    server
        .metrics()
        .lines()
        .filter(|line| line.starts_with("corecast_server_closes_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads until the server closes `socket`; what it sent. Fails if the
/// connection is still open after the harness's generous wait.
fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    socket.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match socket.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

/// The first bytes a TLS client sends (its ClientHello).
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn a_tls_handshake_that_never_completes_is_closed_by_the_authentication_deadline() {
    let (server, _dir) = tls_server_with_config("auth_timeout_ms = 300\ntimer_tick_ms = 50\nclose_linger_ms = 200\n");
    // The harness's readiness probe connected and left mid-handshake.
    let failures = wait_for_counter(&server, "corecast_tls_handshake_failures_total", 1.0);
    let deadline_closes = closes_with(&server, "not_authenticated");
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    let hello = client_hello();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    assert!(read_until_closed(&mut silent).is_empty(), "nothing is sent before a ClientHello");
    read_until_closed(&mut stalled);
    wait_for_counter(&server, "corecast_tls_handshake_failures_total", failures + 2.0);
    assert!(closes_with(&server, "not_authenticated") >= deadline_closes + 2.0, "closed by the auth deadline");
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_and_others_are_unaffected() {
    let (server, _dir) = tls_server();
    let mut before = TlsClient::connect(&server);
    before.auth_and_join("before-garbage", "calm");
    let failures = wait_for_counter(&server, "corecast_tls_handshake_failures_total", 1.0);

    // Not TLS at all, and a handshake record whose contents are not a
    // ClientHello.
    let mut not_tls = TcpStream::connect(server.addr).unwrap();
    not_tls.write_all(&[0xAB; 64]).unwrap();
    let mut bad_record = TcpStream::connect(server.addr).unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x20];
    record.extend([0xEE; 32]);
    bad_record.write_all(&record).unwrap();
    read_until_closed(&mut not_tls);
    read_until_closed(&mut bad_record);
    wait_for_counter(&server, "corecast_tls_handshake_failures_total", failures + 2.0);

    let mut after = TlsClient::connect(&server);
    after.auth_and_join("after-garbage", "calm");
    before.send_flagged(
        PUBLISH_EXCLUDE_SELF | PUBLISH_NO_REPLY,
        &ClientRequest::Publish { room: "calm", payload: b"still here" },
    );
    // The two may be on different shards: wait for the push, then make
    // sure nothing else came.
    assert_eq!(after.recv().1, Some((PushKind::Room, b"still here".to_vec())));
    assert!(after.pushes_until_pong().is_empty());
    assert!(before.pushes_until_pong().is_empty());
}

#[test]
fn a_server_close_over_tls_ends_with_close_notify() {
    // A client that completes its handshake but never authenticates gets
    // the deadline's CLOSE, then the server's close_notify (a clean end
    // of the TLS stream, not a bare TCP close). The linger is long enough
    // for the CLOSE to go out however slowly the handshake goes.
    let (server, _dir) =
        tls_server_with_config("auth_timeout_ms = 1000\ntimer_tick_ms = 50\nclose_linger_ms = 10000\n");
    let mut client = TlsClient::connect(&server);
    client.server_certificate();
    assert_eq!(client.recv().0, op::CLOSE);
    let mut rest = [0u8; 64];
    match client.tls.read(&mut rest) {
        Ok(0) => {}
        other => panic!("expected close_notify and the end of the stream, got {other:?}"),
    }
}
