//! Bad input against the real server: a malformed frame, an oversized
//! frame, a bad protocol version and an unknown op. The offender gets ERROR
//! (and, except for an unknown op, CLOSE and a closed socket) while other
//! connections keep receiving everything.

mod common;

use common::{Client, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode, Header, PUBLISH_NO_REPLY};

/// Two healthy members of a room, to show they are unaffected.
fn bystanders(server: &Server) -> (Client, Client) {
    let (mut a, _) = server.user("bystander-a");
    let (mut b, _) = server.user("bystander-b");
    a.join("calm");
    b.join("calm");
    (a, b)
}

fn still_working(a: &mut Client, b: &mut Client, marker: &[u8]) {
    a.send(PUBLISH_NO_REPLY, &ClientRequest::Publish { room: "calm", payload: marker });
    for client in [a, b] {
        let push = client.next_push();
        assert_eq!(push.payload, marker);
    }
}

fn expect_error_then_close(client: &mut Client, code: ErrorCode, rid: u32) {
    let frames = client.recv_until_eof();
    match frames.as_slice() {
        [Reply::Error { code: e, rid: r, .. }, Reply::Close { code: c, .. }] => {
            assert_eq!((*e, *r, *c), (code.as_u16(), rid, code.as_u16()), "{frames:?}");
        }
        other => panic!("expected ERROR then CLOSE, got {other:?}"),
    }
}

fn frame(op: u8, rid: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header { len: (12 + body.len()) as u32, ver: 1, op, flags: 0, rid }.write(&mut out);
    out.extend_from_slice(body);
    out
}

#[test]
fn malformed_frame_gets_error_and_close_others_unaffected() {
    let server = Server::start(&[]);
    let (mut a, mut b) = bystanders(&server);
    let (mut bad, _) = server.user("mallory");
    bad.join("calm");
    // JOIN whose room length says 50 bytes but only 3 follow.
    let mut body = 50u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"abc");
    bad.send_raw(&frame(0x03, 77, &body));
    expect_error_then_close(&mut bad, ErrorCode::BadFrame, 77);
    still_working(&mut a, &mut b, b"after malformed");
    // The closed connection left the room.
    assert_eq!(server.admin_get("/v1/admin/rooms/calm")["members"], 2);
}

#[test]
fn oversized_frame_is_refused_from_its_length() {
    let server = Server::start(&["--max-frame-len", "1024"]);
    let (mut a, mut b) = bystanders(&server);
    let (mut bad, _) = server.user("mallory");
    // Only the header is sent: the length alone must be enough to refuse.
    let mut header = Vec::new();
    Header { len: 1_000_000, ver: 1, op: 0x05, flags: 0, rid: 9 }.write(&mut header);
    bad.send_raw(&header);
    expect_error_then_close(&mut bad, ErrorCode::FrameTooLarge, 9);
    still_working(&mut a, &mut b, b"after oversized");
}

#[test]
fn bad_version_and_garbage_bytes_close_the_connection() {
    let server = Server::start(&[]);
    let (mut a, mut b) = bystanders(&server);
    let mut bad = server.connect();
    let mut bytes = frame(0x02, 5, &[]);
    bytes[4] = 7;
    bad.send_raw(&bytes);
    expect_error_then_close(&mut bad, ErrorCode::BadFrame, 5);

    let mut garbage = server.connect();
    garbage.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let frames = garbage.recv_until_eof();
    assert!(
        matches!(frames.last(), Some(Reply::Close { code, .. }) if *code == ErrorCode::FrameTooLarge.as_u16() || *code == ErrorCode::BadFrame.as_u16()),
        "{frames:?}"
    );
    still_working(&mut a, &mut b, b"after garbage");
}

#[test]
fn unknown_op_gets_error_and_the_connection_stays_open() {
    let server = Server::start(&[]);
    let (mut client, _) = server.user("explorer");
    client.send_raw(&frame(0x42, 31, b"future"));
    match client.recv() {
        Reply::Error { code, rid, .. } => assert_eq!((code, rid), (ErrorCode::UnknownOp.as_u16(), 31)),
        other => panic!("expected ERROR, got {other:?}"),
    }
    client.join("still-open");
}
