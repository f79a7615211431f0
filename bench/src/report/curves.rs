//! The lines of the report's charts, computed from the results: the ramp,
//! memory against connections, CPU and rates over time from a run's time
//! series; the broadcast's delivery curve (how many connections had it
//! after t ms) and the fan-out latency distribution (share of deliveries
//! at or below a latency) from the recorded latency histograms.

use crate::monitor::Point;

/// One named line: (x, y) points in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

const MB: f64 = 1024.0 * 1024.0;

fn line(name: String, series: &[Point], xy: impl Fn(&Point) -> Option<(f64, f64)>) -> Option<Line> {
    let points: Vec<(f64, f64)> = series.iter().filter_map(xy).collect();
    (!points.is_empty()).then_some(Line { name, points })
}

/// Connections over time: as the harness counts them, and as the nodes do.
pub fn ramp(label: &str, series: &[Point]) -> Vec<Line> {
    [
        line(format!("{label}: harness ready"), series, |p| Some((p.t_s, p.ready as f64))),
        line(format!("{label}: nodes count"), series, |p| Some((p.t_s, p.server_conns? as f64))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Growth of the nodes' RSS and of the kernel's slab since the first point
/// (MiB) against the connections held, while they ramp up: up to the first
/// point with the most connections. (Growth, not totals: the host's slab is
/// hundreds of MiB before the first connection.)
pub fn memory(label: &str, series: &[Point]) -> Vec<Line> {
    let held = |p: &Point| p.server_conns.unwrap_or(p.ready.saturating_sub(p.dropped));
    let peak = series.iter().map(held).max().unwrap_or(0);
    let series = series.iter().position(|p| held(p) == peak).map_or(series, |i| &series[..=i]);
    let conns = |p: &Point| held(p) as f64;
    let first = series.first().cloned().unwrap_or_default();
    let growth = |now: u64, then: u64| (now as f64 - then as f64) / MB;
    [
        line(format!("{label}: nodes RSS"), series, |p| Some((conns(p), growth(p.rss_bytes, first.rss_bytes)))),
        line(format!("{label}: kernel slab"), series, |p| Some((conns(p), growth(p.slab_bytes, first.slab_bytes)))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The nodes' CPU over time (% of one core), in total and the busiest node.
pub fn cpu(label: &str, series: &[Point]) -> Vec<Line> {
    let busiest = |p: &Point| p.nodes.iter().map(|n| n.cpu_pct).fold(0.0, f64::max);
    let mut lines = vec![line(format!("{label}: all nodes"), series, |p| Some((p.t_s, p.cpu_pct)))];
    if series.iter().any(|p| p.nodes.len() > 1) {
        lines.push(line(format!("{label}: busiest node"), series, |p| Some((p.t_s, busiest(p)))));
    }
    lines.into_iter().flatten().collect()
}

/// How much of the time the host's tasks stalled for CPU, memory and I/O.
pub fn pressure(label: &str, series: &[Point]) -> Vec<Line> {
    [
        line(format!("{label}: CPU stall"), series, |p| Some((p.t_s, p.cpu_stall_pct?))),
        line(format!("{label}: memory stall"), series, |p| Some((p.t_s, p.memory_stall_pct?))),
        line(format!("{label}: I/O stall"), series, |p| Some((p.t_s, p.io_stall_pct?))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The harness's connects and deliveries per second over time.
pub fn rates(label: &str, series: &[Point]) -> Vec<Line> {
    [
        line(format!("{label}: connects/s"), series, |p| Some((p.t_s, p.connects_per_s))),
        line(format!("{label}: deliveries/s"), series, |p| Some((p.t_s, p.deliveries_per_s))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Cumulative count against latency in ms, from (ns, count) buckets; with
/// `share`, in % of all samples.
pub fn cumulative(name: String, hist: &[(u64, u64)], share: bool) -> Option<Line> {
    let total: u64 = hist.iter().map(|b| b.1).sum();
    if total == 0 {
        return None;
    }
    let mut sorted = hist.to_vec();
    sorted.sort_unstable();
    let mut seen = 0u64;
    let mut points = vec![(0.0, 0.0)];
    for (ns, count) in sorted {
        seen += count;
        let y = if share { seen as f64 * 100.0 / total as f64 } else { seen as f64 };
        points.push((ns as f64 / 1e6, y));
    }
    Some(Line { name, points })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::NodePoint;

    fn point(t_s: f64, ready: u64, server: Option<u64>) -> Point {
        Point {
            t_s,
            ready,
            server_conns: server,
            rss_bytes: (ready + 7) * 1024 * 1024,
            nodes: vec![
                NodePoint { cpu_pct: 10.0, ..NodePoint::default() },
                NodePoint { cpu_pct: 30.0, ..NodePoint::default() },
            ],
            cpu_pct: 40.0,
            ..Point::default()
        }
    }

    #[test]
    fn series_become_named_lines() {
        let series = [point(0.0, 0, Some(0)), point(1.0, 5, Some(4)), point(2.0, 5, Some(4)), point(3.0, 0, Some(0))];
        let lines = ramp("corecast", &series);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].name, "corecast: nodes count");
        assert_eq!(lines[1].points, vec![(0.0, 0.0), (1.0, 4.0), (2.0, 4.0), (3.0, 0.0)]);
        let memory = memory("corecast", &series);
        assert_eq!(memory[0].points, vec![(0.0, 0.0), (4.0, 5.0)], "x: the nodes' count, up to the peak; y: MiB grown");
        let cpu = cpu("corecast", &series);
        assert_eq!(cpu[1].points[0], (0.0, 30.0), "the busiest node");
        assert!(ramp("x", &[point(0.0, 1, None)]).iter().all(|l| !l.name.contains("nodes")));
        let stalled = Point { memory_stall_pct: Some(76.0), ..Point::default() };
        let lines = pressure("c", &[stalled]);
        assert_eq!(lines.len(), 1, "only what the kernel reported");
        assert_eq!(lines[0].points, vec![(0.0, 76.0)]);
    }

    #[test]
    fn cumulative_curves_end_at_the_total() {
        let hist = [(3_000_000, 2), (1_000_000, 1), (2_000_000, 1)];
        let count = cumulative("b".into(), &hist, false).unwrap();
        assert_eq!(count.points, vec![(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 4.0)]);
        let share = cumulative("f".into(), &hist, true).unwrap();
        assert_eq!(share.points.last(), Some(&(3.0, 100.0)));
        assert!(cumulative("none".into(), &[], true).is_none());
    }
}
