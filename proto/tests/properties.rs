//! Property tests of the client wire codec: every frame round-trips, decoding
//! and peeking never panic on any input, a stream cut at arbitrary points is
//! reassembled into exactly the frames that were sent, and an oversized frame
//! is refused from its length field alone.

use corecast_proto::{
    decode_client, decode_server, encode_client, encode_server, peek_frame, ClientFrame, ClientRequest, FrameError,
    Header, Peek, PresenceEntry, PushKind, ServerFrame, ServerMessage, UnreadEntry, DEFAULT_MAX_FRAME_LEN, HEADER_LEN,
    VERSION,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Owned mirrors of the borrowed request/message types, so strategies can
// generate them.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum OwnedRequest {
    Auth { token: String, device: String },
    Ping,
    Join { room: String, since: u64 },
    Leave { room: String },
    Publish { room: String, payload: Vec<u8> },
    Send { kind: u8, to: String, client_msg_id: u64, payload: Vec<u8> },
    Sync { conv: String, after_seq: u64, limit: u16 },
    Ack { conv: String, seq: u64 },
    Unread,
    History { room: String, since: u64, limit: u16 },
    Presence { room: String, after: String, limit: u16 },
}

impl OwnedRequest {
    fn borrow(&self) -> ClientRequest<'_> {
        match self {
            OwnedRequest::Auth { token, device } => ClientRequest::Auth { token, device },
            OwnedRequest::Ping => ClientRequest::Ping,
            OwnedRequest::Join { room, since } => ClientRequest::Join { room, since: *since },
            OwnedRequest::Leave { room } => ClientRequest::Leave { room },
            OwnedRequest::Publish { room, payload } => ClientRequest::Publish { room, payload },
            OwnedRequest::Send { kind, to, client_msg_id, payload } => {
                ClientRequest::Send { kind: *kind, to, client_msg_id: *client_msg_id, payload }
            }
            OwnedRequest::Sync { conv, after_seq, limit } => {
                ClientRequest::Sync { conv, after_seq: *after_seq, limit: *limit }
            }
            OwnedRequest::Ack { conv, seq } => ClientRequest::Ack { conv, seq: *seq },
            OwnedRequest::Unread => ClientRequest::Unread,
            OwnedRequest::History { room, since, limit } => {
                ClientRequest::History { room, since: *since, limit: *limit }
            }
            OwnedRequest::Presence { room, after, limit } => ClientRequest::Presence { room, after, limit: *limit },
        }
    }
}

/// Fails to compile when a `ClientRequest` variant is added without a
/// strategy for it here.
#[allow(dead_code)]
fn every_client_variant_has_a_strategy(request: &ClientRequest<'_>) {
    match request {
        ClientRequest::Auth { .. }
        | ClientRequest::Ping
        | ClientRequest::Join { .. }
        | ClientRequest::Leave { .. }
        | ClientRequest::Publish { .. }
        | ClientRequest::Send { .. }
        | ClientRequest::Sync { .. }
        | ClientRequest::Ack { .. }
        | ClientRequest::Unread
        | ClientRequest::History { .. }
        | ClientRequest::Presence { .. } => {}
    }
}

#[derive(Debug, Clone)]
enum OwnedMessage {
    AuthOk { conn_id: u64, shard: u16, heartbeat_ms: u32, user: String },
    Pong,
    Ok,
    Push { kind: PushKind, conv: String, from: String, seq: u64, ts_ms: u64, payload: Vec<u8> },
    Close { code: u16, reason: String, reconnect_after_ms: u32 },
    Error { code: u16, message: String },
    Sent { conv: String, seq: u64, ts_ms: u64 },
    SyncEnd { conv: String, last_seq: u64, more: bool, visible_seq: u64 },
    UnreadList { entries: Vec<(String, u64, u64)>, more: bool },
    Joined { room: String, position: u64, recovered: bool },
    HistoryEnd { room: String, position: u64, complete: bool },
    PresenceList { room: String, users: u32, conns: u32, entries: Vec<(String, u16)>, next: String },
}

impl OwnedMessage {
    fn borrow(&self) -> ServerMessage<'_> {
        match self {
            OwnedMessage::AuthOk { conn_id, shard, heartbeat_ms, user } => {
                ServerMessage::AuthOk { conn_id: *conn_id, shard: *shard, heartbeat_ms: *heartbeat_ms, user }
            }
            OwnedMessage::Pong => ServerMessage::Pong,
            OwnedMessage::Ok => ServerMessage::Ok,
            OwnedMessage::Push { kind, conv, from, seq, ts_ms, payload } => {
                ServerMessage::Push { kind: *kind, conv, from, seq: *seq, ts_ms: *ts_ms, payload }
            }
            OwnedMessage::Close { code, reason, reconnect_after_ms } => {
                ServerMessage::Close { code: *code, reason, reconnect_after_ms: *reconnect_after_ms }
            }
            OwnedMessage::Error { code, message } => ServerMessage::Error { code: *code, message },
            OwnedMessage::Sent { conv, seq, ts_ms } => ServerMessage::Sent { conv, seq: *seq, ts_ms: *ts_ms },
            OwnedMessage::SyncEnd { conv, last_seq, more, visible_seq } => {
                ServerMessage::SyncEnd { conv, last_seq: *last_seq, more: *more, visible_seq: *visible_seq }
            }
            OwnedMessage::UnreadList { entries, more } => ServerMessage::UnreadList {
                entries: entries
                    .iter()
                    .map(|(conv, last_seq, read_seq)| UnreadEntry { conv, last_seq: *last_seq, read_seq: *read_seq })
                    .collect(),
                more: *more,
            },
            OwnedMessage::Joined { room, position, recovered } => {
                ServerMessage::Joined { room, position: *position, recovered: *recovered }
            }
            OwnedMessage::HistoryEnd { room, position, complete } => {
                ServerMessage::HistoryEnd { room, position: *position, complete: *complete }
            }
            OwnedMessage::PresenceList { room, users, conns, entries, next } => ServerMessage::PresenceList {
                room,
                users: *users,
                conns: *conns,
                entries: entries.iter().map(|(user, devices)| PresenceEntry { user, devices: *devices }).collect(),
                next,
            },
        }
    }
}

/// Fails to compile when a `ServerMessage` variant or a `PushKind` is added
/// without a strategy for it here.
#[allow(dead_code)]
fn every_server_variant_has_a_strategy(message: &ServerMessage<'_>) {
    match message {
        ServerMessage::AuthOk { .. }
        | ServerMessage::Pong
        | ServerMessage::Ok
        | ServerMessage::Close { .. }
        | ServerMessage::Error { .. }
        | ServerMessage::Sent { .. }
        | ServerMessage::SyncEnd { .. }
        | ServerMessage::UnreadList { .. }
        | ServerMessage::Joined { .. }
        | ServerMessage::HistoryEnd { .. }
        | ServerMessage::PresenceList { .. } => {}
        ServerMessage::Push { kind, .. } => match kind {
            PushKind::Room | PushKind::Direct | PushKind::Group | PushKind::Broadcast | PushKind::Presence => {}
        },
    }
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Any Unicode scalar values (control characters, astral planes, ...), up to
/// 300 characters, so up to 1,200 UTF-8 bytes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..=300).prop_map(|chars| chars.into_iter().collect()),
        "[a-z0-9_-]{0,40}",
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=1024)
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        (text(), text()).prop_map(|(token, device)| OwnedRequest::Auth { token, device }),
        Just(OwnedRequest::Ping),
        (text(), prop_oneof![Just(0u64), 1..=u64::MAX]).prop_map(|(room, since)| OwnedRequest::Join { room, since }),
        text().prop_map(|room| OwnedRequest::Leave { room }),
        (text(), payload()).prop_map(|(room, payload)| OwnedRequest::Publish { room, payload }),
        (any::<u8>(), text(), any::<u64>(), payload())
            .prop_map(|(kind, to, client_msg_id, payload)| OwnedRequest::Send { kind, to, client_msg_id, payload }),
        (text(), any::<u64>(), any::<u16>()).prop_map(|(conv, after_seq, limit)| OwnedRequest::Sync {
            conv,
            after_seq,
            limit
        }),
        (text(), any::<u64>()).prop_map(|(conv, seq)| OwnedRequest::Ack { conv, seq }),
        Just(OwnedRequest::Unread),
        (text(), any::<u64>(), any::<u16>()).prop_map(|(room, since, limit)| OwnedRequest::History {
            room,
            since,
            limit
        }),
        (text(), text(), any::<u16>()).prop_map(|(room, after, limit)| OwnedRequest::Presence { room, after, limit }),
    ]
}

fn push_kind() -> impl Strategy<Value = PushKind> {
    prop_oneof![
        Just(PushKind::Room),
        Just(PushKind::Direct),
        Just(PushKind::Group),
        Just(PushKind::Broadcast),
        Just(PushKind::Presence)
    ]
}

fn message() -> impl Strategy<Value = OwnedMessage> {
    prop_oneof![
        (any::<u64>(), any::<u16>(), any::<u32>(), text()).prop_map(|(conn_id, shard, heartbeat_ms, user)| {
            OwnedMessage::AuthOk { conn_id, shard, heartbeat_ms, user }
        }),
        Just(OwnedMessage::Pong),
        Just(OwnedMessage::Ok),
        (push_kind(), text(), text(), any::<u64>(), any::<u64>(), payload()).prop_map(
            |(kind, conv, from, seq, ts_ms, payload)| OwnedMessage::Push { kind, conv, from, seq, ts_ms, payload }
        ),
        (any::<u16>(), text(), any::<u32>()).prop_map(|(code, reason, reconnect_after_ms)| OwnedMessage::Close {
            code,
            reason,
            reconnect_after_ms
        }),
        (any::<u16>(), text()).prop_map(|(code, message)| OwnedMessage::Error { code, message }),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(conv, seq, ts_ms)| OwnedMessage::Sent { conv, seq, ts_ms }),
        (text(), any::<u64>(), any::<bool>(), any::<u64>()).prop_map(|(conv, last_seq, more, visible_seq)| {
            OwnedMessage::SyncEnd { conv, last_seq, more, visible_seq }
        }),
        (prop::collection::vec((text(), any::<u64>(), any::<u64>()), 0..8), any::<bool>())
            .prop_map(|(entries, more)| OwnedMessage::UnreadList { entries, more }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(room, position, recovered)| OwnedMessage::Joined {
            room,
            position,
            recovered
        }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(room, position, complete)| OwnedMessage::HistoryEnd {
            room,
            position,
            complete
        }),
        (text(), any::<u32>(), any::<u32>(), prop::collection::vec((text(), any::<u16>()), 0..8), text()).prop_map(
            |(room, users, conns, entries, next)| OwnedMessage::PresenceList { room, users, conns, entries, next }
        ),
    ]
}

/// A frame of either direction, as (rid, flags, message).
#[derive(Debug, Clone)]
enum AnyFrame {
    Client(u32, u16, OwnedRequest),
    Server(u32, u16, OwnedMessage),
}

impl AnyFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AnyFrame::Client(rid, flags, req) => encode_client(*rid, *flags, &req.borrow(), out).unwrap(),
            AnyFrame::Server(rid, flags, msg) => encode_server(*rid, *flags, &msg.borrow(), out).unwrap(),
        }
    }
}

fn any_frame() -> impl Strategy<Value = AnyFrame> {
    prop_oneof![
        (any::<u32>(), any::<u16>(), request()).prop_map(|(rid, flags, req)| AnyFrame::Client(rid, flags, req)),
        (any::<u32>(), any::<u16>(), message()).prop_map(|(rid, flags, msg)| AnyFrame::Server(rid, flags, msg)),
    ]
}

/// Op codes worth aiming at: every defined one in both directions, the
/// reserved persistent-messaging ones, and a few that are never defined.
const INTERESTING_OPS: &[u8] =
    &[0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x81, 0x82, 0x83, 0x90, 0x9F, 0xFE, 0xFF];

/// Random bytes, or a frame with a consistent header (right length, right
/// version, an interesting op) and a random body, so the body decoders are
/// reached and not only the header checks.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=512),
        (
            prop::sample::select(INTERESTING_OPS),
            any::<u16>(),
            any::<u32>(),
            prop_oneof![prop::collection::vec(any::<u8>(), 0..=24), prop::collection::vec(any::<u8>(), 0..=512)],
        )
            .prop_map(|(op, flags, rid, body)| {
                let mut frame = Vec::new();
                let len = (HEADER_LEN + body.len()) as u32;
                Header { len, ver: VERSION, op, flags, rid }.write(&mut frame);
                frame.extend_from_slice(&body);
                frame
            }),
        // A valid frame cut short or extended, its length field kept
        // consistent, so every field can be the one that is truncated.
        (any_frame(), any::<Index>(), prop::collection::vec(any::<u8>(), 0..=4)).prop_map(|(frame, cut, extra)| {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            bytes.truncate(HEADER_LEN + cut.index(bytes.len() - HEADER_LEN + 1));
            bytes.extend_from_slice(&extra);
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_be_bytes());
            bytes
        }),
        // A valid frame with a few bytes flipped.
        (any_frame(), prop::collection::vec((any::<Index>(), any::<u8>()), 1..=4)).prop_map(|(frame, flips)| {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            for (at, xor) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= xor;
            }
            bytes
        }),
    ]
}

// ---------------------------------------------------------------------------
// The streaming loop a connection's reader runs, in miniature.
// ---------------------------------------------------------------------------

/// What a stream reader has seen so far.
#[derive(Default)]
struct StreamReader {
    buf: Vec<u8>,
    frames: Vec<Vec<u8>>,
}

impl StreamReader {
    /// Appends `chunk` and takes every complete frame off the front. Returns
    /// the `frame_len` of the last `NeedMore`, if it had one.
    fn feed(&mut self, chunk: &[u8], max: u32) -> Result<Option<u32>, FrameError> {
        self.buf.extend_from_slice(chunk);
        loop {
            match peek_frame(&self.buf, max)? {
                Peek::Complete(header) => {
                    let rest = self.buf.split_off(header.len as usize);
                    self.frames.push(std::mem::replace(&mut self.buf, rest));
                }
                Peek::NeedMore { frame_len } => return Ok(frame_len),
            }
        }
    }
}

/// Decodes `bytes` both ways; whatever decodes must encode back to exactly
/// `bytes` (the wire form is canonical). A panic fails the test case.
fn check_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(frame) = decode_client(bytes) {
        let mut again = Vec::new();
        encode_client(frame.rid, frame.flags, &frame.request, &mut again).unwrap();
        prop_assert_eq!(&again[..], bytes, "client frame {:?} is not canonical", frame);
    }
    if let Ok(frame) = decode_server(bytes) {
        let mut again = Vec::new();
        encode_server(frame.rid, frame.flags, &frame.message, &mut again).unwrap();
        prop_assert_eq!(&again[..], bytes, "server frame {:?} is not canonical", frame);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Every client request round-trips with any rid and flags, the
    /// length field is the encoded length, and encoding appends to what is
    /// already in the buffer.
    #[test]
    fn client_requests_round_trip(
        rid in any::<u32>(),
        flags in any::<u16>(),
        req in request(),
        prefix in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut out = prefix.clone();
        encode_client(rid, flags, &req.borrow(), &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let frame = &out[prefix.len()..];

        let header = Header::read(frame).unwrap();
        prop_assert_eq!(header.len as usize, frame.len());
        prop_assert_eq!(header.ver, VERSION);
        prop_assert_eq!(header.op, req.borrow().op());
        prop_assert_eq!(peek_frame(frame, DEFAULT_MAX_FRAME_LEN), Ok(Peek::Complete(header)));

        let decoded = decode_client(frame).unwrap();
        prop_assert_eq!(decoded, ClientFrame { rid, flags, request: req.borrow() });
    }

    /// (b) Every server message, every push kind, round-trips with any rid
    /// and flags.
    #[test]
    fn server_messages_round_trip(
        rid in any::<u32>(),
        flags in any::<u16>(),
        msg in message(),
        prefix in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut out = prefix.clone();
        encode_server(rid, flags, &msg.borrow(), &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let frame = &out[prefix.len()..];

        let header = Header::read(frame).unwrap();
        prop_assert_eq!(header.len as usize, frame.len());
        prop_assert_eq!(header.ver, VERSION);
        prop_assert_eq!(header.op, msg.borrow().op());
        prop_assert_eq!(peek_frame(frame, DEFAULT_MAX_FRAME_LEN), Ok(Peek::Complete(header)));

        let decoded = decode_server(frame).unwrap();
        prop_assert_eq!(decoded, ServerFrame { rid, flags, message: msg.borrow() });
    }

    /// (c) Decoding arbitrary bytes never panics, and whatever decodes is in
    /// canonical form: encoding the decoded value gives back the same bytes.
    #[test]
    fn decoders_never_panic_and_accept_only_canonical_frames(bytes in hostile_bytes()) {
        check_decoders(&bytes)?;
        // The same frame cut after each of its first 64 body bytes, the
        // length field following the cut: every fixed field and the start of
        // every string gets to be the truncated one.
        if bytes.len() >= HEADER_LEN {
            let mut cut = bytes.clone();
            for len in (HEADER_LEN..bytes.len()).take(64) {
                cut.truncate(len);
                cut[..4].copy_from_slice(&(len as u32).to_be_bytes());
                check_decoders(&cut)?;
            }
        }
    }

    /// (d) peek_frame never panics, and a complete frame it reports fits both
    /// the maximum and the buffer and is the header at the start of the
    /// buffer; a frame it waits for is announced within the maximum.
    #[test]
    fn peek_never_panics_and_respects_max_and_buffer(
        mut bytes in prop::collection::vec(any::<u8>(), 0..=600),
        plausible in any::<Option<(Index, bool)>>(),
        max in prop_oneof![any::<u32>(), 0..=700u32],
    ) {
        // Half the time make the header plausible (a length near the buffer
        // length, the right version) so `Complete` is reached often.
        if let Some((len_at, longer)) = plausible {
            if bytes.len() >= 5 {
                let len = len_at.index(bytes.len() + 1) as u32 + if longer { 8 } else { 0 };
                bytes[..4].copy_from_slice(&len.to_be_bytes());
                bytes[4] = VERSION;
            }
        }
        match peek_frame(&bytes, max) {
            Ok(Peek::Complete(h)) => {
                prop_assert!(h.len <= max);
                prop_assert!(h.len as usize <= bytes.len());
                prop_assert!(h.len as usize >= HEADER_LEN);
                prop_assert_eq!(h.ver, VERSION);
                prop_assert_eq!(Some(h), Header::read(&bytes));
            }
            Ok(Peek::NeedMore { frame_len: Some(len) }) => {
                prop_assert!(len <= max);
                prop_assert!(len as usize >= HEADER_LEN);
                prop_assert!(bytes.len() < len as usize);
            }
            Ok(Peek::NeedMore { frame_len: None }) => prop_assert!(bytes.len() < 4),
            Err(e) => prop_assert!(e.breaks_stream(), "peek reported a non-stream error {:?}", e),
        }
    }

    /// (e) Several frames sent back to back and received in arbitrary pieces
    /// come out of the streaming loop whole, in order, byte for byte, and
    /// decode to what was sent.
    #[test]
    fn stream_cut_anywhere_yields_the_original_frames(
        frames in prop::collection::vec(any_frame(), 1..=8),
        cuts in prop::collection::vec(any::<Index>(), 0..=24),
        byte_at_a_time in any::<bool>(),
    ) {
        let mut expected = Vec::new();
        let mut stream = Vec::new();
        for frame in &frames {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            stream.extend_from_slice(&bytes);
            expected.push(bytes);
        }

        let mut cut_points: Vec<usize> = if byte_at_a_time {
            (1..stream.len()).collect()
        } else {
            cuts.iter().map(|c| c.index(stream.len() + 1)).collect()
        };
        cut_points.push(0);
        cut_points.push(stream.len());
        cut_points.sort_unstable();
        cut_points.dedup();

        let mut reader = StreamReader::default();
        for piece in cut_points.windows(2) {
            let waiting_for = reader.feed(&stream[piece[0]..piece[1]], DEFAULT_MAX_FRAME_LEN).unwrap();
            // Once the length field is in, the reader knows the exact size of
            // the frame it is waiting for.
            if let Some(len) = waiting_for {
                prop_assert_eq!(len as usize, expected[reader.frames.len()].len());
            }
        }
        prop_assert!(reader.buf.is_empty(), "{} bytes left over", reader.buf.len());
        prop_assert_eq!(&reader.frames, &expected);

        for (got, sent) in reader.frames.iter().zip(&frames) {
            match sent {
                AnyFrame::Client(rid, flags, req) => prop_assert_eq!(
                    decode_client(got).unwrap(),
                    ClientFrame { rid: *rid, flags: *flags, request: req.borrow() }
                ),
                AnyFrame::Server(rid, flags, msg) => prop_assert_eq!(
                    decode_server(got).unwrap(),
                    ServerFrame { rid: *rid, flags: *flags, message: msg.borrow() }
                ),
            }
        }
    }

    /// (f) A frame whose length field exceeds the maximum is refused as too
    /// large from its first four bytes, whatever follows them (even a bad
    /// version), before anything else is buffered.
    #[test]
    fn oversized_frame_is_refused_from_its_length_field(
        max in prop_oneof![any::<u32>(), 0..=(2 * DEFAULT_MAX_FRAME_LEN)],
        over in prop_oneof![0..=3u32, any::<u32>()],
        tail in prop::collection::vec(any::<u8>(), 0..=16),
    ) {
        prop_assume!(max < u32::MAX);
        // Any length a frame can have (>= the header) that exceeds `max`,
        // often just one or two over it.
        let lowest = (max + 1).max(HEADER_LEN as u32);
        let len = lowest.saturating_add(over);
        prop_assert!(len > max && len as usize >= HEADER_LEN);

        let mut bytes = len.to_be_bytes().to_vec();
        prop_assert_eq!(peek_frame(&bytes, max), Err(FrameError::TooLarge { len, max }));
        bytes.extend_from_slice(&tail);
        let err = peek_frame(&bytes, max).unwrap_err();
        prop_assert!(err.breaks_stream());
        prop_assert_eq!(err, FrameError::TooLarge { len, max });
    }
}

/// The streaming loop itself is checked against a known stream, so property
/// (e) cannot pass by a loop that silently yields nothing.
#[test]
fn stream_reader_yields_frames_and_waits_for_the_rest() {
    let mut stream = Vec::new();
    encode_client(1, 0, &ClientRequest::Ping, &mut stream).unwrap();
    encode_client(2, 0, &ClientRequest::Join { room: "lobby", since: 0 }, &mut stream).unwrap();
    let mut reader = StreamReader::default();
    assert_eq!(reader.feed(&stream[..16], DEFAULT_MAX_FRAME_LEN), Ok(Some(19)));
    assert_eq!(reader.frames.len(), 1);
    assert_eq!(reader.feed(&stream[16..], DEFAULT_MAX_FRAME_LEN), Ok(None));
    assert_eq!(reader.frames.len(), 2);
    assert!(reader.buf.is_empty());
}
