//! TLS against the real server: a rustls client completes the handshake
//! (checking the server's certificate), authenticates, joins and receives a
//! published message over TLS; a plain-TCP client gets nothing and does not
//! disturb the TLS clients; the certificate is replaced without a restart
//! (admin call and SIGHUP), a bad file changes nothing; WebSocket over TLS
//! (wss) on the WebSocket port; the public HTTP listener speaks HTTPS and
//! its fallback gateway works through the node's TLS listener.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::https::key;
use common::{token, DataDir, Server};
use corecast_proto::{decode_server, encode_client, peek_frame, ClientRequest, Peek, PushKind, ServerMessage};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

fn tls_server() -> (Server, DataDir) {
    tls_server_with(&key("tls_cert.pem"), &key("tls_key.pem"))
}

fn tls_server_with(cert: &std::path::Path, private_key: &std::path::Path) -> (Server, DataDir) {
    let dir = DataDir::new();
    let config = dir.0.join("tls.toml");
    let body = format!("tls_cert_file = {cert:?}\ntls_key_file = {private_key:?}\n");
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
        let tcp = TcpStream::connect(addr).unwrap();
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
        let mut out = Vec::new();
        encode_client(1, 0, request, &mut out).unwrap();
        self.tls.write_all(&out).unwrap();
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
