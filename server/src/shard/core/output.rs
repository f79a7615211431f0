//! The way out of a connection: replies queued regardless of the limit,
//! the list of connections the driver must write, batches handed to the
//! driver straight from the shared frame buffers (over WebSocket behind one
//! message header), the unwritten tail taken back in order, and closing:
//! CLOSE queued last, then the write side shut while input is drained, then
//! the socket released.

use bytes::Bytes;
use corecast_proto::{encode_server, ErrorCode, ServerMessage};

use super::conn::{Closing, Conn};
use super::ShardCore;
use crate::shard::outbound::split_written;
use crate::shard::ws_codec::message_header;

/// Frames per batch (well under IOV_MAX).
pub const MAX_BATCH_FRAMES: usize = 256;
/// Bytes per batch.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What the driver should do for a connection in the write list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Write the batch, then report with [`ShardCore::wrote`].
    Write,
    /// Nothing to write now.
    Idle,
    /// Everything is written and the connection is closing: shut the write
    /// side, keep reading (and discarding) until the peer closes.
    ShutWrite,
}

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

impl ShardCore {
    /// Puts a connection on the write list (once).
    pub(super) fn want_write(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if !conn.in_write_list {
            conn.in_write_list = true;
            let id = super::conn_id(self.id, conn.generation, key as u32);
            self.write_list.push(id);
        }
    }

    /// Queues a reply or error for one connection, regardless of its limit.
    pub(super) fn reply(&mut self, id: u64, frame: Bytes) {
        let Some(key) = self.live_key(id) else { return };
        let conn = &mut self.conns[key];
        if !conn.is_closing() {
            conn.queue_mut().push(frame);
            self.want_write(key);
        }
    }

    /// Starts closing a connection: queues CLOSE after what it is still
    /// owed (a slow consumer is owed nothing: its unsent messages are
    /// dropped so the CLOSE gets through), and arms the deadline after
    /// which the socket is released whether or not the CLOSE was written.
    pub(super) fn begin_close(&mut self, id: u64, code: ErrorCode, reason: &str, reconnect_after_ms: u32) {
        let Some(key) = self.start_closing(id) else { return };
        let conn = &mut self.conns[key];
        if code == ErrorCode::SlowConsumer {
            let dropped = conn.queue.as_mut().map_or(0, |q| q.clear_unstarted());
            self.metrics.drops_slow_consumer.increment(dropped as u64);
            self.metrics.slow_consumer_closes.increment(1);
        }
        let close = ServerMessage::Close { code: code.as_u16(), reason, reconnect_after_ms };
        conn.queue_mut().push(encode_reply(0, &close));
        self.metrics.closed_by_server(code);
        self.want_write(key);
    }

    /// Marks connection `id` as flushing toward its close, arms the deadline
    /// after which its socket goes regardless, and takes it out of its
    /// rooms at once (a closing connection gets nothing more from them).
    /// `None` when it is gone or already closing.
    fn start_closing(&mut self, id: u64) -> Option<usize> {
        let key = self.live_key(id)?;
        let deadline = self.now_tick + self.settings.linger_ticks;
        let conn = &mut self.conns[key];
        if conn.is_closing() {
            return None;
        }
        conn.closing = Closing::Flushing { deadline: deadline as u32 };
        conn.paused = false;
        conn.input = None;
        let rooms = std::mem::take(&mut conn.rooms);
        let user = conn.identity.as_ref().map(|identity| identity.user.clone());
        if user.is_none() {
            // No longer authenticating: it does not hold a place under
            // the unauthenticated limit while it lingers.
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
        }
        self.arm_deadline(key, deadline);
        for room in rooms {
            self.leave_room(&room, key as u32);
            // Reported here: release() finds no rooms left to report.
            if let Some(user) = &user {
                self.report_member(&room, user, false);
            }
        }
        Some(key)
    }

    /// Starts closing a connection without a CLOSE frame (the client is
    /// the one leaving): what is queued is flushed, then the socket shut.
    pub(super) fn begin_close_quietly(&mut self, id: u64) {
        if let Some(key) = self.start_closing(id) {
            self.want_write(key);
        }
    }

    /// Fills `batch` with what connection `id` should write next.
    pub fn take_output(&mut self, id: u64, batch: &mut Vec<Bytes>) -> Output {
        let Some(key) = self.live_key(id) else { return Output::Idle };
        let conn = &mut self.conns[key];
        conn.in_write_list = false;
        if conn.flush_pending {
            return Output::Idle;
        }
        match conn.ws.as_mut() {
            None => {
                if let Some(queue) = conn.queue.as_mut() {
                    queue.take_batch(batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES);
                }
            }
            Some(ws) if !ws.pending.is_empty() => batch.append(&mut ws.pending),
            Some(ws) => {
                batch.append(&mut ws.control);
                if ws.is_upgraded() {
                    let header_at = batch.len();
                    if let Some(queue) = conn.queue.as_mut() {
                        queue.take_batch(batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES);
                    }
                    let data: usize = batch[header_at..].iter().map(Bytes::len).sum();
                    if data > 0 {
                        batch.insert(header_at, message_header(data));
                    }
                }
            }
        }
        if !batch.is_empty() {
            return Output::Write;
        }
        if !matches!(conn.closing, Closing::Flushing { .. }) {
            return Output::Idle;
        }
        if let Some(close) = conn.ws.as_mut().and_then(|ws| ws.close_frame()) {
            batch.push(close);
            return Output::Write;
        }
        self.lingering(key);
        Output::ShutWrite
    }

    /// After writing `written` bytes of `batch`: puts the unwritten rest
    /// back in front, in order, and says whether more is waiting.
    pub fn wrote(&mut self, id: u64, batch: &mut Vec<Bytes>, written: usize) -> bool {
        let Some(key) = self.live_key(id) else {
            batch.clear();
            return false;
        };
        let limit = self.config.outbound_queue_bytes;
        let conn = &mut self.conns[key];
        let sent = match conn.ws.as_mut() {
            Some(ws) => {
                // Framed bytes go back as they are, ahead of anything else.
                let (sent, rest) = split_written(batch, written);
                ws.pending.extend(rest);
                sent
            }
            None => conn.queue_mut().return_unwritten(batch, written),
        };
        self.metrics.frames_out.increment(sent as u64);
        if conn.over_limit_since != super::conn::NO_TICK && conn.queued_bytes() < limit / 2 {
            conn.over_limit_since = super::conn::NO_TICK;
        }
        release_queue_if_empty(conn);
        conn.has_output() || matches!(conn.closing, Closing::Flushing { .. })
    }

    /// Connection `id`'s socket is writable again: put it on the write list.
    pub fn on_writable(&mut self, id: u64) {
        if let Some(key) = self.live_key(id) {
            self.want_write(key);
        }
    }
}

/// An idle connection holds no queue allocation.
fn release_queue_if_empty(conn: &mut Conn) {
    if conn.queue.as_ref().is_some_and(|q| q.is_empty()) {
        conn.queue = None;
    }
}
