//! A network namespace of the test's own, joined to the test's namespace by
//! veth pairs, for partition tests: a process started in it (see
//! [`Host`](super::Host)) reaches the others only over those pairs, and
//! taking a pair's link down cuts that path while the rest keeps working.
//! Each pair is a /30 in 10.231.0.0/16: the test's end is `.1`, the
//! namespace's `.2`. Names and subnets derive from the test's process id;
//! the namespace (with its pairs) is deleted when dropped, also on panic,
//! and those left behind by test processes that died are deleted first.
//! Needs root and `ip` (iproute2); without them it panics naming what is
//! missing.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use super::Host;

/// Name prefix of the namespaces made here; the process id follows.
const PREFIX: &str = "ccpart";

/// One veth pair between the test's namespace and the partition namespace.
pub struct Veth {
    /// The test's end (also the pair's address there).
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    /// The namespace's end.
    pub ns_if: String,
    pub ns_ip: Ipv4Addr,
}

/// A network namespace with veth pairs, deleted when dropped.
pub struct Netns {
    pub name: String,
    pub links: Vec<Veth>,
}

/// Runs `ip args`; its stderr as the error when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Panics, naming the missing part, unless this process can make network
/// namespaces: root, and `ip` from iproute2.
fn require_root_and_ip() {
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "missing part: root (network namespaces need it); this test runs as uid {euid}");
    let found = Command::new("ip").arg("-V").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "missing part: `ip` (iproute2) is not installed (apt-get install -y iproute2; .ci/run installs it)"
    );
}

/// Deletes namespaces of this fixture whose test process is gone.
fn delete_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Netns {
    /// A fresh namespace (loopback up) with `pairs` veth pairs to the
    /// test's namespace, all up.
    pub fn create(pairs: usize) -> Netns {
        require_root_and_ip();
        delete_leftovers();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}");
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name]).unwrap_or_else(|e| panic!("missing part: a network namespace: {e}"));
        let mut netns = Netns { name, links: Vec::new() };
        netns.exec(&["link", "set", "lo", "up"]);
        // 64 blocks of four /24s: the pairs of one test process share a block.
        let block = (pid % 64) * 4;
        for i in 0..pairs {
            let octet = (block + i as u32) as u8;
            let veth = Veth {
                host_if: format!("cc{pid}h{i}"),
                host_ip: Ipv4Addr::new(10, 231, octet, 1),
                ns_if: format!("cc{pid}n{i}"),
                ns_ip: Ipv4Addr::new(10, 231, octet, 2),
            };
            let _ = ip(&["link", "del", &veth.host_if]);
            let setup = || -> Result<(), String> {
                ip(&["link", "add", &veth.host_if, "type", "veth", "peer", "name", &veth.ns_if])?;
                ip(&["link", "set", &veth.ns_if, "netns", &netns.name])?;
                ip(&["addr", "add", &format!("{}/30", veth.host_ip), "dev", &veth.host_if])?;
                ip(&["link", "set", &veth.host_if, "up"])?;
                ip(&["-n", &netns.name, "addr", "add", &format!("{}/30", veth.ns_ip), "dev", &veth.ns_if])?;
                ip(&["-n", &netns.name, "link", "set", &veth.ns_if, "up"])
            };
            setup().unwrap_or_else(|e| panic!("missing part: a veth pair into the namespace: {e}"));
            netns.links.push(veth);
        }
        netns
    }

    /// Runs `ip -n <namespace> args`, panicking if it fails.
    fn exec(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Where a process started in the namespace listens: pair `pair`'s
    /// address there.
    pub fn host(&self, pair: usize) -> Host {
        Host { ip: IpAddr::V4(self.links[pair].ns_ip), netns: Some(self.name.clone()) }
    }

    /// The test's end of pair `pair`, an address processes in the
    /// namespace reach over it.
    pub fn outside(&self, pair: usize) -> IpAddr {
        IpAddr::V4(self.links[pair].host_ip)
    }

    /// Takes the namespace's end of pair `pair` down (cutting every
    /// connection over it, silently: packets are lost, nothing is reset)
    /// or up again.
    pub fn set_link(&self, pair: usize, up: bool) {
        self.exec(&["link", "set", &self.links[pair].ns_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the pairs' ends in it, and with
        // them the test's ends.
        let _ = ip(&["netns", "del", &self.name]);
        for veth in &self.links {
            let _ = ip(&["link", "del", &veth.host_if]);
        }
    }
}
