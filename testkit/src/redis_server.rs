//! A real `redis-server` on a free loopback port, killed when dropped.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the calling test, naming the missing part, unless `redis-server`
/// can run here: a test that needs it never passes without it.
pub fn require() {
    let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "missing part: redis-server is not installed (apt-get install -y redis-server; .ci/run installs it)"
    );
}

/// A running redis-server.
pub struct RedisServer {
    /// The loopback port it listens on.
    pub port: u16,
    persistent: bool,
    /// An address it listens on besides 127.0.0.1.
    also_on: Option<IpAddr>,
    /// The port of the primary this server replicates, if it is a replica.
    replica_of: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// An in-memory Redis (no persistence), like a route table's.
    pub fn start() -> RedisServer {
        RedisServer::launch(false, None)
    }

    /// As [`RedisServer::start`], listening on `ip` too (an address of a
    /// veth, for processes in another network namespace).
    pub fn start_also_on(ip: IpAddr) -> RedisServer {
        RedisServer::launch(false, Some(ip))
    }

    /// A Redis that writes every command to its append-only file before
    /// answering (`appendfsync always`), like a message store's; its data
    /// survives [`RedisServer::restart`].
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true, None)
    }

    /// An in-memory replica (`replicaof`) of the Redis on `primary`.
    pub fn start_replica_of(primary: u16) -> RedisServer {
        RedisServer::launch_with(false, None, Some(primary))
    }

    fn launch(persistent: bool, also_on: Option<IpAddr>) -> RedisServer {
        RedisServer::launch_with(persistent, also_on, None)
    }

    fn launch_with(persistent: bool, also_on: Option<IpAddr>, replica_of: Option<u16>) -> RedisServer {
        let port = crate::ports::free_port();
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut server = RedisServer { port, persistent, also_on, replica_of, dir, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--save", ""]);
        match self.also_on {
            // Protected mode would refuse the clients that are not local.
            Some(ip) => cmd.args(["--bind", &format!("127.0.0.1 {ip}"), "--protected-mode", "no"]),
            None => cmd.args(["--bind", "127.0.0.1"]),
        };
        cmd.arg("--dir").arg(self.dir.path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(primary) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it (apt-get install -y redis-server); .ci/run does")
            }
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis://IP:PORT/`, for the address given to
    /// [`RedisServer::start_also_on`].
    pub fn url_on(&self, ip: IpAddr) -> String {
        format!("redis://{ip}:{}/", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port: empty when
    /// not persistent, with its data otherwise.
    pub fn restart(&mut self) {
        self.restart_after(Duration::ZERO);
    }

    /// As [`RedisServer::restart`], down for `down` in between.
    pub fn restart_after(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.spawn();
    }

    /// Kills the server and starts it again on the same port as a replica
    /// of the Redis on `primary` (how an operator brings a failed primary
    /// back after a failover).
    pub fn restart_as_replica_of(&mut self, primary: u16) {
        self.kill();
        self.replica_of = Some(primary);
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
