//! The shard's readiness set: every socket the shard drives (its listeners
//! and its connections, plain or TLS) is registered once, edge-triggered,
//! in one epoll instance (`mio`). An idle connection then waits in the
//! kernel: no future, no buffer, no waker in user space (a TLS
//! connection's rustls session aside: `tls.rs`). The shard's one
//! I/O task waits for the set itself through the monoio runtime (an
//! io_uring poll of the epoll descriptor, or the epoll driver's own
//! readiness), then collects every ready socket without blocking.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Most readiness events taken per call.
const EVENTS_PER_POLL: usize = 1024;

/// One ready socket.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// The token it was registered with.
    pub token: u64,
    /// Input (or the end of input) is there.
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
}

/// The readiness set of one shard.
pub struct Readiness {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    /// The epoll descriptor as the runtime sees it, to wait on.
    waiter: monoio::net::TcpStream,
}

impl Readiness {
    /// An empty set.
    pub fn new() -> io::Result<Readiness> {
        let poll = Poll::new()?;
        // SAFETY: dup of a descriptor we own; the copy is owned by `waiter`
        // and closed with it. monoio only polls it for readability.
        let copy = unsafe { libc::dup(poll.as_raw_fd()) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `copy` is a fresh descriptor nobody else owns.
        let std_stream = unsafe { std::net::TcpStream::from_raw_fd(copy) };
        let waiter = monoio::net::TcpStream::from_std(std_stream)?;
        Ok(Readiness { poll: RefCell::new(poll), events: RefCell::new(Events::with_capacity(EVENTS_PER_POLL)), waiter })
    }

    /// Adds a socket for reads and writes, edge-triggered.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            Token(token as usize),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Adds a listener (reads only).
    pub fn add_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.poll.borrow().registry().register(&mut SourceFd(&fd), Token(token as usize), Interest::READABLE)
    }

    /// Takes the sockets that are ready now, without waiting.
    pub fn ready_now(&self, out: &mut Vec<Ready>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        out.extend(events.iter().map(|event| Ready {
            token: event.token().0 as u64,
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed(),
        }));
        Ok(())
    }

    /// A handle to wait on until something in the set is ready.
    pub fn waiter(&self) -> &monoio::net::TcpStream {
        &self.waiter
    }
}
