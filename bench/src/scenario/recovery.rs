//! `recovery-storm`: one stream room (`live-bench-room-0`) of K members
//! and one publisher at R messages per second. After `before_s` seconds of
//! publishing every member drops its connection at the same instant and
//! reconnects at once (within the connect concurrency), joining again with
//! `since` = the last position it saw; publishing goes on for `after_s`
//! seconds from the drop, then the drain waits for stragglers.
//!
//! It reports the time from the drop until every member's JOINED came
//! back and until every member caught up (its JOINED said `recovered = 1`
//! and it then received, with no gap, a message published after that
//! JOINED arrived, so it holds everything it missed),
//! the messages replayed, and the server's CPU time from the drop until
//! all caught up (or, when some never do, until publishing ends). Every member must receive every message published, each
//! once, with contiguous positions across its reconnect: any loss, gap,
//! duplicate, `recovered = 0`, member left behind or failed reconnect fails
//! the run.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::fanout::{all_arrived, window_figures};
use super::{memory_per_conn, stream_figures, Run, Totals, Traffic};
use crate::admin::Admin;
use crate::cli::RecoveryStormArgs;
use crate::clock::{now_ns, secs_between};
use crate::fleet::Fleet;
use crate::payload::STAMP_LEN;
use crate::plan::Command;
use crate::progress::Bar;
use crate::summary::Summary;
use crate::target::Target;
use crate::verdict;

/// Runs the scenario.
pub fn run(args: &RecoveryStormArgs) -> Result<Summary> {
    if args.members == 0 {
        bail!("recovery-storm needs at least one member");
    }
    let Some(rate) = args.rate.0 else {
        bail!("--rate must be a number: an open-loop publisher would outrun any history");
    };
    if args.payload < STAMP_LEN {
        bail!("--payload must be at least {STAMP_LEN} bytes (the stamp)");
    }
    if args.before_s <= 0.0 || args.after_s <= 0.0 {
        bail!("--before-s and --after-s must be positive");
    }
    if !args.common.target.is_corecast() {
        bail!("recovery-storm needs the corecast target (rooms with a stream)");
    }
    let total = 1 + args.members;
    let run = Run::new(&args.common, total)?;
    let admin = (args.common.target == Target::Corecast).then(|| Admin::new(args.common.control, None));
    let before = run.sample();
    let traffic = Traffic { publishers: 1, rooms: 1, payload_len: args.payload, rate: Some(rate), history: true };
    let mut fleet = Fleet::spawn(&run.plans(traffic))?;
    let monitor = run.monitor(&fleet);
    let mut bar = Bar::new("recovery-storm setup", total as u64);
    let ready = fleet.wait_ready(&mut bar, run.deadline)?;
    let p = fleet.progress();
    bar.finish(&format!("{} ready, {} failed", p.ready, p.failed));
    let after_setup = run.sample();
    let members: u64 = ready.iter().filter_map(|r| r.members_per_room.first()).sum();
    let members_per_room = [members];

    let drops_before = admin.as_ref().and_then(|a| a.metric_sum("corecast_drops_total"));
    let publish_from = now_ns() + 200_000_000;
    let storm_at = publish_from + (args.before_s * 1e9) as u64;
    let publish_until = storm_at + (args.after_s * 1e9) as u64;
    fleet.command(&Command::Go {
        publish_from,
        measure_from: publish_from,
        measure_until: publish_until,
        publish_until,
    })?;
    fleet.command(&Command::Storm { at_ns: storm_at })?;
    eprintln!(
        "publishing {rate} msg/s: {:.1} s, then {members} members drop and rejoin; {:.1} s more, drain up to {:.1} s",
        args.before_s, args.after_s, args.drain_s
    );
    fleet.wait_until(Run::instant_at(storm_at), |_| false)?;
    let at_drop = run.sample();
    fleet.wait_until(Run::instant_at(publish_until), |p| p.caught_up >= members)?;
    let at_caught_up = run.sample();
    let p = fleet.progress();
    eprintln!("after the drop: {} rejoined, {} caught up of {members}", p.rejoined, p.caught_up);
    fleet.wait_until(Run::instant_at(publish_until), |_| false)?;
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain_s.max(0.0));
    fleet.wait_until(drain_until, |p| all_arrived(p, &members_per_room))?;
    let totals = Totals::merge(&fleet.stop_and_collect(run.deadline + Duration::from_secs(10))?);
    let drops_after = admin.as_ref().and_then(|a| a.metric_sum("corecast_drops_total"));

    let mut summary = run.base_summary("recovery-storm", &totals);
    memory_per_conn(&mut summary, before, after_setup);
    summary.server_drops = drops_before.zip(drops_after).map(|(b, a)| a - b);
    window_figures(&mut summary, &totals, &members_per_room, secs_between(publish_from, publish_until));
    stream_figures(&mut summary, &totals);
    storm_figures(&mut summary, &totals, storm_at);
    if let (Some(s1), Some(s2)) = (at_drop, at_caught_up) {
        summary.server_cpu_s = Some(s2.cpu_s - s1.cpu_s);
    }
    summary.series = monitor.finish();
    summary.problems = [verdict::delivery_problems(&summary), verdict::stream_problems(&summary)].concat();
    Ok(summary)
}

/// The storm's own figures: who dropped, rejoined, was recovered and
/// caught up, how long that took, and the time until the last caught up.
fn storm_figures(summary: &mut Summary, totals: &Totals, storm_at: u64) {
    let s = &totals.result.stream;
    summary.storm_members = Some(s.dropped);
    summary.rejoined = Some(s.rejoined);
    summary.recovered = Some(s.recovered);
    summary.replayed = Some(s.replayed);
    summary.caught_up = Some(s.caught_up);
    summary.rejoin_latency_us = totals.rejoin_latency.percentiles();
    summary.catch_up_latency_us = totals.catch_up_latency.percentiles();
    summary.time_to_all_caught_up_ms =
        (s.dropped > 0 && s.caught_up == s.dropped).then(|| secs_between(storm_at, s.last_caught_up_ns) * 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WorkerResult;
    use crate::stream::StreamCounts;

    #[test]
    fn the_time_to_all_caught_up_needs_every_member() {
        let result = |caught_up| WorkerResult {
            stream: StreamCounts {
                dropped: 2,
                rejoined: 2,
                caught_up,
                last_caught_up_ns: 3_500_000_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut summary = Summary::default();
        storm_figures(&mut summary, &Totals::merge(&[result(2)]), 1_000_000_000);
        assert_eq!(summary.time_to_all_caught_up_ms, Some(2500.0));
        assert_eq!((summary.storm_members, summary.caught_up), (Some(2), Some(2)));
        storm_figures(&mut summary, &Totals::merge(&[result(1)]), 1_000_000_000);
        assert_eq!(summary.time_to_all_caught_up_ms, None, "one member is still behind");
    }
}
