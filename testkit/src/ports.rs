//! Loopback ports for the servers, routers and Redis a test process
//! starts.
//!
//! Asking the kernel for port 0 and releasing it races: tests run in
//! parallel, a port chosen by one can be chosen again by another before
//! the first server binds it, and the kernel also hands the same ports out
//! as source ports of outgoing connections. Then a server binds a port
//! another process answers on, and a test talks to the wrong one. So ports
//! here come from below the kernel's ephemeral range (never a source port),
//! each at most once per test process (a counter, started at an offset
//! from the process id so concurrent test processes rarely meet), and each
//! is checked free by binding it before it is handed out. A port can still
//! be taken between that check and the server's bind (by a process this
//! fixture does not know), so harnesses watch the server's log for it
//! ([`StderrWatch`], [`port_was_taken`]) and start again on fresh ports.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Lowest port handed out; below it are well-known and registered services.
const FIRST: u32 = 10_000;

/// A port nobody was listening on a moment ago, never handed out before in
/// this process and never used by the kernel as a source port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_start().max(FIRST + 1_000);
    let span = end - FIRST;
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {end}");
}

/// `n` distinct ports, each as [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// First port of the kernel's ephemeral range (`ip_local_port_range`).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// What a server prints when it cannot bind a port it was given.
const PORT_TAKEN: &str = "Address already in use";

/// Whether a server's log says a port it was given was taken. Even a port
/// checked free can be taken by another process before the server binds
/// it; a harness that sees this starts the server again on fresh ports.
pub fn port_was_taken(log: &str) -> bool {
    log.contains(PORT_TAKEN)
}

/// A child's stderr passed through to the test's stderr line by line (so
/// the server's log shows as if inherited), noting whether the child said
/// a port it was given was taken.
pub struct StderrWatch {
    taken: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl StderrWatch {
    /// Takes over `child`'s stderr, which must have been spawned with
    /// `Stdio::piped()`.
    pub fn new(child: &mut Child) -> StderrWatch {
        let taken = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("the child's stderr is piped");
        let seen = taken.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if port_was_taken(&line) {
                    seen.store(true, Ordering::Relaxed);
                }
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        });
        StderrWatch { taken, reader: Some(reader) }
    }

    /// Once the child has exited: whether it said a port was taken (after
    /// reading the rest of what it wrote).
    pub fn port_was_taken(mut self) -> bool {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.taken.load(Ordering::Relaxed)
    }
}
