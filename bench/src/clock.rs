//! The one clock every process of a run shares: `CLOCK_MONOTONIC` in
//! nanoseconds. Publishers stamp payloads with it and receivers in other
//! worker processes subtract it, which is only meaningful because all of
//! them run on the same host (the harness talks to loopback servers).

/// Nanoseconds on `CLOCK_MONOTONIC`, comparable across processes on this host.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds between two monotonic timestamps (0 when `to` is not after `from`).
pub fn secs_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}
