//! Server-side measurements taken from `/proc` while a scenario runs, for a
//! server on this host given by `--server-pid`: resident memory
//! (`/proc/PID/status` VmRSS), proportional memory (`/proc/PID/smaps_rollup`
//! Pss: pages shared between processes, such as the code of many nodes
//! running one binary, divided among them; and Anonymous: the process's own
//! memory, none of it file-backed code), CPU time (`/proc/PID/stat` utime + stime),
//! the kernel's TCP buffer memory (`/proc/net/sockstat`, pages) and the
//! kernel's slab memory (`/proc/meminfo`, where socket structures live).
//! Differences between two samples give per-connection and per-CPU-second
//! figures. The kernel figures are host-wide: on loopback they include the
//! harness's own socket ends.

use anyhow::{anyhow, Context, Result};

/// One sample of the server (summed over its processes) and the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Server resident set size in bytes.
    pub rss_bytes: u64,
    /// Server proportional set size in bytes: resident memory with every
    /// shared page counted once over the processes that share it.
    pub pss_bytes: u64,
    /// Server anonymous memory in bytes: heap, stacks and other memory
    /// that is the processes' own, without the pages of files they map
    /// (their code).
    pub anon_bytes: u64,
    /// Server user + system CPU time in seconds.
    pub cpu_s: f64,
    /// Host-wide TCP socket buffer memory in bytes (sockstat `mem` × page size).
    pub tcp_mem_bytes: u64,
    /// Host-wide kernel slab memory in bytes (meminfo `Slab`).
    pub slab_bytes: u64,
}

/// Samples the processes `pids` (summed: the nodes of a one-host cluster)
/// and the host.
pub fn sample(pids: &[u32]) -> Result<Sample> {
    let mut sample = host()?;
    for &pid in pids {
        let (rss_bytes, cpu_s) = process(pid)?;
        sample.rss_bytes += rss_bytes;
        let (pss_bytes, anon_bytes) = proportional_set(pid)?;
        sample.pss_bytes += pss_bytes;
        sample.anon_bytes += anon_bytes;
        sample.cpu_s += cpu_s;
    }
    Ok(sample)
}

/// Resident bytes and CPU seconds (user + system) of process `pid`.
pub fn process(pid: u32) -> Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("server pid {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("server pid {pid}"))?;
    let rss = kib_field(&status, "VmRSS:").ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))? * 1024;
    let cpu = cpu_seconds(&stat).ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    Ok((rss, cpu))
}

/// Proportional set size and anonymous memory in bytes of process `pid`.
pub fn proportional_set(pid: u32) -> Result<(u64, u64)> {
    let rollup =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).with_context(|| format!("server pid {pid}"))?;
    let pss = kib_field(&rollup, "Pss:").ok_or_else(|| anyhow!("no Pss for pid {pid}"))?;
    let anon = kib_field(&rollup, "Anonymous:").ok_or_else(|| anyhow!("no Anonymous for pid {pid}"))?;
    Ok((pss * 1024, anon * 1024))
}

/// The host's kernel socket memory: TCP buffers (sockstat) and slab (meminfo).
pub fn host() -> Result<Sample> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").context("/proc/net/sockstat")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
    Ok(Sample {
        tcp_mem_bytes: tcp_mem_pages(&sockstat).ok_or_else(|| anyhow!("no TCP mem in /proc/net/sockstat"))?
            * page_size(),
        slab_bytes: kib_field(&meminfo, "Slab:").unwrap_or(0) * 1024,
        ..Sample::default()
    })
}

/// The share of the last 10 s in which some task waited for `resource`
/// (`cpu`, `memory` or `io`), in %, from the kernel's pressure stall
/// information (`/proc/pressure`); `None` where the kernel has none.
pub fn pressure(resource: &str) -> Option<f64> {
    some_avg10(&std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?)
}

fn some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace().find_map(|w| w.strip_prefix("avg10="))?.parse().ok()
}

/// The server's open-file limit (soft), from `/proc/PID/limits`.
pub fn max_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime (fields 14 and 15) in seconds; the command name in field 2
/// may hold spaces and parentheses, so fields are counted after the last ')'.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

fn tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "1234 (my (odd) server) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(cpu_seconds(stat), Some(300.0 / ticks));
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t   1234 kB\n", "VmRSS:"), Some(1234));
        let sockstat = "sockets: used 10\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 42\nUDP: inuse 1 mem 3\n";
        assert_eq!(tcp_mem_pages(sockstat), Some(42));
        let psi =
            "some avg10=76.43 avg60=76.52 avg300=70.76 total=1\nfull avg10=20.51 avg60=16.14 avg300=15.74 total=2\n";
        assert_eq!(some_avg10(psi), Some(76.43));
        assert_eq!(some_avg10("full avg10=1.00\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let (one, two) = (sample(&[me]).unwrap(), sample(&[me, me]).unwrap());
        assert!(one.rss_bytes > 0 && two.rss_bytes >= one.rss_bytes, "two pids are summed");
        assert!(one.pss_bytes > 0 && one.pss_bytes <= one.rss_bytes, "PSS never exceeds RSS");
        assert!(one.anon_bytes > 0 && one.anon_bytes <= one.rss_bytes, "anonymous memory is part of RSS");
        assert!(one.slab_bytes > 0);
        assert!(max_open_files(std::process::id()).is_some());
    }
}
