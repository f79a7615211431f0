//! Limits against the real server: a flooding publisher is refused and then
//! cut off while the rest of its room receives every message of the other
//! publishers; connection floods from one source address and piles of
//! unauthenticated connections are turned away with the right code while
//! others still get in. What depends on time (rates refilling, deadlines)
//! is tested on the shard core with simulated time; these tests assert
//! only what does not race.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{token, Client, Received, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY};

#[test]
fn a_flooding_publisher_is_limited_and_cut_off_while_others_are_delivered() {
    let server =
        Server::start(&["--publish-rate-per-sec", "20", "--publish-burst", "20", "--rate-limit-close-after", "50"]);
    let (mut flooder, _) = server.user("flooder");
    let (mut polite, _) = server.user("polite");
    let (mut reader, _) = server.user("reader");
    for client in [&mut flooder, &mut polite, &mut reader] {
        client.join("square");
    }
    let flags = PUBLISH_NO_REPLY | PUBLISH_EXCLUDE_SELF;
    for n in 0..500u32 {
        let payload = format!("flood {n}");
        if !flooder.try_send(flags, &ClientRequest::Publish { room: "square", payload: payload.as_bytes() }) {
            break; // cut off already
        }
    }
    for n in 0..10u32 {
        polite.send(flags, &ClientRequest::Publish { room: "square", payload: format!("polite {n}").as_bytes() });
    }
    // The flooder hears rate_limited, then CLOSE rate_limited.
    let frames = flooder.recv_until_eof();
    let refused = frames
        .iter()
        .filter(|f| matches!(f, Reply::Error { code, .. } if *code == ErrorCode::RateLimited.as_u16()))
        .count();
    assert!(refused >= 50, "{refused} refusals");
    assert!(matches!(frames.last(), Some(Reply::Close { code, .. }) if *code == ErrorCode::RateLimited.as_u16()));
    // The reader got every polite message, in order, and at most the
    // flooder's burst plus what the rate refilled.
    let mut polite_seen = 0;
    let mut flood_seen = 0;
    while polite_seen < 10 {
        let push = reader.next_push();
        let text = String::from_utf8(push.payload).unwrap();
        if let Some(n) = text.strip_prefix("polite ") {
            assert_eq!(n.parse::<u32>().unwrap(), polite_seen);
            polite_seen += 1;
        } else {
            flood_seen += 1;
        }
    }
    assert!(flood_seen < 500, "the flood was not limited");
    assert!(server.metric_sum("corecast_limit_hits_total") >= 50.0);
}

fn connect_from(source: &str, to: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    Client::from_stream(stream)
}

/// Waits until the server has accepted `n` connections in all, so its
/// decision about each one is made (a condition, not a timer).
fn accepted(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric_sum("corecast_accepts_total") < n as f64 {
        assert!(Instant::now() < deadline, "the server did not accept {n} connections");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many of `clients` were refused with CLOSE `code`. Every client sends
/// AUTH and reads its first frame: a refused connection was sent CLOSE at
/// accept (its AUTH is read and discarded), an admitted one gets AUTH_OK.
/// Nothing here waits for a deadline to pass.
fn refused_with(clients: &mut [Client], code: ErrorCode) -> usize {
    let mut refused = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(0, &ClientRequest::Auth { token: &token(&format!("c{i}"), 60, None), device: "" });
        match client.recv() {
            Reply::Close { code: got, reconnect_after_ms, .. } => {
                assert_eq!(got, code.as_u16());
                assert!(reconnect_after_ms > 0, "a refusal carries a reconnect hint");
                refused += 1;
            }
            Reply::AuthOk(_) => {}
            other => panic!("expected CLOSE or AUTH_OK, got {other:?}"),
        }
    }
    refused
}

#[test]
fn a_connection_flood_from_one_source_is_turned_away_others_get_in() {
    let server = Server::start(&["--connect-rate-per-source", "5", "--timer-tick-ms", "1000"]);
    let mut flood: Vec<Client> = (0..30).map(|_| connect_from("127.0.0.2", server.addr)).collect();
    accepted(&server, 30);
    let turned_away = refused_with(&mut flood, ErrorCode::RateLimited);
    // Two shards each admit a burst of 5 from one source.
    assert!((20..=25).contains(&turned_away), "{turned_away} of 30 turned away");
    let mut other = connect_from("127.0.0.3", server.addr);
    assert_eq!(other.auth(&token("other", 60, None)).user, "other");
}

#[test]
fn too_many_unauthenticated_connections_are_closed_at_once() {
    let server = Server::start(&["--max-unauthenticated", "4"]);
    // Two shards, two each: the fifth and later never get to authenticate.
    let mut silent: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    accepted(&server, 12);
    let refused = refused_with(&mut silent, ErrorCode::LimitExceeded);
    assert!(refused >= 8, "{refused} of 12 refused");
    // The admitted ones authenticated: others get in again.
    let (_client, ok) = server.user("patient");
    assert_eq!(ok.user, "patient");
}

#[test]
fn a_full_node_refuses_new_connections_with_a_reconnect_hint() {
    // A ceiling of 4 for the node, whichever shards the connections land on.
    let server = Server::start(&["--max-connections", "4"]);
    let mut clients: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    accepted(&server, 12);
    let refused = refused_with(&mut clients, ErrorCode::LimitExceeded);
    assert!(refused >= 8, "{refused} of 12 refused by a node with room for 4");
    assert!(server.metric_sum("corecast_limit_hits_total") >= refused as f64);
    // The connections that got in are served.
    for client in clients.iter_mut() {
        if client.try_send(0, &ClientRequest::Ping) {
            if let Received::Frame(Reply::Pong { .. }) = client.recv_within(Duration::from_secs(5)) {
                return;
            }
        }
    }
    panic!("no admitted connection answered");
}

#[test]
fn a_login_storm_is_verified_at_a_bounded_pace_and_the_excess_comes_back_later() {
    // 10 AUTHs per second per shard, at most 20 at once (two ticks' worth).
    let server = Server::start(&["--auth-rate-per-sec", "20", "--timer-tick-ms", "1000"]);
    let mut storm: Vec<Client> = (0..60).map(|_| server.connect()).collect();
    for (i, client) in storm.iter_mut().enumerate() {
        client.send(0, &ClientRequest::Auth { token: &token(&format!("storm{i}"), 60, None), device: "" });
    }
    let (mut admitted, mut sent_away, mut hints) = (Vec::new(), 0, Vec::new());
    for (i, client) in storm.iter_mut().enumerate() {
        match client.recv() {
            Reply::AuthOk(_) => admitted.push(i),
            Reply::Error { code, .. } if code == ErrorCode::RateLimited.as_u16() => {
                match client.recv() {
                    Reply::Close { code, reconnect_after_ms, .. } => {
                        assert_eq!(code, ErrorCode::RateLimited.as_u16());
                        hints.push(reconnect_after_ms);
                    }
                    other => panic!("expected CLOSE after the refusal, got {other:?}"),
                }
                sent_away += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Two shards, each verifying at most its burst of 20 in the first tick.
    assert!(!admitted.is_empty() && admitted.len() <= 40, "{} admitted", admitted.len());
    assert_eq!(admitted.len() + sent_away, 60);
    assert!(hints.iter().all(|&h| h > 0), "every refusal carries a reconnect hint");
    assert_eq!(server.metric_sum("corecast_limit_hits_total"), sent_away as f64);
    // That the refused get in once the budget refills is shown on the
    // shard core with simulated time (`logins_beyond_the_auth_budget_...`).
}

#[test]
fn a_client_that_floods_on_after_its_close_still_reads_close_3002() {
    let server =
        Server::start(&["--publish-rate-per-sec", "10", "--publish-burst", "10", "--rate-limit-close-after", "5"]);
    let (mut flooder, _) = server.user("flooder");
    flooder.join("square");
    // One thread writes without pause and never reads: well past the
    // server's CLOSE, so the server closes a socket with input unread.
    let mut writer = flooder.stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        use std::io::Write;
        let mut frame = Vec::new();
        let request = ClientRequest::Publish { room: "square", payload: &[0; 512] };
        corecast_proto::encode_client(1, PUBLISH_NO_REPLY, &request, &mut frame).unwrap();
        let burst: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 64).collect();
        let mut written = 0usize;
        // Until the server stops taking bytes (it closed) or 16 MB went out.
        while written < 16 << 20 && writer.write_all(&burst).is_ok() {
            written += burst.len();
        }
        written
    });
    let frames = flooder.recv_until_eof();
    assert!(
        matches!(frames.last(), Some(Reply::Close { code, .. }) if *code == ErrorCode::RateLimited.as_u16()),
        "the last frame read is CLOSE rate_limited (3002): {:?}",
        frames.last()
    );
    let written = flood.join().unwrap();
    assert!(written > 64 * 1024, "the client kept flooding after its CLOSE ({written} bytes)");
}
