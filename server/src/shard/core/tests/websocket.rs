//! WebSocket connections through the core: the opening handshake from
//! the first bytes, frames unmasked into the wire stream, each batch of
//! output in one binary message, and a close frame at the end.

use corecast_proto::ws::{self, close_code, opcode};
use corecast_proto::{encode_client, ClientRequest};

use super::{config, Harness};
use crate::shard::core::Framing;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn masked(opcode_bits: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x80 | opcode_bits];
    assert!(payload.len() < 126);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[test]
fn handshake_then_auth_in_a_binary_message_and_a_close_echo() {
    let mut h = Harness::new(1, config());
    let id = h.connect_as(Framing::WebSocket);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n",
        h.config.ws_path
    );
    // The handshake and the first frame arrive in one read.
    let mut first = request.into_bytes();
    let mut ping = Vec::new();
    encode_client(9, 0, &ClientRequest::Ping, &mut ping).unwrap();
    first.extend(masked(opcode::BINARY, &ping));
    h.bytes(id, &first);
    let out = h.written_raw(id);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains(&ws::accept_key(KEY)));
    let body = &out[text.find("\r\n\r\n").unwrap() + 4..];
    // A server frame: FIN + opcode, then an unmasked 7-bit length.
    assert_eq!(body[0], 0x80 | opcode::BINARY, "one binary message");
    assert_eq!(body[1] as usize, body.len() - 2);
    let frames = super::parse(&body[2..]);
    assert_eq!(frames, vec![super::Got::Pong(9)]);
    // The client closes; the server echoes and shuts its side.
    h.bytes(id, &masked(opcode::CLOSE, &close_code::NORMAL.to_be_bytes()));
    let out = h.written_raw(id);
    assert_eq!(out, ws::close_frame(close_code::NORMAL, ""));
    assert!(h.shut_write.contains(&id));
}
