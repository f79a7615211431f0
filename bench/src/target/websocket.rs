//! corecast over WebSocket: the same wire frames, each request in one
//! masked binary message (masking key zero, which RFC 6455 allows and which
//! keeps the client's cost out of the measurement), the opening handshake
//! sent with the first request, and the server's binary messages unwrapped
//! back into wire frames for the corecast adapter. Hand-written for the
//! same reason as the other adapters: it runs inside the worker's own
//! epoll loop.

use std::net::SocketAddr;

use super::{Adapter, Event};

/// Largest server message accepted.
const MAX_SERVER_MESSAGE: u64 = 1 << 20;
/// A fixed `Sec-WebSocket-Key` (16 bytes in base64): the harness does not
/// need to tell handshakes apart.
const KEY: &str = "Y29yZWNhc3QtYmVuY2gtMQ==";

/// Wraps an adapter's frames in WebSocket messages.
pub struct OverWebSocket<A> {
    inner: A,
    request: String,
}

impl<A: Adapter> OverWebSocket<A> {
    /// Speaks `inner` over WebSocket to `addr` at `path`.
    pub fn new(inner: A, addr: SocketAddr, path: &str) -> OverWebSocket<A> {
        let path = if path.is_empty() { "/ws" } else { path };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        OverWebSocket { inner, request }
    }
}

/// Appends `payload` as one masked binary message.
fn wrap(payload: &[u8], out: &mut Vec<u8>) {
    if payload.is_empty() {
        return;
    }
    out.push(0x82);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

impl<A: Adapter> OverWebSocket<A> {
    fn wrapped(&self, write: impl FnOnce(&A, &mut Vec<u8>), out: &mut Vec<u8>) {
        let mut frames = Vec::new();
        write(&self.inner, &mut frames);
        wrap(&frames, out);
    }
}

impl<A: Adapter> Adapter for OverWebSocket<A> {
    fn hello(&self, g: usize, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self.request.as_bytes());
        let mut frames = Vec::new();
        self.inner.hello(g, &mut frames)?;
        wrap(&frames, out);
        Ok(())
    }

    fn subscribe(&self, room: &str, since: u64, out: &mut Vec<u8>) {
        self.wrapped(|inner, frames| inner.subscribe(room, since, frames), out);
    }

    fn publisher_subscribes(&self) -> bool {
        self.inner.publisher_subscribes()
    }

    fn publish(&self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        self.wrapped(|inner, frames| inner.publish(room, payload, frames), out);
    }

    fn heartbeat(&self, out: &mut Vec<u8>) {
        self.wrapped(|inner, frames| inner.heartbeat(frames), out);
    }

    fn heartbeat_while_subscribing(&self) -> bool {
        self.inner.heartbeat_while_subscribing()
    }

    fn pong(&self, out: &mut Vec<u8>) {
        self.wrapped(|inner, frames| inner.pong(frames), out);
    }

    fn room_name(&self, room: usize) -> String {
        self.inner.room_name(room)
    }

    fn parse(&self, buf: &[u8], on: &mut dyn FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if rest.starts_with(b"HTTP/") {
                let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(at) };
                if !rest.starts_with(b"HTTP/1.1 101") {
                    let line = String::from_utf8_lossy(&rest[..rest.iter().position(|&b| b == b'\r').unwrap_or(0)]);
                    return Err(format!("WebSocket handshake refused: {line}"));
                }
                at += end + 4;
                continue;
            }
            let [b0, b1, ..] = *rest else { return Ok(at) };
            let (len, header) = match b1 & 0x7F {
                126 => match rest.get(2..4) {
                    Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                    None => return Ok(at),
                },
                127 => match rest.get(2..10) {
                    Some(b) => (u64::from_be_bytes(b.try_into().map_err(|_| "short length")?), 10),
                    None => return Ok(at),
                },
                n => (n as u64, 2),
            };
            if len > MAX_SERVER_MESSAGE {
                return Err(format!("WebSocket message of {len} bytes from server"));
            }
            let end = header + len as usize;
            if rest.len() < end {
                return Ok(at);
            }
            let payload = &rest[header..end];
            match b0 & 0x0F {
                0x0 | 0x2 => {
                    let used = self.inner.parse(payload, on)?;
                    if used != payload.len() {
                        return Err("a WebSocket message ended inside a frame".into());
                    }
                }
                0x8 => {
                    let code = payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    on(Event::Closed(format!("WebSocket close {code}")));
                }
                _ => {} // pings and pongs: the server sends none
            }
            at += end;
        }
    }
}
