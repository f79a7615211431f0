//! Crash safety: a client sends continuously while the server is killed
//! with SIGKILL (with messages in flight) and restarted on the same store.
//! Every message the client got SENT for is stored exactly once with the
//! seq it was told, seqs strictly increase, and resends after reconnecting
//! (same client_msg_id) create no duplicates.

mod common;

use std::collections::HashMap;

use common::{free_port, token, Client, DataDir, Received, Reply, Server, WAIT};
use corecast_proto::ClientRequest;

fn connect(server: &Server) -> Client {
    let mut client = server.connect();
    client.auth(&token("writer", 3600, None));
    client
}

/// Sends message `id` (payload = id) without waiting.
fn send(client: &mut Client, id: u64) -> u32 {
    client
        .send(0, &ClientRequest::Send { kind: 2, to: "reader", client_msg_id: id, payload: id.to_string().as_bytes() })
}

/// Waits for the SENT answering `rid` (skipping SENTs of other requests in
/// flight, which may be answered in any order); `None` if the connection
/// died.
fn wait_sent(client: &mut Client, rid: u32) -> Option<u64> {
    loop {
        match client.recv_within(WAIT) {
            Received::Frame(Reply::Sent { rid: r, seq, .. }) if r == rid => return Some(seq),
            Received::Frame(Reply::Sent { .. }) => continue,
            Received::Frame(other) => panic!("unexpected {other:?}"),
            Received::Eof => return None,
            Received::Timeout => panic!("no SENT within {WAIT:?}"),
        }
    }
}

#[test]
fn sigkill_during_continuous_sending_loses_and_duplicates_nothing() {
    let data = DataDir::new();
    let port = free_port();
    let mut server = Server::start_in(&data.0, port, &[]);
    let mut client = connect(&server);
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut next_id = 0u64;

    for round in 0..3 {
        // A stretch of acknowledged sends.
        for _ in 0..60 {
            let rid = send(&mut client, next_id);
            let seq = wait_sent(&mut client, rid).expect("server alive");
            acked.insert(next_id, seq);
            next_id += 1;
        }
        // A burst in flight, then SIGKILL before reading any answer.
        let in_flight: Vec<u64> = (next_id..next_id + 8).collect();
        let rids: Vec<u32> = in_flight.iter().map(|&id| send(&mut client, id)).collect();
        if round == 2 {
            // Last round: collect what arrives before the kill.
            if let Some(seq) = wait_sent(&mut client, rids[0]) {
                acked.insert(in_flight[0], seq);
            }
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        drop(server);

        server = Server::start_in(&data.0, port, &[]);
        client = connect(&server);
        // Resend every unanswered message with the same client_msg_id.
        for &id in &in_flight {
            let rid = send(&mut client, id);
            let seq = wait_sent(&mut client, rid).expect("server alive");
            if let Some(&before) = acked.get(&id) {
                assert_eq!(before, seq, "message {id} was acknowledged with another seq");
            }
            acked.insert(id, seq);
        }
        next_id += in_flight.len() as u64;
    }

    // Everything acknowledged is stored exactly once, with its seq, in order.
    let conv = {
        let rid = send(&mut client, 0);
        match client.recv() {
            Reply::Sent { rid: r, conv, seq } => {
                assert_eq!((r, seq), (rid, acked[&0]), "resend of message 0 must return its original seq");
                conv
            }
            other => panic!("{other:?}"),
        }
    };
    let history = server.admin_get(&format!("/v1/admin/conversations/{conv}/messages?limit=1000"));
    let stored: Vec<(u64, u64)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["client_msg_id"].as_u64().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(stored.len() as u64, next_id, "every message once, no duplicates");
    assert!(stored.windows(2).all(|w| w[0].1 < w[1].1), "seqs strictly increase");
    let by_id: HashMap<u64, u64> = stored.iter().copied().collect();
    assert_eq!(by_id.len(), stored.len(), "no client_msg_id stored twice");
    for (id, seq) in &acked {
        assert_eq!(by_id.get(id), Some(seq), "acknowledged message {id} missing or moved");
    }
}
