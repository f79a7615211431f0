//! The time series of a run: once a second, on its own thread, per server
//! node and in total, the connections the node counts (its control API's
//! `GET /health`), its resident memory and its CPU use (`/proc`), the
//! host's kernel socket memory (slab and TCP buffers), how much of the time
//! the host's tasks stalled waiting for CPU, memory or I/O (pressure stall
//! information: a run starved by other work on the host shows there), and
//! the harness's own
//! counters from the workers' progress (connections set up, failed,
//! dropped; connects and deliveries per second). The report draws its
//! charts from these points.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::Progress;
use crate::probe;

/// Time between two points.
const EVERY: Duration = Duration::from_secs(1);
/// Bound on one node's `/health` answer.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);

/// One node at one point in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodePoint {
    /// Connections the node counts (`None`: its `/health` did not answer).
    pub conns: Option<u64>,
    /// Resident memory.
    pub rss_bytes: u64,
    /// CPU use since the previous point, in % of one core.
    pub cpu_pct: f64,
}

/// Everything sampled at one point in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Point {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Per node, in the order the nodes were given.
    pub nodes: Vec<NodePoint>,
    /// Connections the nodes count, summed (`None` without node control
    /// addresses, or when a node did not answer in time: a partial sum
    /// would read as connections lost).
    pub server_conns: Option<u64>,
    /// The nodes' resident memory, summed.
    pub rss_bytes: u64,
    /// The nodes' CPU use, summed, in % of one core.
    pub cpu_pct: f64,
    /// The host's kernel slab memory (socket structures live there).
    pub slab_bytes: u64,
    /// The host's TCP buffer memory (sockstat).
    pub tcp_mem_bytes: u64,
    /// Share of the last 10 s some task on the host waited for CPU, %.
    pub cpu_stall_pct: Option<f64>,
    /// Share of the last 10 s some task on the host waited for memory (reclaim), %.
    pub memory_stall_pct: Option<f64>,
    /// Share of the last 10 s some task on the host waited for I/O, %.
    pub io_stall_pct: Option<f64>,
    /// Harness: connections set up.
    pub ready: u64,
    /// Harness: connections that failed while being set up.
    pub failed: u64,
    /// Harness: connections lost after they were set up.
    pub dropped: u64,
    /// Harness: connections set up per second since the previous point.
    pub connects_per_s: f64,
    /// Harness: room messages and broadcasts received per second since the previous point.
    pub deliveries_per_s: f64,
}

/// The server nodes to watch: their pids and, where known, their control addresses.
#[derive(Debug, Clone, Default)]
pub struct Nodes {
    /// One pid per node.
    pub pids: Vec<u32>,
    /// One control address per node (same order), or none at all.
    pub controls: Vec<SocketAddr>,
}

/// The sampling thread.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Point>>,
}

impl Monitor {
    /// Starts sampling `nodes`, the host and the workers' `progress`.
    pub fn start(nodes: Nodes, progress: Arc<Mutex<Vec<Progress>>>) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut sampler = Sampler::new(nodes);
            let mut points = Vec::new();
            let mut next = started;
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let harness = Progress::sum(progress.lock().unwrap_or_else(|e| e.into_inner()).iter());
                    points.push(sampler.point(started.elapsed().as_secs_f64(), &harness));
                    next += EVERY;
                    // A slow round does not make up for lost points with a burst.
                    next = next.max(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let harness = Progress::sum(progress.lock().unwrap_or_else(|e| e.into_inner()).iter());
            points.push(sampler.point(started.elapsed().as_secs_f64(), &harness));
            points
        });
        Monitor { stop, thread }
    }

    /// Stops sampling and returns the points.
    pub fn finish(self) -> Vec<Point> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Turns samples into points, keeping what rates need from the previous one.
struct Sampler {
    nodes: Nodes,
    agent: ureq::Agent,
    last: Option<(f64, Vec<f64>, Progress)>,
}

impl Sampler {
    fn new(nodes: Nodes) -> Sampler {
        let config = ureq::Agent::config_builder().timeout_global(Some(HEALTH_TIMEOUT)).build();
        Sampler { nodes, agent: config.into(), last: None }
    }

    fn point(&mut self, t_s: f64, harness: &Progress) -> Point {
        let procs: Vec<(u64, f64)> =
            self.nodes.pids.iter().map(|&pid| probe::process(pid).unwrap_or((0, 0.0))).collect();
        let counts = self.health();
        let host = probe::host().unwrap_or_default();
        let (dt, cpu_before, before) = match &self.last {
            Some((t, cpu, p)) => (t_s - t, cpu.clone(), p.clone()),
            None => (0.0, procs.iter().map(|p| p.1).collect(), harness.clone()),
        };
        let per_s = |now: u64, then: u64| if dt > 0.0 { now.saturating_sub(then) as f64 / dt } else { 0.0 };
        let nodes: Vec<NodePoint> = procs
            .iter()
            .enumerate()
            .map(|(i, &(rss_bytes, cpu))| NodePoint {
                conns: counts.get(i).copied().flatten(),
                rss_bytes,
                cpu_pct: if dt > 0.0 { (cpu - cpu_before.get(i).copied().unwrap_or(cpu)) / dt * 100.0 } else { 0.0 },
            })
            .collect();
        let delivered = |p: &Progress| p.received + p.broadcast_received;
        let point = Point {
            t_s,
            server_conns: if counts.is_empty() { None } else { counts.iter().copied().sum() },
            rss_bytes: nodes.iter().map(|n| n.rss_bytes).sum(),
            cpu_pct: nodes.iter().map(|n| n.cpu_pct).sum(),
            nodes,
            slab_bytes: host.slab_bytes,
            tcp_mem_bytes: host.tcp_mem_bytes,
            cpu_stall_pct: probe::pressure("cpu"),
            memory_stall_pct: probe::pressure("memory"),
            io_stall_pct: probe::pressure("io"),
            ready: harness.ready,
            failed: harness.failed,
            dropped: harness.dropped,
            connects_per_s: per_s(harness.ready, before.ready),
            deliveries_per_s: per_s(delivered(harness), delivered(&before)),
        };
        self.last = Some((t_s, procs.iter().map(|p| p.1).collect(), harness.clone()));
        point
    }

    /// Each node's own connection count, asked of all nodes at once.
    fn health(&self) -> Vec<Option<u64>> {
        std::thread::scope(|scope| {
            let asks: Vec<_> = self
                .nodes
                .controls
                .iter()
                .map(|control| scope.spawn(move || node_connections(&self.agent, *control)))
                .collect();
            asks.into_iter().map(|ask| ask.join().ok().flatten()).collect()
        })
    }
}

/// The `connections` of a node's `GET /health`.
fn node_connections(agent: &ureq::Agent, control: SocketAddr) -> Option<u64> {
    let body = agent.get(&format!("http://{control}/health")).call().ok()?.body_mut().read_to_string().ok()?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["connections"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_carry_rates_and_this_process() {
        let me = std::process::id();
        let mut sampler = Sampler::new(Nodes { pids: vec![me, me], controls: Vec::new() });
        let first = sampler.point(0.0, &Progress { ready: 10, ..Progress::default() });
        assert_eq!(first.connects_per_s, 0.0);
        assert_eq!(first.nodes.len(), 2);
        assert!(first.rss_bytes > 0 && first.slab_bytes > 0);
        assert_eq!(first.server_conns, None, "no control address, no server count");
        let harness = Progress { ready: 110, received: 40, broadcast_received: 10, ..Progress::default() };
        let second = sampler.point(2.0, &harness);
        assert_eq!(second.connects_per_s, 50.0);
        assert_eq!(second.deliveries_per_s, 25.0);
        assert_eq!(second.ready, 110);
    }

    #[test]
    fn a_silent_node_counts_as_unknown() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut sampler = Sampler::new(Nodes { pids: Vec::new(), controls: vec![closed] });
        assert_eq!(sampler.health(), vec![None]);
        let point = sampler.point(0.0, &Progress::default());
        assert_eq!(point.server_conns, None, "no partial sums");
    }
}
