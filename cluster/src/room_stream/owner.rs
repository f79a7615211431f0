//! The owner of rooms' streams: takes the internal frames sent to a room's
//! owner and answers with the frames to send on. The shard that owns a room
//! on a single node and the router that owns it in a cluster run the same
//! code; they differ only in where the outputs go.

use std::hash::Hash;
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::internal::{ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, PresenceEntry, PushKind, ServerMessage};
use rustc_hash::FxHashMap;

use super::history::{CatchUp, RoomHistories};
use super::options::RoomPolicy;
use super::presence::{PresencePage, RoomPresence};

/// Users a PRESENCE answer holds at most (it must fit one frame).
const PRESENCE_PAGE_MAX: usize = 1_000;

/// What an owner sends on.
#[derive(Debug)]
pub enum OwnerOutput {
    /// A `RoomPush` for every member of its room (a positioned message or a
    /// presence event).
    Room {
        /// The room.
        room: String,
        /// The frame.
        frame: InternalFrameBytes,
    },
    /// A frame for one connection (`StreamReply` or `ConnFrames`).
    Conn {
        /// The connection.
        conn_id: u64,
        /// The frame.
        frame: InternalFrameBytes,
    },
}

/// How long an owner remembers the users whose source went away: a
/// snapshot that brings one back within it is a real return (a join
/// event), any other member a snapshot brings is not news.
const DEPARTED_KEEP_MS: u64 = 60_000;

/// Histories and presence of the rooms this owner owns.
pub struct StreamOwner<S> {
    policy: RoomPolicy,
    histories: RoomHistories,
    /// By source and the member's shard there.
    presence: RoomPresence<(S, u16)>,
    /// (room, user) pairs whose leave event came from a lost source, and
    /// when: only these get a join event when a snapshot brings them back.
    departed: FxHashMap<(Arc<str>, Arc<str>), u64>,
}

impl<S: Clone + Eq + Hash> StreamOwner<S> {
    /// An owner applying `policy`, holding histories within `budget_bytes`.
    pub fn new(policy: RoomPolicy, budget_bytes: usize) -> StreamOwner<S> {
        StreamOwner {
            policy,
            histories: RoomHistories::new(budget_bytes),
            presence: RoomPresence::default(),
            departed: FxHashMap::default(),
        }
    }

    /// Handles a frame sent to the owner by `source` (a node in a cluster,
    /// nothing on a single node) at wall time `now_ms`. Frames that are not
    /// for an owner, or for a room without what they ask for, give nothing.
    pub fn handle(&mut self, frame: &ArchivedInternalFrame, source: &S, now_ms: u64) -> Option<Vec<OwnerOutput>> {
        match frame {
            ArchivedInternalFrame::RoomPublish { room, from, except_conn, payload } => {
                let options = self.policy.options_for(room)?;
                let make = |seq: u64| {
                    let message = ServerMessage::Push {
                        kind: PushKind::Room,
                        conv: room,
                        from,
                        seq,
                        ts_ms: now_ms,
                        payload: payload.as_slice(),
                    };
                    encode(0, &message)
                };
                let push = if options.has_stream() {
                    self.histories.append(room, &options, now_ms, |pos| Bytes::from(make(pos)))
                } else {
                    Bytes::from(make(0))
                };
                Some(vec![room_push(room, except_conn.to_native(), push.to_vec())])
            }
            ArchivedInternalFrame::StreamRequest { room, conn_id, rid, since, limit, join } => {
                let options = self.policy.options_for(room).filter(|o| o.has_stream())?;
                let (rid, since) = (rid.to_native(), since.to_native());
                let mut frames = Vec::new();
                if *join {
                    let catch_up = if since == 0 {
                        let position = self.histories.position(room, &options);
                        CatchUp { pushes: Vec::new(), position, complete: false }
                    } else {
                        self.histories.recover(room, &options, since, now_ms)
                    };
                    for push in &catch_up.pushes {
                        frames.extend_from_slice(push);
                    }
                    let joined =
                        ServerMessage::Joined { room, position: catch_up.position, recovered: catch_up.complete };
                    frames.extend_from_slice(&encode(rid, &joined));
                } else {
                    let catch_up = self.histories.history(room, &options, since, limit.to_native(), now_ms);
                    for push in &catch_up.pushes {
                        // The stored PUSH with this request's rid.
                        let start = frames.len();
                        frames.extend_from_slice(push);
                        frames[start + 8..start + 12].copy_from_slice(&rid.to_be_bytes());
                    }
                    let end =
                        ServerMessage::HistoryEnd { room, position: catch_up.position, complete: catch_up.complete };
                    frames.extend_from_slice(&encode(rid, &end));
                }
                let conn_id = conn_id.to_native();
                let reply = InternalFrame::StreamReply { room: room.to_string(), conn_id, frames, join: *join };
                Some(vec![OwnerOutput::Conn { conn_id, frame: InternalFrameBytes::encode(&reply) }])
            }
            ArchivedInternalFrame::RoomPresence { room, user, shard, joined } => {
                let options = self.policy.options_for(room).filter(|o| o.has_presence())?;
                let source = (source.clone(), shard.to_native());
                let event = if *joined {
                    self.departed.remove(&(Arc::from(room.as_str()), Arc::from(user.as_str())));
                    self.presence.join(room, user, &source)
                } else {
                    self.presence.leave(room, user, &source)
                };
                (event && options.join_leave_events).then(|| vec![presence_event(room, user, *joined, now_ms)])
            }
            ArchivedInternalFrame::RoomPresenceSnapshot { room, shard, users } => {
                let options = self.policy.options_for(room).filter(|o| o.has_presence())?;
                let source = (source.clone(), shard.to_native());
                let (joined, left) = self.presence.replace(room, &source, users.iter().map(|u| u.as_str()));
                if !options.join_leave_events {
                    return None;
                }
                // A snapshot reports members, not joins: a new owner (the
                // routers changed) hears of everyone at once. Only a user
                // whose leave was announced when their source went away
                // is announced back.
                let room: Arc<str> = Arc::from(room.as_str());
                let returned: Vec<Arc<str>> = joined
                    .into_iter()
                    .filter(|user| self.departed.remove(&(room.clone(), user.clone())).is_some())
                    .collect();
                let events = returned.iter().map(|user| presence_event(&room, user, true, now_ms));
                Some(events.chain(left.iter().map(|user| presence_event(&room, user, false, now_ms))).collect())
            }
            ArchivedInternalFrame::PresenceQuery { room, conn_id, rid, after, limit } => {
                let page = self.presence_page(room, after, limit.to_native() as usize);
                let entries: Vec<PresenceEntry<'_>> = page
                    .entries
                    .iter()
                    .map(|(user, devices)| PresenceEntry { user, devices: (*devices).min(u16::MAX as u32) as u16 })
                    .collect();
                let list = ServerMessage::PresenceList {
                    room,
                    users: page.users,
                    conns: page.conns,
                    entries,
                    next: &page.next,
                };
                let conn_id = conn_id.to_native();
                let reply = InternalFrame::ConnFrames {
                    conn_ids: vec![conn_id],
                    frames: encode(rid.to_native(), &list),
                    reply: true,
                };
                Some(vec![OwnerOutput::Conn { conn_id, frame: InternalFrameBytes::encode(&reply) }])
            }
            _ => None,
        }
    }

    /// A page of `room`'s presence (for PRESENCE and the admin API), at
    /// most [`PRESENCE_PAGE_MAX`] users.
    pub fn presence_page(&self, room: &str, after: &str, limit: usize) -> PresencePage {
        self.presence.page(room, after, limit.min(PRESENCE_PAGE_MAX))
    }

    /// Everything `source` reported left with it; returns the leave events
    /// for rooms that want them.
    pub fn forget_source(&mut self, source: &S, now_ms: u64) -> Vec<OwnerOutput> {
        let left: Vec<(Arc<str>, Arc<str>)> = self
            .presence
            .forget_sources(|(s, _)| s == source)
            .into_iter()
            .filter(|(room, _)| self.policy.options_for(room).is_some_and(|o| o.join_leave_events))
            .collect();
        let events = left.iter().map(|(room, user)| presence_event(room, user, false, now_ms)).collect();
        self.departed.extend(left.into_iter().map(|pair| (pair, now_ms)));
        events
    }

    /// Forgets the history and presence of the rooms `keep` refuses (in a
    /// cluster: rooms another router owns now), without events: if one
    /// comes back here its stream starts a new epoch and its members are
    /// reported anew. An owner that took a room up again where it left it
    /// would give a member that was away meanwhile a silent gap.
    pub fn forget_rooms(&mut self, keep: impl Fn(&str) -> bool) {
        self.histories.retain(&keep);
        self.presence.retain_rooms(keep);
    }

    /// As [`StreamOwner::forget_rooms`], histories only.
    pub fn forget_histories(&mut self, keep: impl Fn(&str) -> bool) {
        self.histories.retain(keep);
    }

    /// Drops messages past their TTL, and forgets departures older than
    /// [`DEPARTED_KEEP_MS`].
    pub fn expire(&mut self, now_ms: u64) {
        self.histories.expire(now_ms);
        self.departed.retain(|_, at| *at + DEPARTED_KEEP_MS > now_ms);
    }

    /// Rooms whose whole history the budget evicted, since start.
    pub fn evictions(&self) -> u64 {
        self.histories.evictions()
    }

    /// Bytes of history held.
    pub fn history_bytes(&self) -> usize {
        self.histories.used_bytes()
    }

    /// The rules this owner applies.
    pub fn policy(&self) -> &RoomPolicy {
        &self.policy
    }
}

fn encode(rid: u32, message: &ServerMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    // Room names, user ids and payloads arrive checked against the frame
    // limits by the shard that took them from a client.
    if let Err(e) = encode_server(rid, 0, message, &mut out) {
        tracing::error!("a room stream frame could not be encoded: {e}");
    }
    out
}

fn room_push(room: &str, except_conn: u64, push: Vec<u8>) -> OwnerOutput {
    let frame = InternalFrameBytes::encode(&InternalFrame::RoomPush { room: room.to_string(), except_conn, push });
    OwnerOutput::Room { room: room.to_string(), frame }
}

/// A PUSH kind 5: `user` joined (payload `1`) or left (payload `0`).
fn presence_event(room: &str, user: &str, joined: bool, now_ms: u64) -> OwnerOutput {
    let payload = [u8::from(joined)];
    let message = ServerMessage::Push {
        kind: PushKind::Presence,
        conv: room,
        from: user,
        seq: 0,
        ts_ms: now_ms,
        payload: &payload,
    };
    room_push(room, 0, encode(0, &message))
}

#[cfg(test)]
mod tests {
    use corecast_proto::{decode_server, position_offset};

    use super::*;
    use crate::room_stream::RoomRule;

    fn owner() -> StreamOwner<u8> {
        let rule = RoomRule {
            pattern: "live-*".into(),
            history_size: 100,
            history_ttl_ms: 0,
            presence: true,
            join_leave_events: true,
        };
        StreamOwner::new(RoomPolicy::new(&[rule]).unwrap(), 1 << 20)
    }

    fn send(owner: &mut StreamOwner<u8>, frame: InternalFrame, source: u8) -> Option<OwnerOutput> {
        let bytes = InternalFrameBytes::encode(&frame);
        let mut outputs = owner.handle(bytes.archived(), &source, 1_000)?;
        assert_eq!(outputs.len(), 1);
        outputs.pop()
    }

    fn publish(owner: &mut StreamOwner<u8>, room: &str, text: &str) -> u64 {
        let frame = InternalFrame::RoomPublish {
            room: room.into(),
            from: "alice".into(),
            except_conn: 0,
            payload: text.as_bytes().to_vec(),
        };
        let Some(OwnerOutput::Room { frame, .. }) = send(owner, frame, 0) else { panic!("no room push") };
        match decode_server(&frame.wire_push()).unwrap().message {
            ServerMessage::Push { seq, .. } => seq,
            other => panic!("{other:?}"),
        }
    }

    /// The client frames of a reply.
    fn frames(output: Option<OwnerOutput>) -> Vec<(u32, String)> {
        let Some(OwnerOutput::Conn { frame, .. }) = output else { panic!("no reply") };
        let bytes = frame.wire_push();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let f = decode_server(&rest[..len]).unwrap();
            out.push((f.rid, format!("{:?}", f.message)));
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn publishes_get_positions_and_a_join_since_one_gets_the_rest() {
        let mut owner = owner();
        let seqs: Vec<u64> = (0..3).map(|i| publish(&mut owner, "live-1", &format!("m{i}"))).collect();
        assert_eq!(seqs.iter().map(|&s| position_offset(s)).collect::<Vec<_>>(), vec![1, 2, 3]);
        let request = InternalFrame::StreamRequest {
            room: "live-1".into(),
            conn_id: 9,
            rid: 4,
            since: seqs[0],
            limit: 0,
            join: true,
        };
        let got = frames(send(&mut owner, request, 1));
        assert_eq!(got.len(), 3);
        assert!(got[0].1.contains("[109, 49]") && got[1].1.contains("[109, 50]"), "m1 then m2: {got:?}");
        assert_eq!(got[2].0, 4);
        assert!(got[2].1.contains("Joined") && got[2].1.contains("recovered: true"), "{got:?}");
    }

    #[test]
    fn history_answers_carry_the_request_rid() {
        let mut owner = owner();
        publish(&mut owner, "live-1", "a");
        publish(&mut owner, "live-1", "b");
        let request =
            InternalFrame::StreamRequest { room: "live-1".into(), conn_id: 9, rid: 7, since: 0, limit: 1, join: false };
        let got = frames(send(&mut owner, request, 1));
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(rid, _)| *rid == 7));
        assert!(got[0].1.contains("payload: [98]"), "only the newest: {got:?}");
        assert!(got[1].1.contains("HistoryEnd") && got[1].1.contains("complete: true"));
    }

    #[test]
    fn plain_rooms_are_not_handled() {
        let mut owner = owner();
        let request =
            InternalFrame::StreamRequest { room: "lobby".into(), conn_id: 9, rid: 7, since: 0, limit: 1, join: true };
        assert!(send(&mut owner, request, 1).is_none());
    }

    #[test]
    fn a_snapshot_announces_only_users_that_left_with_their_source() {
        let mut owner = owner();
        let snapshot = |users: &[&str]| InternalFrame::RoomPresenceSnapshot {
            room: "live-1".into(),
            shard: 0,
            users: users.iter().map(|u| u.to_string()).collect(),
        };
        // A new owner hears of members all at once: no events.
        let bytes = InternalFrameBytes::encode(&snapshot(&["ann", "bob"]));
        assert_eq!(owner.handle(bytes.archived(), &1, 1_000).map(|o| o.len()), Some(0));
        // Their node goes away: leave events; when it comes back, its
        // snapshot brings them back with join events.
        assert_eq!(owner.forget_source(&1, 2_000).len(), 2);
        let bytes = InternalFrameBytes::encode(&snapshot(&["ann", "bob", "cy"]));
        assert_eq!(owner.handle(bytes.archived(), &1, 3_000).map(|o| o.len()), Some(2), "ann and bob, not cy");
        // Departures are forgotten after a while.
        owner.forget_source(&1, 4_000);
        owner.expire(4_000 + DEPARTED_KEEP_MS);
        let bytes = InternalFrameBytes::encode(&snapshot(&["ann"]));
        assert_eq!(owner.handle(bytes.archived(), &1, 4_000 + DEPARTED_KEEP_MS).map(|o| o.len()), Some(0));
    }

    #[test]
    fn presence_events_only_for_first_and_last_connection() {
        let mut owner = owner();
        let join = |user: &str| InternalFrame::RoomPresence {
            room: "live-1".into(),
            user: user.into(),
            shard: 0,
            joined: true,
        };
        assert!(matches!(send(&mut owner, join("bob"), 1), Some(OwnerOutput::Room { .. })));
        assert!(send(&mut owner, join("bob"), 2).is_none(), "bob's second device");
        let events = owner.forget_source(&1, 2_000);
        assert!(events.is_empty(), "bob is still there from source 2");
        let events = owner.forget_source(&2, 2_000);
        assert_eq!(events.len(), 1);
        let query =
            InternalFrame::PresenceQuery { room: "live-1".into(), conn_id: 3, rid: 1, after: "".into(), limit: 10 };
        let got = frames(send(&mut owner, query, 0));
        assert!(got[0].1.contains("users: 0"), "{got:?}");
    }
}
