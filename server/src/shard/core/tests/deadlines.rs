//! Authentication and idle deadlines, and slow consumers, on the
//! simulated clock.

use corecast_proto::{ClientRequest, ErrorCode};

use super::{config, Got, Harness};
use crate::config::Config;

#[test]
fn a_connection_that_never_authenticates_is_closed_at_the_deadline_not_before() {
    let mut h = Harness::new(1, config());
    let id = h.connect();
    h.advance(h.config.auth_timeout_ms as u64 - 100);
    assert_eq!(h.written(id), vec![], "nothing before the deadline");
    h.advance(100);
    assert_eq!(h.written(id), vec![Got::Close(ErrorCode::NotAuthenticated.as_u16())]);
}

#[test]
fn an_idle_connection_is_closed_while_a_pinging_one_stays() {
    let mut h = Harness::new(1, config());
    let idle = h.user("idle");
    let busy = h.user("busy");
    let idle_ms = h.config.idle_timeout_ms() as u64;
    let step = idle_ms / 4;
    for _ in 0..8 {
        h.send(busy, &ClientRequest::Ping);
        h.advance(step);
    }
    assert!(h.written(busy).iter().all(|g| matches!(g, Got::Pong(_))), "the pinging client is never closed");
    let idle_frames = h.written(idle);
    assert_eq!(idle_frames, vec![Got::Close(ErrorCode::IdleTimeout.as_u16())]);
}

#[test]
fn a_slow_consumer_loses_messages_then_is_closed_while_others_get_everything() {
    let config = Config { outbound_queue_bytes: 64 * 1024, hot_room_msgs_per_sec: 0, ..config() };
    let mut h = Harness::new(1, config);
    let slow = h.user("slow");
    let fast = h.user("fast");
    let publisher = h.user("pub");
    for id in [slow, fast, publisher] {
        h.send(id, &ClientRequest::Join { room: "live", since: 0 });
        h.written(id);
    }
    h.stalled.push(slow);
    let payload = vec![7u8; 1000];
    let mut fast_got = 0;
    for _ in 0..200 {
        h.send(publisher, &ClientRequest::Publish { room: "live", payload: &payload });
        fast_got += h.written(fast).iter().filter(|g| matches!(g, Got::Push(..))).count();
    }
    assert_eq!(fast_got, 200, "a reader that keeps up gets every message");
    // The slow one is over its limit; within the grace period it stays.
    let grace = h.config.slow_consumer_grace_ms as u64;
    h.advance(grace - h.config.timer_tick_ms as u64);
    assert!(!h.is_released(slow));
    h.stalled.clear();
    h.advance(h.config.timer_tick_ms as u64);
    let frames = h.written(slow);
    assert_eq!(frames.last(), Some(&Got::Close(ErrorCode::SlowConsumer.as_u16())), "{:?}", frames.len());
    let pushes = frames.iter().filter(|g| matches!(g, Got::Push(..))).count();
    assert!(pushes < 200, "messages beyond the limit were dropped, not queued: {pushes}");
}
