//! `connect`: open N connections (at `--connect-rate` or as fast as
//! possible), authenticate each (the target's hello), hold them for
//! `--hold-s` with heartbeats, close. With `--server-pid`, the server's RSS
//! and the host's kernel socket memory are sampled before the first
//! connection and after the last one is set up, so bytes per connection come
//! out, and the server CPU time spent setting them up.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{memory_per_conn, Run, Totals, Traffic};
use crate::cli::ConnectArgs;
use crate::fleet::Fleet;
use crate::progress::Bar;
use crate::summary::Summary;

/// Time given to the server to settle after the last AUTH_OK before its memory is sampled.
const SETTLE: Duration = Duration::from_millis(1000);

/// Runs the scenario.
pub fn run(args: &ConnectArgs) -> Result<Summary> {
    let run = Run::new(&args.common, args.connections)?;
    let before = run.sample();
    let mut fleet = Fleet::spawn(&run.plans(Traffic::default()))?;
    let monitor = run.monitor(&fleet);
    let mut bar = Bar::new("connect", args.connections as u64);
    fleet.wait_ready(&mut bar, run.deadline)?;
    let p = fleet.progress();
    bar.finish(&format!("{} ready, {} failed", p.ready, p.failed));
    fleet.wait_until(Instant::now() + SETTLE, |_| false)?;
    let after = run.sample();
    let hold_until = (Instant::now() + Duration::from_secs_f64(args.hold_s.max(0.0))).min(run.deadline);
    eprintln!("holding {} connections for {:.1} s", p.ready, args.hold_s);
    fleet.wait_until(hold_until, |_| false)?;
    let totals = Totals::merge(&fleet.stop_and_collect(run.deadline + Duration::from_secs(10))?);
    let mut summary = run.base_summary("connect", &totals);
    summary.latency_us = summary.connect_latency_us;
    memory_per_conn(&mut summary, before, after);
    summary.server_cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    summary.connects_per_server_cpu_s =
        summary.server_cpu_s.filter(|&cpu| cpu > 0.0).map(|cpu| summary.connections as f64 / cpu);
    summary.latency_hist = totals.connect_latency.to_pairs();
    summary.series = monitor.finish();
    Ok(summary)
}
