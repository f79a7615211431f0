//! The corecast adapter: AUTH with a freshly minted token, JOIN (with
//! `since` when rejoining a room's stream), PUBLISH with
//! `PUBLISH_NO_REPLY | PUBLISH_EXCLUDE_SELF` (publishers must be room
//! members, and they are not counted as receivers), PING, and PUSH frames
//! decoded with `corecast-proto`. With stream rooms the rooms are named
//! `live-bench-room-N`, for a server `[[rooms]]` rule with history on
//! `live-*`; their JOIN is answered JOINED and a PUSH's `seq` is its
//! stream position.

use corecast_proto::{
    decode_server, encode_client, peek_frame, ClientRequest, Peek, PushKind, ServerMessage, PUBLISH_EXCLUDE_SELF,
    PUBLISH_NO_REPLY,
};

use super::{Adapter, Event};
use crate::token::TokenMinter;

/// Largest server frame accepted (the server's own maximum is 64 KiB).
const MAX_SERVER_FRAME: u32 = 1 << 20;
/// What stream rooms' names start with; the server needs a `[[rooms]]`
/// rule with history matching them (`pattern = "live-*"`).
const STREAM_ROOM_PREFIX: &str = "live-";

/// The corecast adapter.
pub struct Corecast {
    minter: TokenMinter,
    run_id: String,
    /// Tokens of connections `first..first + tokens.len()`, minted before
    /// the ramp so signing is not on the connect path being measured.
    first: usize,
    tokens: Vec<String>,
    /// Rooms are named for a history rule ([`STREAM_ROOM_PREFIX`]).
    stream_rooms: bool,
}

impl Corecast {
    /// An adapter minting tokens with `secret` for users `{run_id}-{g}`,
    /// ahead of time for connections `first..first + count`; with
    /// `stream_rooms` its rooms are named for a history rule.
    pub fn new(secret: &str, run_id: &str, first: usize, count: usize, stream_rooms: bool) -> Result<Corecast, String> {
        let mut adapter = Corecast {
            minter: TokenMinter::new(secret, 24 * 3600),
            run_id: run_id.to_string(),
            first,
            tokens: Vec::new(),
            stream_rooms,
        };
        adapter.tokens = (first..first + count).map(|g| adapter.mint(g)).collect::<Result<_, _>>()?;
        Ok(adapter)
    }

    fn mint(&self, g: usize) -> Result<String, String> {
        self.minter.mint(&format!("{}-{g}", self.run_id)).map_err(|e| format!("token: {e}"))
    }
}

fn encode(flags: u16, request: &ClientRequest<'_>, out: &mut Vec<u8>) {
    // Room names and tokens are ours and short; an encode error cannot happen.
    let _ = encode_client(1, flags, request, out);
}

impl Adapter for Corecast {
    fn hello(&self, g: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let minted;
        let token = match g.checked_sub(self.first).and_then(|i| self.tokens.get(i)) {
            Some(token) => token,
            None => {
                minted = self.mint(g)?;
                &minted
            }
        };
        encode(0, &ClientRequest::Auth { token, device: "" }, out);
        Ok(())
    }

    fn subscribe(&self, room: &str, since: u64, out: &mut Vec<u8>) {
        encode(0, &ClientRequest::Join { room, since }, out);
    }

    fn publisher_subscribes(&self) -> bool {
        true
    }

    fn heartbeat_while_subscribing(&self) -> bool {
        true
    }

    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        encode(PUBLISH_NO_REPLY | PUBLISH_EXCLUDE_SELF, &ClientRequest::Publish { room, payload }, out);
    }

    fn heartbeat(&self, out: &mut Vec<u8>) {
        encode(0, &ClientRequest::Ping, out);
    }

    fn room_name(&self, room: usize) -> String {
        let prefix = if self.stream_rooms { STREAM_ROOM_PREFIX } else { "" };
        format!("{prefix}bench-room-{room}")
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let header = match peek_frame(&buf[at..], MAX_SERVER_FRAME) {
                Ok(Peek::Complete(header)) => header,
                Ok(Peek::NeedMore { .. }) => return Ok(at),
                Err(e) => return Err(format!("bad frame from server: {e}")),
            };
            let frame = &buf[at..at + header.len as usize];
            at += header.len as usize;
            let decoded = decode_server(frame).map_err(|e| format!("undecodable frame from server: {e}"))?;
            match decoded.message {
                ServerMessage::AuthOk { heartbeat_ms, .. } => {
                    on(Event::HeartbeatInterval(heartbeat_ms));
                    on(Event::Ack)
                }
                ServerMessage::Ok => on(Event::Ack),
                ServerMessage::Joined { position, recovered, .. } => on(Event::Joined { position, recovered }),
                ServerMessage::Pong => on(Event::Pong),
                ServerMessage::Push { kind: PushKind::Broadcast, payload, .. } => on(Event::Broadcast(payload)),
                ServerMessage::Push { payload, seq, .. } => on(Event::Message { payload, position: seq }),
                ServerMessage::Error { code, message } => on(Event::Refused(format!("error {code}: {message}"))),
                ServerMessage::Close { code, reason, .. } => on(Event::Closed(format!("close {code}: {reason}"))),
                // Replies to requests the harness never sends (persistent chat).
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_proto::{encode_server, position};

    #[test]
    fn parses_pushes_and_keeps_partial_frames() {
        let mut wire = Vec::new();
        encode_server(1, 0, &ServerMessage::Ok, &mut wire).unwrap();
        let push = ServerMessage::Push { kind: PushKind::Room, conv: "r", from: "u", seq: 0, ts_ms: 0, payload: b"xy" };
        encode_server(0, 0, &push, &mut wire).unwrap();
        let cut = wire.len() - 1;
        let mut events = Vec::new();
        let used = Corecast::new("0123456789abcdef", "t", 0, 1, false)
            .unwrap()
            .parse(&wire[..cut], &mut |e| events.push(format!("{e:?}")))
            .unwrap();
        assert_eq!(used, 12);
        assert_eq!(events, vec!["Ack".to_string()]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let adapter = Corecast::new("0123456789abcdef", "t", 5, 2, false).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        adapter.hello(6, &mut a).unwrap();
        adapter.hello(9, &mut b).unwrap();
        assert!(!a.is_empty() && !b.is_empty() && a != b, "pre-minted and late tokens both work");
        assert!(adapter.parse(&[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], &mut |_| {}).is_err());
    }

    #[test]
    fn stream_rooms_rejoin_with_since_and_report_positions() {
        let adapter = Corecast::new("0123456789abcdef", "t", 0, 1, true).unwrap();
        assert_eq!(adapter.room_name(3), "live-bench-room-3");
        let mut join = Vec::new();
        adapter.subscribe("live-bench-room-3", position(5, 42), &mut join);
        let request = corecast_proto::decode_client(&join).unwrap().request;
        assert_eq!(request, ClientRequest::Join { room: "live-bench-room-3", since: position(5, 42) });

        let mut wire = Vec::new();
        let replayed = ServerMessage::Push {
            kind: PushKind::Room,
            conv: "r",
            from: "u",
            seq: position(5, 43),
            ts_ms: 0,
            payload: b"m",
        };
        encode_server(0, 0, &replayed, &mut wire).unwrap();
        let joined = ServerMessage::Joined { room: "r", position: position(5, 43), recovered: true };
        encode_server(1, 0, &joined, &mut wire).unwrap();
        let mut events = Vec::new();
        let used = adapter.parse(&wire, &mut |e| events.push(format!("{e:?}"))).unwrap();
        assert_eq!(used, wire.len());
        let p = position(5, 43);
        assert_eq!(
            events,
            [
                format!("Message {{ payload: [109], position: {p} }}"),
                format!("Joined {{ position: {p}, recovered: true }}")
            ]
        );
    }
}
