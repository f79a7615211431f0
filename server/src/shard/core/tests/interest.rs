//! The room-interest handshake between shards: a first JOIN is answered
//! once every other shard knows, the connection's later frames wait for
//! that answer, and a shard that never answers delays it by a bounded time.

use corecast_proto::ClientRequest;

use super::{config, Got, Harness};
use crate::shard::inbox::ShardCommand;

/// Takes the RoomInterest announcement shard `shard` received.
fn announcement(h: &Harness, shard: usize) -> Option<ShardCommand> {
    h.inboxes[shard].try_iter().find(|c| matches!(c, ShardCommand::RoomInterest { joined: true, .. }))
}

#[test]
fn a_first_join_is_answered_after_every_shard_acknowledged_and_later_frames_wait() {
    let mut h = Harness::new(3, config());
    let id = h.user("u");
    let join = h.send(id, &ClientRequest::Join { room: "r", since: 0 });
    let ping = h.send(id, &ClientRequest::Ping);
    assert_eq!(h.written(id), vec![], "neither the JOIN nor the PING after it is answered yet");
    let acks: Vec<_> = (1..3).map(|shard| announcement(&h, shard).expect("every other shard is told")).collect();
    let mut acks = acks.into_iter().map(|c| match c {
        ShardCommand::RoomInterest { ack: Some(ack), .. } => ack,
        _ => unreachable!(),
    });
    acks.next().unwrap().send();
    let acked = h.inboxes[0].try_recv().expect("the ack comes back to shard 0");
    let now = h.now();
    h.core.on_command(now, acked);
    assert_eq!(h.written(id), vec![], "one shard has not acknowledged");
    acks.next().unwrap().send();
    let acked = h.inboxes[0].try_recv().unwrap();
    h.core.on_command(now, acked);
    h.core.end_round();
    assert_eq!(h.written(id), vec![Got::Ok(join), Got::Pong(ping)], "answered in order");
    // A second member on this shard needs no announcement.
    let other = h.user("v");
    let rid = h.send(other, &ClientRequest::Join { room: "r", since: 0 });
    assert_eq!(h.written(other), vec![Got::Ok(rid)]);
}

#[test]
fn a_shard_that_never_acknowledges_delays_a_first_join_by_a_bounded_time() {
    let mut h = Harness::new(2, config());
    let id = h.user("u");
    let join = h.send(id, &ClientRequest::Join { room: "r", since: 0 });
    assert!(announcement(&h, 1).is_some());
    h.advance(super::super::INTEREST_WAIT_MS as u64 - 200);
    assert_eq!(h.written(id), vec![]);
    h.advance(200);
    assert_eq!(h.written(id), vec![Got::Ok(join)]);
}

#[test]
fn an_announcement_that_found_a_full_inbox_is_sent_again_until_it_gets_through() {
    // Shard 1's inbox holds one command: the first room's announcement
    // fills it, the second room's finds it full.
    let mut h = Harness::with_inbox_capacity(2, config(), 1);
    let (a, b) = (h.user("a"), h.user("b"));
    h.send(a, &ClientRequest::Join { room: "first", since: 0 });
    h.send(b, &ClientRequest::Join { room: "second", since: 0 });
    let rooms = |h: &Harness| -> Vec<String> {
        h.inboxes[1]
            .try_iter()
            .filter_map(|c| match c {
                ShardCommand::RoomInterest { room, joined: true, .. } => Some(room.to_string()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(rooms(&h), ["first"], "the second announcement did not fit");
    h.advance(u64::from(h.config.timer_tick_ms));
    assert_eq!(rooms(&h), ["second"], "sent again on the next tick, now that there is room");
    h.advance(u64::from(h.config.timer_tick_ms) * 3);
    assert!(rooms(&h).is_empty(), "and only until it got through");
}

#[test]
fn an_unsent_announcement_is_dropped_once_the_room_has_no_member_here() {
    let mut h = Harness::with_inbox_capacity(2, config(), 1);
    let (a, b) = (h.user("a"), h.user("b"));
    h.send(a, &ClientRequest::Join { room: "first", since: 0 });
    h.send(b, &ClientRequest::Join { room: "second", since: 0 });
    h.send(b, &ClientRequest::Leave { room: "second" });
    // Empty the inbox (the first announcement, and the leave's notice if it fitted).
    let _: Vec<_> = h.inboxes[1].try_iter().collect();
    h.advance(u64::from(h.config.timer_tick_ms) * 2);
    let joined: Vec<_> =
        h.inboxes[1].try_iter().filter(|c| matches!(c, ShardCommand::RoomInterest { joined: true, .. })).collect();
    assert!(joined.is_empty(), "a room nobody here is in is not announced");
}

#[test]
fn a_publisher_excluded_on_another_shard_does_not_exclude_a_connection_here() {
    use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
    let mut h = Harness::new(1, config());
    let member = h.user("m");
    h.send(member, &ClientRequest::Join { room: "r", since: 0 });
    h.written(member);
    // The same slot and generation on shard 1: another connection.
    let (key, generation) = super::super::conn::key_of(member);
    let foreign = super::super::conn_id(1, generation, key);
    let push = {
        let mut out = Vec::new();
        let message = corecast_proto::ServerMessage::Push {
            kind: corecast_proto::PushKind::Room,
            conv: "r",
            from: "p",
            seq: 0,
            ts_ms: 0,
            payload: b"x",
        };
        corecast_proto::encode_server(0, 0, &message, &mut out).unwrap();
        out
    };
    let frame = InternalFrameBytes::encode(&InternalFrame::RoomPush { room: "r".into(), except_conn: foreign, push });
    let now = h.now();
    h.core.on_frame(now, &frame);
    assert_eq!(h.written(member), vec![Got::Push("r".into(), b"x".to_vec())]);
}
