//! WebSocket clients on the shard's own io_uring path: the opening
//! handshake on an accepted socket (TLS first when configured), then the
//! connection is served like any other, with [`WsReader`] turning the
//! client's frames into the wire-frame byte stream the session reads, and
//! the writer wrapping each batch of outbound frames into one binary
//! message. Pings are answered, a client's close is echoed, text messages
//! (1003), messages over the limit (1009) and protocol errors (1002) close
//! the connection with that code. The codec is `corecast_proto::ws`.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use corecast_proto::ws::{self, close_code, opcode, FrameError, FrameHeader};
use corecast_proto::ErrorCode;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::TcpStream;

use super::session::{serve_stream, Refusal};
use super::Shard;

/// Accepts a WebSocket client: TLS (if configured), the handshake within
/// the authentication deadline, then the session.
pub(super) async fn serve(
    shard: Rc<Shard>,
    tls: Option<monoio_rustls::TlsAcceptor>,
    stream: TcpStream,
    refusal: Option<Refusal>,
) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let deadline = Duration::from_millis(shard.config.auth_timeout_ms as u64);
    match tls {
        None => {
            let mut stream = stream;
            if let Some(reader) = handshake(&shard, &mut stream, deadline).await {
                serve_stream(shard, stream, fd, refusal, Some(reader)).await;
            }
        }
        Some(acceptor) => match monoio::time::timeout(deadline, acceptor.accept(stream)).await {
            Ok(Ok(mut tls)) => {
                if let Some(reader) = handshake(&shard, &mut tls, deadline).await {
                    serve_stream(shard, tls, fd, refusal, Some(reader)).await;
                }
            }
            _ => shard.metrics.tls_handshake_failures.increment(1),
        },
    }
}

/// Reads and answers the opening handshake. Returns the reader for the
/// frames that follow (with any bytes already read past the request), or
/// `None` when the request was refused or did not come in time.
async fn handshake<S: AsyncReadRent + AsyncWriteRent + Split>(
    shard: &Shard,
    stream: &mut S,
    deadline: Duration,
) -> Option<WsReader> {
    let read = async {
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        loop {
            match ws::parse_handshake(&buf, &shard.config.ws_path, &shard.config.ws_allowed_origins) {
                Ok(Some(request)) => return Ok((request, buf)),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity().min(ws::MAX_HANDSHAKE_LEN));
            }
            let len = buf.len();
            let (result, slice) = stream.read(buf.slice_mut(len..)).await;
            buf = slice.into_inner();
            match result {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        }
    };
    let answer = match monoio::time::timeout(deadline, read).await {
        Ok(Ok((request, mut buf))) => {
            let (result, _) = stream.write_all(ws::handshake_response(&request)).await;
            if result.is_err() {
                return None;
            }
            buf.drain(..request.len);
            return Some(WsReader::new(buf, shard.config.ws_max_message_len as u64));
        }
        Ok(Err(Some(refused))) => refused,
        // Gone, or silent past the deadline: nothing to answer.
        Ok(Err(None)) | Err(_) => {
            metrics::counter!("corecast_ws_handshake_failures_total", "reason" => "incomplete").increment(1);
            return None;
        }
    };
    let reason = match answer {
        ws::HandshakeError::OriginRefused => "origin",
        ws::HandshakeError::WrongPath => "path",
        _ => "malformed",
    };
    metrics::counter!("corecast_ws_handshake_failures_total", "reason" => reason).increment(1);
    let _ = stream.write_all(ws::refusal_response(&answer)).await;
    None
}

/// What the client's frames asked for besides data.
pub(super) enum WsEvent {
    /// A ping: answer with this pong frame.
    Pong(Vec<u8>),
    /// The client closes with this code.
    Closed(u16),
    /// The client broke the rules: close with this code and reason.
    Refused(u16, &'static str),
}

/// Turns a client's WebSocket frames into the wire-frame byte stream.
pub(super) struct WsReader {
    /// Raw bytes read from the socket, not yet decoded.
    pub raw: Vec<u8>,
    frame: Option<FrameHeader>,
    /// Payload bytes of `frame` already passed on.
    done: u64,
    /// Bytes of the current message so far.
    message: u64,
    max_message: u64,
}

impl WsReader {
    fn new(raw: Vec<u8>, max_message: u64) -> WsReader {
        WsReader { raw, frame: None, done: 0, message: 0, max_message }
    }

    /// Decodes what `raw` holds: data payloads are unmasked onto `out`,
    /// control frames become events. Stops at the first event.
    pub fn decode(&mut self, out: &mut Vec<u8>) -> Option<WsEvent> {
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
                        opcode::PING => break Some(WsEvent::Pong(ws::server_control(opcode::PONG, &payload))),
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
        event
    }
}

fn refusal(e: FrameError) -> WsEvent {
    match e {
        FrameError::TooBig => WsEvent::Refused(close_code::TOO_BIG, "message too big"),
        FrameError::Protocol(why) => WsEvent::Refused(close_code::PROTOCOL_ERROR, why),
    }
}

impl Shard {
    /// Queues a control frame (a pong) for a WebSocket connection.
    pub(super) fn ws_control(&self, key: u32, frame: Vec<u8>) {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize) else { return };
        if let Some(ws) = conn.ws.as_mut() {
            ws.control.push(frame.into());
            conn.wake_writer();
        }
    }

    /// Ends a WebSocket connection with a close frame of `code`: the
    /// writer flushes what is queued, then writes the close frame. A client
    /// that broke the rules also gets the protocol's CLOSE first.
    pub(super) fn ws_close(&self, key: u32, code: u16, reason: &str) {
        {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(key as usize) else { return };
            if let Some(ws) = conn.ws.as_mut() {
                ws.close.get_or_insert((code, reason.to_string()));
            }
        }
        if code != close_code::NORMAL && code != close_code::GOING_AWAY {
            metrics::counter!("corecast_ws_closes_total", "code" => code.to_string()).increment(1);
            self.begin_close(key, ErrorCode::BadFrame, reason, self.config.reconnect_base_ms);
        } else {
            self.begin_close_quietly(key);
        }
    }
}
