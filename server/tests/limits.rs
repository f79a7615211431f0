//! Limits against the real server: a flooding publisher is refused and then
//! cut off while the rest of its room receives every message of the other
//! publishers; connection floods from one source address and piles of
//! unauthenticated connections are turned away with the right code while
//! others still get in.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

/// How many of `clients` were sent CLOSE `code` at once. Refused
/// connections get it immediately; the others hear nothing for now.
fn closed_at_once(clients: &mut [Client], code: ErrorCode) -> usize {
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for client in clients.iter_mut() {
        if let Received::Frame(Reply::Close { code: got, .. }) = client.recv_within(Duration::from_millis(50)) {
            closed += usize::from(got == code.as_u16());
        }
    }
    closed
}

#[test]
fn a_connection_flood_from_one_source_is_turned_away_others_get_in() {
    let server = Server::start(&["--connect-rate-per-source", "5", "--timer-tick-ms", "1000"]);
    let mut flood: Vec<Client> = (0..30).map(|_| connect_from("127.0.0.2", server.addr)).collect();
    let turned_away = closed_at_once(&mut flood, ErrorCode::RateLimited);
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
    let refused = closed_at_once(&mut silent, ErrorCode::LimitExceeded);
    assert!(refused >= 8, "{refused} of 12 refused");
    drop(silent);
    // Once they are gone, authenticated clients get in again.
    std::thread::sleep(Duration::from_millis(300));
    let (_client, ok) = server.user("patient");
    assert_eq!(ok.user, "patient");
}

#[test]
fn a_full_node_refuses_new_connections_with_a_reconnect_hint() {
    // A ceiling of 4 for the node, whichever shards the connections land on.
    let server = Server::start(&["--max-connections", "4"]);
    let mut clients: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for client in clients.iter_mut() {
        if let Received::Frame(Reply::Close { code, reason, reconnect_after_ms }) =
            client.recv_within(Duration::from_millis(50))
        {
            assert_eq!(code, ErrorCode::LimitExceeded.as_u16());
            assert!(reason.contains("full"), "{reason}");
            assert!(reconnect_after_ms > 0);
            refused += 1;
        }
    }
    assert!(refused >= 8, "{refused} of 12 refused by a node with room for 4");
    assert!(server.metric_sum("corecast_limit_hits_total") >= refused as f64);
    // The connections that got in are served.
    drop(clients);
    std::thread::sleep(Duration::from_millis(300));
    let (_client, ok) = server.user("fits");
    assert_eq!(ok.user, "fits");
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
    // After a pause the refused come back and get in.
    std::thread::sleep(Duration::from_millis(2200));
    for i in 0..sent_away.min(10) {
        let (_client, ok) = server.user(&format!("back{i}"));
        assert_eq!(ok.user, format!("back{i}"));
    }
}
