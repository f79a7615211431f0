//! `fanout`: M rooms of K members and P publishers (publisher p publishes
//! to room p % M) at R messages per second each, or open loop with
//! `--rate max`. Every payload carries a stamp (send time, publisher,
//! sequence number). After all connections are set up the parent fixes one
//! timeline on the shared monotonic clock: warm-up, measurement window,
//! drain. Only messages stamped inside the window are measured; the
//! server's CPU time is sampled at the window's edges.
//!
//! `lost` is the deliveries expected (messages published in the window x
//! members of their room set up) minus those received by the end of the
//! drain; it includes the tail a sequence-gap count alone would miss, and
//! `seq_gaps` reports the gaps seen between received sequence numbers.
//!
//! With `--history` the rooms are stream rooms: members also check the
//! stream positions they get ([`crate::stream`]), and any loss, gap,
//! duplicate or server error fails the run.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{memory_per_conn, stream_figures, Run, Totals, Traffic};
use crate::admin::Admin;
use crate::cli::FanoutArgs;
use crate::clock::now_ns;
use crate::fleet::Fleet;
use crate::payload::STAMP_LEN;
use crate::plan::{Command, Progress};
use crate::progress::Bar;
use crate::summary::Summary;
use crate::target::Target;
use crate::verdict;

/// Runs the scenario.
pub fn run(args: &FanoutArgs) -> Result<Summary> {
    if args.rooms == 0 || args.members == 0 || args.publishers == 0 {
        bail!("fanout needs at least one room, one member and one publisher");
    }
    if args.payload < STAMP_LEN {
        bail!("--payload must be at least {STAMP_LEN} bytes (the stamp)");
    }
    if args.duration_s <= 0.0 {
        bail!("--duration-s must be positive");
    }
    if args.history && !args.common.target.is_corecast() {
        bail!("--history needs the corecast target (rooms with a stream)");
    }
    let total = args.publishers + args.rooms * args.members;
    let run = Run::new(&args.common, total)?;
    let admin = (args.common.target == Target::Corecast).then(|| Admin::new(args.common.control, None));
    let before = run.sample();
    let traffic = Traffic {
        publishers: args.publishers,
        rooms: args.rooms,
        payload_len: args.payload,
        rate: args.rate.0,
        history: args.history,
    };
    let mut fleet = Fleet::spawn(&run.plans(traffic))?;
    let monitor = run.monitor(&fleet);
    let mut bar = Bar::new("fanout setup", total as u64);
    let ready = fleet.wait_ready(&mut bar, run.deadline)?;
    let p = fleet.progress();
    bar.finish(&format!("{} ready, {} failed", p.ready, p.failed));
    let after_setup = run.sample();
    let mut members_per_room = vec![0u64; args.rooms];
    for r in &ready {
        for (room, n) in r.members_per_room.iter().enumerate() {
            members_per_room[room] += n;
        }
    }

    let drops_before = admin.as_ref().and_then(|a| a.metric_sum("corecast_drops_total"));
    let publish_from = now_ns() + 200_000_000;
    let measure_from = publish_from + (args.warmup_s.max(0.0) * 1e9) as u64;
    let measure_until = measure_from + (args.duration_s * 1e9) as u64;
    fleet.command(&Command::Go { publish_from, measure_from, measure_until, publish_until: measure_until })?;
    eprintln!(
        "publishing: {:.1} s warm-up, {:.1} s measured, {:.1} s drain",
        args.warmup_s, args.duration_s, args.drain_s
    );
    fleet.wait_until(Run::instant_at(measure_from), |_| false)?;
    let window_start = run.sample();
    fleet.wait_until(Run::instant_at(measure_until), |_| false)?;
    let window_end = run.sample();
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain_s.max(0.0));
    fleet.wait_until(drain_until, |p| all_arrived(p, &members_per_room))?;
    let totals = Totals::merge(&fleet.stop_and_collect(run.deadline + Duration::from_secs(10))?);
    let drops_after = admin.as_ref().and_then(|a| a.metric_sum("corecast_drops_total"));

    let mut summary = run.base_summary("fanout", &totals);
    memory_per_conn(&mut summary, before, after_setup);
    let r = &totals.result;
    window_figures(&mut summary, &totals, &members_per_room, args.duration_s);
    summary.server_drops = drops_before.zip(drops_after).map(|(b, a)| a - b);
    if let (Some(s1), Some(s2)) = (window_start, window_end) {
        let cpu = s2.cpu_s - s1.cpu_s;
        summary.server_cpu_s = Some(cpu);
        summary.deliveries_per_server_cpu_s = (cpu > 0.0).then(|| r.received_in_window as f64 / cpu);
    }
    summary.series = monitor.finish();
    if args.history {
        stream_figures(&mut summary, &totals);
        summary.problems = [verdict::delivery_problems(&summary), verdict::stream_problems(&summary)].concat();
    }
    Ok(summary)
}

/// Whether the drain can end: every worker is done publishing and every
/// delivery expected from the window has arrived.
/// What the measured window published, delivered and lost, and the
/// delivery latency: the figures every fan-out step reports.
pub fn window_figures(summary: &mut Summary, totals: &Totals, members_per_room: &[u64], window_s: f64) {
    let r = &totals.result;
    let expected: u64 =
        r.sent_in_window_per_room.iter().zip(members_per_room).map(|(sent, members)| sent * members).sum();
    let published: u64 = r.sent_in_window_per_room.iter().sum();
    summary.window_s = Some(window_s);
    summary.published = Some(published);
    summary.publish_rate_per_s = Some(published as f64 / window_s);
    summary.publish_skipped = Some(r.publish_skipped);
    summary.expected = Some(expected);
    summary.received = Some(r.received_in_window);
    summary.lost = Some(expected.saturating_sub(r.received_in_window));
    summary.seq_gaps = Some(r.seq_gaps);
    summary.duplicates = Some(r.duplicates);
    summary.deliveries_per_s = Some(r.received_in_window as f64 / window_s);
    summary.latency_us = totals.latency.percentiles();
    summary.latency_hist = totals.latency.to_pairs();
}

pub fn all_arrived(p: &Progress, members_per_room: &[u64]) -> bool {
    p.publish_done && p.received_in_window >= p.expected_in_window(members_per_room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_ends_only_when_publishing_is_over_and_everything_arrived() {
        let members = [10, 20];
        let mut p = Progress { sent_in_window_per_room: vec![2, 1], received_in_window: 40, ..Progress::default() };
        assert!(!all_arrived(&p, &members), "a worker may still publish");
        p.publish_done = true;
        assert!(all_arrived(&p, &members));
        p.received_in_window = 39;
        assert!(!all_arrived(&p, &members), "one delivery missing");
    }
}
