//! `bench-ping`: PING round trips one after another on one connection,
//! summarised as min, p50, p99 and max.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use corecast_proto::{ClientRequest, ServerMessage};

use crate::conn::Conn;
use crate::output::Printer;

/// Measures `count` round trips and prints their spread.
pub fn bench_ping(conn: &mut Conn, out: Printer, count: usize) -> Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let mut rtts = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        match conn.call(0, &ClientRequest::Ping)?.get().message {
            ServerMessage::Pong => rtts.push(start.elapsed()),
            other => bail!("unexpected answer to PING: {other:?}"),
        }
    }
    rtts.sort_unstable();
    // Nearest rank: the smallest sample at or above the given fraction.
    let at = |q: f64| rtts[((q * count as f64).ceil() as usize).clamp(1, count) - 1];
    let (min, p50, p99, max) = (rtts[0], at(0.50), at(0.99), rtts[count - 1]);
    let us = |d: Duration| d.as_micros() as u64;
    let json = serde_json::json!({
        "type": "ping", "count": count, "min_us": us(min), "p50_us": us(p50), "p99_us": us(p99), "max_us": us(max),
    });
    let text = format!("{count} pings: min {min:?}  p50 {p50:?}  p99 {p99:?}  max {max:?}");
    out.emit(text, json);
    Ok(())
}
