//! Room streams on one shard, with simulated time: a JOIN in a room with
//! history is answered by its owner's catch-up, the room's live messages
//! wait for that answer (they are in it), frames after the JOIN wait with
//! it, and an owner that never answers fails the JOIN after a bounded time.

use corecast_cluster::room_stream::RoomRule;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_client, encode_server, ClientRequest, ErrorCode, PushKind, ServerMessage};

use super::{config, Got, Harness};
use crate::config::Config;
use crate::shard::core::streams::owner_shard;
use crate::shard::inbox::{CoreCommand, ShardCommand};

fn with_history() -> Config {
    let rule = RoomRule {
        pattern: "live-*".into(),
        history_size: 100,
        history_ttl_ms: 0,
        presence: false,
        join_leave_events: false,
    };
    Config { rooms: vec![rule], ..config() }
}

/// A room of this pattern that shard 1 of 2 owns.
fn room_owned_by_shard_1() -> String {
    (0..).map(|i| format!("live-{i}")).find(|room| owner_shard(room, 2) == 1).unwrap()
}

/// Acknowledges shard 0's room announcement as shard 1 would.
fn acknowledge_announcement(h: &mut Harness) {
    let ack = h.inboxes[1].try_iter().find_map(|c| match c {
        ShardCommand::RoomInterest { ack: Some(ack), joined: true, .. } => Some(ack),
        _ => None,
    });
    ack.expect("shard 1 is told").send();
    let acked = h.inboxes[0].try_recv().unwrap();
    let now = h.now();
    h.core.on_command(now, acked);
    h.core.end_round();
}

fn frame_from_owner(h: &mut Harness, frame: InternalFrame) {
    let now = h.now();
    h.core.on_frame(now, &InternalFrameBytes::encode(&frame));
    h.core.end_round();
}

/// A room PUSH as the owner encodes it, appended to `out`.
fn push_bytes(room: &str, seq: u64, text: &str, out: &mut Vec<u8>) {
    let message =
        ServerMessage::Push { kind: PushKind::Room, conv: room, from: "p", seq, ts_ms: 1, payload: text.as_bytes() };
    encode_server(0, 0, &message, out).unwrap();
}

fn room_push(room: &str, seq: u64, text: &str) -> InternalFrame {
    let mut push = Vec::new();
    push_bytes(room, seq, text, &mut push);
    InternalFrame::RoomPush { room: room.into(), except_conn: 0, push }
}

/// A user on shard 0 of 2 JOINs a room shard 1 owns and sends a PING
/// behind it; the announcement is acknowledged, so the catch-up request is
/// with the owner. Returns the connection and the two rids.
fn join_waiting_for_the_owner(h: &mut Harness, room: &str) -> (u64, u32, u32) {
    let id = h.user("u");
    let join = h.send(id, &ClientRequest::Join { room, since: 0 });
    let ping = h.send(id, &ClientRequest::Ping);
    acknowledge_announcement(h);
    (id, join, ping)
}

#[test]
fn on_the_owner_shard_a_join_is_answered_joined_and_publishes_get_positions() {
    let mut h = Harness::new(1, with_history());
    let id = h.user("u");
    h.send(id, &ClientRequest::Join { room: "live-a", since: 0 });
    assert_eq!(h.written(id), vec![Got::Other], "JOINED");
    let publish = h.send(id, &ClientRequest::Publish { room: "live-a", payload: b"one" });
    assert_eq!(h.written(id), vec![Got::Ok(publish), Got::Push("live-a".into(), b"one".to_vec())]);
    // A plain room is answered as before.
    let join = h.send(id, &ClientRequest::Join { room: "lobby", since: 0 });
    assert_eq!(h.written(id), vec![Got::Ok(join)]);
}

#[test]
fn frames_after_a_join_on_the_owner_shard_wait_for_its_answer() {
    let mut h = Harness::new(1, with_history());
    let id = h.user("u");
    let mut frames = Vec::new();
    encode_client(7, 0, &ClientRequest::Join { room: "live-b", since: 0 }, &mut frames).unwrap();
    encode_client(8, 0, &ClientRequest::Ping, &mut frames).unwrap();
    h.bytes(id, &frames);
    assert_eq!(h.written(id), vec![Got::Other, Got::Pong(8)], "JOINED, then the PING sent with it");
}

#[test]
fn live_messages_wait_for_the_catch_up_that_holds_them() {
    let mut h = Harness::new(2, with_history());
    let room = room_owned_by_shard_1();
    let (id, join, ping) = join_waiting_for_the_owner(&mut h, &room);
    // The owner sent message 1 before it took the request: it is in the
    // catch-up, so the live copy is not delivered.
    frame_from_owner(&mut h, room_push(&room, 1, "one"));
    assert_eq!(h.written(id), vec![], "neither the live message nor the PING yet");
    let mut frames = Vec::new();
    push_bytes(&room, 1, "one", &mut frames);
    encode_server(join, 0, &ServerMessage::Joined { room: &room, position: 1, recovered: true }, &mut frames).unwrap();
    frame_from_owner(&mut h, InternalFrame::StreamReply { room: room.clone(), conn_id: id, frames, join: true });
    frame_from_owner(&mut h, room_push(&room, 2, "two"));
    assert_eq!(
        h.written(id),
        vec![
            Got::Push(room.clone(), b"one".to_vec()),
            Got::Other,
            Got::Pong(ping),
            Got::Push(room.clone(), b"two".to_vec())
        ],
        "the catch-up, then the held PING, then live messages"
    );
}

#[test]
fn an_owner_that_never_answers_fails_the_join_after_a_bounded_time() {
    let mut h = Harness::new(2, with_history());
    let room = room_owned_by_shard_1();
    let (id, join, ping) = join_waiting_for_the_owner(&mut h, &room);
    h.advance(super::super::streams::CATCH_UP_WAIT_MS - 200);
    assert_eq!(h.written(id), vec![]);
    h.advance(200);
    assert_eq!(
        h.written(id),
        vec![Got::Error(join, ErrorCode::Unavailable.as_u16()), Got::Pong(ping)],
        "the JOIN fails and the frames after it go on"
    );
    let publish = h.send(id, &ClientRequest::Publish { room: &room, payload: b"x" });
    assert_eq!(h.written(id), vec![Got::Error(publish, ErrorCode::Forbidden.as_u16())], "not a member");
    // A late answer changes nothing.
    let mut frames = Vec::new();
    encode_server(join, 0, &ServerMessage::Joined { room: &room, position: 1, recovered: false }, &mut frames).unwrap();
    frame_from_owner(&mut h, InternalFrame::StreamReply { room: room.clone(), conn_id: id, frames, join: true });
    assert_eq!(h.written(id), vec![]);
}

#[test]
fn in_a_cluster_an_unavailable_answer_ends_the_wait_and_the_membership() {
    let config = Config { redis_url: Some("redis://127.0.0.1:1/".into()), ..with_history() };
    let mut h = Harness::new(1, config);
    let id = h.user("u");
    let join = h.send(id, &ClientRequest::Join { room: "live-c", since: 0 });
    let ping = h.send(id, &ClientRequest::Ping);
    // The uplink acknowledges the room for the routers, then takes the
    // catch-up request for the owner router.
    let ack = h.core_inbox.try_iter().find_map(|c| match c {
        CoreCommand::RoomInterest { ack: Some(ack), .. } => Some(ack),
        _ => None,
    });
    ack.expect("the uplink is told").send();
    let acked = h.inboxes[0].try_recv().unwrap();
    let now = h.now();
    h.core.on_command(now, acked);
    h.core.end_round();
    assert!(h.core_inbox.try_iter().any(|c| matches!(c, CoreCommand::ToOwner(_))), "asked the owner router");
    // No router took it: the uplink answers ERROR unavailable for the JOIN.
    let mut frames = Vec::new();
    let error = ServerMessage::Error { code: ErrorCode::Unavailable.as_u16(), message: "no router" };
    encode_server(join, 0, &error, &mut frames).unwrap();
    frame_from_owner(&mut h, InternalFrame::ConnFrames { conn_ids: vec![id], frames, reply: true });
    assert_eq!(h.written(id), vec![Got::Error(join, ErrorCode::Unavailable.as_u16()), Got::Pong(ping)]);
    let publish = h.send(id, &ClientRequest::Publish { room: "live-c", payload: b"x" });
    assert_eq!(h.written(id), vec![Got::Error(publish, ErrorCode::Forbidden.as_u16())], "not a member");
    h.advance(super::super::streams::CATCH_UP_WAIT_MS + 200);
    assert_eq!(h.written(id), vec![], "no second answer when the wait would have ended");
}
