//! The uplink's state: the router links that are up, which of this node's
//! shards have members of each room, room announcements waiting for the
//! routers' acknowledgements, and the requests (chat, and those for a
//! room's owner) waiting for an answer on each link.
//!
//! When the set of linked routers changes (a link comes up or goes down)
//! every shard is asked to report its members of rooms with presence
//! again: a room may have a new owner, and a router that lost a link
//! forgot what came over it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corecast_cluster::interest::{Announcements, Interest, PeerSet, ShardSet};
use corecast_cluster::ownership::owner_of;
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, ErrorCode, Header, ServerMessage};
use rustc_hash::FxHashMap;

use super::ClusterSettings;
use crate::shard::{InterestAck, Mesh, ShardCommand};

/// How long a JOIN waits for the routers to acknowledge its room's first
/// member on this node before it is answered anyway (a router that does not
/// answer is down, and learns the room from the node's hello when back).
const INTEREST_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a room announcement a router's full queue refused is offered
/// to it again.
const INTEREST_RESEND_EVERY: Duration = Duration::from_millis(500);

struct RouterPeer {
    frames: flume::Sender<InternalFrameBytes>,
    generation: u64,
}

#[derive(Default)]
struct State {
    routers: BTreeMap<String, RouterPeer>,
    /// Which of this node's shards have members of which room.
    rooms: Interest<ShardSet>,
    /// First-member announcements waiting for the routers.
    announcements: Announcements<InterestAck>,
    /// Requests waiting for an answer (by conn id and rid): the router
    /// each went to.
    pending: FxHashMap<(u64, u32), String>,
}

/// The node's uplink to the router tier.
pub struct Uplink {
    settings: ClusterSettings,
    mesh: Mesh,
    state: Mutex<State>,
}

/// Lets every waiting JOIN go on.
fn answer(acks: impl IntoIterator<Item = InterestAck>) {
    for ack in acks {
        ack.send();
    }
}

fn request_address(frame: &InternalFrameBytes) -> Option<(u64, u32)> {
    match frame.archived() {
        ArchivedInternalFrame::Chat(
            ArchivedChatRequest::Send { conn_id, rid, .. }
            | ArchivedChatRequest::Sync { conn_id, rid, .. }
            | ArchivedChatRequest::Ack { conn_id, rid, .. }
            | ArchivedChatRequest::Unread { conn_id, rid, .. },
        ) => Some((conn_id.to_native(), rid.to_native())),
        _ => None,
    }
}

impl Uplink {
    /// An uplink with no router linked yet.
    pub fn new(settings: ClusterSettings, mesh: Mesh) -> Uplink {
        Uplink { settings, mesh, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind.
        corecast_proto::sync::lock(&self.state)
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.settings.node.id
    }

    /// The node's settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Ids of the routers with a link up.
    pub fn linked_routers(&self) -> Vec<String> {
        self.state().routers.keys().cloned().collect()
    }

    /// Registers a link that just came up. Under the same lock it queues the
    /// node's hello (every room with members here), so no announcement can
    /// slip between the hello and the link joining the set.
    pub fn link_up(&self, router: &str, frames: flume::Sender<InternalFrameBytes>, generation: u64) {
        let mut state = self.state();
        let rooms: Vec<String> = state.rooms.rooms().map(str::to_string).collect();
        let hello = InternalFrame::NodeHello {
            node: self.settings.node.id.clone(),
            key: self.settings.cluster_key.clone(),
            rooms,
        };
        let _ = frames.try_send(InternalFrameBytes::encode(&hello));
        state.routers.insert(router.to_string(), RouterPeer { frames, generation });
        metrics::gauge!("corecast_uplink_routers").set(state.routers.len() as f64);
        drop(state);
        self.ask_presence_reports();
    }

    /// Asks every shard to report its members of rooms with presence to
    /// their owners again (their snapshots replace what they reported):
    /// after a link came up, and after Redis lost the node's registration
    /// (the routers then took its members out of the rooms' presence).
    pub fn ask_presence_reports(&self) {
        for (shard, sender) in self.mesh.all() {
            if sender.try_send(ShardCommand::ReportPresence).is_err() {
                metrics::counter!("corecast_drops_total", "shard" => shard.to_string(), "reason" => "inbox_full")
                    .increment(1);
            }
        }
    }

    /// Forgets a link that went down and answers every request still
    /// waiting on it with `unavailable`.
    pub fn link_down(&self, router: &str, generation: u64) {
        let (removed, failed) = {
            let mut state = self.state();
            let removed = state.routers.get(router).is_some_and(|peer| peer.generation == generation);
            if removed {
                state.routers.remove(router);
            }
            metrics::gauge!("corecast_uplink_routers").set(state.routers.len() as f64);
            let failed: Vec<(u64, u32)> =
                state.pending.iter().filter(|(_, r)| r.as_str() == router).map(|(key, _)| *key).collect();
            for key in &failed {
                state.pending.remove(key);
            }
            (removed, failed)
        };
        for (conn_id, rid) in failed {
            self.reply_unavailable(conn_id, rid, "the router link was lost; retry");
        }
        if removed {
            self.ask_presence_reports();
        }
    }

    /// Sends `frame` to the router owning `key` among the linked ones;
    /// returns whether one took it. A frame whose answer a connection waits
    /// for (`address`: connection and rid) is remembered until answered, so
    /// a lost link answers it, and is answered `unavailable` at once when no
    /// router takes it.
    fn send_to_owner_of(&self, key: &str, frame: InternalFrameBytes, address: Option<(u64, u32)>) -> bool {
        let sent = {
            let mut state = self.state();
            let routers: Vec<&String> = state.routers.keys().collect();
            let owner = owner_of(key, &routers);
            let sent = owner.and_then(|o| state.routers.get(o)).is_some_and(|peer| peer.frames.try_send(frame).is_ok());
            let owner = owner.filter(|_| sent && address.is_some()).map(str::to_string);
            if let (Some(owner), Some(address)) = (owner, address) {
                state.pending.insert(address, owner);
            }
            sent
        };
        if let (false, Some((conn_id, rid))) = (sent, address) {
            self.reply_unavailable(conn_id, rid, "no router is reachable; retry");
        }
        sent
    }

    /// Sends a chat request to the router owning `key`.
    pub fn forward_request(&self, key: &str, frame: InternalFrameBytes) {
        let Some(address) = request_address(&frame) else { return };
        self.send_to_owner_of(key, frame, Some(address));
    }

    /// Sends a room push from this node to the router owning the room.
    pub fn publish(&self, frame: InternalFrameBytes) {
        let ArchivedInternalFrame::RoomPush { room, .. } = frame.archived() else { return };
        let sent = self.send_to_owner_of(room.as_str(), frame.clone(), None);
        let result = if sent { "sent" } else { "dropped" };
        metrics::counter!("corecast_uplink_publishes_total", "result" => result).increment(1);
    }

    /// Sends a frame for a room's owner to the router owning the room. A
    /// request whose answer a connection waits for (JOIN's catch-up,
    /// HISTORY, PRESENCE) is answered `unavailable` when no router takes
    /// it, and remembered until answered so a lost link answers it too.
    pub fn to_owner(&self, frame: InternalFrameBytes) {
        let (room, address) = match frame.archived() {
            ArchivedInternalFrame::RoomPublish { room, .. }
            | ArchivedInternalFrame::RoomPresence { room, .. }
            | ArchivedInternalFrame::RoomPresenceSnapshot { room, .. } => (room.as_str(), None),
            ArchivedInternalFrame::StreamRequest { room, conn_id, rid, .. }
            | ArchivedInternalFrame::PresenceQuery { room, conn_id, rid, .. } => {
                (room.as_str(), Some((conn_id.to_native(), rid.to_native())))
            }
            _ => return,
        };
        let sent = self.send_to_owner_of(room, frame.clone(), address);
        let result = if sent { "sent" } else { "dropped" };
        metrics::counter!("corecast_uplink_owner_frames_total", "kind" => frame.archived().kind(), "result" => result)
            .increment(1);
    }

    /// Sends a frame to every linked router.
    pub fn to_routers(&self, frame: &InternalFrameBytes) {
        let state = self.state();
        let refused = self.to_every_router(&state, frame);
        if !refused.is_empty() {
            // Such a router keeps its cached routes until it evicts them.
            metrics::counter!("corecast_uplink_frames_refused_total").increment(refused.len() as u64);
        }
    }

    /// Sends a frame to every linked router; returns the routers whose
    /// queue refused it.
    fn to_every_router(&self, state: &State, frame: &InternalFrameBytes) -> Vec<String> {
        state
            .routers
            .iter()
            .filter(|(_, peer)| peer.frames.try_send(frame.clone()).is_err())
            .map(|(router, _)| router.clone())
            .collect()
    }

    /// Offers `room`'s announcement again to the routers whose full queue
    /// refused it, until each took it, its link went down (the next hello
    /// carries every room) or the room has no member here any more.
    /// Without this a router would never send the room's messages here.
    async fn resend_interest(self: Arc<Self>, room: String, mut owed: Vec<String>) {
        metrics::counter!("corecast_uplink_interest_resends_total").increment(owed.len() as u64);
        let frame =
            InternalFrameBytes::encode(&InternalFrame::RoomInterest { room: room.clone(), joined: true, id: 0 });
        while !owed.is_empty() {
            tokio::time::sleep(INTEREST_RESEND_EVERY).await;
            let state = self.state();
            if state.rooms.peers(&room).is_empty() {
                return;
            }
            owed.retain(|router| {
                state.routers.get(router).is_some_and(|peer| peer.frames.try_send(frame.clone()).is_err())
            });
        }
    }

    /// A shard gained its first or lost its last member of `room`. The
    /// node's own first member is announced to every router and `ack`
    /// answered once they all acknowledged (or after a timeout).
    pub fn room_interest(self: &Arc<Self>, room: &str, shard: u16, joined: bool, ack: Option<InterestAck>) {
        let mut state = self.state();
        if !joined {
            if state.rooms.leave(room, &shard) {
                let frame = InternalFrameBytes::encode(&InternalFrame::RoomInterest {
                    room: room.to_string(),
                    joined: false,
                    id: 0,
                });
                self.to_every_router(&state, &frame);
            }
            return;
        }
        if !state.rooms.join(room, shard) {
            // The routers know, or are being told: wait for that.
            let Some(ack) = ack else { return };
            match state.announcements.in_flight(room) {
                Some(id) => {
                    if let Err(ack) = state.announcements.wait(id, ack) {
                        ack.send();
                    }
                }
                None => ack.send(),
            }
            return;
        }
        let expected = state.routers.len();
        if expected == 0 {
            drop(state);
            answer(ack);
            return;
        }
        // The uplink times announcements out itself (below): no deadline here.
        let id = state.announcements.start(room, expected, u64::MAX);
        if let Some(ack) = ack {
            let _ = state.announcements.wait(id, ack);
        }
        let frame =
            InternalFrameBytes::encode(&InternalFrame::RoomInterest { room: room.to_string(), joined: true, id });
        let refused = self.to_every_router(&state, &frame);
        // Routers whose queue was full will not acknowledge; they are
        // offered the room again.
        let done = refused.iter().filter_map(|_| state.announcements.ack(id)).next();
        drop(state);
        if !refused.is_empty() {
            tokio::spawn(self.clone().resend_interest(room.to_string(), refused));
        }
        if let Some(done) = done {
            answer(done.waiters);
            return;
        }
        let uplink = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(INTEREST_ACK_TIMEOUT).await;
            uplink.finish_announcement(id);
        });
    }

    fn finish_announcement(&self, id: u64) {
        let done = self.state().announcements.finish(id);
        if let Some(done) = done {
            if done.missing > 0 {
                tracing::warn!(room = %done.room, missing = done.missing, "routers did not acknowledge a room in time");
            }
            answer(done.waiters);
        }
    }

    /// Handles a frame that arrived from a router.
    pub fn from_router(&self, frame: InternalFrameBytes) {
        let archived = frame.archived();
        metrics::counter!("corecast_uplink_frames_in_total", "kind" => archived.kind()).increment(1);
        match archived {
            ArchivedInternalFrame::InterestAck { id } => {
                let done = self.state().announcements.ack(id.to_native());
                if let Some(done) = done {
                    answer(done.waiters);
                }
            }
            ArchivedInternalFrame::ConnFrames { conn_ids, frames, reply } => {
                if *reply {
                    if let (Some(conn_id), Some(rid)) = (conn_ids.first(), frames.get(8..12)) {
                        let rid = u32::from_be_bytes([rid[0], rid[1], rid[2], rid[3]]);
                        self.state().pending.remove(&(conn_id.to_native(), rid));
                    }
                }
                self.mesh.deliver(&frame, |_| 0);
            }
            ArchivedInternalFrame::RoomPush { .. } => {
                let rooms = |room: &str| self.state().rooms.peers(room).bits();
                self.mesh.deliver(&frame, rooms);
            }
            ArchivedInternalFrame::Broadcast { .. } => self.mesh.deliver(&frame, |_| 0),
            ArchivedInternalFrame::StreamReply { conn_id, frames, .. } => {
                if let Some(rid) = Header::of_last(frames).map(|h| h.rid) {
                    self.state().pending.remove(&(conn_id.to_native(), rid));
                }
                self.mesh.deliver(&frame, |_| 0);
            }
            // An operator's message to a room with history, published on a
            // router's admin API: on to the room's owner, as ours go.
            ArchivedInternalFrame::RoomPublish { .. } => self.to_owner(frame),
            _ => {}
        }
    }

    /// Answers request `(conn_id, rid)` with `unavailable` (a JOIN whose
    /// catch-up it answers leaves the room again on its shard).
    fn reply_unavailable(&self, conn_id: u64, rid: u32, message: &str) {
        metrics::counter!("corecast_uplink_unavailable_total").increment(1);
        let mut frames = Vec::new();
        let error = ServerMessage::Error { code: ErrorCode::Unavailable.as_u16(), message };
        if encode_server(rid, 0, &error, &mut frames).is_ok() {
            let frame =
                InternalFrameBytes::encode(&InternalFrame::ConnFrames { conn_ids: vec![conn_id], frames, reply: true });
            self.mesh.deliver(&frame, |_| 0);
        }
    }
}
