//! The result of a scenario: one flat record that becomes the `--json`
//! object (keys fixed by issue 3: `scenario`, `target`, `connections`,
//! `duration_s`, `connect_rate_per_s`, `deliveries_per_s`,
//! `deliveries_per_server_cpu_s`, `latency_us`, `lost`,
//! `server_rss_bytes_per_conn`, `kernel_bytes_per_conn`, null where not
//! measured, plus extras) and the human table. It also carries the run's
//! time series and latency histogram, so a report can be drawn from the
//! JSON alone, and the problems that fail the run ([`crate::verdict`]).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::latency::Percentiles;
use crate::monitor::Point;

/// Figures of one scenario run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// `connect`, `fanout` or `broadcast`.
    pub scenario: String,
    /// `corecast`, `nats`, `mqtt` or `redis`.
    pub target: String,
    /// Connections fully set up (authenticated, subscribed).
    pub connections: u64,
    /// Wall time of the whole run, workers started to results in.
    pub duration_s: f64,
    /// Connections set up per second, first attempt to last ready.
    pub connect_rate_per_s: Option<f64>,
    /// Messages received per second (fanout: in the window; broadcast: until the last).
    pub deliveries_per_s: Option<f64>,
    /// Deliveries per CPU-second the server spent in the same interval.
    pub deliveries_per_server_cpu_s: Option<f64>,
    /// The scenario's latency: connect + handshake (connect), publish to
    /// receive (fanout), admin call to receive (broadcast).
    pub latency_us: Option<Percentiles>,
    /// Messages that should have arrived and did not.
    pub lost: Option<u64>,
    /// Server RSS growth per connection set up.
    pub server_rss_bytes_per_conn: Option<f64>,
    /// Growth of the host's TCP buffer memory (sockstat) per connection.
    pub kernel_bytes_per_conn: Option<f64>,
    /// Growth of the host's kernel slab memory per connection (both socket
    /// ends on loopback, plus anything else the host did meanwhile).
    pub kernel_slab_bytes_per_conn: Option<f64>,
    /// Connections asked for.
    pub connections_target: u64,
    /// Connect + handshake latency.
    pub connect_latency_us: Option<Percentiles>,
    /// Connections that failed while being set up, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Established connections lost before the end, by reason.
    pub disconnected: BTreeMap<String, u64>,
    /// Errors the server sent on established connections, by message.
    pub server_errors: BTreeMap<String, u64>,
    /// Length of the measurement window.
    pub window_s: Option<f64>,
    /// Server CPU seconds in the window (connect: while connections were set up).
    pub server_cpu_s: Option<f64>,
    /// Connect: connections set up per server CPU-second (the server's own
    /// ceiling on the connect + auth rate, whatever limits the harness).
    pub connects_per_server_cpu_s: Option<f64>,
    /// Server RSS after the connections were set up.
    pub server_rss_bytes: Option<u64>,
    /// Messages published in the window.
    pub published: Option<u64>,
    /// Publish rate achieved in the window, all publishers.
    pub publish_rate_per_s: Option<f64>,
    /// Messages the harness could not publish because the socket was backed up.
    pub publish_skipped: Option<u64>,
    /// Deliveries expected in the window (published x members).
    pub expected: Option<u64>,
    /// Deliveries received in the window.
    pub received: Option<u64>,
    /// Sequence numbers skipped, summed over publishers and receivers.
    pub seq_gaps: Option<u64>,
    /// Messages received twice or out of order.
    pub duplicates: Option<u64>,
    /// Server-side drops during the run (corecast `corecast_drops_total`).
    pub server_drops: Option<f64>,
    /// Chat: SEND to SENT (stored) latency.
    pub sent_latency_us: Option<Percentiles>,
    /// Chat: latency of an admin API call (`GET /v1/admin/online`) made
    /// every few milliseconds while the load runs.
    pub admin_latency_us: Option<Percentiles>,
    /// Chat: messages stored (SENT received) per second.
    pub stored_per_s: Option<f64>,
    /// Broadcast: time from the admin call to the last connection having it.
    pub time_to_last_ms: Option<f64>,
    /// Stream rooms: offsets skipped between the positions members saw.
    pub position_gaps: Option<u64>,
    /// Stream rooms: positions a member saw again or out of order.
    pub position_duplicates: Option<u64>,
    /// Stream rooms: times a member saw its room's epoch change.
    pub epoch_changes: Option<u64>,
    /// Stream rooms: PUSH frames or JOINED replies without a position.
    pub unpositioned: Option<u64>,
    /// Recovery storm: members that dropped their connections at once.
    pub storm_members: Option<u64>,
    /// Recovery storm: members whose rejoin was answered JOINED.
    pub rejoined: Option<u64>,
    /// Recovery storm: rejoins the server recovered (`recovered = 1`).
    pub recovered: Option<u64>,
    /// Recovery storm: messages replayed to rejoining members before their JOINED.
    pub replayed: Option<u64>,
    /// Recovery storm: members that caught up (recovered, then received,
    /// with no gap, a message published after their JOINED arrived).
    pub caught_up: Option<u64>,
    /// Recovery storm: drop to JOINED, per member.
    pub rejoin_latency_us: Option<Percentiles>,
    /// Recovery storm: drop to caught up, per member.
    pub catch_up_latency_us: Option<Percentiles>,
    /// Recovery storm: drop until the last member caught up.
    pub time_to_all_caught_up_ms: Option<f64>,
    /// Hold: connections held when memory was sampled (set up and not lost).
    pub held: Option<u64>,
    /// Hold: the nodes' whole resident memory over the connections held
    /// (user space per connection including each node's fixed costs).
    pub server_rss_total_bytes_per_conn: Option<f64>,
    /// Hold: the same with pages the nodes share (their one binary's code)
    /// counted once, not once per node (proportional set size).
    pub server_pss_total_bytes_per_conn: Option<f64>,
    /// Hold: the nodes' anonymous memory over the connections held: their
    /// own memory, fixed costs included, without the mapped code that RSS
    /// counts once per node.
    pub server_anon_total_bytes_per_conn: Option<f64>,
    /// What fails the run: connections failed, refused or closed (and for
    /// c1m, deliveries lost); empty when it passed.
    pub problems: Vec<String>,
    /// The scenario's latency histogram, (ns, count) per recorded bucket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_hist: Vec<(u64, u64)>,
    /// One point per second while the scenario ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Point>,
    /// Worker processes used.
    pub workers: usize,
    /// Source addresses used.
    pub source_ips: Vec<String>,
    /// What the harness found about its limits.
    pub limits: Vec<String>,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn lat(p: Option<Percentiles>) -> String {
    p.map_or_else(
        || "-".into(),
        |p| format!("p50 {:.0} / p90 {:.0} / p99 {:.0} / p99.9 {:.0} / max {:.0}", p.p50, p.p90, p.p99, p.p999, p.max),
    )
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "0".into();
    }
    map.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

/// Source addresses, a long list shortened to its count and ends.
fn sources(ips: &[String]) -> String {
    match ips {
        [first, .., last] if ips.len() > 4 => format!("{} source addresses, {first} .. {last}", ips.len()),
        _ => ips.join(","),
    }
}

impl Summary {
    /// The human-readable table; figures the scenario did not measure are left out.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("target", self.target.clone()),
            ("connections", format!("{} of {}", self.connections, self.connections_target)),
            ("failed", reasons(&self.failed)),
            ("disconnected", reasons(&self.disconnected)),
            ("duration", format!("{:.2} s", self.duration_s)),
            ("connect rate /s", num(self.connect_rate_per_s)),
            ("connect latency us", lat(self.connect_latency_us)),
            ("server CPU s", num(self.server_cpu_s)),
        ];
        if self.scenario == "connect" {
            rows.push(("connects / server CPU s", num(self.connects_per_server_cpu_s)));
        }
        if self.scenario == "chat" {
            rows.push(("stored /s", num(self.stored_per_s)));
            rows.push(("SENT latency us", lat(self.sent_latency_us)));
            rows.push(("admin API latency us", lat(self.admin_latency_us)));
        }
        if self.scenario != "connect" {
            rows.extend([
                ("window s", num(self.window_s)),
                ("published", opt(self.published)),
                ("publish rate /s", num(self.publish_rate_per_s)),
                ("publish skipped", opt(self.publish_skipped)),
                ("expected", opt(self.expected)),
                ("received", opt(self.received)),
                ("deliveries /s", num(self.deliveries_per_s)),
                ("deliveries / server CPU s", num(self.deliveries_per_server_cpu_s)),
                ("latency us", lat(self.latency_us)),
                ("lost", opt(self.lost)),
                ("seq gaps / duplicates", format!("{} / {}", opt(self.seq_gaps), opt(self.duplicates))),
                ("server drops", num(self.server_drops)),
                ("server errors", reasons(&self.server_errors)),
                ("time to last ms", num(self.time_to_last_ms)),
            ]);
        }
        if self.position_gaps.is_some() {
            let positions = [self.position_gaps, self.position_duplicates, self.epoch_changes, self.unpositioned];
            let positions: Vec<String> = positions.into_iter().map(opt).collect();
            rows.push(("positions gap/dup/epoch/none", positions.join(" / ")));
        }
        if self.storm_members.is_some() {
            rows.extend([
                ("storm members", opt(self.storm_members)),
                ("rejoined / recovered", format!("{} / {}", opt(self.rejoined), opt(self.recovered))),
                ("replayed", opt(self.replayed)),
                ("caught up", opt(self.caught_up)),
                ("drop to JOINED us", lat(self.rejoin_latency_us)),
                ("drop to caught up us", lat(self.catch_up_latency_us)),
                ("all caught up after ms", num(self.time_to_all_caught_up_ms)),
            ]);
        }
        if self.held.is_some() {
            rows.push(("held", opt(self.held)));
            rows.push(("server RSS total / conn", num(self.server_rss_total_bytes_per_conn)));
            rows.push(("server PSS total / conn", num(self.server_pss_total_bytes_per_conn)));
            rows.push(("server anonymous total / conn", num(self.server_anon_total_bytes_per_conn)));
        }
        rows.extend([
            ("server RSS bytes", opt(self.server_rss_bytes)),
            ("server RSS bytes / conn", num(self.server_rss_bytes_per_conn)),
            ("kernel TCP mem bytes / conn", num(self.kernel_bytes_per_conn)),
            ("kernel slab bytes / conn", num(self.kernel_slab_bytes_per_conn)),
            ("workers", format!("{} ({})", self.workers, sources(&self.source_ips))),
        ]);
        rows.push(("verdict", if self.problems.is_empty() { "ok".into() } else { self.problems.join("; ") }));
        let mut out = String::new();
        for (k, v) in rows.into_iter().filter(|(_, v)| v != "-" && v != "- / -") {
            let _ = writeln!(out, "{k:<28} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_required_key_with_nulls() {
        let summary = Summary { scenario: "connect".into(), target: "corecast".into(), ..Summary::default() };
        let json = serde_json::to_value(&summary).unwrap();
        for key in [
            "scenario",
            "target",
            "connections",
            "duration_s",
            "connect_rate_per_s",
            "deliveries_per_s",
            "deliveries_per_server_cpu_s",
            "latency_us",
            "lost",
            "server_rss_bytes_per_conn",
            "kernel_bytes_per_conn",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(json["latency_us"].is_null());
        let table = summary.table();
        assert!(table.contains("connections"));
        assert!(!table.contains("latency us"), "unmeasured figures are left out:\n{table}");
        let many: Vec<String> = (2..=31).map(|i| format!("127.0.0.{i}")).collect();
        assert_eq!(sources(&many), "30 source addresses, 127.0.0.2 .. 127.0.0.31");
        assert_eq!(sources(&many[..2]), "127.0.0.2,127.0.0.3");
    }
}
