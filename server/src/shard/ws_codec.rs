//! The WebSocket side of a connection as plain state, no I/O: the opening
//! handshake read from the connection's first bytes, the client's frames
//! turned into the wire-frame byte stream the shard decodes, pings
//! answered, and what the server still owes besides data (pongs, the
//! handshake response, the close frame). Text messages (1003), messages
//! over the limit (1009) and protocol errors (1002) end the connection with
//! that code. The frame codec itself is `corecast_proto::ws`.

use bytes::Bytes;
use corecast_proto::ws::{self, close_code, opcode, FrameError, FrameHeader};

/// What the client's bytes asked for besides data.
pub enum WsEvent {
    /// The opening handshake was accepted: answer with these bytes.
    Upgraded(Vec<u8>),
    /// The opening handshake was refused: answer with these bytes, close.
    HandshakeRefused(Vec<u8>, &'static str),
    /// The client closes with this code.
    Closed(u16),
    /// The client broke the rules: close with this code and reason.
    Refused(u16, &'static str),
}

/// A WebSocket connection's state.
pub struct WsState {
    /// Raw bytes received and not yet decoded.
    raw: Vec<u8>,
    /// The opening handshake is done.
    upgraded: bool,
    frame: Option<FrameHeader>,
    /// Payload bytes of `frame` already passed on.
    done: u64,
    /// Bytes of the current message so far.
    message: u64,
    max_message: u64,
    /// Whole frames to write before the next data (handshake response,
    /// pongs, the close frame).
    pub control: Vec<Bytes>,
    /// Bytes of messages already framed and partly written: they go out
    /// before anything else, as they are.
    pub pending: Vec<Bytes>,
    /// Why the connection was refused at admission: told with CLOSE once
    /// the handshake is done (there is no channel before it).
    pub refusal: Option<(corecast_proto::ErrorCode, &'static str)>,
    /// The close frame's code and reason, once known.
    pub close: Option<(u16, Box<str>)>,
    /// The close frame has been queued.
    pub close_queued: bool,
}

impl WsState {
    /// A connection that has not sent its handshake yet.
    pub fn new(max_message: u64) -> WsState {
        WsState {
            raw: Vec::new(),
            upgraded: false,
            frame: None,
            done: 0,
            message: 0,
            max_message,
            control: Vec::new(),
            pending: Vec::new(),
            refusal: None,
            close: None,
            close_queued: false,
        }
    }

    /// Whether the handshake is done.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// Whether control frames wait to be written.
    pub fn has_output(&self) -> bool {
        !self.control.is_empty() || !self.pending.is_empty()
    }

    /// Takes received bytes and decodes what it can: payloads go onto
    /// `out`, anything else is returned as an event (decoding stops there).
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, path: &str, origins: &[String]) -> Option<WsEvent> {
        self.raw.extend_from_slice(bytes);
        if !self.upgraded {
            match ws::parse_handshake(&self.raw, path, origins) {
                Ok(None) => return None,
                Ok(Some(request)) => {
                    self.raw.drain(..request.len);
                    self.upgraded = true;
                    return Some(WsEvent::Upgraded(ws::handshake_response(&request)));
                }
                Err(refused) => {
                    let reason = match refused {
                        ws::HandshakeError::OriginRefused => "origin",
                        ws::HandshakeError::WrongPath => "path",
                        _ => "malformed",
                    };
                    return Some(WsEvent::HandshakeRefused(ws::refusal_response(&refused), reason));
                }
            }
        }
        self.decode(out)
    }

    /// Decodes what is left after the handshake (bytes that came with it).
    pub fn decode_pending(&mut self, out: &mut Vec<u8>) -> Option<WsEvent> {
        self.decode(out)
    }

    /// Decodes `raw`: data payloads are unmasked onto `out`, pings queue a
    /// pong, a close or a broken rule is returned.
    fn decode(&mut self, out: &mut Vec<u8>) -> Option<WsEvent> {
        let mut at = 0;
        let event = loop {
            let frame = match self.frame {
                Some(frame) => frame,
                None => match ws::read_header(&self.raw[at..], self.max_message) {
                    Ok(Some(frame)) => {
                        at += frame.header_len;
                        self.frame = Some(frame);
                        self.done = 0;
                        frame
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(refusal(e)),
                },
            };
            let remaining = (frame.payload_len - self.done) as usize;
            match frame.opcode {
                opcode::TEXT => {
                    break Some(WsEvent::Refused(close_code::UNSUPPORTED_DATA, "text messages are not accepted"))
                }
                opcode::BINARY | opcode::CONTINUATION => {
                    let take = remaining.min(self.raw.len() - at);
                    self.message += take as u64;
                    if self.message > self.max_message {
                        break Some(refusal(FrameError::TooBig));
                    }
                    let start = out.len();
                    out.extend_from_slice(&self.raw[at..at + take]);
                    ws::unmask(&mut out[start..], frame.mask, self.done as usize);
                    at += take;
                    self.done += take as u64;
                    if self.done < frame.payload_len {
                        break None;
                    }
                    if frame.fin {
                        self.message = 0;
                    }
                    self.frame = None;
                }
                _ => {
                    // Control frames are at most 125 bytes: wait for all.
                    if self.raw.len() - at < remaining {
                        break None;
                    }
                    let mut payload = self.raw[at..at + remaining].to_vec();
                    ws::unmask(&mut payload, frame.mask, 0);
                    at += remaining;
                    self.frame = None;
                    match frame.opcode {
                        opcode::PING => self.control.push(ws::server_control(opcode::PONG, &payload).into()),
                        opcode::CLOSE => {
                            let code =
                                payload.get(..2).map_or(close_code::NORMAL, |c| u16::from_be_bytes([c[0], c[1]]));
                            break Some(WsEvent::Closed(code));
                        }
                        _ => {} // an unsolicited pong
                    }
                }
            }
        };
        self.raw.drain(..at);
        if self.raw.is_empty() && self.raw.capacity() > 4096 {
            self.raw = Vec::new();
        }
        event
    }

    /// The close frame, once the connection's data is all written.
    pub fn close_frame(&mut self) -> Option<Bytes> {
        if self.close_queued || !self.upgraded {
            return None;
        }
        self.close_queued = true;
        let (code, reason) = self.close.clone().unwrap_or((close_code::NORMAL, Box::default()));
        Some(ws::close_frame(code, &reason).into())
    }
}

fn refusal(e: FrameError) -> WsEvent {
    match e {
        FrameError::TooBig => WsEvent::Refused(close_code::TOO_BIG, "message too big"),
        FrameError::Protocol(why) => WsEvent::Refused(close_code::PROTOCOL_ERROR, why),
    }
}

/// The header of one binary message carrying `len` bytes of wire frames.
pub fn message_header(len: usize) -> Bytes {
    let mut header = Vec::with_capacity(10);
    ws::server_header(opcode::BINARY, len, &mut header);
    header.into()
}
