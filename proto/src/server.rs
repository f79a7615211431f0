//! Frames the server sends to a client: AUTH_OK, PONG, OK, PUSH, CLOSE and
//! ERROR, and for persistent chat SENT, SYNC_END and UNREAD_LIST.
//!
//! The server encodes with [`encode_server`]; clients (the bench harness,
//! tests, third-party clients written from `docs/PROTOCOL.md`) decode with
//! [`decode_server`], which borrows strings and payloads from the frame.

use crate::frame::FrameError;
use crate::wire::{split_frame, write_frame, EncodeError, FieldReader};

/// Op codes of server-to-client frames.
pub mod op {
    /// `AUTH_OK {conn_id: u64, shard: u16, heartbeat_ms: u32, user: str}`
    pub const AUTH_OK: u8 = 0x81;
    /// `PONG {}`
    pub const PONG: u8 = 0x82;
    /// `OK {}`
    pub const OK: u8 = 0x83;
    /// `SENT {conv: str, seq: u64, ts_ms: u64}`
    pub const SENT: u8 = 0x86;
    /// `SYNC_END {conv: str, last_seq: u64, more: u8, visible_seq: u64}`
    pub const SYNC_END: u8 = 0x87;
    /// `UNREAD_LIST {count: u16, count x {conv: str, last_seq: u64, read_seq: u64}, more: u8}`
    pub const UNREAD_LIST: u8 = 0x89;
    /// `PUSH {kind: u8, conv: str, from: str, seq: u64, ts_ms: u64, payload}`
    pub const PUSH: u8 = 0x90;
    /// `CLOSE {code: u16, reason: str, reconnect_after_ms: u32}`
    pub const CLOSE: u8 = 0x9F;
    /// `ERROR {code: u16, message: str}`
    pub const ERROR: u8 = 0xFE;
}

/// What a PUSH carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PushKind {
    /// An ephemeral message published to a room.
    Room = 1,
    /// A stored user-to-user message.
    Direct = 2,
    /// A stored group message.
    Group = 3,
    /// An operator broadcast to every connection.
    Broadcast = 4,
}

impl PushKind {
    /// The kind for a wire value.
    pub fn from_u8(v: u8) -> Option<PushKind> {
        match v {
            1 => Some(PushKind::Room),
            2 => Some(PushKind::Direct),
            3 => Some(PushKind::Group),
            4 => Some(PushKind::Broadcast),
            _ => None,
        }
    }
}

/// One conversation in an UNREAD_LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadEntry<'a> {
    /// Conversation id.
    pub conv: &'a str,
    /// Highest seq stored in it.
    pub last_seq: u64,
    /// This device's cursor (0 if it never acknowledged anything).
    pub read_seq: u64,
}

/// A server-to-client message, borrowing strings and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// Authentication succeeded.
    AuthOk {
        /// Server-wide unique id of this connection.
        conn_id: u64,
        /// Shard (core) that owns the connection.
        shard: u16,
        /// Interval at which the client should send PING when otherwise idle.
        heartbeat_ms: u32,
        /// The authenticated user id (the token's `sub`).
        user: &'a str,
    },
    /// Reply to PING.
    Pong,
    /// Success reply to JOIN, LEAVE or PUBLISH.
    Ok,
    /// A message delivered to the client.
    Push {
        /// What kind of conversation it belongs to.
        kind: PushKind,
        /// Room name, conversation id, or empty for broadcast.
        conv: &'a str,
        /// Sender's user id (empty for operator messages).
        from: &'a str,
        /// Sequence number in the conversation, 0 for ephemeral messages.
        seq: u64,
        /// Server timestamp, milliseconds since the Unix epoch.
        ts_ms: u64,
        /// Opaque application payload.
        payload: &'a [u8],
    },
    /// The server is about to close the connection.
    Close {
        /// Why (an [`ErrorCode`](crate::ErrorCode) value).
        code: u16,
        /// Human-readable reason.
        reason: &'a str,
        /// Wait at least this long before reconnecting.
        reconnect_after_ms: u32,
    },
    /// A SEND was stored (durably, per the server's durability mode).
    Sent {
        /// Conversation id.
        conv: &'a str,
        /// The message's sequence number in the conversation.
        seq: u64,
        /// Server timestamp, milliseconds since the Unix epoch.
        ts_ms: u64,
    },
    /// Ends the PUSH frames answering a SYNC.
    SyncEnd {
        /// Conversation id.
        conv: &'a str,
        /// Seq of the last message sent in this batch, or the request's
        /// `after_seq` when there was none.
        last_seq: u64,
        /// More messages follow `last_seq`: SYNC again from it.
        more: bool,
        /// The conversation is visible up to here: every message with a
        /// seq at or below it either was in this or an earlier answer, or
        /// will never exist. A live PUSH above it may arrive before the
        /// SYNC that shows it; a seq missing below it is a gap, not a
        /// message still on its way.
        visible_seq: u64,
    },
    /// Answer to UNREAD: conversations with messages past this device's
    /// cursors.
    UnreadList {
        /// The conversations.
        entries: Vec<UnreadEntry<'a>>,
        /// More conversations than fit in one frame: ACK some and ask again.
        more: bool,
    },
    /// A request failed; carries the request's rid.
    Error {
        /// An [`ErrorCode`](crate::ErrorCode) value.
        code: u16,
        /// Human-readable detail.
        message: &'a str,
    },
}

impl ServerMessage<'_> {
    /// The op code of this message.
    pub fn op(&self) -> u8 {
        match self {
            ServerMessage::AuthOk { .. } => op::AUTH_OK,
            ServerMessage::Pong => op::PONG,
            ServerMessage::Ok => op::OK,
            ServerMessage::Push { .. } => op::PUSH,
            ServerMessage::Sent { .. } => op::SENT,
            ServerMessage::SyncEnd { .. } => op::SYNC_END,
            ServerMessage::UnreadList { .. } => op::UNREAD_LIST,
            ServerMessage::Close { .. } => op::CLOSE,
            ServerMessage::Error { .. } => op::ERROR,
        }
    }
}

/// A whole server frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame<'a> {
    /// Request id this frame answers, 0 for pushes.
    pub rid: u32,
    /// Flag bits (none defined yet).
    pub flags: u16,
    /// The message.
    pub message: ServerMessage<'a>,
}

fn read_bool(r: &mut FieldReader<'_>, field: &'static str) -> Result<bool, FrameError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(FrameError::BadValue(field)),
    }
}

/// Decodes one complete server frame.
pub fn decode_server(frame: &[u8]) -> Result<ServerFrame<'_>, FrameError> {
    let (header, body) = split_frame(frame)?;
    let mut r = FieldReader::new(body);
    let message = match header.op {
        op::AUTH_OK => {
            let conn_id = r.u64("conn_id")?;
            let shard = r.u16("shard")?;
            let heartbeat_ms = r.u32("heartbeat_ms")?;
            let user = r.str("user")?;
            r.finish()?;
            ServerMessage::AuthOk { conn_id, shard, heartbeat_ms, user }
        }
        op::PONG => {
            r.finish()?;
            ServerMessage::Pong
        }
        op::OK => {
            r.finish()?;
            ServerMessage::Ok
        }
        op::PUSH => {
            let kind = PushKind::from_u8(r.u8("kind")?).ok_or(FrameError::BadValue("kind"))?;
            let conv = r.str("conv")?;
            let from = r.str("from")?;
            let seq = r.u64("seq")?;
            let ts_ms = r.u64("ts_ms")?;
            ServerMessage::Push { kind, conv, from, seq, ts_ms, payload: r.payload() }
        }
        op::SENT => {
            let conv = r.str("conv")?;
            let seq = r.u64("seq")?;
            let ts_ms = r.u64("ts_ms")?;
            r.finish()?;
            ServerMessage::Sent { conv, seq, ts_ms }
        }
        op::SYNC_END => {
            let conv = r.str("conv")?;
            let last_seq = r.u64("last_seq")?;
            let more = read_bool(&mut r, "more")?;
            let visible_seq = r.u64("visible_seq")?;
            r.finish()?;
            ServerMessage::SyncEnd { conv, last_seq, more, visible_seq }
        }
        op::UNREAD_LIST => {
            let count = r.u16("count")?;
            // Each entry takes at least 18 bytes: never trust `count` to size
            // an allocation.
            let mut entries = Vec::with_capacity((count as usize).min(r.remaining() / 18));
            for _ in 0..count {
                let conv = r.str("conv")?;
                let last_seq = r.u64("last_seq")?;
                let read_seq = r.u64("read_seq")?;
                entries.push(UnreadEntry { conv, last_seq, read_seq });
            }
            let more = read_bool(&mut r, "more")?;
            r.finish()?;
            ServerMessage::UnreadList { entries, more }
        }
        op::CLOSE => {
            let code = r.u16("code")?;
            let reason = r.str("reason")?;
            let reconnect_after_ms = r.u32("reconnect_after_ms")?;
            r.finish()?;
            ServerMessage::Close { code, reason, reconnect_after_ms }
        }
        op::ERROR => {
            let code = r.u16("code")?;
            let message = r.str("message")?;
            r.finish()?;
            ServerMessage::Error { code, message }
        }
        other => return Err(FrameError::UnknownOp(other)),
    };
    Ok(ServerFrame { rid: header.rid, flags: header.flags, message })
}

/// Appends the encoded frame to `out`. On error `out` is left unchanged.
pub fn encode_server(rid: u32, flags: u16, message: &ServerMessage<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let hint = match message {
        ServerMessage::AuthOk { user, .. } => 16 + user.len(),
        ServerMessage::Pong | ServerMessage::Ok => 0,
        ServerMessage::Push { conv, from, payload, .. } => 21 + conv.len() + from.len() + payload.len(),
        ServerMessage::Close { reason, .. } => 8 + reason.len(),
        ServerMessage::Sent { conv, .. } => 18 + conv.len(),
        ServerMessage::SyncEnd { conv, .. } => 19 + conv.len(),
        ServerMessage::UnreadList { entries, .. } => 3 + entries.iter().map(|e| 18 + e.conv.len()).sum::<usize>(),
        ServerMessage::Error { message, .. } => 4 + message.len(),
    };
    write_frame(out, message.op(), flags, rid, hint, |w| {
        match message {
            ServerMessage::AuthOk { conn_id, shard, heartbeat_ms, user } => {
                w.u64(*conn_id);
                w.u16(*shard);
                w.u32(*heartbeat_ms);
                w.str(user, "user")?;
            }
            ServerMessage::Pong | ServerMessage::Ok => {}
            ServerMessage::Push { kind, conv, from, seq, ts_ms, payload } => {
                w.u8(*kind as u8);
                w.str(conv, "conv")?;
                w.str(from, "from")?;
                w.u64(*seq);
                w.u64(*ts_ms);
                w.payload(payload);
            }
            ServerMessage::Sent { conv, seq, ts_ms } => {
                w.str(conv, "conv")?;
                w.u64(*seq);
                w.u64(*ts_ms);
            }
            ServerMessage::SyncEnd { conv, last_seq, more, visible_seq } => {
                w.str(conv, "conv")?;
                w.u64(*last_seq);
                w.u8(u8::from(*more));
                w.u64(*visible_seq);
            }
            ServerMessage::UnreadList { entries, more } => {
                let count = u16::try_from(entries.len()).map_err(|_| EncodeError::StringTooLong("entries"))?;
                w.u16(count);
                for entry in entries {
                    w.str(entry.conv, "conv")?;
                    w.u64(entry.last_seq);
                    w.u64(entry.read_seq);
                }
                w.u8(u8::from(*more));
            }
            ServerMessage::Close { code, reason, reconnect_after_ms } => {
                w.u16(*code);
                w.str(reason, "reason")?;
                w.u32(*reconnect_after_ms);
            }
            ServerMessage::Error { code, message } => {
                w.u16(*code);
                w.str(message, "message")?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_round_trips() {
        let msg = ServerMessage::Push {
            kind: PushKind::Room,
            conv: "lobby",
            from: "alice",
            seq: 0,
            ts_ms: 1_700_000_000_000,
            payload: b"hello",
        };
        let mut buf = Vec::new();
        encode_server(0, 0, &msg, &mut buf).unwrap();
        assert_eq!(decode_server(&buf).unwrap().message, msg);
    }

    #[test]
    fn push_with_unknown_kind_is_refused() {
        let msg = ServerMessage::Push { kind: PushKind::Room, conv: "", from: "", seq: 0, ts_ms: 0, payload: b"" };
        let mut buf = Vec::new();
        encode_server(0, 0, &msg, &mut buf).unwrap();
        buf[12] = 9;
        assert_eq!(decode_server(&buf), Err(FrameError::BadValue("kind")));
    }
}
