//! `c1m` (corecast): every step of the C1M scenario on one set of
//! connections, opened once. The connections are laid out as in `fanout`
//! (the first `rooms` publish, the rest are members of the rooms, all
//! joined while connecting), then:
//!
//! 1. **connect**: all of them, heart-beating from their AUTH_OK on;
//! 2. **hold**: `--hold-s` seconds; in the middle the nodes' RSS and the
//!    kernel's socket memory are sampled and divided by the connections
//!    actually held then, whatever that count is;
//! 3. **broadcast**: one `POST /v1/admin/broadcast` on `--control` (the
//!    router's admin API), until every held connection has it or the timeout;
//! 4. **fanout**: the rooms publish at `--rate` while all are connected; the
//!    drain ends as soon as every expected delivery arrived.
//!
//! Nothing reconnects between steps. Each step is one [`Summary`]; a drop
//! is counted in the step during which it happened (the workers tag it),
//! and the time series of the whole run goes with the first step.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::fanout::{all_arrived, window_figures};
use super::{Run, Totals, Traffic};
use crate::admin::{add_metric_by_label, Admin};
use crate::cli::C1mArgs;
use crate::clock::{now_ns, secs_between};
use crate::fleet::Fleet;
use crate::payload::{filler, Stamp, BROADCAST_PUBLISHER, STAMP_LEN};
use crate::plan::{Command, Progress};
use crate::probe::Sample;
use crate::progress::Bar;
use crate::summary::Summary;
use crate::target::Target;
use crate::verdict;

/// The steps, in order; also the prefixes of the workers' drop reasons.
const STEPS: [&str; 4] = ["connect", "hold", "broadcast", "fanout"];

/// Runs the scenario and returns one summary per step.
pub fn run(args: &C1mArgs) -> Result<Vec<Summary>> {
    if args.common.target != Target::Corecast {
        bail!("c1m drives corecast (its dispatch and admin broadcast)");
    }
    if args.payload < STAMP_LEN {
        bail!("--payload must be at least {STAMP_LEN} bytes (the stamp)");
    }
    if args.room_size < 2 || args.duration_s <= 0.0 {
        bail!("--room-size must be at least 2 and --duration-s positive");
    }
    let rooms = (args.connections / args.room_size).max(1);
    let run = Run::new(&args.common, args.connections)?;
    let admin = Admin::new(args.common.control, args.common.admin_key.clone());
    let before = run.sample();
    let traffic = Traffic { publishers: rooms, rooms, payload_len: args.payload, rate: args.rate.0, history: false };
    let mut fleet = Fleet::spawn(&run.plans(traffic))?;
    let monitor = run.monitor(&fleet);

    eprintln!("c1m 1/4 connect: {} connections, {rooms} rooms of {}", args.connections, args.room_size);
    let mut bar = Bar::new("connect", args.connections as u64);
    let ready = fleet.wait_ready(&mut bar, run.deadline)?;
    let p = fleet.progress();
    bar.finish(&format!("{} ready, {} failed, {} dropped", p.ready, p.failed, p.dropped));
    let mut members_per_room = vec![0u64; rooms];
    for r in &ready {
        for (room, n) in r.members_per_room.iter().enumerate() {
            members_per_room[room] += n;
        }
    }

    eprintln!("c1m 2/4 hold: {:.0} s, memory sampled half-way", args.hold_s);
    let half = Duration::from_secs_f64(args.hold_s.max(0.0) / 2.0);
    fleet.wait_until(Instant::now() + half, |_| false)?;
    let at_hold = run.sample();
    let held = live(&fleet.progress());
    fleet.wait_until(Instant::now() + half, |_| false)?;

    eprintln!("c1m 3/4 broadcast to {}", live(&fleet.progress()));
    fleet.command(&Command::Watch)?;
    fleet.wait_until(Instant::now() + Duration::from_millis(200), |_| false)?;
    let expect = live(&fleet.progress());
    let b1 = run.sample();
    let mut payload = filler(args.payload);
    let sent_ns = now_ns();
    Stamp { sent_ns, publisher: BROADCAST_PUBLISHER, seq: 1 }.write_into(&mut payload);
    admin.broadcast(&payload)?;
    let timeout = (Instant::now() + Duration::from_secs_f64(args.broadcast_timeout_s.max(0.0))).min(run.deadline);
    fleet.wait_until(timeout, |p| p.broadcast_received >= expect)?;
    let b2 = run.sample();

    eprintln!(
        "c1m 4/4 fanout: {rooms} rooms at {} msg/s each, {:.0} s warm-up, {:.0} s window, drain up to {:.0} s",
        args.rate.0.map_or("max".into(), |r| r.to_string()),
        args.warmup_s,
        args.duration_s,
        args.drain_s
    );
    let drops_before = node_drops(&args.common.node_control);
    let publish_from = now_ns() + 200_000_000;
    let measure_from = publish_from + (args.warmup_s.max(0.0) * 1e9) as u64;
    let measure_until = measure_from + (args.duration_s * 1e9) as u64;
    fleet.command(&Command::Go { publish_from, measure_from, measure_until, publish_until: measure_until })?;
    fleet.wait_until(Run::instant_at(measure_from), |_| false)?;
    let f1 = run.sample();
    fleet.wait_until(Run::instant_at(measure_until), |_| false)?;
    let f2 = run.sample();
    let drain_until = (Instant::now() + Duration::from_secs_f64(args.drain_s.max(0.0))).min(run.deadline);
    fleet.wait_until(drain_until, |p| all_arrived(p, &members_per_room))?;

    let drops_after = node_drops(&args.common.node_control);
    let totals = Totals::merge(&fleet.stop_and_collect(run.deadline + Duration::from_secs(30))?);
    let series = monitor.finish();
    let by_step = split_by_step(&totals.result.disconnected);
    let step = |name: &str| {
        let mut summary = run.base_summary(name, &totals);
        summary.disconnected = by_step.get(name).cloned().unwrap_or_default();
        if name != "connect" {
            summary.failed = BTreeMap::new();
            summary.connect_rate_per_s = None;
            summary.connect_latency_us = None;
        }
        summary
    };

    let mut connect = step("connect");
    connect.latency_us = connect.connect_latency_us;
    connect.latency_hist = totals.connect_latency.to_pairs();
    connect.series = series;
    connect.problems = verdict::connection_problems(&connect);

    let mut hold = step("hold");
    hold.held = Some(held);
    memory_at_hold(&mut hold, before, at_hold, held);
    hold.problems = verdict::connection_problems(&hold);

    let mut broadcast = step("broadcast");
    let r = &totals.result;
    broadcast.published = Some(1);
    broadcast.expected = Some(expect);
    broadcast.received = Some(r.broadcast_received);
    broadcast.lost = Some(expect.saturating_sub(r.broadcast_received));
    broadcast.latency_us = totals.broadcast_latency.percentiles();
    broadcast.latency_hist = totals.broadcast_latency.to_pairs();
    if r.broadcast_received > 0 {
        let secs = secs_between(sent_ns, r.broadcast_last_ns);
        broadcast.time_to_last_ms = Some(secs * 1000.0);
        broadcast.window_s = Some(secs);
        broadcast.deliveries_per_s = (secs > 0.0).then(|| r.broadcast_received as f64 / secs);
    }
    cpu_between(&mut broadcast, b1, b2, r.broadcast_received);
    broadcast.problems = [verdict::connection_problems(&broadcast), verdict::delivery_problems(&broadcast)].concat();

    let mut fanout = step("fanout");
    window_figures(&mut fanout, &totals, &members_per_room, args.duration_s);
    let published = fanout.published.unwrap_or(0);
    cpu_between(&mut fanout, f1, f2, r.received_in_window);
    fanout.problems = [verdict::connection_problems(&fanout), verdict::delivery_problems(&fanout)].concat();
    if let (Some(before), Some(after)) = (drops_before, drops_after) {
        let grown: BTreeMap<String, f64> = after
            .into_iter()
            .map(|(reason, n)| {
                let since = n - before.get(&reason).copied().unwrap_or(0.0);
                (reason, since)
            })
            .filter(|(_, since)| *since > 0.0)
            .collect();
        fanout.server_drops = Some(grown.values().fold(0.0, |total, n| total + n));
        if !grown.is_empty() {
            // Not a verdict by itself (a lost delivery is), but where to look.
            eprintln!("c1m: the nodes dropped frames during fanout, by reason: {grown:?}");
        }
    }
    if published == 0 {
        // Nothing expected is nothing lost: say so, or a run whose publishers
        // were gone would read "lost 0".
        fanout.problems.push("fanout published nothing in its window (are its publishers gone?)".into());
    }

    Ok(vec![connect, hold, broadcast, fanout])
}

/// The nodes' `corecast_drops_total` summed by reason, or `None` when
/// there are no node control addresses or one cannot be read.
fn node_drops(controls: &[std::net::SocketAddr]) -> Option<BTreeMap<String, f64>> {
    let mut by_reason = BTreeMap::new();
    let all_read = controls.iter().all(|&c| add_metric_by_label(c, "corecast_drops_total", "reason", &mut by_reason));
    (!controls.is_empty() && all_read).then_some(by_reason)
}

/// Connections set up and not lost since.
fn live(p: &Progress) -> u64 {
    p.ready.saturating_sub(p.dropped)
}

/// The workers' drop reasons (`step: reason`) split by step; a reason
/// without a known step prefix stays whole under "hold".
fn split_by_step(reasons: &BTreeMap<String, u64>) -> BTreeMap<&'static str, BTreeMap<String, u64>> {
    let mut out: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
    for (reason, n) in reasons {
        let found = STEPS.iter().find_map(|s| Some((*s, reason.strip_prefix(s)?.strip_prefix(": ")?)));
        let (step, reason) = found.unwrap_or(("hold", reason.as_str()));
        *out.entry(step).or_default().entry(reason.to_string()).or_default() += n;
    }
    out
}

/// User-space and kernel bytes per connection held, from the samples
/// before the first connection and in the middle of the hold.
fn memory_at_hold(summary: &mut Summary, before: Option<Sample>, at: Option<Sample>, held: u64) {
    let (Some(b), Some(a)) = (before, at) else { return };
    let n = held.max(1) as f64;
    summary.server_rss_bytes = Some(a.rss_bytes);
    summary.server_rss_total_bytes_per_conn = Some(a.rss_bytes as f64 / n);
    summary.server_pss_total_bytes_per_conn = Some(a.pss_bytes as f64 / n);
    summary.server_anon_total_bytes_per_conn = Some(a.anon_bytes as f64 / n);
    summary.server_rss_bytes_per_conn = Some((a.rss_bytes as f64 - b.rss_bytes as f64) / n);
    summary.kernel_bytes_per_conn = Some((a.tcp_mem_bytes as f64 - b.tcp_mem_bytes as f64) / n);
    summary.kernel_slab_bytes_per_conn = Some((a.slab_bytes as f64 - b.slab_bytes as f64) / n);
}

/// The nodes' CPU time between two samples, and deliveries per CPU-second.
fn cpu_between(summary: &mut Summary, a: Option<Sample>, b: Option<Sample>, deliveries: u64) {
    if let (Some(a), Some(b)) = (a, b) {
        let cpu = b.cpu_s - a.cpu_s;
        summary.server_cpu_s = Some(cpu);
        summary.deliveries_per_server_cpu_s = (cpu > 0.0).then(|| deliveries as f64 / cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_go_to_the_step_they_happened_in() {
        let reasons: BTreeMap<String, u64> = [
            ("hold: close 4002: idle".to_string(), 3),
            ("fanout: closed by server".to_string(), 1),
            ("hold: closed by server".to_string(), 2),
            ("odd".to_string(), 1),
        ]
        .into();
        let split = split_by_step(&reasons);
        assert_eq!(split["hold"]["close 4002: idle"], 3);
        assert_eq!(split["hold"]["closed by server"], 2);
        assert_eq!(split["hold"]["odd"], 1);
        assert_eq!(split["fanout"]["closed by server"], 1);
        assert!(!split.contains_key("connect"));
    }

    #[test]
    fn memory_is_divided_by_the_connections_held() {
        let before = Sample { rss_bytes: 1_000, slab_bytes: 10_000, ..Sample::default() };
        let at =
            Sample { rss_bytes: 5_000, pss_bytes: 3_000, anon_bytes: 2_000, slab_bytes: 50_000, ..Sample::default() };
        let mut summary = Summary::default();
        memory_at_hold(&mut summary, Some(before), Some(at), 4);
        assert_eq!(summary.server_rss_bytes_per_conn, Some(1_000.0));
        assert_eq!(summary.server_rss_total_bytes_per_conn, Some(1_250.0));
        assert_eq!(summary.server_pss_total_bytes_per_conn, Some(750.0));
        assert_eq!(summary.server_anon_total_bytes_per_conn, Some(500.0));
        assert_eq!(summary.kernel_slab_bytes_per_conn, Some(10_000.0));
    }
}
