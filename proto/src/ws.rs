//! WebSocket (RFC 6455) as a transport for the same wire frames, sans-IO:
//! the opening handshake (parse the HTTP request, check it, answer it) and
//! the frame layer (read a frame header, unmask, write a server frame).
//!
//! Every binary message carries whole wire frames back to back; the server
//! treats the payloads of binary and continuation frames as one byte stream
//! and reads wire frames from it as it does on TCP. Text messages are
//! refused (close 1003), messages over the limit too (1009), unmasked or
//! malformed frames are a protocol error (1002). The HTTP parser is
//! `httparse`; the accept key is SHA-1 and base64 as the RFC prescribes.
//! Nothing here allocates before a length has been checked.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Longest opening handshake request accepted.
pub const MAX_HANDSHAKE_LEN: usize = 8 * 1024;
/// Most headers in a handshake request.
const MAX_HEADERS: usize = 32;
/// The GUID of RFC 6455 §1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (unmasked or malformed frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data the server does not accept (a text message).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
}

/// Frame opcodes.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text message.
    pub const TEXT: u8 = 0x1;
    /// Binary message.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Why a handshake was refused, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a valid HTTP/1.1 request.
    #[error("malformed HTTP request")]
    Malformed,
    /// The request is larger than [`MAX_HANDSHAKE_LEN`].
    #[error("handshake request too large")]
    TooLarge,
    /// Not a GET.
    #[error("the WebSocket handshake must be a GET")]
    NotGet,
    /// Another path than the WebSocket path.
    #[error("no WebSocket endpoint at this path")]
    WrongPath,
    /// Missing or wrong `Upgrade`, `Connection`, version or key.
    #[error("not a WebSocket upgrade request: {0}")]
    NotUpgrade(&'static str),
    /// The Origin is not in the allowlist.
    #[error("origin not allowed")]
    OriginRefused,
}

impl HandshakeError {
    /// The HTTP status line to answer with.
    pub fn status(&self) -> &'static str {
        match self {
            HandshakeError::Malformed | HandshakeError::NotUpgrade(_) => "400 Bad Request",
            HandshakeError::TooLarge => "431 Request Header Fields Too Large",
            HandshakeError::NotGet => "405 Method Not Allowed",
            HandshakeError::WrongPath => "404 Not Found",
            HandshakeError::OriginRefused => "403 Forbidden",
        }
    }
}

/// A checked opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// `Origin`, when the client sent one (browsers always do).
    pub origin: Option<String>,
    /// Bytes of the request, so what follows it is the first frame data.
    pub len: usize,
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Parses and checks an opening handshake. `Ok(None)`: incomplete, read
/// more. `allowed_origins` empty allows every origin; otherwise the
/// request's Origin must be one of them exactly (`scheme://host[:port]`).
pub fn parse_handshake(
    buf: &[u8],
    path: &str,
    allowed_origins: &[String],
) -> Result<Option<Handshake>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HANDSHAKE_LEN => return Err(HandshakeError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    if request.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    let target = request.path.unwrap_or("");
    if target.split('?').next() != Some(path) {
        return Err(HandshakeError::WrongPath);
    }
    let headers = request.headers;
    if !header(headers, "Upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::NotUpgrade("Upgrade: websocket missing"));
    }
    if !has_token(header(headers, "Connection"), "upgrade") {
        return Err(HandshakeError::NotUpgrade("Connection: Upgrade missing"));
    }
    if header(headers, "Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(HandshakeError::NotUpgrade("Sec-WebSocket-Version must be 13"));
    }
    let key = header(headers, "Sec-WebSocket-Key").map(str::trim).unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| HandshakeError::Malformed)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::NotUpgrade("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    let origin = header(headers, "Origin").map(str::to_string);
    if !allowed_origins.is_empty() && !origin.as_ref().is_some_and(|o| allowed_origins.iter().any(|a| a == o)) {
        return Err(HandshakeError::OriginRefused);
    }
    Ok(Some(Handshake { key: key.to_string(), origin, len }))
}

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The 101 answer that completes a handshake.
pub fn handshake_response(handshake: &Handshake) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&handshake.key)
    )
    .into_bytes()
}

/// The answer to a refused handshake.
pub fn refusal_response(error: &HandshakeError) -> Vec<u8> {
    let body = format!("{error}\n");
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        error.status(),
        body.len()
    )
    .into_bytes()
}

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// [`opcode`].
    pub opcode: u8,
    /// Masking key (client frames must be masked).
    pub mask: [u8; 4],
    /// Payload bytes.
    pub payload_len: u64,
    /// Header bytes before the payload.
    pub header_len: usize,
}

/// Why a frame was refused, with the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Reserved bits, unknown opcode, an unmasked client frame, or a bad
    /// control frame.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or message over the limit.
    #[error("WebSocket message too big")]
    TooBig,
}

impl FrameError {
    /// The close code to answer with.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
            FrameError::TooBig => close_code::TOO_BIG,
        }
    }
}

/// Reads a client frame header from the start of `buf`. `Ok(None)`: read
/// more. Payloads over `max_payload` are refused from the header alone.
pub fn read_header(buf: &[u8], max_payload: u64) -> Result<Option<FrameHeader>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0F;
    if !matches!(op, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (payload_len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().unwrap_or([0xFF; 8])), 10),
            None => return Ok(None),
        },
        n => (n as u64, 2),
    };
    if op >= 0x8 && (!fin || payload_len > 125) {
        return Err(FrameError::Protocol("control frames must be whole and at most 125 bytes"));
    }
    if payload_len > max_payload {
        return Err(FrameError::TooBig);
    }
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    at += 4;
    Ok(Some(FrameHeader { fin, opcode: op, mask, payload_len, header_len: at }))
}

/// Unmasks `payload` in place (`offset`: bytes of this payload already
/// unmasked before).
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) % 4];
    }
}

/// Writes the header of an unmasked server frame (FIN set).
pub fn server_header(opcode: u8, payload_len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload_len {
        0..=125 => out.push(payload_len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
}

/// A whole server control frame (ping payload echoed in a pong, or a close
/// with code and reason; the reason is cut to fit 125 bytes).
pub fn server_control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let mut out = Vec::with_capacity(2 + payload.len());
    server_header(opcode, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    server_control(opcode::CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str =
        "GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://good\r\n\r\n";

    #[test]
    fn the_rfc_example_key_is_accepted() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let handshake = parse_handshake(REQUEST.as_bytes(), "/ws", &[]).unwrap().unwrap();
        assert_eq!(handshake.len, REQUEST.len());
        assert_eq!(handshake.origin.as_deref(), Some("http://good"));
        let response = String::from_utf8(handshake_response(&handshake)).unwrap();
        assert!(response.starts_with("HTTP/1.1 101"));
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn bad_handshakes_are_refused_with_the_right_status() {
        let good = ["http://good".to_string()];
        assert_eq!(parse_handshake(&REQUEST.as_bytes()[..20], "/ws", &[]), Ok(None));
        assert_eq!(parse_handshake(REQUEST.as_bytes(), "/other", &[]), Err(HandshakeError::WrongPath));
        assert!(parse_handshake(REQUEST.as_bytes(), "/ws", &good).unwrap().is_some());
        let evil = REQUEST.replace("http://good", "http://evil");
        assert_eq!(parse_handshake(evil.as_bytes(), "/ws", &good), Err(HandshakeError::OriginRefused));
        let old = REQUEST.replace("Version: 13", "Version: 8");
        assert!(matches!(parse_handshake(old.as_bytes(), "/ws", &[]), Err(HandshakeError::NotUpgrade(_))));
        let post = REQUEST.replace("GET", "POST");
        assert_eq!(parse_handshake(post.as_bytes(), "/ws", &[]), Err(HandshakeError::NotGet));
        assert_eq!(parse_handshake(b"\x16\x03\x01garbage\r\n\r\n", "/ws", &[]), Err(HandshakeError::Malformed));
        let huge = vec![b'a'; MAX_HANDSHAKE_LEN];
        assert!(parse_handshake(&huge, "/ws", &[]).is_err());
        assert!(String::from_utf8(refusal_response(&HandshakeError::OriginRefused))
            .unwrap()
            .starts_with("HTTP/1.1 403"));
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            0..=125 => out.push(0x80 | payload.len() as u8),
            _ => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn frames_are_read_unmasked_and_checked() {
        let frame = masked(opcode::BINARY, true, b"hello wire frames");
        assert_eq!(read_header(&frame[..1], 1000), Ok(None));
        let header = read_header(&frame, 1000).unwrap().unwrap();
        assert_eq!((header.fin, header.opcode, header.payload_len, header.header_len), (true, 2, 17, 6));
        let mut payload = frame[header.header_len..].to_vec();
        unmask(&mut payload[..5], header.mask, 0);
        unmask(&mut payload[5..], header.mask, 5);
        assert_eq!(payload, b"hello wire frames");

        let long = masked(opcode::BINARY, true, &[7u8; 300]);
        assert_eq!(read_header(&long, 1000).unwrap().unwrap().payload_len, 300);
        assert_eq!(read_header(&long, 299), Err(FrameError::TooBig));
        let mut unmasked = frame.clone();
        unmasked[1] &= 0x7F;
        assert!(matches!(read_header(&unmasked, 1000), Err(FrameError::Protocol(_))));
        assert!(matches!(read_header(&masked(opcode::PING, false, b"x"), 1000), Err(FrameError::Protocol(_))));
        assert!(matches!(read_header(&masked(0x3, true, b""), 1000), Err(FrameError::Protocol(_))));
        assert_eq!(FrameError::TooBig.close_code(), close_code::TOO_BIG);
    }

    #[test]
    fn server_frames_have_the_right_length_encoding() {
        for (len, header_len) in [(5usize, 2usize), (200, 4), (70_000, 10)] {
            let mut out = Vec::new();
            server_header(opcode::BINARY, len, &mut out);
            assert_eq!((out[0], out.len()), (0x82, header_len));
        }
        let close = close_frame(close_code::UNSUPPORTED_DATA, "text messages are not accepted");
        assert_eq!(&close[..4], &[0x88, 32, 0x03, 0xEB]);
        assert_eq!(server_control(opcode::PONG, &[1; 200]).len(), 127);
    }
}
