//! The few socket calls the driver makes on the connections it drives
//! itself: accept (non-blocking, close-on-exec, with the peer address),
//! read into the shard's buffer, a vectored write of shared frames, a
//! writer for TLS records, shut the write side, close. Written on `libc` because they work on bare
//! descriptors the shard owns in its slab, without a per-connection socket
//! object; every call is non-blocking.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use bytes::Bytes;

/// What a non-blocking call gave.
pub enum Done {
    /// This many bytes.
    Bytes(usize),
    /// Nothing now; wait for readiness.
    WouldBlock,
    /// The peer closed (read) or the socket failed.
    Closed,
}

fn result(n: isize) -> Done {
    if n > 0 {
        return Done::Bytes(n as usize);
    }
    if n == 0 {
        return Done::Closed;
    }
    match io::Error::last_os_error().kind() {
        io::ErrorKind::WouldBlock => Done::WouldBlock,
        io::ErrorKind::Interrupted => Done::WouldBlock,
        _ => Done::Closed,
    }
}

/// Accepts one connection: its descriptor (non-blocking, close-on-exec,
/// TCP_NODELAY set) and the peer's address. `Ok(None)`: none waiting.
pub fn accept(listener: RawFd) -> io::Result<Option<(RawFd, IpAddr)>> {
    // SAFETY: sockaddr_storage is plain data, zeroed is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and len point to storage we own, of the size we pass.
    let fd = unsafe {
        libc::accept4(
            listener,
            &mut addr as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            // The peer gave up before we took it: nothing to do.
            io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(error),
        };
    }
    let one: libc::c_int = 1;
    // SAFETY: fd is the socket just accepted; the option value is an int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Ok(Some((fd, peer_ip(&addr))))
}

fn peer_ip(addr: &libc::sockaddr_storage) -> IpAddr {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let v4 = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let v6 = unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
            IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr))
        }
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Reads what is there into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Done {
    // SAFETY: buf is valid for writes of its length.
    result(unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) })
}

/// Writes as much of `frames` as the socket takes, in one call.
pub fn write(fd: RawFd, frames: &[Bytes], iovecs: &mut Vec<libc::iovec>) -> Done {
    iovecs.clear();
    iovecs.extend(frames.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }));
    // SAFETY: msghdr is plain data; zeroed is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovecs.as_mut_ptr();
    msg.msg_iovlen = iovecs.len() as _;
    // SAFETY: the iovecs point into `frames`, which outlive the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    match n {
        0 => Done::Bytes(0),
        n => result(n),
    }
}

/// Most buffers one `sendmsg` takes on Linux.
const IOV_MAX: usize = 1024;

/// A descriptor as an [`io::Write`], for a TLS connection to write its
/// records into: each call is one non-blocking `sendmsg`, and a full socket
/// is `WouldBlock`.
pub struct Sink(pub RawFd);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: msghdr is plain data; zeroed is valid (no name, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix; sendmsg only reads.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
        // SAFETY: the iovecs point into `bufs`, which outlive the call.
        let n = unsafe { libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Shuts the write side: the peer reads the end of the stream after what
/// was written.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor the shard owns.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Closes a descriptor the shard owns (it leaves the readiness set with
/// it).
pub fn close(fd: RawFd) {
    // SAFETY: the shard owns this descriptor and forgets it here.
    unsafe { libc::close(fd) };
}
