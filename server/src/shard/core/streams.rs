//! Room streams, this shard's side: rooms whose name matches a `[[rooms]]`
//! rule with history or presence.
//!
//! A room with history has one owner that orders its messages (see
//! `corecast_cluster::room_stream`): on a single node the shard the name
//! hashes to ([`owner_shard`]), in a cluster the router that owns it. A
//! PUBLISH there is not delivered by the publisher's shard; it goes to the
//! owner as a `RoomPublish`, and the owner's positioned `RoomPush` reaches
//! every member, the publisher's shard included, on the same path as any
//! other room push.
//!
//! A JOIN there becomes a member as usual (and waits for the usual interest
//! announcement), then asks the owner for what it missed with a
//! `StreamRequest`. Until the owner's `StreamReply` arrives the connection
//! takes none of the room's live messages and its later frames wait: the
//! reply travels the owner → shard path the live pushes take, in order, so
//! every live push that arrives before it is already in the reply and every
//! one after it is newer. That is what makes the switch from history to
//! live without a gap or a duplicate. An owner that does not answer in time
//! fails the JOIN with `unavailable`.
//!
//! Presence rooms report each member connection's join and leave to the
//! owner, and a full snapshot when asked (`ShardCommand::ReportPresence`).
//! On a single node this shard also is the owner of its share of rooms.

use std::hash::{Hash, Hasher};
use std::rc::Rc;

use bytes::Bytes;
use corecast_cluster::room_stream::OwnerOutput;
use corecast_proto::internal::{shard_of, ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use corecast_proto::{server, ErrorCode, Header};
use rustc_hash::FxHasher;

use super::conn::{conn_id, key_of};
use super::ShardCore;
use crate::shard::inbox::CoreCommand;

/// How long a JOIN waits for its room's owner to answer (after the interest
/// announcement) before it fails with `unavailable`.
pub(super) const CATCH_UP_WAIT_MS: u64 = 10_000;

/// Bytes of a room PUSH besides room, user and payload (header, kind,
/// two string lengths, seq, ts).
const PUSH_FIXED_LEN: usize = 12 + 1 + 2 + 2 + 8 + 8;

/// The shard that owns `room`'s stream on a single node of `shards` shards.
pub fn owner_shard(room: &str, shards: usize) -> u16 {
    let mut hasher = FxHasher::default();
    room.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as u16
}

/// A JOIN in a room with history, waiting for its catch-up.
pub(super) struct PendingJoin {
    key: u32,
    generation: u32,
    room: Rc<str>,
    rid: u32,
    since: u64,
    /// The request went to the owner (else it waits for the announcement).
    requested: bool,
    deadline_tick: u64,
}

impl ShardCore {
    /// Sends a frame to `room`'s owner; false when its queue is full.
    fn send_to_owner(&mut self, room: &str, frame: InternalFrameBytes) -> bool {
        if self.clustered {
            let sent = self.links.core.try_send(CoreCommand::ToOwner(frame)).is_ok();
            if !sent {
                self.metrics.drops_core_inbox_full.increment(1);
            }
            return sent;
        }
        let owner = owner_shard(room, self.links.mesh.len());
        if owner == self.id {
            // Handled at the end of the round, like a frame from another
            // shard: never in the middle of the asking connection's input.
            self.owned_here.push(frame);
            return true;
        }
        let sent = self.links.frames.send(owner, frame);
        if !sent {
            self.metrics.drops_inbox_full.increment(1);
        }
        sent
    }

    /// PUBLISH to a room with history: to the owner, which gives it its
    /// position. Returns the error to answer with, if any.
    pub(super) fn publish_to_stream(
        &mut self,
        room: &str,
        user: &str,
        payload: &[u8],
        except_conn: u64,
    ) -> Result<(), (ErrorCode, &'static str)> {
        if PUSH_FIXED_LEN + room.len() + user.len() + payload.len() > self.config.max_frame_len as usize {
            return Err((ErrorCode::LimitExceeded, "payload too large for a push frame"));
        }
        let frame =
            InternalFrame::RoomPublish { room: room.into(), from: user.into(), except_conn, payload: payload.to_vec() };
        if !self.send_to_owner(room, InternalFrameBytes::encode(&frame)) {
            return Err((ErrorCode::Unavailable, "the room's owner is overloaded; retry later"));
        }
        Ok(())
    }

    /// A JOIN in a room with history became a member: its catch-up is
    /// asked for now, or once the interest announcement it waits for is
    /// done.
    pub(super) fn start_catch_up(&mut self, key: usize, rid: u32, room: Rc<str>, since: u64, announced: bool) {
        let deadline_tick = self.now_tick + CATCH_UP_WAIT_MS.div_ceil(self.settings.tick_ms);
        let generation = self.conns[key].generation;
        self.conns[key].catching_up = true;
        self.conns[key].paused = true;
        let pending = PendingJoin { key: key as u32, generation, room, rid, since, requested: false, deadline_tick };
        self.pending_joins.push(pending);
        if announced {
            let id = conn_id(self.id, generation, key as u32);
            self.request_catch_up(id, rid);
        }
    }

    /// Sends the catch-up request of the JOIN `(id, rid)`; true when one
    /// was waiting for it (its JOIN is answered by the owner, not here).
    pub(super) fn request_catch_up(&mut self, id: u64, rid: u32) -> bool {
        let (key, generation) = key_of(id);
        let Some(i) = self
            .pending_joins
            .iter()
            .position(|p| !p.requested && p.key == key && p.generation == generation && p.rid == rid)
        else {
            return false;
        };
        self.pending_joins[i].requested = true;
        let (room, since) = (self.pending_joins[i].room.clone(), self.pending_joins[i].since);
        let request =
            InternalFrame::StreamRequest { room: room.to_string(), conn_id: id, rid, since, limit: 0, join: true };
        if !self.send_to_owner(&room, InternalFrameBytes::encode(&request)) {
            self.pending_joins.swap_remove(i);
            self.fail_join(id, rid, &room, "the room's owner is overloaded; retry later");
        }
        true
    }

    /// HISTORY: the room's stored messages, from its owner.
    pub(super) fn history(&mut self, id: u64, rid: u32, room: &str, since: u64, limit: u16) {
        if !self.rooms.options_of(room).is_some_and(|o| o.has_stream()) {
            return self.error(id, rid, ErrorCode::NotFound, "this room keeps no history");
        }
        let request = InternalFrame::StreamRequest { room: room.into(), conn_id: id, rid, since, limit, join: false };
        if !self.send_to_owner(room, InternalFrameBytes::encode(&request)) {
            self.error(id, rid, ErrorCode::Unavailable, "the room's owner is overloaded; retry later");
        }
    }

    /// PRESENCE: who is in the room, from its owner.
    pub(super) fn presence_query(&mut self, id: u64, rid: u32, room: &str, after: &str, limit: u16) {
        if !self.rooms.options_of(room).is_some_and(|o| o.has_presence()) {
            return self.error(id, rid, ErrorCode::NotFound, "this room keeps no presence");
        }
        let query = InternalFrame::PresenceQuery { room: room.into(), conn_id: id, rid, after: after.into(), limit };
        if !self.send_to_owner(room, InternalFrameBytes::encode(&query)) {
            self.error(id, rid, ErrorCode::Unavailable, "the room's owner is overloaded; retry later");
        }
    }

    /// Tells the owner of a room with presence that a connection of `user`
    /// joined or left it.
    pub(super) fn report_member(&mut self, room: &str, user: &str, joined: bool) {
        if !self.rooms.options_of(room).is_some_and(|o| o.has_presence()) {
            return;
        }
        let frame = InternalFrame::RoomPresence { room: room.into(), user: user.into(), shard: self.id, joined };
        self.send_to_owner(room, InternalFrameBytes::encode(&frame));
    }

    /// Sends the owners a snapshot of this shard's members of every room
    /// with presence.
    pub(super) fn report_presence(&mut self) {
        let snapshots: Vec<(Rc<str>, Vec<String>)> = self
            .rooms
            .with_members()
            .filter(|(_, room)| room.options.is_some_and(|o| o.has_presence()))
            .map(|(name, room)| {
                let users = room
                    .members
                    .iter()
                    .filter_map(|&key| self.conns.get(key as usize)?.identity.as_ref().map(|i| i.user.to_string()))
                    .collect();
                (name.clone(), users)
            })
            .collect();
        for (room, users) in snapshots {
            let frame = InternalFrame::RoomPresenceSnapshot { room: room.to_string(), shard: self.id, users };
            self.send_to_owner(&room, InternalFrameBytes::encode(&frame));
        }
    }

    /// Acts as the owner of the room a frame names (single node).
    pub(super) fn own(&mut self, frame: &InternalFrameBytes) {
        if let ArchivedInternalFrame::StreamRequest { room, conn_id, join: true, .. } = frame.archived() {
            // The asker's live messages must follow its answer, in order.
            let asker = shard_of(conn_id.to_native());
            if asker != self.id {
                self.rooms.set_remote(room.as_str(), asker, true);
            }
        }
        let outputs = self.owner.handle(frame.archived(), &(), self.wall_ms).unwrap_or_default();
        self.count_evictions();
        for output in outputs {
            match output {
                OwnerOutput::Room { room, frame } => {
                    let except_conn = match frame.archived() {
                        ArchivedInternalFrame::RoomPush { except_conn, .. } => except_conn.to_native(),
                        _ => 0,
                    };
                    self.metrics.encodes.increment(1);
                    self.fan_out_frame(&room, &frame, except_conn);
                }
                OwnerOutput::Conn { conn_id, frame } => {
                    let shard = shard_of(conn_id);
                    if shard == self.id {
                        self.deliver_internal(&frame);
                    } else if !self.links.frames.send(shard, frame) {
                        self.metrics.drops_inbox_full.increment(1);
                    }
                }
            }
        }
    }

    /// Handles the frames this shard sent to itself as a room's owner.
    pub(super) fn run_owned_here(&mut self) {
        while !self.owned_here.is_empty() {
            for frame in std::mem::take(&mut self.owned_here) {
                self.own(&frame);
            }
        }
    }

    fn count_evictions(&mut self) {
        let total = self.owner.evictions();
        if total > self.evictions_counted {
            metrics::counter!("corecast_room_history_evictions_total", "shard" => self.id.to_string())
                .increment(total - self.evictions_counted);
            self.evictions_counted = total;
        }
    }

    /// The owner's answer to a catch-up or a HISTORY arrived.
    pub(super) fn on_stream_reply(&mut self, room: &str, id: u64, frames: Bytes, join: bool) {
        if !join {
            return self.reply(id, frames);
        }
        let (key, generation) = key_of(id);
        let Some(i) = self
            .pending_joins
            .iter()
            .position(|p| p.requested && p.key == key && p.generation == generation && &*p.room == room)
        else {
            return; // the connection went, or its JOIN failed on time
        };
        let pending = self.pending_joins.swap_remove(i);
        let answered = Header::of_last(&frames).is_some_and(|h| h.op == server::op::JOINED);
        self.reply(id, frames);
        if !answered {
            // The frames end in an ERROR (no router took the request).
            self.leave_conn_room(pending.key as usize, room);
        }
        self.resume_after_join(pending.key as usize, id);
    }

    /// The room of the JOIN waiting for its catch-up that `frames` (a reply
    /// for connection `id`) answers, by the reply's rid.
    pub(super) fn catch_up_answered_by(&self, id: u64, frames: &[u8]) -> Option<Rc<str>> {
        if self.pending_joins.is_empty() || frames.len() < corecast_proto::HEADER_LEN {
            return None;
        }
        let rid = u32::from_be_bytes([frames[8], frames[9], frames[10], frames[11]]);
        let (key, generation) = key_of(id);
        self.pending_joins
            .iter()
            .find(|p| p.requested && p.key == key && p.generation == generation && p.rid == rid)
            .map(|p| p.room.clone())
    }

    /// Fails JOINs whose owner did not answer in time.
    pub(super) fn expire_pending_joins(&mut self) {
        let now = self.now_tick;
        let mut expired = Vec::new();
        self.pending_joins.retain(|p| {
            let keep = p.deadline_tick > now;
            if !keep {
                expired.push((p.key, p.generation, p.rid, p.room.clone()));
            }
            keep
        });
        for (key, generation, rid, room) in expired {
            let id = conn_id(self.id, generation, key);
            if self.live_key(id).is_some() {
                metrics::counter!("corecast_room_catch_up_timeouts_total", "shard" => self.id.to_string()).increment(1);
                self.fail_join(id, rid, &room, "the room's owner did not answer; retry");
            }
        }
    }

    /// Forgets the pending JOINs of a connection that is going.
    pub(super) fn forget_pending_joins(&mut self, key: usize, generation: u32) {
        self.pending_joins.retain(|p| !(p.key == key as u32 && p.generation == generation));
    }

    /// Whether connection `key` waits for `room`'s catch-up (and so takes
    /// none of its live messages yet).
    pub(super) fn waits_for_catch_up(&self, key: usize, room: &str) -> bool {
        let generation = self.conns[key].generation;
        self.pending_joins.iter().any(|p| p.key == key as u32 && p.generation == generation && &*p.room == room)
    }

    fn fail_join(&mut self, id: u64, rid: u32, room: &str, message: &str) {
        self.error(id, rid, ErrorCode::Unavailable, message);
        if let Some(key) = self.live_key(id) {
            self.leave_conn_room(key, room);
            self.resume_after_join(key, id);
        }
    }

    /// Takes a connection out of a room (LEAVE, a failed JOIN), telling
    /// the owner of a room with presence.
    pub(super) fn leave_conn_room(&mut self, key: usize, room: &str) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let removed = conn.rooms.iter().position(|r| &**r == room).map(|i| conn.rooms.swap_remove(i));
        let user = conn.identity.as_ref().map(|identity| identity.user.clone());
        if let Some(room) = removed {
            self.leave_room(&room, key as u32);
            if let Some(user) = user {
                self.report_member(&room, &user, false);
            }
        }
    }

    /// A JOIN is answered: the connection's held frames go on.
    fn resume_after_join(&mut self, key: usize, id: u64) {
        let generation = self.conns[key].generation;
        let still = self.pending_joins.iter().any(|p| p.key == key as u32 && p.generation == generation);
        let conn = &mut self.conns[key];
        conn.catching_up = still;
        if still {
            return;
        }
        conn.paused = false;
        self.process_held(key, id);
        if self.live_key(id).is_some() {
            self.resumed.push(id);
        }
    }

    /// Drops messages past their TTL from the histories this shard owns,
    /// once a second.
    pub(super) fn expire_histories(&mut self) {
        let every = (1000 / self.settings.tick_ms).max(1);
        if self.now_tick >= self.histories_expired_tick + every {
            self.histories_expired_tick = self.now_tick;
            self.owner.expire(self.wall_ms);
        }
    }
}
