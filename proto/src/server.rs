//! Frames the server sends to a client: AUTH_OK, PONG, OK, PUSH, CLOSE and
//! ERROR; for rooms with a stream JOINED, HISTORY_END and PRESENCE_LIST;
//! and for persistent chat SENT, SYNC_END and UNREAD_LIST.
//!
//! A room's stream position is one `u64`, laid out like a conversation's
//! seq: the epoch in the top 24 bits, the offset in the low 40
//! ([`position`], [`position_epoch`], [`position_offset`]).
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
    /// `JOINED {room: str, position: u64, recovered: u8}`
    pub const JOINED: u8 = 0x84;
    /// `HISTORY_END {room: str, position: u64, complete: u8}`
    pub const HISTORY_END: u8 = 0x85;
    /// `PRESENCE_LIST {room: str, users: u32, conns: u32, count: u16, count x {user: str, devices: u16}, next: str}`
    pub const PRESENCE_LIST: u8 = 0x88;
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
    /// A user's first device joined (payload `1`) or last device left
    /// (payload `0`) a room with join and leave events.
    Presence = 5,
}

/// Bits of a position's offset; the epoch is above them.
pub const POSITION_OFFSET_BITS: u32 = 40;

/// A room stream position from its epoch (24 bits) and offset (40 bits).
pub fn position(epoch: u32, offset: u64) -> u64 {
    (epoch as u64) << POSITION_OFFSET_BITS | (offset & ((1 << POSITION_OFFSET_BITS) - 1))
}

/// The epoch of a position.
pub fn position_epoch(position: u64) -> u32 {
    (position >> POSITION_OFFSET_BITS) as u32
}

/// The offset of a position within its epoch.
pub fn position_offset(position: u64) -> u64 {
    position & ((1 << POSITION_OFFSET_BITS) - 1)
}

impl PushKind {
    /// The kind for a wire value.
    pub fn from_u8(v: u8) -> Option<PushKind> {
        match v {
            1 => Some(PushKind::Room),
            2 => Some(PushKind::Direct),
            3 => Some(PushKind::Group),
            4 => Some(PushKind::Broadcast),
            5 => Some(PushKind::Presence),
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

/// One user in a PRESENCE_LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry<'a> {
    /// User id.
    pub user: &'a str,
    /// How many of the user's connections are in the room.
    pub devices: u16,
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
    /// Reply to JOIN in a room with a stream: the member is in, every
    /// message it missed (when it asked with `since`) came before this, and
    /// live messages follow from `position`.
    Joined {
        /// Room name.
        room: &'a str,
        /// The room's position at the switch to live messages: the next
        /// live message has the next offset in this epoch.
        position: u64,
        /// Every message after the JOIN's `since` was delivered before this
        /// frame. False when `since` was absent, too old for the history or
        /// of another epoch.
        recovered: bool,
    },
    /// Ends the PUSH frames answering a HISTORY.
    HistoryEnd {
        /// Room name.
        room: &'a str,
        /// The room's current position.
        position: u64,
        /// No message between the request's start and the first PUSH sent
        /// was lost from the history.
        complete: bool,
    },
    /// Answer to PRESENCE.
    PresenceList {
        /// Room name.
        room: &'a str,
        /// Distinct users in the room.
        users: u32,
        /// Connections in the room.
        conns: u32,
        /// Users after the request's `after`, in id order.
        entries: Vec<PresenceEntry<'a>>,
        /// Ask again after this user id for more; empty at the end.
        next: &'a str,
    },
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
            ServerMessage::Joined { .. } => op::JOINED,
            ServerMessage::HistoryEnd { .. } => op::HISTORY_END,
            ServerMessage::PresenceList { .. } => op::PRESENCE_LIST,
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
        op::JOINED => {
            let room = r.str("room")?;
            let position = r.u64("position")?;
            let recovered = read_bool(&mut r, "recovered")?;
            r.finish()?;
            ServerMessage::Joined { room, position, recovered }
        }
        op::HISTORY_END => {
            let room = r.str("room")?;
            let position = r.u64("position")?;
            let complete = read_bool(&mut r, "complete")?;
            r.finish()?;
            ServerMessage::HistoryEnd { room, position, complete }
        }
        op::PRESENCE_LIST => {
            let room = r.str("room")?;
            let users = r.u32("users")?;
            let conns = r.u32("conns")?;
            let count = r.u16("count")?;
            // Each entry takes at least 4 bytes: never trust `count` to size
            // an allocation.
            let mut entries = Vec::with_capacity((count as usize).min(r.remaining() / 4));
            for _ in 0..count {
                let user = r.str("user")?;
                let devices = r.u16("devices")?;
                entries.push(PresenceEntry { user, devices });
            }
            let next = r.str("next")?;
            r.finish()?;
            ServerMessage::PresenceList { room, users, conns, entries, next }
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
        ServerMessage::Joined { room, .. } | ServerMessage::HistoryEnd { room, .. } => 11 + room.len(),
        ServerMessage::PresenceList { room, entries, next, .. } => {
            14 + room.len() + next.len() + entries.iter().map(|e| 4 + e.user.len()).sum::<usize>()
        }
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
            ServerMessage::Joined { room, position, recovered: flag }
            | ServerMessage::HistoryEnd { room, position, complete: flag } => {
                w.str(room, "room")?;
                w.u64(*position);
                w.u8(u8::from(*flag));
            }
            ServerMessage::PresenceList { room, users, conns, entries, next } => {
                w.str(room, "room")?;
                w.u32(*users);
                w.u32(*conns);
                let count = u16::try_from(entries.len()).map_err(|_| EncodeError::StringTooLong("entries"))?;
                w.u16(count);
                for entry in entries {
                    w.str(entry.user, "user")?;
                    w.u16(entry.devices);
                }
                w.str(next, "next")?;
            }
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
    fn stream_frames_round_trip() {
        let entries = vec![PresenceEntry { user: "alice", devices: 2 }, PresenceEntry { user: "bob", devices: 1 }];
        for msg in [
            ServerMessage::Joined { room: "live-1", position: position(3, 17), recovered: true },
            ServerMessage::HistoryEnd { room: "live-1", position: position(3, 20), complete: false },
            ServerMessage::PresenceList { room: "live-1", users: 2, conns: 3, entries, next: "bob" },
        ] {
            let mut buf = Vec::new();
            encode_server(4, 0, &msg, &mut buf).unwrap();
            assert_eq!(decode_server(&buf).unwrap().message, msg);
        }
    }

    #[test]
    fn joined_example_in_protocol_md_is_what_the_code_writes() {
        let mut buf = Vec::new();
        let joined = ServerMessage::Joined { room: "live-1", position: position(0xabcd, 44), recovered: true };
        encode_server(3, 0, &joined, &mut buf).unwrap();
        let documented = [
            0x00, 0x00, 0x00, 0x1d, 0x01, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x06, 0x6c, 0x69, 0x76, 0x65,
            0x2d, 0x31, 0x00, 0xab, 0xcd, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x01,
        ];
        assert_eq!(buf, documented);
    }

    #[test]
    fn position_packs_epoch_above_offset() {
        let p = position(0xab_cdef, 12_345);
        assert_eq!(position_epoch(p), 0xab_cdef);
        assert_eq!(position_offset(p), 12_345);
        assert!(position(1, 2) < position(1, 3) && position(1, u32::MAX as u64) < position(2, 1));
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
