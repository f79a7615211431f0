//! `broadcast` (corecast): N connections, then one `POST
//! /v1/admin/broadcast` whose payload is stamped with the parent's clock
//! just before the call. Each connection records when the broadcast
//! arrived; the run reports how many got it (`lost` = connections set up
//! minus those), the time until the last one had it, and the latency
//! distribution over connections.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{memory_per_conn, Run, Totals, Traffic};
use crate::admin::Admin;
use crate::cli::BroadcastArgs;
use crate::clock::now_ns;
use crate::fleet::Fleet;
use crate::payload::{filler, Stamp, BROADCAST_PUBLISHER, STAMP_LEN};
use crate::plan::Command;
use crate::progress::Bar;
use crate::target::Target;

/// Runs the scenario.
pub fn run(args: &BroadcastArgs) -> Result<crate::summary::Summary> {
    if args.common.target != Target::Corecast {
        bail!("broadcast needs the corecast admin API; the peers have no equivalent");
    }
    if args.payload < STAMP_LEN {
        bail!("--payload must be at least {STAMP_LEN} bytes (the stamp)");
    }
    let admin = Admin::new(args.common.control, args.common.admin_key.clone());
    let run = Run::new(&args.common, args.connections)?;
    let before = run.sample();
    let mut fleet = Fleet::spawn(&run.plans(Traffic::default()))?;
    let monitor = run.monitor(&fleet);
    let mut bar = Bar::new("broadcast setup", args.connections as u64);
    let ready = fleet.wait_ready(&mut bar, run.deadline)?;
    let ready_total: u64 = ready.iter().map(|r| r.ready).sum();
    bar.finish(&format!("{ready_total} ready"));
    let after_setup = run.sample();

    fleet.command(&Command::Watch)?;
    fleet.wait_until(Instant::now() + Duration::from_millis(200), |_| false)?;
    let s1 = run.sample();
    let mut payload = filler(args.payload);
    let sent_ns = now_ns();
    Stamp { sent_ns, publisher: BROADCAST_PUBLISHER, seq: 1 }.write_into(&mut payload);
    admin.broadcast(&payload)?;
    let timeout = (Instant::now() + Duration::from_secs_f64(args.timeout_s.max(0.0))).min(run.deadline);
    fleet.wait_until(timeout, |p| p.broadcast_received >= ready_total)?;
    let s2 = run.sample();
    let totals = Totals::merge(&fleet.stop_and_collect(run.deadline + Duration::from_secs(10))?);

    let mut summary = run.base_summary("broadcast", &totals);
    memory_per_conn(&mut summary, before, after_setup);
    let r = &totals.result;
    let received = r.broadcast_received;
    summary.published = Some(1);
    summary.expected = Some(ready_total);
    summary.received = Some(received);
    summary.lost = Some(ready_total.saturating_sub(received));
    summary.latency_us = totals.broadcast_latency.percentiles();
    summary.latency_hist = totals.broadcast_latency.to_pairs();
    if received > 0 {
        let secs = r.broadcast_last_ns.saturating_sub(sent_ns) as f64 / 1e9;
        summary.time_to_last_ms = Some(secs * 1000.0);
        summary.window_s = Some(secs);
        summary.deliveries_per_s = (secs > 0.0).then(|| received as f64 / secs);
    }
    if let (Some(a), Some(b)) = (s1, s2) {
        let cpu = b.cpu_s - a.cpu_s;
        summary.server_cpu_s = Some(cpu);
        summary.deliveries_per_server_cpu_s = (cpu > 0.0).then(|| received as f64 / cpu);
    }
    summary.series = monitor.finish();
    Ok(summary)
}
