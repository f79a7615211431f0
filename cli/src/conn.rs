//! One blocking TCP connection to a node: requests go out encoded by
//! `corecast-proto` with fresh request ids; frames come back through the
//! framing loop of PROTOCOL.md §2. Every ERROR or CLOSE ends the command as
//! a [`Refused`]. While waiting, the connection PINGs once per heartbeat and
//! gives up when a whole heartbeat after that brings nothing, so a dead
//! server fails a command instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corecast_proto::{
    decode_server, encode_client, peek_frame, ClientRequest, FrameError, Peek, ServerFrame, ServerMessage,
};

use crate::refused::Refused;

/// Receive limit: server frames can exceed the server's own maximum
/// (PROTOCOL.md §2), so this is generous.
const MAX_FRAME_LEN: u32 = 4 << 20;
/// How long to wait before AUTH_OK says the server's heartbeat.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(5);

/// One server frame, owned; checked to decode when it was read.
pub struct Frame(Vec<u8>);

impl Frame {
    /// The decoded frame.
    pub fn get(&self) -> ServerFrame<'_> {
        decode_server(&self.0).expect("checked when read")
    }
}

/// An open connection.
pub struct Conn {
    stream: TcpStream,
    received: Vec<u8>,
    next_rid: u32,
    /// Whether the last read timed out (a PING has been sent since).
    quiet: bool,
}

impl Conn {
    /// Connects to `addr` and authenticates with `token`.
    pub fn open(addr: &str, token: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(FIRST_HEARTBEAT))?;
        let mut conn = Conn { stream, received: Vec::new(), next_rid: 1, quiet: false };
        let rid = conn.request(0, &ClientRequest::Auth { token, device: "" })?;
        let heartbeat_ms = match conn.reply(rid)?.get().message {
            ServerMessage::AuthOk { heartbeat_ms, .. } => heartbeat_ms,
            other => bail!("unexpected answer to AUTH: {other:?}"),
        };
        conn.stream.set_read_timeout(Some(Duration::from_millis(heartbeat_ms.max(1).into())))?;
        Ok(conn)
    }

    /// Sends a request with a fresh rid and returns that rid.
    pub fn request(&mut self, flags: u16, request: &ClientRequest<'_>) -> Result<u32> {
        let rid = self.next_rid;
        self.next_rid = self.next_rid.checked_add(1).unwrap_or(1);
        let mut frame = Vec::new();
        encode_client(rid, flags, request, &mut frame)?;
        self.stream.write_all(&frame).context("writing to the server")?;
        Ok(rid)
    }

    /// Sends a request and waits for its answer.
    pub fn call(&mut self, flags: u16, request: &ClientRequest<'_>) -> Result<Frame> {
        let rid = self.request(flags, request)?;
        self.reply(rid)
    }

    /// The next frame with request id `rid`, skipping any other (live
    /// PUSH frames, PONGs of heartbeat PINGs).
    pub fn reply(&mut self, rid: u32) -> Result<Frame> {
        loop {
            let frame = self.next()?;
            if frame.get().rid == rid {
                return Ok(frame);
            }
        }
    }

    /// The next frame of a known op; an ERROR or CLOSE is returned as a
    /// [`Refused`] error.
    pub fn next(&mut self) -> Result<Frame> {
        let frame = loop {
            let len = match peek_frame(&self.received, MAX_FRAME_LEN).context("broken stream from the server")? {
                Peek::Complete(header) => header.len as usize,
                Peek::NeedMore { .. } => {
                    self.fill()?;
                    continue;
                }
            };
            let bytes: Vec<u8> = self.received.drain(..len).collect();
            match decode_server(&bytes) {
                // A newer server's op: skip it (PROTOCOL.md §13).
                Err(FrameError::UnknownOp(_)) => continue,
                Err(e) => return Err(e).context("bad frame from the server"),
                Ok(_) => break Frame(bytes),
            }
        };
        let refused = match frame.get().message {
            ServerMessage::Error { code, message } => Refused { frame: "error", code, message: message.into() },
            ServerMessage::Close { code, reason, .. } => Refused { frame: "close", code, message: reason.into() },
            _ => return Ok(frame),
        };
        Err(refused.into())
    }

    /// Reads more bytes; PINGs after a quiet heartbeat, gives up after two.
    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => bail!("the server closed the connection"),
            Ok(n) => {
                self.quiet = false;
                self.received.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if self.quiet {
                    bail!("the server did not answer");
                }
                self.quiet = true;
                self.request(0, &ClientRequest::Ping)?;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e).context("reading from the server"),
        }
    }
}
