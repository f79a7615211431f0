//! Connections driven through a byte stream, one task each: TLS, whose
//! library wants a stream to read and write. The task completes the TLS
//! handshake within the authentication deadline, then feeds what it reads
//! to the core; a second task writes what the core hands out, parked on a
//! waker the driver wakes when the connection has output. When the core
//! releases the connection the driver shuts the socket down, which ends
//! both tasks; the descriptor closes when they drop the stream.

use std::future::poll_fn;
use std::os::fd::FromRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedWriteHalf, Splitable};

use super::Driver;
use crate::shard::core::Output;

/// Read buffer of one stream connection.
const READ_CAPACITY: usize = 4096;

/// Starts the tasks of stream connection `id` on socket `fd`.
pub(super) fn spawn(driver: &Driver, id: u64, fd: i32, tls: monoio_rustls::TlsAcceptor) {
    // SAFETY: `fd` was just accepted and is owned by this connection's
    // task from here on; the core only shuts it down, never closes it.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let stream = match monoio::net::TcpStream::from_std(std_stream) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!("could not register a TLS connection: {e}");
            let now = driver.now();
            driver.core.borrow_mut().on_peer_closed(now, id);
            return;
        }
    };
    let driver = driver.self_rc();
    monoio::spawn(serve(driver, id, stream, tls));
}

async fn serve(driver: Rc<Driver>, id: u64, stream: monoio::net::TcpStream, acceptor: monoio_rustls::TlsAcceptor) {
    let deadline = Duration::from_millis(driver.core.borrow().config().auth_timeout_ms as u64);
    let tls = match monoio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        failed => {
            if let Ok(Err(e)) = failed {
                tracing::debug!("TLS handshake failed: {e}");
            }
            driver.core.borrow().metrics().tls_handshake_failures.increment(1);
            driver.stream_closed(id);
            return;
        }
    };
    let (mut reader, writer) = tls.into_split();
    let writer = monoio::spawn(write_loop(driver.clone(), id, writer));
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CAPACITY);
    while driver.core.borrow().is_live(id) {
        buf.clear();
        let (result, slice) = reader.read(buf.slice_mut(0..)).await;
        buf = slice.into_inner();
        match result {
            Ok(n) if n > 0 => driver.stream_bytes(id, &buf[..n]),
            _ => break,
        }
    }
    driver.stream_closed(id);
    writer.await;
}

/// Writes what the core hands out for `id` until the connection goes.
async fn write_loop<W: AsyncWriteRent>(driver: Rc<Driver>, id: u64, mut writer: OwnedWriteHalf<W>) {
    loop {
        let mut batch: Vec<Bytes> = Vec::new();
        let output = poll_fn(|cx| {
            let mut core = driver.core.borrow_mut();
            if !core.is_live(id) {
                return Poll::Ready(None);
            }
            match core.take_output(id, &mut batch) {
                Output::Idle => {
                    driver.stream_writers.borrow_mut().insert(id, cx.waker().clone());
                    Poll::Pending
                }
                output => Poll::Ready(Some(output)),
            }
        })
        .await;
        match output {
            None => return,
            Some(Output::ShutWrite) => {
                let _ = writer.shutdown().await;
                // Input is discarded until the peer closes or the core
                // releases the connection at its linger deadline.
                poll_fn(|cx| {
                    if driver.core.borrow().is_live(id) {
                        driver.stream_writers.borrow_mut().insert(id, cx.waker().clone());
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                return;
            }
            Some(_) => {
                let total: usize = batch.iter().map(Bytes::len).sum();
                let mut written = 0;
                for frame in batch.iter() {
                    let (result, _) = writer.write_all(frame.clone()).await;
                    if result.is_err() {
                        break;
                    }
                    written += frame.len();
                }
                if written < total {
                    driver.stream_closed(id);
                    return;
                }
                let _ = writer.flush().await;
                driver.stream_wrote(id, &mut batch, written);
            }
        }
    }
}

impl Driver {
    fn stream_bytes(&self, id: u64, bytes: &[u8]) {
        let now = self.now();
        self.core.borrow_mut().on_bytes(now, id, bytes);
        self.after_round();
    }

    fn stream_wrote(&self, id: u64, batch: &mut Vec<Bytes>, written: usize) {
        self.core.borrow_mut().wrote(id, batch, written);
        self.after_round();
    }

    fn stream_closed(&self, id: u64) {
        let now = self.now();
        self.core.borrow_mut().on_peer_closed(now, id);
        self.stream_writers.borrow_mut().remove(&id);
        self.after_round();
    }
}
