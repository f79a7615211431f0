//! Client sockets: non-blocking IPv4 TCP with `TCP_NODELAY`, optionally bound
//! to a source address with `IP_BIND_ADDRESS_NO_PORT` (the kernel then picks
//! the source port at connect time per 4-tuple, so one address is good for
//! a full port range towards each server address, not one range in
//! total), and closed with `SO_LINGER 0` so a finished run leaves no
//! TIME_WAIT sockets holding ports for the next one.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Starts a non-blocking connect; the socket becomes writable when it completes.
pub fn start_connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads `one` for the given length; the fd is valid.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(&SocketAddrV4::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(e) => Err(e),
    }
}

/// Closes a socket with an immediate reset (no TIME_WAIT).
pub fn close_now(socket: Socket) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

/// A short, stable name for an I/O error, used to count failures by reason.
pub fn reason(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection_refused",
        Some(libc::ECONNRESET) => "connection_reset",
        Some(libc::ETIMEDOUT) => "timed_out",
        Some(libc::EADDRNOTAVAIL) => "no_source_port_available",
        Some(libc::EADDRINUSE) => "address_in_use",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_open_files",
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "out_of_kernel_memory",
        Some(libc::EPIPE) => "broken_pipe",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable",
        _ => return format!("io: {e}"),
    };
    name.to_string()
}
