//! Closing: CLOSE is written last, then the write side is shut and input
//! is drained (so a reset cannot destroy the CLOSE) until the peer goes or
//! the linger deadline passes.

use corecast_proto::{ClientRequest, ErrorCode};

use super::{config, Got, Harness};
use crate::config::Config;

#[test]
fn after_close_the_write_side_is_shut_and_input_discarded_until_the_linger_deadline() {
    let config = Config { publish_rate_per_sec: 1, publish_burst: 1, rate_limit_close_after: 2, ..config() };
    let mut h = Harness::new(1, config);
    let id = h.user("flood");
    h.send(id, &ClientRequest::Join { room: "r", since: 0 });
    h.written(id);
    for _ in 0..3 {
        h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    }
    let frames = h.written(id);
    assert_eq!(frames.last(), Some(&Got::Close(ErrorCode::RateLimited.as_u16())), "{frames:?}");
    assert!(h.shut_write.contains(&id), "the write side is shut once the CLOSE is out");
    assert!(!h.is_released(id), "the socket stays open to drain the client's input");
    // The client keeps flooding: read and dropped, no answer.
    for _ in 0..50 {
        h.send(id, &ClientRequest::Publish { room: "r", payload: b"x" });
    }
    assert_eq!(h.written(id), vec![]);
    h.advance(h.config.close_linger_ms as u64);
    assert!(h.is_released(id), "released at the linger deadline");
}

#[test]
fn a_peer_that_closes_first_is_released_at_once_and_leaves_its_rooms() {
    let mut h = Harness::new(1, config());
    let a = h.user("a");
    let b = h.user("b");
    for id in [a, b] {
        h.send(id, &ClientRequest::Join { room: "r", since: 0 });
        h.written(id);
    }
    let now = h.now();
    h.core.on_peer_closed(now, a);
    h.core.end_round();
    assert!(h.is_released(a));
    assert_eq!(h.presence_batches().last(), Some(&(0, 1)), "offline is reported");
    h.send(b, &ClientRequest::Publish { room: "r", payload: b"hi" });
    let frames = h.written(b);
    assert!(frames.contains(&Got::Push("r".into(), b"hi".to_vec())), "{frames:?}");
    assert_eq!(h.written(a), vec![]);
}

#[test]
fn a_partly_written_frame_is_finished_before_anything_else() {
    let mut h = Harness::new(1, config());
    let id = h.user("u");
    h.send(id, &ClientRequest::Join { room: "r", since: 0 });
    h.written(id);
    let sender = h.user("s");
    h.send(sender, &ClientRequest::Join { room: "r", since: 0 });
    h.written(sender);
    h.send(sender, &ClientRequest::Publish { room: "r", payload: &[1; 300] });
    h.send(sender, &ClientRequest::Publish { room: "r", payload: &[2; 300] });
    // The socket takes 100 bytes of the first batch.
    let mut ids = Vec::new();
    h.core.take_write_list(&mut ids);
    let mut batch = Vec::new();
    assert_eq!(h.core.take_output(id, &mut batch), super::Output::Write);
    let mut taken: Vec<u8> = batch.iter().flat_map(|b| b.to_vec()).collect();
    taken.truncate(100);
    assert!(h.core.wrote(id, &mut batch, 100));
    h.core.on_writable(id);
    taken.extend(h.written_raw(id));
    let frames = super::parse(&taken);
    assert_eq!(frames, vec![Got::Push("r".into(), vec![1; 300]), Got::Push("r".into(), vec![2; 300])]);
}
