//! TLS connections, driven from the readiness set like plain ones. The
//! driver keeps one rustls [`ServerConnection`] per TLS connection, keyed
//! by connection id, and uses its sans-IO interface: ciphertext read into
//! the shard's buffer goes into `read_tls`, `process_new_packets` decrypts
//! it, and the plaintext goes to the core through `on_bytes`, exactly as a
//! plain connection's bytes do. The core's output goes into `writer()`
//! (encrypted at once) and out with `write_tls` to the non-blocking socket;
//! what the socket does not take waits in rustls's buffer for the socket's
//! next writable edge. The core never sees TLS.
//!
//! The core's frames are taken only while rustls's outgoing buffer is empty
//! and the handshake is complete, so a client that reads slowly leaves its
//! frames in the core's queue, where the slow-consumer limits see them, and
//! rustls buffers at most one batch's worth (its 64 KiB limit). A client
//! that never completes its handshake never authenticates: the core's
//! authentication deadline closes it (and its release counts a handshake
//! failure).
//!
//! What an idle TLS connection costs, beyond its record in the core: an
//! entry in the map (a `u64` key and a `Box`) and the boxed [`TlsConn`],
//! whose `ServerConnection` is 1,168 bytes on x86-64 with rustls 0.23.46
//! (`size_of`; the test below keeps it under 1.5 KiB), plus what the
//! session allocates and keeps: the deframer's read buffer, which rustls
//! sizes before each `read_tls` to what it holds plus 4 KiB (its
//! `READ_SIZE`) and cannot be made to free (so 4 KiB after small messages,
//! up to one more record's worth, about 17 KiB, until the next read if the
//! last read ended inside a large record), and the record layer's keys and
//! state. Measured by dropping an idle session after a TLS 1.3 handshake
//! and one request and reply (`tests/tls_idle.rs`): 7,449 bytes of heap,
//! the box included. Its send and plaintext buffers hold no data while
//! idle. No task, future, waker or read buffer of the driver's is left per
//! connection (the task-driven stream it replaces had two tasks, a 4 KiB
//! read buffer and, inside monoio-rustls, two 16 KiB buffers).

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use bytes::Bytes;
use rustls::{ServerConfig, ServerConnection};

use super::socket::{self, Done, Sink};
use super::{Driver, READS_PER_ROUND};
use crate::shard::core::{Output, ShardCore};

/// The TLS state of one connection.
pub(super) struct TlsConn {
    session: ServerConnection,
    /// The core asked for the write side to be shut: that happens once
    /// rustls's buffer (the close_notify last) is out.
    shut_pending: bool,
    /// The write side is shut: nothing more is written.
    shut: bool,
}

/// What flushing rustls's outgoing buffer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// All of it is out.
    Done,
    /// The socket is full; the rest waits for its writable edge.
    Blocked,
    /// The socket failed.
    Failed,
}

/// What feeding ciphertext to a session gave.
enum Fed {
    /// The connection goes on.
    Open,
    /// The peer sent close_notify.
    PeerClosed,
    /// A TLS error (rustls queued an alert for the peer).
    Failed,
}

impl TlsConn {
    /// A fresh session on `config`.
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<Box<TlsConn>, rustls::Error> {
        Ok(Box::new(TlsConn { session: ServerConnection::new(config)?, shut_pending: false, shut: false }))
    }

    /// Whether the handshake has not completed.
    pub(super) fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Writes what rustls holds to the socket, as far as it takes, then
    /// shuts the write side if that was asked for.
    fn flush(&mut self, fd: i32) -> Flush {
        if self.shut {
            return Flush::Done;
        }
        while self.session.wants_write() {
            match self.session.write_tls(&mut Sink(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Failed,
            }
        }
        if self.shut_pending {
            socket::shutdown_write(fd);
            self.shut_pending = false;
            self.shut = true;
        }
        Flush::Done
    }

    /// Encrypts as much of `batch` as rustls's buffer takes; the bytes
    /// taken.
    fn take(&mut self, batch: &[Bytes]) -> usize {
        let slices: Vec<io::IoSlice<'_>> = batch.iter().map(|frame| io::IoSlice::new(frame)).collect();
        self.session.writer().write_vectored(&slices).unwrap_or(0)
    }
}

impl Driver {
    /// Reads what TLS connection `id` has: ciphertext into the shard's
    /// buffer, plaintext to the core, handshake records out at once.
    pub(super) fn read_tls(&self, id: u64, fd: i32) {
        let mut buffer = self.read_buffer.borrow_mut();
        let mut conns = self.tls_conns.borrow_mut();
        let Some(tls) = conns.get_mut(&id) else { return };
        for _ in 0..READS_PER_ROUND {
            if !self.core.borrow().wants_input(id) {
                return;
            }
            let n = match socket::read(fd, &mut buffer) {
                Done::Bytes(n) => n,
                Done::WouldBlock => return,
                Done::Closed => return self.closed(id),
            };
            let handshaking = tls.is_handshaking();
            let fed = self.feed(id, tls, &buffer[..n]);
            if handshaking && !tls.is_handshaking() {
                // Output held back during the handshake may go now.
                self.core.borrow_mut().on_writable(id);
            }
            // Handshake records (or an alert) rustls wants to send.
            if tls.flush(fd) == Flush::Failed {
                return self.closed(id);
            }
            match fed {
                Fed::Open => {}
                Fed::PeerClosed | Fed::Failed => return self.closed(id),
            }
            if n < buffer.len() {
                return;
            }
        }
        self.again.borrow_mut().push(id);
    }

    /// Feeds `bytes` (ciphertext) to the session and hands the plaintext
    /// to the core.
    fn feed(&self, id: u64, tls: &mut TlsConn, mut bytes: &[u8]) -> Fed {
        while !bytes.is_empty() {
            match tls.session.read_tls(&mut bytes) {
                // After close_notify rustls reads nothing more.
                Ok(0) => return Fed::PeerClosed,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("TLS input refused: {e}");
                    return Fed::Failed;
                }
            }
            let state = match tls.session.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    tracing::debug!(handshaking = tls.is_handshaking(), "TLS error: {e}");
                    return Fed::Failed;
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                let now = self.now();
                let mut reader = tls.session.reader();
                while let Ok(chunk) = reader.fill_buf() {
                    if chunk.is_empty() {
                        break;
                    }
                    let len = chunk.len();
                    self.core.borrow_mut().on_bytes(now, id, chunk);
                    reader.consume(len);
                }
            }
            if state.peer_has_closed() {
                return Fed::PeerClosed;
            }
        }
        Fed::Open
    }

    /// Writes what TLS connection `id` has queued: rustls's leftovers
    /// first, then the core's frames, encrypted, as far as the socket
    /// takes. The core is told what rustls took, as with a plain socket's
    /// write.
    pub(super) fn write_tls(&self, core: &mut ShardCore, id: u64, fd: i32, batch: &mut Vec<Bytes>) {
        let mut conns = self.tls_conns.borrow_mut();
        let Some(tls) = conns.get_mut(&id) else { return };
        loop {
            let flushed = match tls.flush(fd) {
                Flush::Failed => return core.on_peer_closed(self.now(), id),
                flush => flush == Flush::Done,
            };
            batch.clear();
            match core.take_output(id, batch) {
                Output::Idle => return,
                Output::ShutWrite => {
                    tls.session.send_close_notify();
                    tls.shut_pending = true;
                    if tls.flush(fd) == Flush::Failed {
                        core.on_peer_closed(self.now(), id);
                    }
                    return;
                }
                Output::Write => {
                    // Nothing is taken while the socket is full or the
                    // handshake runs: the frames stay in the core's queue
                    // until the writable edge or the handshake's end.
                    let taken = if flushed && !tls.is_handshaking() { tls.take(batch) } else { 0 };
                    let more = core.wrote(id, batch, taken);
                    if taken == 0 || !more {
                        if tls.flush(fd) == Flush::Failed {
                            core.on_peer_closed(self.now(), id);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// The connection's socket closed or failed: it goes like a plain one
    /// whose peer closed.
    fn closed(&self, id: u64) {
        let now = self.now();
        self.core.borrow_mut().on_peer_closed(now, id);
    }

    /// Drops the TLS state of a released connection; one released while
    /// still handshaking (a TLS error, the peer gone, the authentication
    /// deadline) counts as a failed handshake.
    pub(super) fn release_tls(&self, id: u64) {
        let Some(tls) = self.tls_conns.borrow_mut().remove(&id) else { return };
        if tls.is_handshaking() {
            self.core.borrow().metrics().tls_handshake_failures.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_is_about_a_kilobyte_before_what_it_allocates() {
        // The figure in the module's comment; a change in rustls shows here.
        let size = std::mem::size_of::<rustls::ServerConnection>();
        assert!(size <= 1536, "ServerConnection is {size} bytes");
    }
}
