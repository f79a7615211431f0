//! Room streams on a router: it is the owner of the rooms with history or
//! presence that the nodes send to it (each node picks `owner_of(room,
//! linked routers)`, as for conversations). One [`StreamOwner`] (source =
//! the node a frame came from) gives every message its position, answers
//! catch-ups, HISTORY and PRESENCE, and keeps who is in each room by node.
//!
//! Order is what makes a catch-up gap-free: the owner's lock is held from
//! `handle` until its outputs are in the nodes' queues, so every node's
//! queue holds a room's positioned messages, and any answer to one of its
//! connections, in the order the owner made them. A JOIN's catch-up first
//! marks its node as having members of the room, so the live messages after
//! the answer follow it on the same queue. The lock is never held across an
//! await; what it guards is in-memory work on one frame.
//!
//! When a node's link ends (or the node links again) its members leave
//! every room's presence at once, with leave events where the room wants
//! them; the node's shards report their members again on the new link.
//!
//! A stream must never be taken up again after another owner had the room:
//! a member away meanwhile would recover from it with a silent gap. So when
//! the router's view of the live routers (the registry's) changes, it
//! forgets the rooms another router owns in the new view; a room that comes
//! back starts a new epoch. A node's snapshot of its members makes no join
//! events at any router (none of them just joined), except for users whose
//! leave was announced when their node went away (`StreamOwner`).

use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corecast_cluster::ownership::owner_of;
use corecast_cluster::room_stream::{OwnerOutput, PresencePage, RoomPolicy, StreamOwner};
use corecast_proto::internal::{ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, ErrorCode, ServerMessage};

use crate::link_hub::LinkHub;
use crate::routes::ConnSink;

/// How often messages past their TTL are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// The streams this router owns.
pub struct RoomStreams {
    owner: Mutex<Owner>,
}

struct Owner {
    streams: StreamOwner<Arc<str>>,
    /// Evictions already added to the metric.
    evictions_counted: u64,
    /// This router's id.
    me: String,
    /// The live routers as the registry shows them (this one included).
    routers: Vec<String>,
}

/// Whether router `me` owns `room` among `routers`.
fn owned_by(me: &str, routers: &[String], room: &str) -> bool {
    owner_of(room, routers).is_none_or(|owner| owner == me)
}

impl Owner {
    fn count_evictions(&mut self) {
        let total = self.streams.evictions();
        if total > self.evictions_counted {
            metrics::counter!("corecast_room_history_evictions_total").increment(total - self.evictions_counted);
            self.evictions_counted = total;
        }
    }
}

impl RoomStreams {
    /// Streams for the rooms `policy` gives history or presence, holding
    /// at most `budget_bytes` of history, on router `me` (alone until told
    /// of others).
    pub fn new(policy: RoomPolicy, budget_bytes: usize, me: &str) -> RoomStreams {
        let streams = StreamOwner::new(policy, budget_bytes);
        let owner = Owner { streams, evictions_counted: 0, me: me.to_string(), routers: vec![me.to_string()] };
        RoomStreams { owner: Mutex::new(owner) }
    }

    fn lock(&self) -> MutexGuard<'_, Owner> {
        // A panic while holding the lock leaves plain maps behind.
        corecast_proto::sync::lock(&self.owner)
    }

    /// Whether `room` keeps a history (its messages go through its owner).
    pub fn has_stream(&self, room: &str) -> bool {
        self.lock().streams.policy().options_for(room).is_some_and(|o| o.has_stream())
    }

    /// Takes a newer view of the live routers, and forgets the history and
    /// presence of the rooms another router owns in it.
    pub fn set_routers(&self, routers: Vec<String>) {
        let owner = &mut *self.lock();
        owner.routers = routers;
        let (me, routers) = (&owner.me, &owner.routers);
        owner.streams.forget_rooms(|room| owned_by(me, routers, room));
    }

    /// Forgets the histories of rooms another router owns in the current
    /// view (started here by nodes that moved a room late).
    pub fn forget_histories_owned_elsewhere(&self) {
        let owner = &mut *self.lock();
        let (me, routers) = (&owner.me, &owner.routers);
        owner.streams.forget_histories(|room| owned_by(me, routers, room));
    }

    /// The router that owns `room` in the current view of the routers.
    pub fn owner_of(&self, room: &str) -> String {
        let owner = self.lock();
        owner_of(room, &owner.routers).unwrap_or(&owner.me).to_string()
    }

    /// A page of `room`'s presence; `None` when the room keeps none.
    pub fn presence_page(&self, room: &str, after: &str, limit: usize) -> Option<PresencePage> {
        let owner = self.lock();
        owner.streams.policy().options_for(room).filter(|o| o.has_presence())?;
        Some(owner.streams.presence_page(room, after, limit))
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl LinkHub {
    /// Handles a frame for a room's owner that `node` sent: `RoomPublish`,
    /// `StreamRequest`, `RoomPresence`, `RoomPresenceSnapshot` or
    /// `PresenceQuery`.
    pub(crate) fn to_owner(&self, node: &Arc<str>, frame: &InternalFrameBytes) {
        let archived = frame.archived();
        if let ArchivedInternalFrame::StreamRequest { room, join: true, .. } = archived {
            // The live messages after the answer must follow it to the node.
            self.set_interest(room.as_str(), node, true);
        }
        let mut owner = self.streams().lock();
        let outputs = owner.streams.handle(archived, node, now_ms());
        owner.count_evictions();
        let Some(outputs) = outputs else { return self.refuse(node, archived) };
        let except_conn = match archived {
            ArchivedInternalFrame::RoomPublish { except_conn, .. } => except_conn.to_native(),
            _ => 0,
        };
        for output in outputs {
            self.send_output(output, node, except_conn);
        }
        drop(owner);
    }

    /// Sends an owner's output on (the owner's lock is held by the caller).
    fn send_output(&self, output: OwnerOutput, node: &str, except_conn: u64) {
        match output {
            OwnerOutput::Room { room, frame } if except_conn != 0 => {
                // The excluded connection's id means something only on the
                // publisher's node; the others get the push for everyone.
                let mut everyone = None;
                for target in self.room_nodes(&room) {
                    if &*target == node {
                        self.to_node(node, frame.clone());
                        continue;
                    }
                    let everyone = everyone.get_or_insert_with(|| {
                        InternalFrameBytes::encode(&InternalFrame::RoomPush {
                            room: room.clone(),
                            except_conn: 0,
                            push: frame.wire_push().to_vec(),
                        })
                    });
                    self.to_node(&target, everyone.clone());
                }
            }
            OwnerOutput::Room { room, frame } => {
                self.publish_room(&room, &frame, None);
            }
            OwnerOutput::Conn { frame, .. } => self.to_node(node, frame),
        }
    }

    /// A frame the owner did not take: this router has no `[[rooms]]` rule
    /// giving the room what the node's rule gives it. A waiting request is
    /// answered so the client learns it at once.
    fn refuse(&self, node: &str, frame: &ArchivedInternalFrame) {
        let ArchivedInternalFrame::StreamRequest { room, conn_id, rid, join, .. } = frame else {
            if let ArchivedInternalFrame::RoomPublish { room, .. } = frame {
                // Once per run: a mismatch refuses every such message.
                static WARNED: Once = Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(%room, %node, "a message for a room this router keeps no history of was dropped: \
                         nodes and routers need the same [[rooms]] rules (counted in \
                         corecast_router_room_publishes_refused_total)");
                });
                metrics::counter!("corecast_router_room_publishes_refused_total").increment(1);
            }
            return;
        };
        let message = "the router keeps no history of this room: nodes and routers need the same [[rooms]] rules";
        let error = ServerMessage::Error { code: ErrorCode::NotFound.as_u16(), message };
        let mut frames = Vec::new();
        if encode_server(rid.to_native(), 0, &error, &mut frames).is_ok() {
            let reply = InternalFrame::StreamReply {
                room: room.to_string(),
                conn_id: conn_id.to_native(),
                frames,
                join: *join,
            };
            self.to_node(node, InternalFrameBytes::encode(&reply));
        }
    }

    /// `node`'s members left every room with presence (its link ended, or
    /// it linked again and reports them anew).
    pub(crate) fn forget_node_presence(&self, node: &Arc<str>) {
        let owner = &mut *self.streams().lock();
        for output in owner.streams.forget_source(node, now_ms()) {
            self.send_output(output, node, 0);
        }
    }

    /// Sends an operator's message for a room with history to a linked node,
    /// which relays it to the room's owner as its own members' messages go
    /// (the owner is the nodes' choice). The node it went to, or `None`
    /// when no node is linked or its queue is full.
    pub fn relay_publish(&self, room: &str, from: &str, payload: &[u8]) -> Option<String> {
        let frame = InternalFrameBytes::encode(&InternalFrame::RoomPublish {
            room: room.to_string(),
            from: from.to_string(),
            except_conn: 0,
            payload: payload.to_vec(),
        });
        let mut nodes = self.nodes_with_room(room);
        nodes.extend(self.linked_nodes());
        nodes.into_iter().find(|node| self.try_to_node(node, frame.clone()))
    }

    /// Drops history past its TTL every second, until the task is dropped.
    pub async fn expire_room_histories(self: Arc<Self>) {
        let mut every = tokio::time::interval(EXPIRE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.streams().lock().streams.expire(now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use corecast_cluster::room_stream::RoomRule;
    use corecast_proto::{decode_server, position_offset, PushKind};

    use super::*;

    fn hub() -> LinkHub {
        let rule = RoomRule {
            pattern: "live-*".into(),
            history_size: 100,
            history_ttl_ms: 0,
            presence: true,
            join_leave_events: true,
        };
        let streams = RoomStreams::new(RoomPolicy::new(&[rule]).unwrap(), 1 << 20, "r1");
        LinkHub::new("key".into(), None, streams)
    }

    fn send(hub: &LinkHub, node: &str, frame: InternalFrame) {
        hub.to_owner(&Arc::from(node), &InternalFrameBytes::encode(&frame));
    }

    fn publish(hub: &LinkHub, node: &str, text: &str, except_conn: u64) {
        let frame = InternalFrame::RoomPublish {
            room: "live-1".into(),
            from: "alice".into(),
            except_conn,
            payload: text.as_bytes().to_vec(),
        };
        send(hub, node, frame);
    }

    /// What a node's queue holds: (frame kind, except_conn, client messages).
    fn drain(queue: &flume::Receiver<InternalFrameBytes>) -> Vec<(&'static str, u64, Vec<String>)> {
        queue
            .try_iter()
            .map(|frame| {
                let except = match frame.archived() {
                    ArchivedInternalFrame::RoomPush { except_conn, .. } => except_conn.to_native(),
                    _ => 0,
                };
                let bytes = frame.wire_push();
                let mut messages = Vec::new();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    let message = match decode_server(&rest[..len]).unwrap().message {
                        ServerMessage::Push { kind: PushKind::Room, seq, payload, .. } => {
                            format!("{}@{}", String::from_utf8_lossy(payload), position_offset(seq))
                        }
                        ServerMessage::Push { kind: PushKind::Presence, from, payload, .. } => {
                            format!("{from}:{}", payload[0])
                        }
                        other => format!("{other:?}"),
                    };
                    messages.push(message);
                    rest = &rest[len..];
                }
                (frame.archived().kind(), except, messages)
            })
            .collect()
    }

    #[test]
    fn a_publisher_s_excluded_connection_is_excluded_on_its_node_only() {
        let hub = hub();
        let (n1, n2, n3) = (hub.link_for_test("n1"), hub.link_for_test("n2"), hub.link_for_test("n3"));
        hub.set_interest("live-1", "n1", true);
        hub.set_interest("live-1", "n2", true);
        publish(&hub, "n1", "hi", 7);
        assert_eq!(drain(&n1), vec![("room_push", 7, vec!["hi@1".to_string()])]);
        // Connection 7 of n2 is another connection.
        assert_eq!(drain(&n2), vec![("room_push", 0, vec!["hi@1".to_string()])]);
        assert!(drain(&n3).is_empty(), "n3 has no members");
    }

    #[test]
    fn a_join_s_catch_up_is_followed_by_the_live_messages_on_its_node_s_queue() {
        let hub = hub();
        let (n1, n2) = (hub.link_for_test("n1"), hub.link_for_test("n2"));
        hub.set_interest("live-1", "n1", true);
        publish(&hub, "n1", "a", 0);
        publish(&hub, "n1", "b", 0);
        let first = drain(&n1);
        assert_eq!(first.len(), 2);
        // n2 asks (its interest announcement not seen here yet).
        let request =
            InternalFrame::StreamRequest { room: "live-1".into(), conn_id: 5, rid: 3, since: 0, limit: 0, join: true };
        send(&hub, "n2", request);
        publish(&hub, "n1", "c", 0);
        let got = drain(&n2);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "stream_reply");
        assert!(got[0].2.last().unwrap().contains("Joined"), "{got:?}");
        assert_eq!(got[1], ("room_push", 0, vec!["c@3".to_string()]));
        assert_eq!(drain(&n1), vec![("room_push", 0, vec!["c@3".to_string()])]);
    }

    #[test]
    fn a_request_for_a_room_without_history_is_answered_not_found() {
        let hub = hub();
        let n1 = hub.link_for_test("n1");
        let request =
            InternalFrame::StreamRequest { room: "lobby".into(), conn_id: 5, rid: 3, since: 0, limit: 0, join: true };
        send(&hub, "n1", request);
        let got = drain(&n1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "stream_reply");
        assert!(got[0].2[0].contains("code: 5001"), "{got:?}");
    }

    /// A `live-` room that router `router` owns among r1 and r2.
    fn room_owned_by(router: &str) -> String {
        let routers = ["r1".to_string(), "r2".to_string()];
        (0..).map(|i| format!("live-{i}")).find(|room| owner_of(room, &routers) == Some(router)).unwrap()
    }

    #[test]
    fn a_snapshot_makes_no_join_events_and_a_new_view_forgets_what_others_own() {
        let hub = hub();
        let n1 = hub.link_for_test("n1");
        hub.streams().set_routers(vec!["r1".into(), "r2".into()]);
        let snapshot =
            |room: &str| InternalFrame::RoomPresenceSnapshot { room: room.into(), shard: 0, users: vec!["bob".into()] };
        let (mine, theirs) = (room_owned_by("r1"), room_owned_by("r2"));
        for room in [&mine, &theirs] {
            hub.set_interest(room, "n1", true);
            send(&hub, "n1", snapshot(room));
            assert_eq!(hub.streams().presence_page(room, "", 10).unwrap().users, 1, "{room} takes bob in");
        }
        assert_eq!(drain(&n1), vec![], "members taken in, not joining");
        // A newer view of the routers: what r2 owns is forgotten.
        hub.streams().set_routers(vec!["r1".into(), "r2".into(), "r3".into()]);
        assert_eq!(hub.streams().presence_page(&theirs, "", 10).unwrap().users, 0);
    }

    #[test]
    fn a_node_s_members_leave_with_its_link() {
        let hub = hub();
        let (n1, n2) = (hub.link_for_test("n1"), hub.link_for_test("n2"));
        hub.set_interest("live-1", "n1", true);
        hub.set_interest("live-1", "n2", true);
        let joined = |user: &str| InternalFrame::RoomPresence {
            room: "live-1".into(),
            user: user.into(),
            shard: 0,
            joined: true,
        };
        send(&hub, "n1", joined("bob"));
        send(&hub, "n2", joined("carol"));
        send(&hub, "n2", joined("bob"));
        assert_eq!(hub.streams().presence_page("live-1", "", 10).unwrap().users, 2);
        drain(&n1);
        drain(&n2);
        hub.forget_node_presence(&Arc::from("n2"));
        // Bob stays through n1; carol leaves.
        assert_eq!(drain(&n1), vec![("room_push", 0, vec!["carol:0".to_string()])]);
        let page = hub.streams().presence_page("live-1", "", 10).unwrap();
        assert_eq!((page.users, page.conns), (1, 1));
        assert!(hub.streams().presence_page("lobby", "", 10).is_none());
    }
}
