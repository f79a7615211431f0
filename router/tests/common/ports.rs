//! Test fixture: loopback ports for the servers, routers and Redis a test
//! process starts. Shared by every crate's integration tests (included with
//! `#[path]`), so it uses nothing but std.
//!
//! Asking the kernel for port 0 and releasing it races: tests run in
//! parallel, a port chosen by one can be chosen again by another before
//! the first server binds it, and the kernel also hands the same ports out
//! as source ports of outgoing connections. Then a server binds a port
//! another process answers on, and a test talks to the wrong one. So ports
//! here come from below the kernel's ephemeral range (never a source port),
//! each at most once per test process (a counter, started at an offset
//! from the process id so concurrent test processes rarely meet), and each
//! is checked free by binding it before it is handed out.

#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

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
