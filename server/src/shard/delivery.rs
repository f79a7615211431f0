//! Fan-out and connection lifecycle on a shard: registering and removing
//! connections, queuing replies, delivering one encoded PUSH to every local
//! member of a room (and one internal frame to each other shard with
//! members), broadcasts, slow-consumer handling, closing with CLOSE, and the
//! deadline checks the timing wheel asks for.

use std::rc::Rc;

use bytes::Bytes;
use corecast_proto::internal::{shard_of, ArchivedInternalFrame, ChatRequest, InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, ErrorCode, ServerMessage};

use super::conn::{Closing, Conn};
use super::rooms::{shards_in, JoinOutcome};
use super::timer_wheel::{Due, TimerEntry};
use super::{CoreCommand, Shard, ShardCommand};

/// Encodes a server frame into its own buffer. Only for frames whose
/// strings are bounded by the server (replies, errors, CLOSE).
pub fn encode_reply(rid: u32, message: &ServerMessage<'_>) -> Bytes {
    let mut out = Vec::new();
    if let Err(e) = encode_server(rid, 0, message, &mut out) {
        // Our own strings are short; fall back to a bare internal error.
        tracing::error!("could not encode a reply: {e}");
        out.clear();
        let fallback = ServerMessage::Error { code: ErrorCode::Internal.as_u16(), message: "" };
        let _ = encode_server(rid, 0, &fallback, &mut out);
    }
    Bytes::from(out)
}

/// Result of queuing a room PUSH to one connection.
enum Queued {
    Yes,
    Dropped,
    Skipped,
}

impl Shard {
    /// Adds a freshly accepted connection and arms its auth deadline.
    pub(super) fn register(&self, fd: std::os::fd::RawFd) -> (u32, u64) {
        let seq = self.next_conn_seq.get();
        self.next_conn_seq.set(seq + 1);
        let id = ((self.id as u64) << 48) | (seq & ((1 << 48) - 1));
        let now = self.now_tick();
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let key = entry.key() as u32;
        let frames = self.settings.publish_frames.full(now);
        let bytes = self.settings.publish_bytes.full(now);
        let conn = entry.insert(Conn::new(id, fd, now, frames, bytes));
        self.unauthenticated.set(self.unauthenticated.get() + 1);
        // The first check comes at the earlier of the two deadlines; the
        // check itself then re-arms at the deadline that applies.
        self.arm_deadline(key, conn, now + self.settings.auth_ticks.min(self.settings.idle_ticks));
        self.keys_by_id.borrow_mut().insert(id, key);
        self.metrics.connections.increment(1.0);
        (key, id)
    }

    /// Makes sure the connection is looked at no later than `due`. Only the
    /// earliest armed deadline stays live; later entries become stale.
    fn arm_deadline(&self, key: u32, conn: &mut Conn, due: u64) {
        if due < conn.timer_due {
            conn.timer_due = due;
            self.wheel_inserts.borrow_mut().push((TimerEntry { key, conn_id: conn.id }, due));
        }
    }

    /// Removes a connection: leaves its rooms (telling other shards about
    /// rooms this shard no longer has members of), shuts its socket and
    /// wakes its writer so it exits.
    pub(super) fn unregister(&self, key: u32) {
        let Some(mut conn) = self.conns.borrow_mut().try_remove(key as usize) else { return };
        self.keys_by_id.borrow_mut().remove(&conn.id);
        self.metrics.connections.decrement(1.0);
        match &conn.identity {
            Some(identity) => {
                let user = identity.user.to_string();
                self.to_core(ChatRequest::Offline { conn_id: conn.id, user });
            }
            None => self.unauthenticated.set(self.unauthenticated.get() - 1),
        }
        for room in conn.rooms.drain(..) {
            self.leave_room(&room, key);
        }
        conn.shutdown_socket();
        conn.wake_writer();
    }

    /// Marks a connection authenticated (it no longer counts against the
    /// unauthenticated limit).
    pub(super) fn authenticated(&self) {
        self.unauthenticated.set(self.unauthenticated.get().saturating_sub(1));
    }

    /// Charges a PUBLISH or SEND of `len` bytes to the connection's rate
    /// limits. `Some(close)` when refused: `close` says the connection has
    /// been refused so often in a row that it must go.
    pub(super) fn charge_publish(&self, key: u32, len: usize) -> Option<bool> {
        let now = self.now_tick();
        let mut conns = self.conns.borrow_mut();
        let conn = conns.get_mut(key as usize)?;
        let bytes = u32::try_from(len).unwrap_or(u32::MAX);
        let frames_ok = conn.publish_frames.take(&self.settings.publish_frames, 1, now);
        let bytes_ok = frames_ok && conn.publish_bytes.take(&self.settings.publish_bytes, bytes, now);
        if frames_ok && bytes_ok {
            conn.rate_strikes = 0;
            return None;
        }
        self.metrics.limit_hit(if frames_ok { "publish_bytes" } else { "publish_rate" });
        conn.rate_strikes += 1;
        Some(conn.rate_strikes >= self.config.rate_limit_close_after)
    }

    /// Queues a reply or error for one connection, regardless of its limit.
    pub(super) fn reply(&self, key: u32, frame: Bytes) {
        if let Some(conn) = self.conns.borrow_mut().get_mut(key as usize) {
            if conn.closing.is_none() {
                conn.queue.push(frame);
                conn.wake_writer();
            }
        }
    }

    /// Starts closing a connection: queues CLOSE after what it is still owed
    /// (a slow consumer is owed nothing: its unsent messages are dropped so
    /// the CLOSE gets through), and arms the linger deadline after which the
    /// socket is shut down even if the CLOSE could not be written.
    pub(super) fn begin_close(&self, key: u32, code: ErrorCode, reason: &str, reconnect_after_ms: u32) {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize) else { return };
        if conn.closing.is_some() {
            return;
        }
        let deadline_tick = self.now_tick() + self.settings.linger_ticks;
        conn.closing = Some(Closing { deadline_tick });
        if code == ErrorCode::SlowConsumer {
            let dropped = conn.queue.clear_unstarted();
            self.metrics.drops_slow_consumer.increment(dropped as u64);
        }
        let close = ServerMessage::Close { code: code.as_u16(), reason, reconnect_after_ms };
        conn.queue.push(encode_reply(0, &close));
        conn.wake_writer();
        self.metrics.closed_by_server(code);
        if code == ErrorCode::SlowConsumer {
            self.metrics.slow_consumer_closes.increment(1);
        }
        self.arm_deadline(key, conn, deadline_tick);
    }

    /// Starts closing a connection without a CLOSE frame (the client is the
    /// one leaving): the writer flushes, then the socket is shut down.
    pub(super) fn begin_close_quietly(&self, key: u32) {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize) else { return };
        if conn.closing.is_some() {
            return;
        }
        let deadline_tick = self.now_tick() + self.settings.linger_ticks;
        conn.closing = Some(Closing { deadline_tick });
        conn.wake_writer();
        self.arm_deadline(key, conn, deadline_tick);
    }

    /// The timing wheel's question: is this connection's deadline due?
    pub(super) fn check_deadline(&self, entry: TimerEntry, armed_due: u64, tick: u64) -> Due {
        let action = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(entry.key as usize).filter(|c| c.id == entry.conn_id) else {
                return Due::Gone;
            };
            if conn.timer_due != armed_due {
                return Due::Gone;
            }
            let mut later = |due: u64| {
                conn.timer_due = due;
                Due::Later(due)
            };
            if let Some(closing) = conn.closing {
                if tick < closing.deadline_tick {
                    return later(closing.deadline_tick);
                }
                conn.shutdown_socket();
                return Due::Fired;
            }
            let mut due = if conn.identity.is_some() {
                conn.last_active_tick + self.settings.idle_ticks
            } else {
                conn.opened_tick + self.settings.auth_ticks
            };
            if let Some(since) = conn.over_limit_since {
                due = due.min(since + self.settings.slow_grace_ticks);
            }
            if tick < due {
                return later(due);
            }
            if conn.identity.is_none() {
                (ErrorCode::NotAuthenticated, "authentication deadline passed")
            } else if conn.over_limit_since.is_some_and(|since| tick >= since + self.settings.slow_grace_ticks) {
                (ErrorCode::SlowConsumer, "connection does not read fast enough")
            } else {
                (ErrorCode::IdleTimeout, "no frame received within the idle timeout")
            }
        };
        let (code, reason) = action;
        if let Some(conn) = self.conns.borrow_mut().get_mut(entry.key as usize) {
            // This entry is spent; begin_close arms the linger deadline.
            conn.timer_due = u64::MAX;
        }
        self.begin_close(entry.key, code, reason, self.config.reconnect_base_ms);
        Due::Fired
    }

    /// Queues a room PUSH for one connection under its queue limit.
    fn queue_push(&self, conn: &mut Conn, key: u32, frame: &Bytes, deferred: bool) -> Queued {
        if conn.closing.is_some() || conn.identity.is_none() {
            return Queued::Skipped;
        }
        if !conn.queue.push_bounded(frame.clone(), self.config.outbound_queue_bytes) {
            if conn.over_limit_since.is_none() {
                let now = self.now_tick();
                conn.over_limit_since = Some(now);
                self.arm_deadline(key, conn, now + self.settings.slow_grace_ticks);
            }
            return Queued::Dropped;
        }
        if deferred {
            if !conn.flush_pending && conn.writer.is_some() {
                conn.flush_pending = true;
                self.flush_list.borrow_mut().push((key, conn.id));
            }
        } else {
            conn.wake_writer();
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
    fn deliver_to_room_members(&self, room: &str, frame: &Bytes, except_conn: u64) {
        let mut rooms = self.rooms.borrow_mut();
        let Some(room) = rooms.get_mut(room) else { return };
        let hot = room.note_publish(self.now_tick(), self.settings.hot_window_ticks, self.settings.hot_per_window);
        let mut conns = self.conns.borrow_mut();
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for &key in &room.members {
            let Some(conn) = conns.get_mut(key as usize) else { continue };
            if conn.id == except_conn {
                continue;
            }
            match self.queue_push(conn, key, frame, hot) {
                Queued::Yes => delivered += 1,
                Queued::Dropped => dropped += 1,
                Queued::Skipped => {}
            }
        }
        drop(conns);
        drop(rooms);
        if hot {
            if let Some(waker) = self.flush_waker.borrow_mut().take() {
                waker.wake();
            }
        }
        self.count_fanout(delivered, dropped);
    }

    /// Queues `frame` to every authenticated local connection.
    fn deliver_to_everyone(&self, frame: &Bytes) {
        let mut conns = self.conns.borrow_mut();
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for (key, conn) in conns.iter_mut() {
            match self.queue_push(conn, key as u32, frame, false) {
                Queued::Yes => delivered += 1,
                Queued::Dropped => dropped += 1,
                Queued::Skipped => {}
            }
        }
        self.count_fanout(delivered, dropped);
    }

    /// Delivers an internal frame that arrived in this shard's inbox.
    pub(super) fn deliver_internal(&self, frame: &InternalFrameBytes) {
        let push = frame.wire_push();
        match frame.archived() {
            ArchivedInternalFrame::RoomPush { room, except_conn, .. } => {
                self.deliver_to_room_members(room.as_str(), &push, except_conn.to_native())
            }
            ArchivedInternalFrame::Broadcast { .. } => self.deliver_to_everyone(&push),
            ArchivedInternalFrame::ConnFrames { conn_ids, reply, .. } => {
                let ids = conn_ids.iter().map(|id| id.to_native()).filter(|&id| shard_of(id) == self.id);
                self.deliver_to_conns(ids, &push, *reply)
            }
            _ => {}
        }
    }

    /// Queues frames from the router core to the named connections: a reply
    /// regardless of the queue limit, a stored message's PUSH within it (a
    /// device that misses one can SYNC it by seq).
    fn deliver_to_conns(&self, conn_ids: impl Iterator<Item = u64>, frames: &Bytes, reply: bool) {
        let keys = self.keys_by_id.borrow();
        let mut conns = self.conns.borrow_mut();
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for id in conn_ids {
            let Some(&key) = keys.get(&id) else { continue };
            let Some(conn) = conns.get_mut(key as usize) else { continue };
            if reply {
                if conn.closing.is_none() {
                    conn.queue.push(frames.clone());
                    conn.wake_writer();
                }
                continue;
            }
            match self.queue_push(conn, key, frames, false) {
                Queued::Yes => delivered += 1,
                Queued::Dropped => dropped += 1,
                Queued::Skipped => {}
            }
        }
        self.count_fanout(delivered, dropped);
    }

    /// Hands a chat request to the router core. Returns false when its
    /// inbox is full (the caller answers `unavailable`).
    pub(super) fn to_core(&self, request: ChatRequest) -> bool {
        let frame = InternalFrameBytes::encode(&InternalFrame::Chat(request));
        match self.core.try_send(CoreCommand::Request(frame)) {
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
    pub(super) fn publish_to_room(&self, room: &str, push: Vec<u8>, except_conn: u64) {
        self.metrics.encodes.increment(1);
        let remote = self.rooms.borrow().get(room).map_or(0, |r| r.remote_shards);
        if remote == 0 && !self.clustered {
            self.deliver_to_room_members(room, &Bytes::from(push), except_conn);
            return;
        }
        let frame = InternalFrameBytes::encode(&InternalFrame::RoomPush { room: room.to_string(), except_conn, push });
        self.deliver_to_room_members(room, &frame.wire_push(), except_conn);
        for shard in shards_in(remote) {
            if self.mesh.to(shard).try_send(ShardCommand::Deliver(frame.clone())).is_err() {
                self.metrics.drops_inbox_full.increment(1);
            }
        }
        if self.clustered && self.core.try_send(CoreCommand::Publish(frame)).is_err() {
            self.metrics.drops_core_inbox_full.increment(1);
        }
    }

    /// Adds `key` to `room` and returns once every shard knows this shard
    /// has members of it. Returns false if the connection is gone.
    pub(super) async fn join_room(&self, key: u32, room: &str) -> bool {
        let (shared, outcome) = self.rooms.borrow_mut().join(room, key);
        match self.conns.borrow_mut().get_mut(key as usize) {
            Some(conn) => {
                if !matches!(outcome, JoinOutcome::AlreadyMember) {
                    conn.rooms.push(shared.clone());
                }
            }
            None => {
                self.leave_room(&shared, key);
                return false;
            }
        }
        self.metrics.rooms.set(self.rooms.borrow().local_room_count() as f64);
        match outcome {
            JoinOutcome::AlreadyMember | JoinOutcome::Joined(None) => {}
            JoinOutcome::Joined(Some(announcement)) => announcement.wait().await,
            JoinOutcome::FirstLocalMember => {
                self.announce(&shared, true).await;
                self.rooms.borrow_mut().announced(&shared);
            }
        }
        true
    }

    /// Removes `key` from `room` (the caller updates the connection's list).
    pub(super) fn leave_room(&self, room: &Rc<str>, key: u32) {
        let last = self.rooms.borrow_mut().leave(room, key);
        if last {
            // Fire and forget: a frame that crosses this notice finds no
            // members and is dropped harmlessly.
            if self.clustered {
                let command =
                    CoreCommand::RoomInterest { room: room.as_ref().into(), shard: self.id, joined: false, ack: None };
                if self.core.try_send(command).is_err() {
                    self.metrics.drops_core_inbox_full.increment(1);
                }
            }
            for (shard, sender) in self.mesh.all() {
                if shard != self.id {
                    let command = ShardCommand::RoomInterest {
                        room: room.as_ref().into(),
                        shard: self.id,
                        joined: false,
                        ack: None,
                    };
                    let _ = sender.try_send(command);
                }
            }
        }
        self.metrics.rooms.set(self.rooms.borrow().local_room_count() as f64);
    }

    /// Tells every other shard (and in a cluster the uplink, which tells the
    /// routers) this shard has members of `room` and waits for all of them
    /// to acknowledge.
    async fn announce(&self, room: &str, joined: bool) {
        let (ack_tx, ack_rx) = flume::unbounded();
        let mut expected = 0;
        if self.clustered {
            let command =
                CoreCommand::RoomInterest { room: room.into(), shard: self.id, joined, ack: Some(ack_tx.clone()) };
            if self.core.send_async(command).await.is_ok() {
                expected += 1;
            }
        }
        for (shard, sender) in self.mesh.all() {
            if shard == self.id {
                continue;
            }
            let command =
                ShardCommand::RoomInterest { room: room.into(), shard: self.id, joined, ack: Some(ack_tx.clone()) };
            if sender.send_async(command).await.is_ok() {
                expected += 1;
            }
        }
        drop(ack_tx);
        for _ in 0..expected {
            // An error means every remaining shard dropped its sender
            // (it stopped); nothing more will come.
            if ack_rx.recv_async().await.is_err() {
                break;
            }
        }
    }
}
