//! The writes of a round in one system call. Every connection with bytes to
//! write gets one SENDMSG on the shard's own io_uring (non-blocking: the
//! kernel does each send inline at submission and completes at once), and
//! the whole round goes in with one `io_uring_enter`, where one `sendmsg`
//! per connection would cost a system call each. For a room's fan-out
//! that is the difference between the two floors measured on this host
//! (one `send()` per member against one submission per round). Where the
//! ring cannot be set up, each write is its own `sendmsg`.

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

use super::socket::{self, Done};

/// Sends in flight at once (the ring's size).
const RING_ENTRIES: u32 = 1024;

/// One write of the round: a connection's batch and what the kernel reads.
pub struct Write {
    /// The connection.
    pub id: u64,
    /// Its socket.
    pub fd: i32,
    /// The frames, kept alive until the send completed.
    pub batch: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// What the send gave.
    pub done: Done,
}

impl Write {
    fn new() -> Write {
        Write {
            id: 0,
            fd: -1,
            batch: Vec::new(),
            iovecs: Vec::new(),
            // SAFETY: msghdr is plain data; zeroed is valid (no name, no control).
            msg: unsafe { std::mem::zeroed() },
            done: Done::WouldBlock,
        }
    }

    /// The bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.batch.iter().map(Bytes::len).sum()
    }
}

/// The writes of one round, and the ring that sends them.
pub struct SendRing {
    ring: Option<IoUring>,
    writes: Vec<Write>,
    used: usize,
}

impl SendRing {
    /// A ring of its own, or plain `sendmsg` calls when io_uring refuses.
    pub fn new() -> SendRing {
        let ring = match IoUring::new(RING_ENTRIES) {
            Ok(ring) => Some(ring),
            Err(e) => {
                tracing::info!("no io_uring for batched sends ({e}); each write is its own sendmsg");
                None
            }
        };
        SendRing { ring, writes: Vec::new(), used: 0 }
    }

    /// A write slot to fill (its batch empty), reusing earlier rounds'.
    pub fn next(&mut self, id: u64, fd: i32) -> &mut Vec<Bytes> {
        if self.used == self.writes.len() {
            self.writes.push(Write::new());
        }
        let write = &mut self.writes[self.used];
        self.used += 1;
        write.id = id;
        write.fd = fd;
        write.batch.clear();
        &mut write.batch
    }

    /// Gives back the last slot taken (nothing to write after all).
    pub fn unused_last(&mut self) {
        self.used -= 1;
    }

    /// Whether no write is queued.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Sends every queued write; the results are in each [`Write`].
    pub fn send(&mut self) -> &mut [Write] {
        let writes = &mut self.writes[..self.used];
        self.used = 0;
        match self.ring.as_mut() {
            None => {
                for write in writes.iter_mut() {
                    write.done = socket::write(write.fd, &write.batch, &mut write.iovecs);
                }
            }
            Some(ring) => {
                for chunk in writes.chunks_mut(RING_ENTRIES as usize) {
                    submit(ring, chunk);
                }
            }
        }
        writes
    }
}

/// Sends one chunk (at most the ring's size) with one submission.
fn submit(ring: &mut IoUring, writes: &mut [Write]) {
    for (index, write) in writes.iter_mut().enumerate() {
        write.iovecs.clear();
        write.iovecs.extend(
            write.batch.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }),
        );
        write.msg.msg_iov = write.iovecs.as_mut_ptr();
        write.msg.msg_iovlen = write.iovecs.len() as _;
        write.done = Done::WouldBlock;
        let entry = opcode::SendMsg::new(types::Fd(write.fd), &write.msg)
            .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
            .build()
            .user_data(index as u64);
        // SAFETY: the msghdr, its iovecs and the frames they point into live
        // in `writes` until every completion below has been taken.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            // The ring is never fuller than one chunk; send it plainly.
            write.done = socket::write(write.fd, &write.batch, &mut write.iovecs);
            write.iovecs.clear();
        }
    }
    let expected = writes.iter().filter(|w| !w.iovecs.is_empty()).count();
    let mut seen = 0;
    while seen < expected {
        if let Err(e) = ring.submit_and_wait(expected - seen) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("submitting the round's sends failed: {e}");
            break;
        }
        for cqe in ring.completion() {
            seen += 1;
            let Some(write) = writes.get_mut(cqe.user_data() as usize) else { continue };
            let n = cqe.result();
            write.done = if n >= 0 {
                Done::Bytes(n as usize)
            } else if n == -libc::EAGAIN || n == -libc::EINTR {
                Done::WouldBlock
            } else {
                Done::Closed
            };
        }
    }
}
