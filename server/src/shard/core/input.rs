//! What a connection's bytes do: WebSocket unwrapping, cutting the stream
//! into frames (straight from the driver's buffer when nothing is held, so
//! an idle connection keeps no buffer), and acting on each frame: AUTH,
//! PING, JOIN, LEAVE and PUBLISH here; SEND, SYNC, ACK and UNREAD go to the
//! router core, which answers the connection directly.
//!
//! Bad input is answered here: a frame that cannot be decoded gets ERROR
//! with its rid, and every decode error but an unknown op also closes the
//! connection, since the client is not speaking the protocol.

use corecast_proto::internal::ChatRequest;
use corecast_proto::{
    decode_client, encode_server, peek_frame, ClientRequest, ErrorCode, FrameError, Header, Peek, PushKind,
    ServerMessage, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY,
};

use super::conn::{Closing, Framing, Identity};
use super::output::encode_reply;
use super::{Now, ShardCore};
use crate::shard::rooms::JoinOutcome;
use crate::shard::ws_codec::WsEvent;

/// Longest device id a client may give in AUTH.
const MAX_DEVICE_ID_LEN: usize = 64;

/// What handling a frame means for the frames after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Go on.
    Continue,
    /// Hold the rest until a JOIN is answered.
    Pause,
    /// The connection is closing: discard the rest.
    Stop,
}

impl ShardCore {
    /// Bytes arrived for a connection.
    pub fn on_bytes(&mut self, now: Now, id: u64, bytes: &[u8]) {
        self.set_now(now);
        let Some(key) = self.live_key(id) else { return };
        let conn = &mut self.conns[key];
        if conn.is_closing() {
            // Read and dropped: a client being closed is owed nothing, and
            // draining keeps its CLOSE from being destroyed by a reset.
            return;
        }
        if conn.framing == Framing::WebSocket {
            return self.on_ws_bytes(key, id, bytes);
        }
        if conn.input.is_none() && !conn.paused {
            // Nothing held: frames straight from the driver's buffer.
            let used = self.handle_frames(key, id, bytes);
            self.hold_rest(key, id, &bytes[used..]);
        } else {
            conn.input.get_or_insert_with(Box::default).extend_from_slice(bytes);
            self.process_held(key, id);
        }
    }

    fn on_ws_bytes(&mut self, key: usize, id: u64, bytes: &[u8]) {
        let conn = &mut self.conns[key];
        let Some(mut ws) = conn.ws.take() else { return };
        let mut input = conn.input.take().unwrap_or_default();
        let event = ws.receive(bytes, &mut input, &self.config.ws_path, &self.config.ws_allowed_origins);
        let upgraded_now = matches!(event, Some(WsEvent::Upgraded(_)));
        let conn = &mut self.conns[key];
        conn.ws = Some(ws);
        conn.input = (!input.is_empty()).then_some(input);
        self.on_ws_event(key, id, event);
        if upgraded_now {
            // Frames may have come with the handshake.
            let Some(conn) = self.conns.get_mut(key) else { return };
            let (Some(mut ws), false) = (conn.ws.take(), conn.is_closing()) else { return };
            let mut input = conn.input.take().unwrap_or_default();
            let event = ws.decode_pending(&mut input);
            let conn = &mut self.conns[key];
            conn.ws = Some(ws);
            conn.input = (!input.is_empty()).then_some(input);
            self.on_ws_event(key, id, event);
        }
        if self.live_key(id).is_some() && !self.conns[key].paused {
            self.process_held(key, id);
        }
    }

    fn on_ws_event(&mut self, key: usize, id: u64, event: Option<WsEvent>) {
        let Some(event) = event else {
            if self.conns.get(key).and_then(|c| c.ws.as_ref()).is_some_and(|ws| ws.has_output()) {
                self.want_write(key);
            }
            return;
        };
        match event {
            WsEvent::Upgraded(response) => {
                let conn = &mut self.conns[key];
                let Some(ws) = conn.ws.as_mut() else { return };
                ws.control.push(response.into());
                let refusal = ws.refusal.take();
                self.want_write(key);
                if let Some((code, reason)) = refusal {
                    let hint = self.reconnect_hint();
                    self.begin_close(id, code, reason, hint);
                }
            }
            WsEvent::HandshakeRefused(response, reason) => {
                metrics::counter!("corecast_ws_handshake_failures_total", "reason" => reason).increment(1);
                let conn = &mut self.conns[key];
                if let Some(ws) = conn.ws.as_mut() {
                    ws.pending.push(response.into());
                }
                self.begin_close_quietly(id);
            }
            WsEvent::Closed(code) => {
                // Echo the client's code (RFC 6455 §5.5.1); 1005/1006 are
                // not to be sent, answer those with a normal closure.
                let code = if (1000..=4999).contains(&code) && code != 1005 && code != 1006 { code } else { 1000 };
                self.ws_close(id, code, "");
            }
            WsEvent::Refused(code, reason) => self.ws_close(id, code, reason),
        }
    }

    /// Ends a WebSocket connection with a close frame of `code`, after what
    /// is queued. A client that broke the rules also gets the protocol's
    /// CLOSE first.
    fn ws_close(&mut self, id: u64, code: u16, reason: &str) {
        use corecast_proto::ws::close_code;
        if let Some(ws) = self.conn_mut(id).and_then(|c| c.ws.as_mut()) {
            ws.close.get_or_insert((code, reason.into()));
        }
        if code != close_code::NORMAL && code != close_code::GOING_AWAY {
            metrics::counter!("corecast_ws_closes_total", "code" => code.to_string()).increment(1);
            let hint = self.config.reconnect_base_ms;
            self.begin_close(id, ErrorCode::BadFrame, reason, hint);
        } else {
            self.begin_close_quietly(id);
        }
    }

    /// Handles what the connection holds, keeping what is left.
    pub(super) fn process_held(&mut self, key: usize, id: u64) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.paused || conn.is_closing() {
            return;
        }
        let Some(held) = conn.input.take() else { return };
        let used = self.handle_frames(key, id, &held);
        let rest = &held[used..];
        if rest.is_empty() {
            return;
        }
        if self.live_key(id).is_none() {
            return;
        }
        if used == 0 {
            self.conns[key].input = Some(held);
        } else {
            self.hold_rest(key, id, rest);
        }
    }

    /// Keeps the bytes of a frame not yet complete (or held while paused).
    fn hold_rest(&mut self, key: usize, id: u64, rest: &[u8]) {
        if rest.is_empty() || self.live_key(id).is_none() {
            return;
        }
        let conn = &mut self.conns[key];
        if conn.is_closing() {
            return;
        }
        let held = conn.input.get_or_insert_with(Box::default);
        held.extend_from_slice(rest);
        // A big frame's buffer is not kept once it has been handled.
        if held.capacity() > 4 * held.len().max(1024) {
            held.shrink_to_fit();
        }
    }

    /// Handles the complete frames at the start of `buf`; returns how many
    /// bytes were used (all of them when the connection is closing).
    fn handle_frames(&mut self, key: usize, id: u64, buf: &[u8]) -> usize {
        let max_len = self.config.max_frame_len;
        let mut start = 0;
        loop {
            match peek_frame(&buf[start..], max_len) {
                Ok(Peek::Complete(header)) => {
                    let end = start + header.len as usize;
                    let flow = self.handle_frame(key, id, &buf[start..end]);
                    start = end;
                    match flow {
                        Flow::Continue => {}
                        Flow::Pause => return start,
                        Flow::Stop => return buf.len(),
                    }
                    if self.live_key(id).is_none_or(|k| self.conns[k].is_closing()) {
                        return buf.len();
                    }
                }
                Ok(Peek::NeedMore { .. }) => return start,
                Err(error) => {
                    let rid = Header::read(&buf[start..]).map_or(0, |h| h.rid);
                    self.refuse_frame(id, rid, &error);
                    return buf.len();
                }
            }
        }
    }

    /// Answers an undecodable frame with ERROR; every error but an unknown
    /// op also closes the connection.
    fn refuse_frame(&mut self, id: u64, rid: u32, error: &FrameError) {
        let code = error.code();
        let message = error.to_string();
        self.reply(id, encode_reply(rid, &ServerMessage::Error { code: code.as_u16(), message: &message }));
        if error.closes_connection() {
            let hint = self.config.reconnect_base_ms;
            self.begin_close(id, code, &message, hint);
        }
    }

    pub(super) fn error(&mut self, id: u64, rid: u32, code: ErrorCode, message: &str) {
        self.reply(id, encode_reply(rid, &ServerMessage::Error { code: code.as_u16(), message }));
    }

    /// Decodes one complete frame and acts on it.
    fn handle_frame(&mut self, key: usize, id: u64, bytes: &[u8]) -> Flow {
        self.metrics.frames_in.increment(1);
        let tick = self.tick32();
        let conn = &mut self.conns[key];
        conn.last_active_tick = tick;
        let authenticated = conn.identity.is_some();
        let frame = match decode_client(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                self.refuse_frame(id, Header::read(bytes).map_or(0, |h| h.rid), &e);
                return Flow::Stop;
            }
        };
        let rid = frame.rid;
        match frame.request {
            ClientRequest::Auth { token, device } => self.authenticate(id, rid, token, device, authenticated),
            ClientRequest::Ping => self.reply(id, encode_reply(rid, &ServerMessage::Pong)),
            _ if !authenticated => self.error(id, rid, ErrorCode::NotAuthenticated, "send AUTH first"),
            ClientRequest::Join { room, since } => return self.join(key, id, rid, room, since),
            ClientRequest::Leave { room } => self.leave(key, id, rid, room),
            ClientRequest::Publish { .. } | ClientRequest::Send { .. } if !self.within_rate(id, rid, bytes.len()) => {}
            ClientRequest::Publish { room, payload } => self.publish(key, id, rid, frame.flags, room, payload),
            ClientRequest::History { room, .. } | ClientRequest::Presence { room, .. }
                if !self.may_use_room(key, id, rid, room) => {}
            ClientRequest::History { room, since, limit } => self.history(id, rid, room, since, limit),
            ClientRequest::Presence { room, after, limit } => self.presence_query(id, rid, room, after, limit),
            chat => self.forward_chat(key, id, rid, chat),
        }
        Flow::Continue
    }

    /// Applies the connection's publish rate limits: a refused frame gets
    /// ERROR rate_limited, and a connection that keeps going over gets
    /// CLOSE.
    fn within_rate(&mut self, id: u64, rid: u32, len: usize) -> bool {
        let now = self.now_tick;
        let settings = &self.settings;
        let Some(key) = self.live_key(id) else { return false };
        let conn = &mut self.conns[key];
        let bytes = u32::try_from(len).unwrap_or(u32::MAX);
        let frames_ok = conn.publish_frames.take(&settings.publish_frames, 1, now);
        let bytes_ok = frames_ok && conn.publish_bytes.take(&settings.publish_bytes, bytes, now);
        if frames_ok && bytes_ok {
            conn.rate_strikes = 0;
            return true;
        }
        conn.rate_strikes = conn.rate_strikes.saturating_add(1);
        let close = conn.rate_strikes as u32 >= self.config.rate_limit_close_after;
        self.metrics.limit_hit(if frames_ok { "publish_bytes" } else { "publish_rate" });
        self.error(id, rid, ErrorCode::RateLimited, "sending too fast; slow down");
        if close {
            let hint = self.config.reconnect_base_ms;
            self.begin_close(id, ErrorCode::RateLimited, "kept sending over the rate limit", hint);
        }
        false
    }

    /// Hands SEND, SYNC, ACK and UNREAD to the router core.
    fn forward_chat(&mut self, key: usize, id: u64, rid: u32, request: ClientRequest<'_>) {
        let Some(identity) = &self.conns[key].identity else { return };
        let (user, device) = (identity.user.to_string(), identity.device.to_string());
        let conn_id = id;
        let request = match request {
            ClientRequest::Send { kind, to, client_msg_id, payload } => ChatRequest::Send {
                conn_id,
                rid,
                user,
                device,
                kind,
                to: to.into(),
                client_msg_id,
                payload: payload.into(),
            },
            ClientRequest::Sync { conv, after_seq, limit } => {
                ChatRequest::Sync { conn_id, rid, user, conv: conv.into(), after_seq, limit }
            }
            ClientRequest::Ack { conv, seq } => ChatRequest::Ack { conn_id, rid, user, device, conv: conv.into(), seq },
            ClientRequest::Unread => ChatRequest::Unread { conn_id, rid, user, device },
            _ => return,
        };
        if !self.forward_to_core(request) {
            self.error(id, rid, ErrorCode::Unavailable, "the router core is overloaded; retry later");
        }
    }

    /// Takes one AUTH verification from this tick's budget.
    fn auth_allowed(&mut self) -> bool {
        let allowed = self.auth_budget.take(&self.settings.auths, 1, self.now_tick);
        if !allowed {
            self.metrics.limit_hit("auth_rate");
        }
        allowed
    }

    fn authenticate(&mut self, id: u64, rid: u32, token: &str, device: &str, already: bool) {
        if already {
            return self.error(id, rid, ErrorCode::Forbidden, "already authenticated");
        }
        if device.len() > MAX_DEVICE_ID_LEN {
            let message = format!("device id must be at most {MAX_DEVICE_ID_LEN} bytes");
            return self.error(id, rid, ErrorCode::LimitExceeded, &message);
        }
        if !self.auth_allowed() {
            self.error(id, rid, ErrorCode::RateLimited, "too many logins at once");
            let reason = "too many logins at once; come back after the hint";
            let hint = self.reconnect_hint();
            return self.begin_close(id, ErrorCode::RateLimited, reason, hint);
        }
        match self.verifier.verify(token) {
            Ok(verified) => {
                let user = Self::intern(&mut self.users, &verified.user);
                let device = Self::intern(&mut self.devices, device);
                let reply = encode_reply(
                    rid,
                    &ServerMessage::AuthOk {
                        conn_id: id,
                        shard: self.id,
                        heartbeat_ms: self.config.heartbeat_ms,
                        user: &user,
                    },
                );
                // Presence first (in this round's batch, which leaves
                // before any reply is written), so a message stored right
                // after AUTH_OK finds this connection.
                self.presence.online(id, &user, &device);
                let Some(conn) = self.conn_mut(id) else { return };
                conn.identity = Some(Identity { user, device, grants: verified.rooms });
                self.unauthenticated = self.unauthenticated.saturating_sub(1);
                self.reply(id, reply);
            }
            Err(e) => {
                self.metrics.auth_failures.increment(1);
                let message = e.to_string();
                self.error(id, rid, ErrorCode::AuthFailed, &message);
                let hint = self.config.reconnect_base_ms;
                self.begin_close(id, ErrorCode::AuthFailed, "authentication failed", hint);
            }
        }
    }

    /// Whether the connection may use `room` (JOIN, HISTORY, PRESENCE): a
    /// valid name its token grants. Answers ERROR when not.
    fn may_use_room(&mut self, key: usize, id: u64, rid: u32, room: &str) -> bool {
        if room.is_empty() || room.len() > self.config.max_room_name_len {
            let message = format!("room name must be 1..={} bytes", self.config.max_room_name_len);
            self.error(id, rid, ErrorCode::LimitExceeded, &message);
            return false;
        }
        if !self.conns[key].identity.as_ref().is_some_and(|identity| identity.may_join(room)) {
            self.error(id, rid, ErrorCode::Forbidden, "the token does not allow this room");
            return false;
        }
        true
    }

    fn join(&mut self, key: usize, id: u64, rid: u32, room: &str, since: u64) -> Flow {
        if !self.may_use_room(key, id, rid, room) {
            return Flow::Continue;
        }
        let conn = &self.conns[key];
        if conn.rooms.iter().any(|r| &**r == room) {
            self.reply(id, encode_reply(rid, &ServerMessage::Ok));
            return Flow::Continue;
        }
        if conn.rooms.len() >= self.config.max_rooms_per_conn {
            let message = format!("a connection may be in at most {} rooms", self.config.max_rooms_per_conn);
            self.error(id, rid, ErrorCode::LimitExceeded, &message);
            return Flow::Continue;
        }
        let (shared, outcome) = self.rooms.join(room, key as u32);
        self.conns[key].rooms.push(shared.clone());
        self.metrics.rooms.set(self.rooms.local_room_count() as f64);
        if let Some(user) = self.conns[key].identity.as_ref().map(|i| i.user.clone()) {
            self.report_member(room, &user, true);
        }
        let waiting = match outcome {
            JoinOutcome::AlreadyMember => None,
            JoinOutcome::Joined => self.announcements.in_flight(room),
            JoinOutcome::FirstLocalMember => self.announce(&shared),
        };
        // Answered (and the rest of the input handled) once every shard
        // knows this one has members, and in a room with history once its
        // owner sent the catch-up.
        let waits = match waiting.map(|announcement| self.announcements.wait(announcement, (id, rid))) {
            Some(Ok(())) => true,
            None | Some(Err(_)) => false,
        };
        if self.rooms.options_of(room).is_some_and(|o| o.has_stream()) {
            self.start_catch_up(key, rid, shared, since, !waits);
            return Flow::Pause;
        }
        if waits {
            self.conns[key].paused = true;
            return Flow::Pause;
        }
        self.reply(id, encode_reply(rid, &ServerMessage::Ok));
        Flow::Continue
    }

    fn leave(&mut self, key: usize, id: u64, rid: u32, room: &str) {
        self.leave_conn_room(key, room);
        self.reply(id, encode_reply(rid, &ServerMessage::Ok));
    }

    fn publish(&mut self, key: usize, id: u64, rid: u32, flags: u16, room: &str, payload: &[u8]) {
        let conn = &self.conns[key];
        let Some(identity) = &conn.identity else { return };
        if !conn.rooms.iter().any(|r| &**r == room) {
            return self.error(id, rid, ErrorCode::Forbidden, "join the room before publishing to it");
        }
        if self.rooms.options_of(room).is_some_and(|o| o.has_stream()) {
            let except_conn = if flags & PUBLISH_EXCLUDE_SELF != 0 { id } else { 0 };
            let user = identity.user.clone();
            if let Err((code, message)) = self.publish_to_stream(room, &user, payload, except_conn) {
                return self.error(id, rid, code, message);
            }
            if flags & PUBLISH_NO_REPLY == 0 {
                self.reply(id, encode_reply(rid, &ServerMessage::Ok));
            }
            return;
        }
        let message = ServerMessage::Push {
            kind: PushKind::Room,
            conv: room,
            from: &identity.user,
            seq: 0,
            ts_ms: self.wall_ms,
            payload,
        };
        let mut push = Vec::new();
        if encode_server(0, 0, &message, &mut push).is_err() || push.len() > self.config.max_frame_len as usize {
            return self.error(id, rid, ErrorCode::LimitExceeded, "payload too large for a push frame");
        }
        let except_conn = if flags & PUBLISH_EXCLUDE_SELF != 0 { id } else { 0 };
        self.publish_to_room(room, push, except_conn);
        if flags & PUBLISH_NO_REPLY == 0 {
            self.reply(id, encode_reply(rid, &ServerMessage::Ok));
        }
    }

    /// Hands a chat request to the router core, after this round's
    /// presence changes (so the core knows the connection first). Returns
    /// false when its inbox is full (the caller answers `unavailable`).
    pub(super) fn forward_to_core(&mut self, request: ChatRequest) -> bool {
        self.flush_presence();
        self.send_to_core(request)
    }

    /// Marks a connection's closing state after its write side is shut.
    pub(super) fn lingering(&mut self, key: usize) {
        let deadline = (self.now_tick + self.settings.linger_ticks) as u32;
        if let Some(conn) = self.conns.get_mut(key) {
            conn.closing = Closing::Lingering { deadline };
        }
        self.arm_deadline(key, deadline as u64);
    }
}
