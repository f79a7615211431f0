//! Frames a client sends to the server: AUTH, PING, JOIN, LEAVE, PUBLISH,
//! HISTORY and PRESENCE for rooms, and for persistent chat SEND, SYNC, ACK
//! and UNREAD.
//!
//! [`decode_client`] borrows strings and payloads from the frame it is given
//! (no copies); [`encode_client`] appends a frame to a buffer and is what the
//! bench harness and tests use to speak to a server.

use crate::frame::FrameError;
use crate::wire::{split_frame, write_frame, EncodeError, FieldReader};

/// Op codes of client-to-server frames.
pub mod op {
    /// `AUTH {token: str, device: str (optional)}`
    pub const AUTH: u8 = 0x01;
    /// `PING {}`
    pub const PING: u8 = 0x02;
    /// `JOIN {room: str, since: u64 (optional)}`
    pub const JOIN: u8 = 0x03;
    /// `LEAVE {room: str}`
    pub const LEAVE: u8 = 0x04;
    /// `PUBLISH {room: str, payload}`
    pub const PUBLISH: u8 = 0x05;
    /// `SEND {kind: u8, to: str, client_msg_id: u64, payload}`
    pub const SEND: u8 = 0x06;
    /// `SYNC {conv: str, after_seq: u64, limit: u16}`
    pub const SYNC: u8 = 0x07;
    /// `ACK {conv: str, seq: u64}`
    pub const ACK: u8 = 0x08;
    /// `UNREAD {}`
    pub const UNREAD: u8 = 0x09;
    /// `HISTORY {room: str, since: u64, limit: u16}`
    pub const HISTORY: u8 = 0x0A;
    /// `PRESENCE {room: str, after: str, limit: u16}`
    pub const PRESENCE: u8 = 0x0B;
}

/// PUBLISH flag bit 0: the client wants no OK reply.
pub const PUBLISH_NO_REPLY: u16 = 1 << 0;
/// PUBLISH flag bit 1: do not deliver the message back to the publishing
/// connection.
pub const PUBLISH_EXCLUDE_SELF: u16 = 1 << 1;

/// A decoded client request, borrowing from the frame bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest<'a> {
    /// Authenticate with a token (an HS256 JWT).
    Auth {
        /// The token.
        token: &'a str,
        /// Stable id of this device, for its read cursors; empty when the
        /// client sent none (the field is optional on the wire).
        device: &'a str,
    },
    /// Keep-alive; answered with PONG.
    Ping,
    /// Join a room.
    Join {
        /// Room name.
        room: &'a str,
        /// In a room with a stream: the position of the last message the
        /// client has (the PUSH `seq`), to receive what it missed; 0 when
        /// it has none (the field is optional on the wire).
        since: u64,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: &'a str,
    },
    /// Publish an ephemeral message to every member of a room.
    Publish {
        /// Room name.
        room: &'a str,
        /// Opaque application payload.
        payload: &'a [u8],
    },
    /// Send a persistent message to a user (kind 2) or a group (kind 3).
    Send {
        /// 2 direct, 3 group (as in PUSH).
        kind: u8,
        /// Recipient user id, or group id.
        to: &'a str,
        /// The sender's idempotency key: a resend with the same id stores
        /// nothing new and gets the original SENT.
        client_msg_id: u64,
        /// Opaque application payload.
        payload: &'a [u8],
    },
    /// Fetch stored messages of a conversation after a sequence number.
    Sync {
        /// Conversation id, as in PUSH and SENT.
        conv: &'a str,
        /// Return messages with a greater seq.
        after_seq: u64,
        /// At most this many.
        limit: u16,
    },
    /// Record that this device has read a conversation up to `seq`.
    Ack {
        /// Conversation id.
        conv: &'a str,
        /// Highest seq read.
        seq: u64,
    },
    /// List conversations with messages past this device's cursors.
    Unread,
    /// A room's stored messages: after `since`, or the last `limit` when
    /// `since` is 0.
    History {
        /// Room name.
        room: &'a str,
        /// Position to continue from, or 0 for the newest messages.
        since: u64,
        /// At most this many.
        limit: u16,
    },
    /// Who is in a room: users after `after` in id order, with their
    /// device counts, and the room's totals.
    Presence {
        /// Room name.
        room: &'a str,
        /// Continue after this user id (empty: from the start).
        after: &'a str,
        /// At most this many users (0: totals only).
        limit: u16,
    },
}

impl ClientRequest<'_> {
    /// The op code of this request.
    pub fn op(&self) -> u8 {
        match self {
            ClientRequest::Auth { .. } => op::AUTH,
            ClientRequest::Ping => op::PING,
            ClientRequest::Join { .. } => op::JOIN,
            ClientRequest::Leave { .. } => op::LEAVE,
            ClientRequest::Publish { .. } => op::PUBLISH,
            ClientRequest::Send { .. } => op::SEND,
            ClientRequest::Sync { .. } => op::SYNC,
            ClientRequest::Ack { .. } => op::ACK,
            ClientRequest::Unread => op::UNREAD,
            ClientRequest::History { .. } => op::HISTORY,
            ClientRequest::Presence { .. } => op::PRESENCE,
        }
    }
}

/// A whole client frame: header fields a server needs plus the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame<'a> {
    /// Request id to echo in the reply.
    pub rid: u32,
    /// Flag bits.
    pub flags: u16,
    /// The request.
    pub request: ClientRequest<'a>,
}

/// Decodes one complete client frame (as delimited by
/// [`peek_frame`](crate::frame::peek_frame)).
pub fn decode_client(frame: &[u8]) -> Result<ClientFrame<'_>, FrameError> {
    let (header, body) = split_frame(frame)?;
    let mut r = FieldReader::new(body);
    let request = match header.op {
        op::AUTH => {
            let token = r.str("token")?;
            // Optional; when present it must not be empty, so every frame
            // has exactly one encoding.
            let present = !r.is_empty();
            let device = if present { r.str("device")? } else { "" };
            if present && device.is_empty() {
                return Err(FrameError::BadValue("device"));
            }
            r.finish()?;
            ClientRequest::Auth { token, device }
        }
        op::PING => {
            r.finish()?;
            ClientRequest::Ping
        }
        op::JOIN => {
            let room = r.str("room")?;
            // Optional; when present it is a position, never 0, so every
            // frame has exactly one encoding.
            let present = !r.is_empty();
            let since = if present { r.u64("since")? } else { 0 };
            if present && since == 0 {
                return Err(FrameError::BadValue("since"));
            }
            r.finish()?;
            ClientRequest::Join { room, since }
        }
        op::LEAVE => {
            let room = r.str("room")?;
            r.finish()?;
            ClientRequest::Leave { room }
        }
        op::PUBLISH => {
            let room = r.str("room")?;
            ClientRequest::Publish { room, payload: r.payload() }
        }
        op::SEND => {
            let kind = r.u8("kind")?;
            let to = r.str("to")?;
            let client_msg_id = r.u64("client_msg_id")?;
            ClientRequest::Send { kind, to, client_msg_id, payload: r.payload() }
        }
        op::SYNC => {
            let conv = r.str("conv")?;
            let after_seq = r.u64("after_seq")?;
            let limit = r.u16("limit")?;
            r.finish()?;
            ClientRequest::Sync { conv, after_seq, limit }
        }
        op::ACK => {
            let conv = r.str("conv")?;
            let seq = r.u64("seq")?;
            r.finish()?;
            ClientRequest::Ack { conv, seq }
        }
        op::UNREAD => {
            r.finish()?;
            ClientRequest::Unread
        }
        op::HISTORY => {
            let room = r.str("room")?;
            let since = r.u64("since")?;
            let limit = r.u16("limit")?;
            r.finish()?;
            ClientRequest::History { room, since, limit }
        }
        op::PRESENCE => {
            let room = r.str("room")?;
            let after = r.str("after")?;
            let limit = r.u16("limit")?;
            r.finish()?;
            ClientRequest::Presence { room, after, limit }
        }
        other => return Err(FrameError::UnknownOp(other)),
    };
    Ok(ClientFrame { rid: header.rid, flags: header.flags, request })
}

/// Appends the encoded frame to `out`. On error `out` is left unchanged.
pub fn encode_client(rid: u32, flags: u16, request: &ClientRequest<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let hint = match request {
        ClientRequest::Auth { token, device } => 4 + token.len() + device.len(),
        ClientRequest::Ping | ClientRequest::Unread => 0,
        ClientRequest::Join { room, .. } => 10 + room.len(),
        ClientRequest::Leave { room } => 2 + room.len(),
        ClientRequest::History { room, .. } => 12 + room.len(),
        ClientRequest::Presence { room, after, .. } => 6 + room.len() + after.len(),
        ClientRequest::Publish { room, payload } => 2 + room.len() + payload.len(),
        ClientRequest::Send { to, payload, .. } => 11 + to.len() + payload.len(),
        ClientRequest::Sync { conv, .. } => 12 + conv.len(),
        ClientRequest::Ack { conv, .. } => 10 + conv.len(),
    };
    write_frame(out, request.op(), flags, rid, hint, |w| {
        match request {
            ClientRequest::Auth { token, device } => {
                w.str(token, "token")?;
                if !device.is_empty() {
                    w.str(device, "device")?;
                }
            }
            ClientRequest::Ping | ClientRequest::Unread => {}
            ClientRequest::Join { room, since } => {
                w.str(room, "room")?;
                if *since != 0 {
                    w.u64(*since);
                }
            }
            ClientRequest::Leave { room } => w.str(room, "room")?,
            ClientRequest::History { room, since, limit } => {
                w.str(room, "room")?;
                w.u64(*since);
                w.u16(*limit);
            }
            ClientRequest::Presence { room, after, limit } => {
                w.str(room, "room")?;
                w.str(after, "after")?;
                w.u16(*limit);
            }
            ClientRequest::Publish { room, payload } => {
                w.str(room, "room")?;
                w.payload(payload);
            }
            ClientRequest::Send { kind, to, client_msg_id, payload } => {
                w.u8(*kind);
                w.str(to, "to")?;
                w.u64(*client_msg_id);
                w.payload(payload);
            }
            ClientRequest::Sync { conv, after_seq, limit } => {
                w.str(conv, "conv")?;
                w.u64(*after_seq);
                w.u16(*limit);
            }
            ClientRequest::Ack { conv, seq } => {
                w.str(conv, "conv")?;
                w.u64(*seq);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HEADER_LEN;

    #[test]
    fn publish_round_trips_with_flags() {
        let mut buf = Vec::new();
        let req = ClientRequest::Publish { room: "lobby", payload: b"hi" };
        encode_client(9, PUBLISH_NO_REPLY, &req, &mut buf).unwrap();
        assert_eq!(buf.len(), HEADER_LEN + 2 + 5 + 2);
        let frame = decode_client(&buf).unwrap();
        assert_eq!(frame, ClientFrame { rid: 9, flags: PUBLISH_NO_REPLY, request: req });
    }

    #[test]
    fn auth_device_is_optional_but_never_empty_when_present() {
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Auth { token: "t", device: "phone" }, &mut buf).unwrap();
        assert_eq!(decode_client(&buf).unwrap().request, ClientRequest::Auth { token: "t", device: "phone" });
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Auth { token: "t", device: "" }, &mut buf).unwrap();
        assert_eq!(buf.len(), 12 + 3);
        buf.extend_from_slice(&[0, 0]);
        buf[3] += 2;
        assert_eq!(decode_client(&buf), Err(FrameError::BadValue("device")));
    }

    #[test]
    fn join_since_is_optional_but_never_zero_when_present() {
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Join { room: "r", since: 9 }, &mut buf).unwrap();
        assert_eq!(buf.len(), 12 + 3 + 8);
        assert_eq!(decode_client(&buf).unwrap().request, ClientRequest::Join { room: "r", since: 9 });
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Join { room: "r", since: 0 }, &mut buf).unwrap();
        assert_eq!(buf.len(), 12 + 3);
        buf.extend_from_slice(&[0; 8]);
        buf[3] += 8;
        assert_eq!(decode_client(&buf), Err(FrameError::BadValue("since")));
    }

    #[test]
    fn join_since_example_in_protocol_md_is_what_the_code_writes() {
        let mut buf = Vec::new();
        encode_client(3, 0, &ClientRequest::Join { room: "live-1", since: 0xabcd << 40 | 41 }, &mut buf).unwrap();
        let documented = [
            0x00, 0x00, 0x00, 0x1c, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x06, 0x6c, 0x69, 0x76, 0x65,
            0x2d, 0x31, 0x00, 0xab, 0xcd, 0x00, 0x00, 0x00, 0x00, 0x29,
        ];
        assert_eq!(buf, documented);
    }

    #[test]
    fn history_and_presence_round_trip() {
        for request in [
            ClientRequest::History { room: "live-1", since: 5 << 40 | 7, limit: 50 },
            ClientRequest::Presence { room: "live-1", after: "bob", limit: 100 },
        ] {
            let mut buf = Vec::new();
            encode_client(3, 0, &request, &mut buf).unwrap();
            assert_eq!(decode_client(&buf).unwrap().request, request);
        }
    }

    #[test]
    fn unknown_op_and_trailing_bytes_are_refused() {
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Ping, &mut buf).unwrap();
        buf[5] = 0x7e;
        assert_eq!(decode_client(&buf), Err(FrameError::UnknownOp(0x7e)));

        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Leave { room: "a" }, &mut buf).unwrap();
        buf.push(0);
        buf[3] += 1;
        assert_eq!(decode_client(&buf), Err(FrameError::TrailingBytes(1)));
    }

    #[test]
    fn bad_utf8_room_is_refused() {
        let mut buf = Vec::new();
        encode_client(1, 0, &ClientRequest::Join { room: "ab", since: 0 }, &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] = 0xff;
        assert_eq!(decode_client(&buf), Err(FrameError::BadUtf8("room")));
    }

    #[test]
    fn too_long_string_leaves_buffer_untouched() {
        let mut buf = vec![1, 2, 3];
        let room = "x".repeat(70_000);
        let err = encode_client(1, 0, &ClientRequest::Join { room: &room, since: 0 }, &mut buf).unwrap_err();
        assert_eq!(err, EncodeError::StringTooLong("room"));
        assert_eq!(buf, vec![1, 2, 3]);
    }
}
