//! A Sentinel-managed Redis on loopback — a primary
//! `redis-server`, one replica (`replicaof`) and three `redis-sentinel`
//! processes (quorum 2) on free ports, their config files in a temp dir;
//! everything killed when dropped. It talks RESP itself ([`query`]).
//!
//! A missing `redis-server` or `redis-sentinel` fails the test naming it:
//! a failover test must never pass without having run.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// The service name the sentinels monitor.
pub const SERVICE: &str = "m";
/// How long a primary may not answer before a sentinel thinks it down. Not
/// smaller: on a loaded test machine a sentinel could then fail over a
/// primary that is only slow — or fail over again, onto a replica still
/// syncing (one full run under heavy load lost the first writes that way,
/// at 1 s).
const DOWN_AFTER_MS: u32 = 2_000;
/// Longest wait for the fixture to be ready, or for a failover.
const READY: Duration = Duration::from_secs(60);

/// Fails the test unless `binary` runs here.
fn require(binary: &str) {
    let found = Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "{binary} not found: the Sentinel failover tests need it (apt-get install -y redis-server redis-sentinel; \
         .ci/run installs both)"
    );
}

/// A primary, a replica and three sentinels.
pub struct Sentinels {
    /// The two data servers; which one is primary changes with failovers.
    pub servers: Vec<RedisServer>,
    /// The three sentinels' ports.
    pub ports: Vec<u16>,
    sentinels: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    /// Starts everything and waits until every sentinel knows the primary,
    /// its replica (in sync) and the two other sentinels.
    pub fn start() -> Sentinels {
        require("redis-server");
        require("redis-sentinel");
        let primary = RedisServer::start();
        let replica = RedisServer::start_replica_of(primary.port);
        wait_until("the replica is in sync", || {
            query(replica.port, &["INFO", "replication"])
                .is_ok_and(|info| info.concat().contains("master_link_status:up"))
        });
        let dir = tempfile::tempdir().expect("temp dir for the sentinels");
        let ports = crate::ports::free_ports(3);
        let sentinels = ports.iter().map(|&port| spawn_sentinel(dir.path(), port, primary.port)).collect();
        let fixture = Sentinels { servers: vec![primary, replica], ports, sentinels, _dir: dir };
        for &port in &fixture.ports {
            wait_until("every sentinel sees the replica and the other sentinels", || {
                master_fields(port).is_some_and(|f| {
                    field(&f, "num-slaves") == Some("1") && field(&f, "num-other-sentinels") == Some("2")
                })
            });
        }
        fixture
    }

    /// `redis+sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C/m`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The primary's port as the first sentinel that answers names it.
    pub fn primary_port(&self) -> u16 {
        self.ports.iter().find_map(|&port| named_primary(port)).expect("no sentinel names a primary")
    }

    /// The data server on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers.iter_mut().find(|s| s.port == port).expect("a data server on that port")
    }

    /// Waits until the replica has everything the primary has (so nothing
    /// written so far can be lost in a failover).
    pub fn wait_replicated(&self) {
        let primary = self.primary_port();
        let replica = self.servers.iter().map(|s| s.port).find(|&p| p != primary).unwrap();
        wait_until("the replica has every write of the primary", || {
            let offset = |port: u16, key: &str| {
                let info = query(port, &["INFO", "replication"]).ok()?.concat();
                info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<u64>().ok())
            };
            let primary_offset = offset(primary, "master_repl_offset:");
            primary_offset.is_some() && primary_offset == offset(replica, "slave_repl_offset:")
        });
    }

    /// SIGKILLs the current primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        self.server(port).kill();
        port
    }

    /// Waits until every sentinel names a primary other than `old`, and
    /// that primary answers as master; returns its port.
    pub fn wait_failover(&self, old: u16) -> u16 {
        let mut promoted = 0;
        wait_until("every sentinel names the promoted replica", || {
            let named: Vec<Option<u16>> = self.ports.iter().map(|&port| named_primary(port)).collect();
            match named[0] {
                Some(new) if new != old && named.iter().all(|n| *n == Some(new)) => {
                    promoted = new;
                    query(new, &["ROLE"]).is_ok_and(|role| role.first().is_some_and(|r| r == "master"))
                }
                _ => false,
            }
        });
        promoted
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            let _ = sentinel.kill();
            let _ = sentinel.wait();
        }
    }
}

fn spawn_sentinel(dir: &std::path::Path, port: u16, primary: u16) -> Child {
    let conf = dir.join(format!("sentinel-{port}.conf"));
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile \"\"\n\
         sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {SERVICE} 5000\n\
         sentinel parallel-syncs {SERVICE} 1\n",
        dir = dir.display()
    );
    std::fs::write(&conf, text).expect("write a sentinel config");
    let child = Command::new("redis-sentinel")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start redis-sentinel: {e}"));
    wait_until("a sentinel answers PING", || query(port, &["PING"]).is_ok());
    child
}

/// `SENTINEL master m` as field/value pairs.
fn master_fields(sentinel: u16) -> Option<Vec<String>> {
    query(sentinel, &["SENTINEL", "master", SERVICE]).ok()
}

fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields.chunks(2).find(|pair| pair[0] == name).and_then(|pair| pair.get(1)).map(String::as_str)
}

/// The primary's port as `sentinel` names it.
fn named_primary(sentinel: u16) -> Option<u16> {
    query(sentinel, &["SENTINEL", "get-master-addr-by-name", SERVICE]).ok()?.get(1)?.parse().ok()
}

/// Polls `check` every 50 ms for up to [`READY`]; panics naming `what`.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one command to the Redis (or sentinel) on `port` and returns its
/// answer flattened to strings (arrays in order, nil as ""); a Redis error
/// reply is `Err`.
pub fn query(port: u16, args: &[&str]) -> Result<Vec<String>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    (&stream).write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    read_reply(&mut reader, &mut out)?;
    Ok(out)
}

fn read_reply(reader: &mut impl BufRead, out: &mut Vec<String>) -> Result<(), String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    let number = || rest.parse::<i64>().map_err(|_| format!("bad RESP line {line:?}"));
    match kind {
        "+" | ":" => out.push(rest.to_string()),
        "-" => return Err(rest.to_string()),
        "$" if number()? < 0 => out.push(String::new()),
        "$" => {
            let mut body = vec![0; number()? as usize + 2];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body.truncate(body.len() - 2);
            out.push(String::from_utf8_lossy(&body).into_owned());
        }
        "*" => {
            for _ in 0..number()?.max(0) {
                read_reply(reader, out)?;
            }
        }
        _ => return Err(format!("unexpected RESP line {line:?}")),
    }
    Ok(())
}
