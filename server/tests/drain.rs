//! Graceful drain against the real server, by SIGTERM and by the admin
//! API, while a client sends persistent messages continuously: the client
//! gets CLOSE shutting_down with a reconnect hint, the server exits by
//! itself, and after a restart on the same store every message that got
//! SENT is there, once.

mod common;

use common::{free_port, token, Client, DataDir, Received, Reply, Server, WAIT};
use corecast_proto::{ClientRequest, ErrorCode};

/// Sends until the connection is closed, `trigger` being called after the
/// 30th acknowledged message; returns the acknowledged seqs and the CLOSE.
fn send_through_drain(client: &mut Client, mut trigger: impl FnMut()) -> (Vec<u64>, Option<Reply>) {
    let mut acked = Vec::new();
    let mut id = 1u64;
    loop {
        if acked.len() == 30 {
            trigger();
        }
        if !client.try_send(0, &ClientRequest::Send { kind: 2, to: "log", client_msg_id: id, payload: b"entry" }) {
            return (acked, None);
        }
        id += 1;
        match client.recv_within(WAIT) {
            Received::Frame(Reply::Sent { seq, .. }) => acked.push(seq),
            Received::Frame(close @ Reply::Close { .. }) => return (acked, Some(close)),
            Received::Frame(Reply::Error { code, .. }) if code == ErrorCode::Unavailable.as_u16() => {}
            Received::Eof => return (acked, None),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn stored_after_restart(data: &DataDir, acked: &[u64]) {
    let server = Server::start_in(&data.0, free_port(), &[]);
    let conv = corecast_cluster::conversation::Conversation::direct("scribe", "log").id();
    let history = server.admin_get(&format!("/v1/admin/conversations/{conv}/messages?limit=1000"));
    let stored: Vec<u64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    for seq in acked {
        assert_eq!(stored.iter().filter(|s| *s == seq).count(), 1, "acknowledged seq {seq} not stored once");
    }
}

fn check_close(close: Option<Reply>) {
    match close {
        Some(Reply::Close { code, reconnect_after_ms, .. }) => {
            assert_eq!(code, ErrorCode::ShuttingDown.as_u16());
            assert!(reconnect_after_ms >= 1000, "hint {reconnect_after_ms}");
        }
        other => panic!("expected CLOSE shutting_down, got {other:?}"),
    }
}

#[test]
fn sigterm_during_continuous_sending_closes_with_a_hint_and_loses_nothing() {
    let data = DataDir::new();
    let mut server = Server::start_in(&data.0, free_port(), &[]);
    let mut client = server.connect();
    client.auth(&token("scribe", 600, None));
    let pid = server.child.id() as i32;
    let mut sent_signal = false;
    let (acked, close) = send_through_drain(&mut client, || {
        if !sent_signal {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            sent_signal = true;
        }
    });
    assert!(server.child.wait().unwrap().success(), "the server exits by itself, cleanly");
    check_close(close);
    assert!(acked.len() >= 30);
    drop(server);
    stored_after_restart(&data, &acked);
}

#[test]
fn admin_drain_does_the_same() {
    let data = DataDir::new();
    let mut server = Server::start_in(&data.0, free_port(), &[]);
    let mut client = server.connect();
    client.auth(&token("scribe", 600, None));
    let mut drained = false;
    let (acked, close) = send_through_drain(&mut client, || {
        if !drained {
            let reply = server.admin_post("/v1/admin/drain", b"");
            assert_eq!(reply["draining_shards"], 2);
            drained = true;
        }
    });
    assert!(server.child.wait().unwrap().success());
    check_close(close);
    drop(server);
    stored_after_restart(&data, &acked);
}
