//! The writer of one connection: parks until frames are queued, then writes
//! as many as fit in one vectored write straight from the shared frame
//! buffers (no copy, no per-recipient encode), and returns any unwritten
//! tail to the front of the queue. Once the connection is closing and its
//! queue is empty it shuts the socket down, which ends the reader too.
//!
//! Over WebSocket each batch becomes one binary message: a small header
//! goes in front of the same shared buffers, pending control frames
//! (pongs) before it, and the message is written whole; the closing
//! handshake's close frame goes last.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use corecast_proto::ws;
use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedWriteHalf};

use super::Shard;
use crate::stall::Activity;

/// Frames per vectored write (well under IOV_MAX).
const MAX_BATCH_FRAMES: usize = 256;
/// Bytes per vectored write.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Shared frames as one vectored-write buffer. It owns the frames, so the
/// memory the iovecs point to lives as long as the kernel may read it, even
/// if the write is cancelled.
struct IoVecFrames {
    iovecs: Vec<libc::iovec>,
    frames: Vec<Bytes>,
}

impl IoVecFrames {
    fn new(frames: Vec<Bytes>) -> IoVecFrames {
        let iovecs = frames
            .iter()
            .map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() })
            .collect();
        IoVecFrames { iovecs, frames }
    }
}

// SAFETY: the iovecs point into `frames`' heap buffers, which neither move
// nor change while this value exists; their count matches `iovecs.len()`.
unsafe impl IoVecBuf for IoVecFrames {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

enum Step {
    Write,
    Finish,
}

/// Runs the writer of connection `key` until it closes.
pub(super) async fn run<S: AsyncWriteRent>(shard: Rc<Shard>, key: u32, conn_id: u64, mut writer: OwnedWriteHalf<S>) {
    loop {
        let step = poll_fn(|cx| {
            let mut conns = shard.conns.borrow_mut();
            let Some(conn) = conns.get_mut(key as usize).filter(|c| c.id == conn_id) else {
                return Poll::Ready(Step::Finish);
            };
            let control_pending = conn.ws.as_ref().is_some_and(|ws| !ws.control.is_empty());
            if (!conn.queue.is_empty() && !conn.flush_pending) || control_pending {
                return Poll::Ready(Step::Write);
            }
            if conn.queue.is_empty() && conn.closing.is_some() {
                return Poll::Ready(Step::Finish);
            }
            conn.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if let Step::Finish = step {
            break;
        }

        shard.pulse.enter(Activity::Write);
        let mut batch = Vec::new();
        let mut prefix = Vec::new();
        match shard.conns.borrow_mut().get_mut(key as usize) {
            Some(conn) => {
                if !conn.flush_pending {
                    conn.queue.take_batch(&mut batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES);
                }
                if let Some(ws) = conn.ws.as_mut() {
                    prefix.append(&mut ws.control);
                    if !batch.is_empty() {
                        let mut header = Vec::with_capacity(10);
                        ws::server_header(ws::opcode::BINARY, batch.iter().map(Bytes::len).sum(), &mut header);
                        prefix.push(header.into());
                    }
                }
            }
            None => break,
        }
        let (result, mut batch) = if prefix.is_empty() {
            let (result, written) = writer.writev(IoVecFrames::new(batch)).await;
            (result, written.frames)
        } else {
            // A WebSocket message must go out whole: write all of it.
            let data: usize = batch.iter().map(Bytes::len).sum();
            let framing = prefix.len();
            prefix.append(&mut batch);
            let (result, written) = writer.write_vectored_all(IoVecFrames::new(prefix)).await;
            let mut frames = written.frames;
            (result.map(|_| data), frames.split_off(framing))
        };
        let Ok(n) = result else { break };

        let mut conns = shard.conns.borrow_mut();
        let Some(conn) = conns.get_mut(key as usize).filter(|c| c.id == conn_id) else { break };
        let sent = conn.queue.return_unwritten(&mut batch, n);
        shard.metrics.frames_out.increment(sent as u64);
        if conn.over_limit_since.is_some() && conn.queue.bytes() < shard.config.outbound_queue_bytes / 2 {
            conn.over_limit_since = None;
        }
        conn.queue.release_if_empty();
    }
    let close = shard.conns.borrow().get(key as usize).filter(|c| c.id == conn_id).and_then(|conn| {
        let ws = conn.ws.as_ref()?;
        let (code, reason) = ws.close.clone().unwrap_or((ws::close_code::NORMAL, String::new()));
        Some(ws::close_frame(code, &reason))
    });
    if let Some(frame) = close {
        let _ = writer.write_all(frame).await;
    }
    if let Some(conn) = shard.conns.borrow().get(key as usize).filter(|c| c.id == conn_id) {
        conn.shutdown_socket();
    }
}
