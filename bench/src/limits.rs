//! How many connections this host lets the harness open, and how they are
//! spread: the open-file limit (`RLIMIT_NOFILE`) caps sockets per process, so
//! connections are split over worker processes of at most
//! `--max-conns-per-worker` sockets each; the ephemeral port range caps
//! connections from one source address to one server address, so each
//! worker binds to its own loopback source address (127.0.0.2, 127.0.0.3,
//! ...) with `IP_BIND_ADDRESS_NO_PORT`, letting the kernel pick the port per
//! 4-tuple at connect time. [`Capacity::explain`] says what was found and why.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

/// File descriptors each worker keeps for itself (stdio, epoll, allocator).
const RESERVED_FDS: u64 = 64;

/// Where the source addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceIps {
    /// 127.0.0.2, 127.0.0.3, ...: at least one per worker and enough that
    /// none carries more than `--conns-per-source` connections.
    Auto,
    /// Let the kernel choose (no bind): one source address for everything.
    None,
    /// These addresses, dealt out to the workers round-robin.
    List(Vec<Ipv4Addr>),
}

impl std::str::FromStr for SourceIps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SourceIps::Auto),
            "none" => Ok(SourceIps::None),
            list => list
                .split(',')
                .map(|ip| ip.trim().parse::<Ipv4Addr>().map_err(|e| format!("{ip}: {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(SourceIps::List),
        }
    }
}

/// What the host allows and how a run is laid out.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// Soft and hard `RLIMIT_NOFILE` of this process (workers inherit them).
    pub nofile: (u64, u64),
    /// Ephemeral port range.
    pub ports: (u16, u16),
    /// Sockets per worker process.
    pub per_worker: usize,
    /// Worker processes.
    pub workers: usize,
    /// Source addresses of each worker, used round-robin per connection
    /// (empty: unbound, the kernel's choice).
    pub sources: Vec<Vec<Ipv4Addr>>,
}

impl Capacity {
    /// Lays out `connections` sockets. `workers` forces a worker count (at
    /// least the minimum the limits need). With automatic sources, each
    /// address carries at most `per_source` connections: the kernel's
    /// search for a free source port slows down sharply as one address's
    /// port range fills up, which caps the connect rate.
    pub fn plan(
        connections: usize,
        workers: Option<usize>,
        max_per_worker: usize,
        sources: &SourceIps,
        per_source: usize,
    ) -> Result<Capacity> {
        let nofile = nofile_limits();
        let ports = port_range();
        let by_files = nofile.0.saturating_sub(RESERVED_FDS) as usize;
        let per_worker = max_per_worker.min(by_files).max(1);
        let needed = connections.div_ceil(per_worker).max(1);
        let workers = workers.unwrap_or(needed).max(needed);
        let share = |w: usize| connections / workers + usize::from(w < connections % workers);
        let sources: Vec<Vec<Ipv4Addr>> = match sources {
            SourceIps::Auto => {
                let mut next = 0;
                let mut per_worker_sources = Vec::with_capacity(workers);
                for w in 0..workers {
                    let count = share(w).div_ceil(per_source.max(1)).max(1);
                    per_worker_sources.push((next..next + count).map(loopback_source).collect::<Result<Vec<_>>>()?);
                    next += count;
                }
                per_worker_sources
            }
            SourceIps::None => vec![Vec::new(); workers],
            SourceIps::List(list) if list.is_empty() => bail!("--source-ips: empty list"),
            SourceIps::List(list) if list.len() < workers => (0..workers).map(|w| vec![list[w % list.len()]]).collect(),
            SourceIps::List(list) => {
                (0..workers).map(|w| list.iter().skip(w).step_by(workers).copied().collect()).collect()
            }
        };
        let capacity = Capacity { nofile, ports, per_worker, workers, sources };
        let busiest = capacity.max_conns_per_source(connections);
        if busiest > capacity.port_count() {
            bail!(
                "{busiest} connections would share one source address but only {} ephemeral ports exist \
                 ({}-{}); give more addresses with --source-ips or use auto",
                capacity.port_count(),
                ports.0,
                ports.1
            );
        }
        Ok(capacity)
    }

    /// Ports in the ephemeral range.
    pub fn port_count(&self) -> usize {
        (self.ports.1 as usize + 1).saturating_sub(self.ports.0 as usize)
    }

    /// Connections of worker `w` when `total` are spread evenly.
    pub fn share(&self, total: usize, w: usize) -> usize {
        total / self.workers + usize::from(w < total % self.workers)
    }

    /// Every distinct source address, in order.
    pub fn distinct_sources(&self) -> Vec<Ipv4Addr> {
        let set: std::collections::BTreeSet<Ipv4Addr> = self.sources.iter().flatten().copied().collect();
        set.into_iter().collect()
    }

    fn max_conns_per_source(&self, total: usize) -> usize {
        let mut per: std::collections::HashMap<Option<Ipv4Addr>, usize> = Default::default();
        for (w, sources) in self.sources.iter().enumerate() {
            let share = self.share(total, w);
            if sources.is_empty() {
                *per.entry(None).or_default() += share;
            }
            for (i, ip) in sources.iter().enumerate() {
                *per.entry(Some(*ip)).or_default() += share / sources.len() + usize::from(i < share % sources.len());
            }
        }
        per.values().copied().max().unwrap_or(0)
    }

    /// Lines telling what limits were found and what they allow.
    pub fn explain(&self, connections: usize) -> Vec<String> {
        let distinct = self.distinct_sources();
        let sources = match distinct.as_slice() {
            [] => "unbound (kernel's choice)".to_string(),
            [one] => one.to_string(),
            [first, .., last] => format!("{first}..{last} ({})", distinct.len()),
        };
        vec![
            format!(
                "limits: RLIMIT_NOFILE soft {} hard {} -> at most {} sockets per worker process ({} fds kept back)",
                self.nofile.0, self.nofile.1, self.per_worker, RESERVED_FDS
            ),
            format!(
                "limits: ephemeral ports {}-{} = {} connections per source address to one server address",
                self.ports.0,
                self.ports.1,
                self.port_count()
            ),
            format!(
                "plan: {connections} connections -> {} worker process(es), source addresses {sources}, \
                 at most {} connections per address",
                self.workers,
                self.max_conns_per_source(connections)
            ),
            format!(
                "reach: {} source address(es) x {} ports allow {} connections to one server port; \
                 127.0.0.0/8 offers ~65,000 more addresses, at {} sockets per worker process",
                distinct.len().max(1),
                self.port_count(),
                distinct.len().max(1) * self.port_count(),
                self.per_worker
            ),
        ]
    }
}

fn loopback_source(w: usize) -> Result<Ipv4Addr> {
    let n = w + 2;
    if n > 254 * 254 {
        bail!("too many workers for automatic loopback source addresses");
    }
    Ok(Ipv4Addr::new(127, 0, (n / 254) as u8, (n % 254) as u8 + u8::from(n >= 254)))
}

/// Soft and hard `RLIMIT_NOFILE`.
pub fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (1024, 1024);
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Raises the soft open-file limit to the hard one (workers call this).
pub fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn port_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
        _ => (32768, 60999),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_connections_over_workers_and_sources() {
        let cap = Capacity::plan(40_000, None, 18_000, &SourceIps::Auto, 4_000).unwrap();
        assert_eq!(cap.workers, 3);
        assert_eq!((0..3).map(|w| cap.share(40_000, w)).sum::<usize>(), 40_000);
        assert!((0..3).all(|w| cap.share(40_000, w) <= 18_000));
        assert_eq!(cap.distinct_sources().len(), 12);
        assert_eq!(cap.sources[0][0], Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(cap.sources[0][1], Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(cap.sources[2][0], Ipv4Addr::new(127, 0, 0, 10));
        assert!(cap.max_conns_per_source(40_000) <= 4_000);
    }

    #[test]
    fn refuses_more_connections_than_one_address_has_ports() {
        let one = SourceIps::List(vec![Ipv4Addr::new(127, 0, 0, 2)]);
        let ports = Capacity::plan(1, None, 18_000, &one, 4_000).unwrap().port_count();
        assert!(Capacity::plan(ports + 1, None, 1_000, &one, 4_000).is_err());
        let none = Capacity::plan(100, Some(2), 18_000, &SourceIps::None, 4_000).unwrap();
        assert!(none.sources.iter().all(Vec::is_empty));
    }

    #[test]
    fn automatic_sources_skip_network_and_broadcast_octets() {
        assert_eq!(loopback_source(252).unwrap(), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(loopback_source(251).unwrap(), Ipv4Addr::new(127, 0, 0, 253));
    }

    #[test]
    fn parses_source_lists() {
        assert_eq!("auto".parse::<SourceIps>(), Ok(SourceIps::Auto));
        assert!("127.0.0.2,nope".parse::<SourceIps>().is_err());
    }
}
