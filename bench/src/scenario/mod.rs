//! The scenarios, and what they share: laying out the run over worker
//! processes ([`Run`]), sampling the server, merging worker results
//! ([`Totals`]) and turning them into the common part of a [`Summary`].

pub mod broadcast;
pub mod c1m;
pub mod chat;
pub mod connect;
pub mod fanout;
pub mod recovery;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cli::Common;
use crate::clock::{now_ns, secs_between};
use crate::fleet::Fleet;
use crate::latency::Latency;
use crate::limits::Capacity;
use crate::monitor::{Monitor, Nodes};
use crate::plan::{WorkerPlan, WorkerResult};
use crate::probe::{self, Sample};
use crate::summary::Summary;

/// A scenario run being laid out and driven.
pub struct Run {
    /// Shared options.
    pub common: Common,
    /// Server client address.
    pub addr: SocketAddr,
    /// The nodes dispatch answered with (worker `w` takes node `w mod len`);
    /// empty without `--dispatch`.
    pub nodes: Vec<SocketAddr>,
    /// Workers and source addresses.
    pub capacity: Capacity,
    /// Connections asked for.
    pub connections: usize,
    /// When the run started.
    pub started: Instant,
    /// The run's hard bound.
    pub deadline: Instant,
    run_id: String,
}

/// Parameters of the fan-out part of a plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    /// Publishers in the run.
    pub publishers: usize,
    /// Rooms in the run.
    pub rooms: usize,
    /// Payload bytes.
    pub payload_len: usize,
    /// Per-publisher rate, `None` = max.
    pub rate: Option<f64>,
    /// The rooms have a stream (corecast history).
    pub history: bool,
}

/// The client addresses a dispatch answer lists, best first.
fn dispatched_nodes(url: &str) -> Result<Vec<SocketAddr>> {
    let body = ureq::get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| anyhow::anyhow!("reading the dispatch answer from {url}: {e}"))?;
    let answer: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("dispatch answer from {url}: {e}"))?;
    let nodes: Vec<SocketAddr> = answer["nodes"]
        .as_array()
        .map(|nodes| nodes.iter().filter_map(|n| n["addr"].as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if nodes.is_empty() {
        bail!("dispatch at {url} listed no node");
    }
    eprintln!("dispatch: {} node(s): {nodes:?}", nodes.len());
    Ok(nodes)
}

impl Run {
    /// Checks the options, lays out `connections` and says what the limits allow.
    pub fn new(common: &Common, connections: usize) -> Result<Run> {
        if connections == 0 {
            bail!("nothing to do: 0 connections");
        }
        let mut common = common.clone();
        if common.transport == crate::cli::Transport::Ws {
            if common.target != crate::target::Target::Corecast {
                bail!("--transport ws is for the corecast target only");
            }
            common.target = crate::target::Target::CorecastWs;
        }
        let common = &common;
        if common.target.is_corecast() && common.jwt_secret.is_none() {
            bail!("corecast needs the server's JWT secret: --jwt-secret or CORECAST_JWT_SECRET");
        }
        let capacity = Capacity::plan(
            connections,
            common.workers,
            common.max_conns_per_worker,
            &common.source_ips,
            common.conns_per_source,
        )?;
        for line in capacity.explain(connections) {
            eprintln!("{line}");
        }
        if let Some(limit) = common.server_pid.iter().filter_map(|&pid| probe::max_open_files(pid)).min() {
            let per_node = connections.div_ceil(common.server_pid.len().max(1));
            if per_node as u64 + 64 > limit {
                eprintln!("warning: the server's open-file limit is {limit}; {per_node} connections may not fit");
            }
        }
        let nodes = match &common.dispatch {
            Some(url) => dispatched_nodes(url)?,
            None => Vec::new(),
        };
        if !nodes.is_empty() && capacity.workers < nodes.len() {
            eprintln!("warning: {} workers for {} nodes: some nodes get no connections", capacity.workers, nodes.len());
        }
        let started = Instant::now();
        Ok(Run {
            common: common.clone(),
            addr: common.addr.unwrap_or_else(|| common.target.default_addr()),
            nodes,
            capacity,
            connections,
            started,
            deadline: started + Duration::from_secs(common.max_run_s),
            run_id: format!("bench{}-{}", std::process::id(), now_ns() % 1_000_000),
        })
    }

    /// One plan per worker, connections numbered contiguously.
    pub fn plans(&self, traffic: Traffic) -> Vec<WorkerPlan> {
        let workers = self.capacity.workers;
        let deadline_ns = now_ns() + self.common.max_run_s * 1_000_000_000 + 5_000_000_000;
        let mut first_conn = 0;
        (0..workers)
            .map(|w| {
                let conns = self.capacity.share(self.connections, w);
                let plan = WorkerPlan {
                    worker: w,
                    target: self.common.target,
                    addr: if self.nodes.is_empty() { self.addr } else { self.nodes[w % self.nodes.len()] },
                    ws_path: self.common.ws_path.clone(),
                    source_ips: self.capacity.sources[w].clone(),
                    jwt_secret: self.common.jwt_secret.clone(),
                    run_id: self.run_id.clone(),
                    first_conn,
                    conns,
                    publishers: traffic.publishers,
                    rooms: traffic.rooms,
                    payload_len: traffic.payload_len,
                    rate: traffic.rate,
                    history: traffic.history,
                    connect_rate: self.common.connect_rate.0.map(|r| r / workers as f64),
                    connect_concurrency: self.common.connect_concurrency.max(1),
                    connect_timeout_ms: self.common.connect_timeout_ms,
                    heartbeat_ms: if self.common.no_heartbeat { 0 } else { self.common.heartbeat_ms.max(100) },
                    deadline_ns,
                };
                first_conn += conns;
                plan
            })
            .collect()
    }

    /// A server sample, when `--server-pid` was given and the server is readable.
    pub fn sample(&self) -> Option<Sample> {
        if self.common.server_pid.is_empty() {
            return None;
        }
        match probe::sample(&self.common.server_pid) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("warning: cannot sample the server: {e:#}");
                None
            }
        }
    }

    /// Starts the per-second time series of the server nodes, the host and `fleet`.
    pub fn monitor(&self, fleet: &Fleet) -> Monitor {
        let nodes = Nodes { pids: self.common.server_pid.clone(), controls: self.common.node_control.clone() };
        Monitor::start(nodes, fleet.progress_handle())
    }

    /// An instant `ns` on the monotonic clock corresponds to.
    pub fn instant_at(ns: u64) -> Instant {
        let now = now_ns();
        Instant::now() + Duration::from_nanos(ns.saturating_sub(now))
    }

    /// The summary fields every scenario fills the same way.
    pub fn base_summary(&self, scenario: &str, totals: &Totals) -> Summary {
        Summary {
            scenario: scenario.into(),
            target: self.common.target.name().into(),
            connections: totals.result.ready,
            duration_s: self.started.elapsed().as_secs_f64(),
            connect_rate_per_s: totals.connect_rate(),
            connect_latency_us: totals.connect_latency.percentiles(),
            failed: totals.result.failed.clone(),
            disconnected: totals.result.disconnected.clone(),
            server_errors: totals.result.server_errors.clone(),
            connections_target: self.connections as u64,
            workers: self.capacity.workers,
            source_ips: self.capacity.distinct_sources().iter().map(|ip| ip.to_string()).collect(),
            limits: self.capacity.explain(self.connections),
            ..Summary::default()
        }
    }
}

/// Fills the per-connection memory figures from samples before and after
/// the connections were set up.
pub fn memory_per_conn(summary: &mut Summary, before: Option<Sample>, after: Option<Sample>) {
    let (Some(b), Some(a)) = (before, after) else { return };
    let n = summary.connections.max(1) as f64;
    summary.server_rss_bytes = Some(a.rss_bytes);
    summary.server_rss_bytes_per_conn = Some((a.rss_bytes as f64 - b.rss_bytes as f64) / n);
    summary.kernel_bytes_per_conn = Some((a.tcp_mem_bytes as f64 - b.tcp_mem_bytes as f64) / n);
    summary.kernel_slab_bytes_per_conn = Some((a.slab_bytes as f64 - b.slab_bytes as f64) / n);
}

/// The stream position checks of a run in stream rooms.
pub fn stream_figures(summary: &mut Summary, totals: &Totals) {
    let s = &totals.result.stream;
    summary.position_gaps = Some(s.position_gaps);
    summary.position_duplicates = Some(s.position_duplicates);
    summary.epoch_changes = Some(s.epoch_changes);
    summary.unpositioned = Some(s.unpositioned);
}

/// Every worker's result merged.
#[derive(Default)]
pub struct Totals {
    /// Sums, minimum first attempt, maximum last ready, merged maps.
    pub result: WorkerResult,
    /// Merged connect latency.
    pub connect_latency: Latency,
    /// Merged delivery latency of room messages.
    pub latency: Latency,
    /// Merged latency of the watched broadcast.
    pub broadcast_latency: Latency,
    /// Recovery storm: merged drop-to-JOINED latency.
    pub rejoin_latency: Latency,
    /// Recovery storm: merged drop-to-caught-up latency.
    pub catch_up_latency: Latency,
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl Totals {
    /// Merges worker results.
    pub fn merge(results: &[WorkerResult]) -> Totals {
        let mut t = Totals::default();
        for r in results {
            let s = &mut t.result;
            s.attempted += r.attempted;
            s.ready += r.ready;
            merge(&mut s.failed, &r.failed);
            merge(&mut s.disconnected, &r.disconnected);
            merge(&mut s.server_errors, &r.server_errors);
            if r.first_attempt_ns != 0 && (s.first_attempt_ns == 0 || r.first_attempt_ns < s.first_attempt_ns) {
                s.first_attempt_ns = r.first_attempt_ns;
            }
            s.last_ready_ns = s.last_ready_ns.max(r.last_ready_ns);
            s.received_in_window += r.received_in_window;
            s.received_total += r.received_total;
            s.seq_gaps += r.seq_gaps;
            s.duplicates += r.duplicates;
            if s.sent_in_window_per_room.len() < r.sent_in_window_per_room.len() {
                s.sent_in_window_per_room.resize(r.sent_in_window_per_room.len(), 0);
            }
            for (i, n) in r.sent_in_window_per_room.iter().enumerate() {
                s.sent_in_window_per_room[i] += n;
            }
            s.sent_total += r.sent_total;
            s.publish_skipped += r.publish_skipped;
            s.broadcast_received += r.broadcast_received;
            s.broadcast_last_ns = s.broadcast_last_ns.max(r.broadcast_last_ns);
            s.stream.add(&r.stream);
            t.connect_latency.add_pairs(&r.connect_latency);
            t.latency.add_pairs(&r.latency);
            t.broadcast_latency.add_pairs(&r.broadcast_latency);
            t.rejoin_latency.add_pairs(&r.rejoin_latency);
            t.catch_up_latency.add_pairs(&r.catch_up_latency);
        }
        t
    }

    /// Connections set up per second, first attempt to last ready.
    pub fn connect_rate(&self) -> Option<f64> {
        let r = &self.result;
        let secs = secs_between(r.first_attempt_ns, r.last_ready_ns);
        (r.ready > 0 && secs > 0.0).then(|| r.ready as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_merge_sums_and_extremes() {
        let a = WorkerResult {
            ready: 2,
            first_attempt_ns: 100,
            last_ready_ns: 1_000_000_100,
            sent_in_window_per_room: vec![1, 2],
            failed: [("x".to_string(), 1)].into(),
            ..Default::default()
        };
        let b = WorkerResult {
            ready: 3,
            first_attempt_ns: 50,
            last_ready_ns: 900,
            sent_in_window_per_room: vec![10, 20],
            failed: [("x".to_string(), 2)].into(),
            ..Default::default()
        };
        let t = Totals::merge(&[a, b]);
        assert_eq!(t.result.ready, 5);
        assert_eq!(t.result.first_attempt_ns, 50);
        assert_eq!(t.result.sent_in_window_per_room, vec![11, 22]);
        assert_eq!(t.result.failed["x"], 3);
        let rate = t.connect_rate().unwrap();
        assert!((rate - 5.0 / 1.00000005).abs() < 1e-6);
    }
}
