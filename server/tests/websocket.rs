//! WebSocket and the HTTP fallback against the real server, with a
//! standard client library (tungstenite) and plain HTTP (ureq): the
//! handshake, AUTH, JOIN, PUBLISH and PUSH in binary messages, ping/pong,
//! a text message refused with close 1003, an oversized message with 1009,
//! a bad Origin with 403, and a receiver on Server-Sent Events getting room
//! messages a TCP client publishes.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use common::{token, Server, WAIT};
use corecast_proto::server::op;
use corecast_proto::{decode_server, encode_client, peek_frame, ClientRequest, Peek, PushKind, ServerMessage};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;
/// A server frame's op and, for a PUSH, its kind and payload.
type Frame = (u8, Option<(PushKind, Vec<u8>)>);

fn connect(server: &Server, origin: Option<&str>) -> Result<Ws, Box<tungstenite::Error>> {
    let mut request = format!("ws://{}/ws", server.ws).into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    let stream = TcpStream::connect(server.ws).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    tungstenite::client(request, stream).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Box::new(e),
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

fn send(ws: &mut Ws, request: &ClientRequest<'_>) {
    let mut frame = Vec::new();
    encode_client(7, 0, request, &mut frame).unwrap();
    ws.send(Message::binary(frame)).unwrap();
}

/// The server frames of the next binary message, as (op, push payload).
fn frames(ws: &mut Ws) -> Vec<Frame> {
    loop {
        match ws.read().unwrap() {
            Message::Binary(bytes) => {
                let mut rest = &bytes[..];
                let mut out = Vec::new();
                while let Ok(Peek::Complete(h)) = peek_frame(rest, u32::MAX) {
                    let decoded = decode_server(&rest[..h.len as usize]).unwrap();
                    let push = match decoded.message {
                        ServerMessage::Push { kind, payload, .. } => Some((kind, payload.to_vec())),
                        _ => None,
                    };
                    out.push((decoded.message.op(), push));
                    rest = &rest[h.len as usize..];
                }
                assert!(rest.is_empty(), "a message carries whole frames");
                return out;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn next_op(ws: &mut Ws) -> u8 {
    frames(ws)[0].0
}

fn authenticated(server: &Server, user: &str) -> Ws {
    let mut ws = connect(server, Some("http://example.test")).expect("handshake");
    send(&mut ws, &ClientRequest::Auth { token: &token(user, 600, None), device: "browser" });
    assert_eq!(next_op(&mut ws), op::AUTH_OK);
    ws
}

fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return frame.code,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

#[test]
fn websocket_clients_auth_join_publish_and_receive() {
    let server = Server::start(&[]);
    let mut alice = authenticated(&server, "alice");
    let mut bob = authenticated(&server, "bob");
    for ws in [&mut alice, &mut bob] {
        send(ws, &ClientRequest::Join { room: "stage", since: 0 });
        assert_eq!(next_op(ws), op::OK);
    }
    // A TCP client publishes; both WebSocket members receive it.
    let (mut tcp, _) = server.user("carol");
    tcp.join("stage");
    let flags = corecast_proto::PUBLISH_NO_REPLY | corecast_proto::PUBLISH_EXCLUDE_SELF;
    tcp.send(flags, &ClientRequest::Publish { room: "stage", payload: b"from tcp" });
    for ws in [&mut alice, &mut bob] {
        assert_eq!(frames(ws)[0].1, Some((PushKind::Room, b"from tcp".to_vec())));
    }
    // And a WebSocket client's publish reaches the TCP member.
    send(&mut alice, &ClientRequest::Publish { room: "stage", payload: b"from ws" });
    assert_eq!(tcp.next_push().payload, b"from ws");
    // Ping/pong per RFC 6455.
    bob.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    loop {
        match bob.read().unwrap() {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Message::Binary(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    // A clean close is answered with a close.
    bob.close(None).unwrap();
    loop {
        match bob.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn text_oversized_and_foreign_origin_are_refused() {
    let server = Server::start(&["--ws-allowed-origins", "http://good.test", "--ws-max-message-len", "70000"]);
    let mut texter = connect(&server, Some("http://good.test")).unwrap();
    texter.send(Message::text("hello")).unwrap();
    assert_eq!(close_code(&mut texter), CloseCode::Unsupported);

    let mut big = connect(&server, Some("http://good.test")).unwrap();
    big.send(Message::binary(vec![0u8; 100_000])).unwrap();
    assert_eq!(close_code(&mut big), CloseCode::Size);

    match connect(&server, Some("http://evil.test")).map_err(|e| *e) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected HTTP 403, got {e}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    // Others are unaffected.
    let mut fine = connect(&server, Some("http://good.test")).unwrap();
    send(&mut fine, &ClientRequest::Auth { token: &token("fine", 600, None), device: "" });
    assert_eq!(next_op(&mut fine), op::AUTH_OK);
    assert!(server.metric_sum("corecast_ws_handshake_failures_total") >= 1.0);
}

#[test]
fn a_receiver_on_the_http_fallback_gets_room_messages() {
    let server = Server::start(&[]);
    let response = ureq::get(&format!("http://{}/v1/sse?token={}", server.web, token("sse-user", 600, None)))
        .call()
        .expect("event stream");
    let mut lines = BufReader::new(response.into_body().into_reader()).lines();
    // Events: `event: NAME` then `data: ...`.
    let mut next_event = move || -> (String, String) {
        let mut name = String::new();
        loop {
            let line = lines.next().expect("stream open").expect("readable");
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return (name.clone(), data.to_string());
            }
        }
    };
    let (name, session) = next_event();
    assert_eq!(name, "session");
    let decode = |data: &str| base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    let (_, auth_ok) = next_event();
    assert_eq!(decode(&auth_ok)[5], op::AUTH_OK);

    let mut join = Vec::new();
    encode_client(2, 0, &ClientRequest::Join { room: "lobby", since: 0 }, &mut join).unwrap();
    let post = ureq::post(&format!("http://{}/v1/send?session={session}", server.web)).send(&join[..]).unwrap();
    assert_eq!(post.status(), 204);
    let (_, ok) = next_event();
    assert_eq!(decode(&ok)[5], op::OK);

    let (mut tcp, _) = server.user("publisher");
    tcp.join("lobby");
    tcp.send(corecast_proto::PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "lobby", payload: b"hello sse" });
    let (name, data) = next_event();
    assert_eq!(name, "frame");
    match decode_server(&decode(&data)).unwrap().message {
        ServerMessage::Push { kind, from, payload, .. } => {
            assert_eq!((kind, from, payload), (PushKind::Room, "publisher", &b"hello sse"[..]));
        }
        other => panic!("expected a PUSH, got {other:?}"),
    }
    // An unknown session is refused.
    let refused = ureq::post(&format!("http://{}/v1/send?session=nope", server.web)).send(&join[..]);
    assert!(refused.is_err());
    std::thread::sleep(Duration::from_millis(10));
}

/// The next presence event `client` gets about `user`: whether it joined.
fn presence_event(client: &mut common::Client, user: &str) -> bool {
    loop {
        match client.recv() {
            common::Reply::Push(push) if push.kind == PushKind::Presence && push.from == user => {
                return push.payload == [1]
            }
            common::Reply::Push(_) | common::Reply::Joined { .. } => {}
            other => panic!("expected a presence event, got {other:?}"),
        }
    }
}

/// A browser leaving sends a close frame, and the server closes the
/// connection from its side: its user must leave the room's presence then,
/// as when a socket just drops, with a leave event for the others.
#[test]
fn a_websocket_member_that_closes_leaves_the_presence_list() {
    let server = Server::start(&[]);
    let room = "demo-presence"; // the default rule: presence with join/leave events
    let (mut carol, _) = server.user("carol");
    carol.send(0, &ClientRequest::Join { room, since: 0 });
    let mut alice = authenticated(&server, "alice");
    send(&mut alice, &ClientRequest::Join { room, since: 0 });
    assert_eq!(next_op(&mut alice), op::JOINED);
    assert!(presence_event(&mut carol, "alice"), "carol sees alice join");
    alice.close(None).unwrap();
    while alice.read().is_ok() {} // until the server's close frame and the end
    assert!(!presence_event(&mut carol, "alice"), "carol sees alice leave");
    let listed = server.admin_get(&format!("/v1/admin/rooms/{room}/presence"));
    assert_eq!(listed["users"], 1, "{listed}");
}
