//! Fan-out and the shard's commands: one encoded PUSH queued by reference
//! to every local member of a room (and one internal frame to each other
//! shard with members, and in a cluster to the uplink), broadcasts, frames
//! from the router core for named connections, hot rooms flushed on a
//! tick, and the commands other shards and the control plane send.

use bytes::Bytes;
use corecast_cluster::interest::PeerSet;
use corecast_proto::internal::{shard_of, ArchivedInternalFrame, ChatRequest, InternalFrame, InternalFrameBytes};
use corecast_proto::ErrorCode;

use super::conn::{conn_id, key_of, NO_TICK};
use super::{Now, ShardCore};
use crate::shard::inbox::{CoreCommand, ShardCommand};

/// Result of queuing a PUSH to one connection.
enum Queued {
    Yes,
    Dropped,
    Skipped,
}

impl ShardCore {
    /// Queues a PUSH for one connection under its queue limit; `deferred`
    /// waits for the flush tick (hot room).
    fn queue_push(&mut self, key: usize, frame: &Bytes, deferred: bool) -> Queued {
        let limit = self.config.outbound_queue_bytes;
        let now = self.now_tick;
        let conn = &mut self.conns[key];
        if conn.is_closing() || conn.identity.is_none() {
            return Queued::Skipped;
        }
        if !conn.queue_mut().push_bounded(frame.clone(), limit) {
            if conn.over_limit_since == NO_TICK {
                conn.over_limit_since = now as u32;
                let due = now + self.settings.slow_grace_ticks;
                self.arm_deadline(key, due);
            }
            return Queued::Dropped;
        }
        if deferred {
            if !conn.flush_pending {
                conn.flush_pending = true;
                let id = conn_id(self.id, conn.generation, key as u32);
                self.deferred.push(id);
            }
        } else {
            self.want_write(key);
        }
        Queued::Yes
    }

    fn count_fanout(&self, delivered: u64, dropped: u64) {
        self.metrics.deliveries.increment(delivered);
        if dropped > 0 {
            self.metrics.drops_slow_consumer.increment(dropped);
        }
    }

    /// Queues `frame` to every local member of `room` except `except_conn`.
    fn deliver_to_room_members(&mut self, room: &str, frame: &Bytes, except_conn: u64) {
        let (window, per_window) = (self.settings.hot_window_ticks, self.settings.hot_per_window);
        let Some(members) = self.rooms.get_mut(room) else { return };
        let hot = members.note_publish(self.now_tick, window, per_window);
        // The member list is taken out while queueing (queueing needs the
        // whole core) and put back after; nothing here changes it.
        let keys = std::mem::take(&mut members.members);
        // The excluded connection, if it is one of this shard's.
        let except_here = except_conn != 0 && shard_of(except_conn) == self.id;
        let (except_key, except_generation) = key_of(except_conn);
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for &key in &keys {
            let key = key as usize;
            if except_here && key as u32 == except_key && self.conns[key].generation == except_generation {
                continue;
            }
            if self.conns[key].catching_up && self.waits_for_catch_up(key, room) {
                // Its catch-up, still on its way, holds this message.
                continue;
            }
            match self.queue_push(key, frame, hot) {
                Queued::Yes => delivered += 1,
                Queued::Dropped => dropped += 1,
                Queued::Skipped => {}
            }
        }
        if let Some(members) = self.rooms.get_mut(room) {
            members.members = keys;
        }
        self.count_fanout(delivered, dropped);
    }

    /// Queues `frame` to every authenticated local connection.
    fn deliver_to_everyone(&mut self, frame: &Bytes) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for key in keys {
            match self.queue_push(key, frame, false) {
                Queued::Yes => delivered += 1,
                Queued::Dropped => dropped += 1,
                Queued::Skipped => {}
            }
        }
        self.count_fanout(delivered, dropped);
    }

    /// Delivers an internal frame that arrived from another shard, the
    /// control plane or a router. A room push or broadcast is taken as this
    /// shard's own copy first: its members then share a reference count
    /// only this core touches, instead of one every core's members bounce
    /// between them (seastar's `foreign_ptr` idea; the foreign frame is
    /// released once, here).
    pub(super) fn deliver_internal(&mut self, frame: &InternalFrameBytes) {
        let push = frame.wire_push();
        match frame.archived() {
            ArchivedInternalFrame::RoomPush { room, except_conn, .. } => {
                let local = Bytes::copy_from_slice(&push);
                self.deliver_to_room_members(room.as_str(), &local, except_conn.to_native())
            }
            ArchivedInternalFrame::Broadcast { .. } => self.deliver_to_everyone(&Bytes::copy_from_slice(&push)),
            ArchivedInternalFrame::StreamReply { room, conn_id, join, .. } => {
                let (room, id, join) = (room.to_string(), conn_id.to_native(), *join);
                self.on_stream_reply(&room, id, push, join);
            }
            ArchivedInternalFrame::RoomPublish { .. }
            | ArchivedInternalFrame::StreamRequest { .. }
            | ArchivedInternalFrame::RoomPresence { .. }
            | ArchivedInternalFrame::RoomPresenceSnapshot { .. }
            | ArchivedInternalFrame::PresenceQuery { .. } => self.own(frame),
            ArchivedInternalFrame::ConnFrames { conn_ids, reply, .. } => {
                let (reply, shard) = (*reply, self.id);
                let (mut delivered, mut dropped) = (0u64, 0u64);
                for id in conn_ids.iter().map(|id| id.to_native()).filter(|&id| shard_of(id) == shard) {
                    let Some(key) = self.live_key(id) else { continue };
                    if reply {
                        // A reply goes regardless of the queue limit; an
                        // ERROR for a JOIN still waiting for its catch-up
                        // (no router took the request) ends that wait.
                        if let Some(room) = self.catch_up_answered_by(id, &push) {
                            self.on_stream_reply(&room, id, push.clone(), true);
                            continue;
                        }
                        self.reply(id, push.clone());
                        continue;
                    }
                    // A stored message's PUSH within the limit: a device
                    // that misses one can SYNC it by seq.
                    match self.queue_push(key, &push, false) {
                        Queued::Yes => delivered += 1,
                        Queued::Dropped => dropped += 1,
                        Queued::Skipped => {}
                    }
                }
                self.count_fanout(delivered, dropped);
            }
            _ => {}
        }
    }

    /// Hands a request to the router core. Returns false when its inbox is
    /// full.
    pub(super) fn send_to_core(&mut self, request: ChatRequest) -> bool {
        let frame = InternalFrameBytes::encode(&InternalFrame::Chat(request));
        match self.links.core.try_send(CoreCommand::Request(frame)) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.drops_core_inbox_full.increment(1);
                false
            }
        }
    }

    /// Publishes an encoded PUSH to `room`: to local members directly, to
    /// each other shard with members as one shared internal frame, and in a
    /// cluster the same frame to the uplink for the other nodes.
    pub(super) fn publish_to_room(&mut self, room: &str, push: Vec<u8>, except_conn: u64) {
        self.metrics.encodes.increment(1);
        let remote = self.rooms.remote_shards(room);
        if remote.is_empty() && !self.clustered {
            self.deliver_to_room_members(room, &Bytes::from(push), except_conn);
            return;
        }
        let frame = InternalFrameBytes::encode(&InternalFrame::RoomPush { room: room.to_string(), except_conn, push });
        self.fan_out_frame(room, &frame, except_conn);
        if self.clustered && self.links.core.try_send(CoreCommand::Publish(frame)).is_err() {
            self.metrics.drops_core_inbox_full.increment(1);
        }
    }

    /// Delivers a `RoomPush` to this shard's members of `room` and sends it
    /// to every other shard with members.
    pub(super) fn fan_out_frame(&mut self, room: &str, frame: &InternalFrameBytes, except_conn: u64) {
        let remote = self.rooms.remote_shards(room);
        self.deliver_to_room_members(room, &frame.wire_push(), except_conn);
        for shard in remote.iter() {
            if !self.links.frames.send(shard, frame.clone()) {
                self.metrics.drops_inbox_full.increment(1);
            }
        }
    }

    /// Removes `key` from `room` (the caller updates the connection's
    /// list) and tells the others when it was this shard's last member.
    pub(super) fn leave_room(&mut self, room: &str, key: u32) {
        if self.rooms.leave(room, key) {
            // Fire and forget: a frame that crosses this notice finds no
            // members and is dropped harmlessly.
            if self.clustered {
                let command = CoreCommand::RoomInterest { room: room.into(), shard: self.id, joined: false, ack: None };
                if self.links.core.try_send(command).is_err() {
                    self.metrics.drops_core_inbox_full.increment(1);
                }
            }
            for (shard, sender) in self.links.mesh.all() {
                if shard != self.id {
                    let command =
                        ShardCommand::RoomInterest { room: room.into(), shard: self.id, joined: false, ack: None };
                    let _ = sender.try_send(command);
                }
            }
        }
        self.metrics.rooms.set(self.rooms.local_room_count() as f64);
    }

    /// Handles a command from another shard or the control plane.
    pub fn on_command(&mut self, now: Now, command: ShardCommand) {
        self.set_now(now);
        match command {
            ShardCommand::Deliver(frame) => self.deliver_internal(&frame),
            ShardCommand::RoomInterest { room, shard, joined, ack } => {
                self.rooms.set_remote(&room, shard, joined);
                if let Some(ack) = ack {
                    ack.send();
                }
            }
            ShardCommand::InterestAcked { id } => self.interest_acked(id),
            ShardCommand::CountRoomMembers { room, reply } => {
                let count = self.rooms.get(&room).map_or(0, |r| r.members.len());
                let _ = reply.send(count);
            }
            ShardCommand::CountConnections { reply } => {
                let count = self.conns.iter().filter(|(_, c)| c.identity.is_some()).count();
                let _ = reply.send(count);
            }
            ShardCommand::Kick { user, reply } => {
                let ids: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.identity.as_ref().is_some_and(|id| *id.user == *user))
                    .map(|(key, c)| conn_id(self.id, c.generation, key as u32))
                    .collect();
                let hint = self.config.reconnect_base_ms;
                for &id in &ids {
                    self.begin_close(id, ErrorCode::Kicked, "removed by an operator", hint);
                }
                let _ = reply.send(ids.len());
            }
            ShardCommand::ListRoutes { from, limit, reply } => {
                let _ = reply.send(self.route_page(from, limit));
            }
            ShardCommand::ReportPresence => self.report_presence(),
            ShardCommand::PresencePage { room, after, limit, reply } => {
                let _ = reply.send(self.owner.presence_page(&room, &after, limit));
            }
            ShardCommand::Shutdown => self.stopping = true,
        }
    }

    /// The flush tick: connections of hot rooms write what they have.
    pub fn on_flush_tick(&mut self, now: Now) {
        self.set_now(now);
        for id in std::mem::take(&mut self.deferred) {
            let Some(key) = self.live_key(id) else { continue };
            self.conns[key].flush_pending = false;
            self.want_write(key);
        }
    }

    /// Whether connections wait for the flush tick.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// On shutdown: CLOSE every connection with a jittered reconnect hint.
    pub fn close_all(&mut self, now: Now) {
        self.set_now(now);
        for id in self.conn_ids() {
            let hint = self.reconnect_hint();
            self.begin_close(id, ErrorCode::ShuttingDown, "server shutting down", hint);
        }
    }
}
