//! Authentication against the real server: a valid token, a bad signature,
//! an expired token, a forbidden room, requests before AUTH, and the
//! unauthenticated deadline.

mod common;

use std::time::Duration;

use common::{token, token_with_secret, Received, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode};

fn expect_error(reply: Reply, code: ErrorCode) -> u32 {
    match reply {
        Reply::Error { code: got, rid, .. } if got == code.as_u16() => rid,
        other => panic!("expected ERROR {code:?}, got {other:?}"),
    }
}

fn expect_close(reply: Reply, code: ErrorCode) {
    match reply {
        Reply::Close { code: got, .. } if got == code.as_u16() => {}
        other => panic!("expected CLOSE {code:?}, got {other:?}"),
    }
}

#[test]
fn valid_token_gets_auth_ok_with_user_and_heartbeat() {
    let server = Server::start(&["--heartbeat-ms", "15000"]);
    let (_client, ok) = server.user("alice");
    assert_eq!(ok.user, "alice");
    assert_eq!(ok.heartbeat_ms, 15000);
    assert!(ok.shard < 2);
    let (_other, ok2) = server.user("bob");
    assert_ne!(ok.conn_id, ok2.conn_id);
}

#[test]
fn bad_signature_and_expired_token_are_refused_and_closed() {
    let server = Server::start(&[]);
    for bad in [token_with_secret("some-other-secret-0123456789", "mallory", 3600, None), token("alice", -3600, None)] {
        let mut client = server.connect();
        let rid = client.send(0, &ClientRequest::Auth { token: &bad, device: "" });
        assert_eq!(expect_error(client.recv(), ErrorCode::AuthFailed), rid);
        let rest = client.recv_until_eof();
        expect_close(rest.into_iter().next().expect("CLOSE before EOF"), ErrorCode::AuthFailed);
    }
    // The server still serves good clients.
    let (_client, ok) = server.user("alice");
    assert_eq!(ok.user, "alice");
}

#[test]
fn rooms_outside_the_token_grant_are_forbidden() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.auth(&token("carol", 3600, Some(vec!["lobby", "game-*"])));
    client.join("lobby");
    client.join("game-42");
    let rid = client.send(0, &ClientRequest::Join { room: "staff", since: 0 });
    assert_eq!(expect_error(client.recv(), ErrorCode::Forbidden), rid);
    // Publishing to a room the connection is not in is refused too.
    let rid = client.send(0, &ClientRequest::Publish { room: "staff", payload: b"x" });
    assert_eq!(expect_error(client.recv(), ErrorCode::Forbidden), rid);
    // The connection stays usable.
    client.send(0, &ClientRequest::Ping);
    assert!(matches!(client.recv(), Reply::Pong { .. }));
}

#[test]
fn requests_before_auth_are_refused_but_ping_works() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let rid = client.send(0, &ClientRequest::Join { room: "lobby", since: 0 });
    assert_eq!(expect_error(client.recv(), ErrorCode::NotAuthenticated), rid);
    let rid = client.send(0, &ClientRequest::Ping);
    assert_eq!(client.recv(), Reply::Pong { rid });
    client.auth(&token("dave", 3600, None));
    client.join("lobby");
}

#[test]
fn unauthenticated_connection_is_closed_after_the_deadline() {
    let server = Server::start(&["--auth-timeout-ms", "300", "--timer-tick-ms", "50"]);
    let mut silent = server.connect();
    let frames = silent.recv_until_eof();
    assert_eq!(frames.len(), 1, "{frames:?}");
    expect_close(frames[0].clone(), ErrorCode::NotAuthenticated);
    // An authenticated client is not affected by the auth deadline.
    let (mut client, _) = server.user("erin");
    assert!(matches!(client.recv_within(Duration::from_millis(800)), Received::Timeout));
    client.join("still-here");
}
