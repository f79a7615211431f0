//! Per-connection publish limits and the node's admission limits.

use corecast_proto::{ClientRequest, ErrorCode};

use super::{config, Got, Harness};
use crate::config::Config;

#[test]
fn a_flooding_publisher_gets_errors_then_close_and_recovers_tokens_with_time() {
    let config = Config { publish_rate_per_sec: 10, publish_burst: 5, rate_limit_close_after: 4, ..config() };
    let mut h = Harness::new(1, config);
    let id = h.user("flood");
    h.send(id, &ClientRequest::Join { room: "r", since: 0 });
    h.written(id);
    for _ in 0..5 {
        h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    }
    let burst = h.written(id);
    assert_eq!(burst.iter().filter(|g| matches!(g, Got::Ok(_))).count(), 5, "the burst goes through: {burst:?}");
    let rid = h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    assert_eq!(h.written(id), vec![Got::Error(rid, ErrorCode::RateLimited.as_u16())]);
    // A second later the bucket holds tokens again.
    h.advance(1000);
    let rid = h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    let frames = h.written(id);
    assert!(frames.contains(&Got::Ok(rid)), "{frames:?}");
    for _ in 0..10 {
        h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    }
    let frames = h.written(id);
    assert_eq!(frames.last(), Some(&Got::Close(ErrorCode::RateLimited.as_u16())), "{frames:?}");
}

#[test]
fn a_full_node_refuses_with_close_and_counts_nothing_twice() {
    let config = Config { max_connections: Some(2), ..config() };
    let mut h = Harness::new(1, config);
    let a = h.user("a");
    let b = h.user("b");
    let refused = h.connect();
    assert_eq!(h.written(refused), vec![Got::Close(ErrorCode::LimitExceeded.as_u16())]);
    assert!(h.written(a).is_empty() && h.written(b).is_empty());
}

#[test]
fn logins_beyond_the_auth_budget_are_sent_back_with_a_hint() {
    let config = Config { auth_rate_per_sec: 10, timer_tick_ms: 100, ..config() };
    let mut h = Harness::new(1, config);
    let token = crate::auth::mint_token(super::SECRET, "u", 3600, None).unwrap();
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..10 {
        let id = h.connect();
        h.send(id, &ClientRequest::Auth { token: &token, device: "" });
        match h.written(id).as_slice() {
            [Got::AuthOk] => ok += 1,
            [Got::Error(_, code), Got::Close(_)] if *code == ErrorCode::RateLimited.as_u16() => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    // The budget per tick is a little over one tick's share (2 here).
    assert_eq!((ok, refused), (2, 8));
}
