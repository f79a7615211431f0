//! The read side of one connection: accept it into the shard, read frames
//! into a buffer that stays small while the connection is idle, decode each
//! one and act on it (AUTH, PING, JOIN, LEAVE, PUBLISH here; SEND, SYNC, ACK
//! and UNREAD are handed to the router core), and tear the connection down
//! when either side ends it.
//!
//! Bad input is answered here: a frame that cannot be decoded gets ERROR
//! with its rid, and every decode error but an unknown op also closes the
//! connection, since the client is not speaking the protocol.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use corecast_proto::{
    decode_client, encode_server, peek_frame, ClientRequest, ErrorCode, FrameError, Header, Peek, PushKind,
    ServerMessage, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY,
};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, Split, Splitable};
use monoio::net::TcpStream;

use corecast_proto::internal::ChatRequest;

use super::delivery::encode_reply;
use super::websocket::{WsEvent, WsReader};
use super::{writer, Shard};
use crate::stall::Activity;

/// Read buffer capacity of an idle connection.
const IDLE_READ_CAPACITY: usize = 128;
/// A buffer larger than this is given back once drained and quiet.
const KEEP_READ_CAPACITY: usize = 4096;
/// Longest device id a client may give in AUTH.
const MAX_DEVICE_ID_LEN: usize = 64;

/// Serves one accepted plain-TCP connection until it closes.
/// Why a new connection is refused: the CLOSE code and reason it gets.
pub(super) type Refusal = (ErrorCode, &'static str);

pub(super) async fn serve(shard: Rc<Shard>, stream: TcpStream, refusal: Option<Refusal>) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    serve_stream(shard, stream, fd, refusal, None).await;
}

/// Completes the TLS handshake (within the authentication deadline), then
/// serves the connection like a plain one. A failed handshake is counted
/// and the socket dropped: there is no channel to send a CLOSE on.
pub(super) async fn serve_tls(
    shard: Rc<Shard>,
    acceptor: monoio_rustls::TlsAcceptor,
    stream: TcpStream,
    refusal: Option<Refusal>,
) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let deadline = std::time::Duration::from_millis(shard.config.auth_timeout_ms as u64);
    match monoio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_stream(shard, tls, fd, refusal, None).await,
        Ok(Err(e)) => {
            tracing::debug!(shard = shard.id, "TLS handshake failed: {e}");
            shard.metrics.tls_handshake_failures.increment(1);
        }
        Err(_) => shard.metrics.tls_handshake_failures.increment(1),
    }
}

/// Serves a connection over any byte stream until it closes. `fd` is the
/// socket under it, which is shut down to end both halves. A connection
/// refused at admission is told why with CLOSE and closed. With `ws` the
/// stream carries WebSocket frames around the wire frames.
pub(super) async fn serve_stream<S>(
    shard: Rc<Shard>,
    stream: S,
    fd: std::os::fd::RawFd,
    refusal: Option<Refusal>,
    ws: Option<WsReader>,
) where
    S: Split + AsyncReadRent + AsyncWriteRent + 'static,
{
    let (key, conn_id) = shard.register(fd);
    if ws.is_some() {
        if let Some(conn) = shard.conns.borrow_mut().get_mut(key as usize) {
            conn.ws = Some(Box::default());
        }
    }
    if let Some((code, reason)) = refusal {
        shard.begin_close(key, code, reason, shard.reconnect_hint());
    }
    let (mut reader, write_half) = stream.into_split();
    let writer_task = monoio::spawn(writer::run(shard.clone(), key, conn_id, write_half));
    read_loop(&shard, key, &mut reader, ws).await;
    let server_closing = shard.conns.borrow().get(key as usize).is_some_and(|c| c.closing.is_some());
    if server_closing {
        // Let the writer deliver the CLOSE (bounded by the linger deadline).
        writer_task.await;
        shard.unregister(key);
    } else {
        shard.unregister(key);
        writer_task.await;
    }
    drop(reader);
}

/// Reads and handles frames until the peer goes away or the server starts
/// closing the connection. Over WebSocket, socket bytes go through the
/// [`WsReader`] first and its payloads feed the same frame buffer.
async fn read_loop<S: AsyncReadRent>(shard: &Shard, key: u32, reader: &mut OwnedReadHalf<S>, mut ws: Option<WsReader>) {
    let max_len = shard.config.max_frame_len;
    let mut buf: Vec<u8> = Vec::with_capacity(IDLE_READ_CAPACITY);
    if let Some(ws) = ws.as_mut() {
        if !ws_decode(shard, key, ws, &mut buf) {
            return;
        }
    }
    loop {
        let mut start = 0;
        let frame_len = loop {
            match peek_frame(&buf[start..], max_len) {
                Ok(Peek::Complete(header)) => {
                    let end = start + header.len as usize;
                    handle_frame(shard, key, &buf[start..end]).await;
                    start = end;
                    if is_closing(shard, key) {
                        return;
                    }
                }
                Ok(Peek::NeedMore { frame_len }) => break frame_len,
                Err(error) => {
                    refuse_frame(shard, key, Header::read(&buf[start..]).map_or(0, |h| h.rid), &error);
                    return;
                }
            }
        };
        buf.drain(..start);
        if let Some(ws) = ws.as_mut() {
            // WebSocket: read into the raw buffer, decode onto `buf`.
            size_read_buffer(&mut ws.raw, None);
            let len = ws.raw.len();
            let raw = std::mem::take(&mut ws.raw);
            let (result, slice) = reader.read(raw.slice_mut(len..)).await;
            ws.raw = slice.into_inner();
            match result {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !ws_decode(shard, key, ws, &mut buf) {
                return;
            }
            continue;
        }
        size_read_buffer(&mut buf, frame_len);
        let len = buf.len();
        let (result, slice) = reader.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Decodes the WebSocket frames read so far onto `buf`, answering pings.
/// Returns false when the connection ends (the client closed, or broke the
/// rules and is being closed with a close code).
fn ws_decode(shard: &Shard, key: u32, ws: &mut WsReader, buf: &mut Vec<u8>) -> bool {
    loop {
        match ws.decode(buf) {
            None => return true,
            Some(WsEvent::Pong(frame)) => shard.ws_control(key, frame),
            Some(WsEvent::Closed(code)) => {
                // Echo the client's code (RFC 6455 §5.5.1); 1005/1006 are
                // not to be sent, answer those with a normal closure.
                let code = if (1000..=4999).contains(&code) && code != 1005 && code != 1006 { code } else { 1000 };
                shard.ws_close(key, code, "");
                return false;
            }
            Some(WsEvent::Refused(code, reason)) => {
                shard.ws_close(key, code, reason);
                return false;
            }
        }
    }
}

/// Makes room for the frame being received, grows the buffer for a busy
/// connection, and gives memory back when an idle one has drained it.
fn size_read_buffer(buf: &mut Vec<u8>, frame_len: Option<u32>) {
    if let Some(len) = frame_len {
        buf.reserve((len as usize).saturating_sub(buf.len()));
    } else if buf.is_empty() && buf.capacity() > KEEP_READ_CAPACITY {
        *buf = Vec::with_capacity(IDLE_READ_CAPACITY);
    } else if buf.len() == buf.capacity() {
        buf.reserve(buf.capacity());
    }
}

fn is_closing(shard: &Shard, key: u32) -> bool {
    shard.conns.borrow().get(key as usize).is_none_or(|c| c.closing.is_some())
}

/// Answers an undecodable frame with ERROR; every error but an unknown op
/// also closes the connection.
fn refuse_frame(shard: &Shard, key: u32, rid: u32, error: &FrameError) {
    let code = error.code();
    let message = error.to_string();
    shard.reply(key, encode_reply(rid, &ServerMessage::Error { code: code.as_u16(), message: &message }));
    if error.closes_connection() {
        shard.begin_close(key, code, &message, shard.config.reconnect_base_ms);
    }
}

fn error(shard: &Shard, key: u32, rid: u32, code: ErrorCode, message: &str) {
    shard.reply(key, encode_reply(rid, &ServerMessage::Error { code: code.as_u16(), message }));
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Decodes one complete frame and acts on it.
async fn handle_frame(shard: &Shard, key: u32, bytes: &[u8]) {
    shard.pulse.enter(Activity::Read);
    shard.metrics.frames_in.increment(1);
    let authenticated = {
        let mut conns = shard.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize) else { return };
        conn.last_active_tick = shard.now_tick();
        conn.identity.is_some()
    };
    let frame = match decode_client(bytes) {
        Ok(frame) => frame,
        Err(e) => return refuse_frame(shard, key, Header::read(bytes).map_or(0, |h| h.rid), &e),
    };
    let rid = frame.rid;
    match frame.request {
        ClientRequest::Auth { token, device } => authenticate(shard, key, rid, token, device, authenticated),
        ClientRequest::Ping => shard.reply(key, encode_reply(rid, &ServerMessage::Pong)),
        _ if !authenticated => error(shard, key, rid, ErrorCode::NotAuthenticated, "send AUTH first"),
        // Boxed: a JOIN may wait for other shards, and that state would
        // otherwise sit in every idle connection's read future.
        ClientRequest::Join { room } => Box::pin(join(shard, key, rid, room)).await,
        ClientRequest::Leave { room } => leave(shard, key, rid, room),
        ClientRequest::Publish { .. } | ClientRequest::Send { .. } if !within_rate(shard, key, rid, bytes.len()) => {}
        ClientRequest::Publish { room, payload } => publish(shard, key, rid, frame.flags, room, payload),
        chat => forward_chat(shard, key, rid, chat),
    }
}

/// Applies the connection's publish rate limits: a refused frame gets ERROR
/// rate_limited, and a connection that keeps going over gets CLOSE.
fn within_rate(shard: &Shard, key: u32, rid: u32, len: usize) -> bool {
    match shard.charge_publish(key, len) {
        None => true,
        Some(close) => {
            error(shard, key, rid, ErrorCode::RateLimited, "sending too fast; slow down");
            if close {
                let hint = shard.config.reconnect_base_ms;
                shard.begin_close(key, ErrorCode::RateLimited, "kept sending over the rate limit", hint);
            }
            false
        }
    }
}

/// Hands SEND, SYNC, ACK and UNREAD to the router core, which answers the
/// connection directly.
fn forward_chat(shard: &Shard, key: u32, rid: u32, request: ClientRequest<'_>) {
    let (conn_id, user, device) = {
        let conns = shard.conns.borrow();
        let Some(conn) = conns.get(key as usize) else { return };
        let Some(identity) = &conn.identity else { return };
        (conn.id, identity.user.to_string(), identity.device.to_string())
    };
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
    if !shard.to_core(request) {
        error(shard, key, rid, ErrorCode::Unavailable, "the router core is overloaded; retry later");
    }
}

fn authenticate(shard: &Shard, key: u32, rid: u32, token: &str, device: &str, already: bool) {
    if already {
        return error(shard, key, rid, ErrorCode::Forbidden, "already authenticated");
    }
    if device.len() > MAX_DEVICE_ID_LEN {
        let message = format!("device id must be at most {MAX_DEVICE_ID_LEN} bytes");
        return error(shard, key, rid, ErrorCode::LimitExceeded, &message);
    }
    if !shard.auth_allowed() {
        error(shard, key, rid, ErrorCode::RateLimited, "too many logins at once");
        let reason = "too many logins at once; come back after the hint";
        return shard.begin_close(key, ErrorCode::RateLimited, reason, shard.reconnect_hint());
    }
    match shard.verifier.verify(token) {
        Ok(mut identity) => {
            identity.device = device.into();
            let user = identity.user.to_string();
            let reply = {
                let mut conns = shard.conns.borrow_mut();
                let Some(conn) = conns.get_mut(key as usize) else { return };
                let reply = encode_reply(
                    rid,
                    &ServerMessage::AuthOk {
                        conn_id: conn.id,
                        shard: shard.id,
                        heartbeat_ms: shard.config.heartbeat_ms,
                        user: &identity.user,
                    },
                );
                conn.identity = Some(identity);
                (reply, conn.id)
            };
            shard.authenticated();
            let (reply, conn_id) = reply;
            // Presence first, so a message stored right after AUTH_OK finds
            // this connection. A connection the router core cannot know
            // about would silently miss live messages: refuse it instead.
            if !shard.to_core(ChatRequest::Online { conn_id, user, device: device.into() }) {
                error(shard, key, rid, ErrorCode::Unavailable, "the router core is overloaded; retry later");
                let hint = shard.config.reconnect_base_ms;
                return shard.begin_close(key, ErrorCode::Unavailable, "router core overloaded", hint);
            }
            shard.reply(key, reply);
        }
        Err(e) => {
            shard.metrics.auth_failures.increment(1);
            let message = e.to_string();
            error(shard, key, rid, ErrorCode::AuthFailed, &message);
            shard.begin_close(key, ErrorCode::AuthFailed, "authentication failed", shard.config.reconnect_base_ms);
        }
    }
}

async fn join(shard: &Shard, key: u32, rid: u32, room: &str) {
    if room.is_empty() || room.len() > shard.config.max_room_name_len {
        let message = format!("room name must be 1..={} bytes", shard.config.max_room_name_len);
        return error(shard, key, rid, ErrorCode::LimitExceeded, &message);
    }
    {
        let conns = shard.conns.borrow();
        let Some(conn) = conns.get(key as usize) else { return };
        if conn.rooms.iter().any(|r| &**r == room) {
            drop(conns);
            return shard.reply(key, encode_reply(rid, &ServerMessage::Ok));
        }
        if !conn.identity.as_ref().is_some_and(|id| id.may_join(room)) {
            drop(conns);
            return error(shard, key, rid, ErrorCode::Forbidden, "the token does not allow this room");
        }
        if conn.rooms.len() >= shard.config.max_rooms_per_conn {
            drop(conns);
            let message = format!("a connection may be in at most {} rooms", shard.config.max_rooms_per_conn);
            return error(shard, key, rid, ErrorCode::LimitExceeded, &message);
        }
    }
    if shard.join_room(key, room).await {
        shard.reply(key, encode_reply(rid, &ServerMessage::Ok));
    }
}

fn leave(shard: &Shard, key: u32, rid: u32, room: &str) {
    let removed = {
        let mut conns = shard.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize) else { return };
        conn.rooms.iter().position(|r| &**r == room).map(|i| conn.rooms.swap_remove(i))
    };
    if let Some(room) = removed {
        shard.leave_room(&room, key);
    }
    shard.reply(key, encode_reply(rid, &ServerMessage::Ok));
}

fn publish(shard: &Shard, key: u32, rid: u32, flags: u16, room: &str, payload: &[u8]) {
    let mut push = Vec::new();
    let except_conn = {
        let conns = shard.conns.borrow();
        let Some(conn) = conns.get(key as usize) else { return };
        let Some(identity) = &conn.identity else { return };
        if !conn.rooms.iter().any(|r| &**r == room) {
            drop(conns);
            return error(shard, key, rid, ErrorCode::Forbidden, "join the room before publishing to it");
        }
        let message = ServerMessage::Push {
            kind: PushKind::Room,
            conv: room,
            from: &identity.user,
            seq: 0,
            ts_ms: now_ms(),
            payload,
        };
        if encode_server(0, 0, &message, &mut push).is_err() || push.len() > shard.config.max_frame_len as usize {
            drop(conns);
            return error(shard, key, rid, ErrorCode::LimitExceeded, "payload too large for a push frame");
        }
        if flags & PUBLISH_EXCLUDE_SELF != 0 {
            conn.id
        } else {
            0
        }
    };
    shard.publish_to_room(room, push, except_conn);
    if flags & PUBLISH_NO_REPLY == 0 {
        shard.reply(key, encode_reply(rid, &ServerMessage::Ok));
    }
}
