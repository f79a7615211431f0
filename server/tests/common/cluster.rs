//! Cluster harness: a real `redis-server` for routes (and a second,
//! persistent one as the routers' shared message store), `corecast-router`
//! processes and `corecast-server` nodes in cluster mode, all on loopback
//! with short registry lifetimes so faults show within seconds.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_testkit::redis_server::RedisServer;
use serde_json::Value;

use super::{free_ports, DataDir, Host, Server, StderrWatch, ADMIN_KEY, WAIT};

/// Registration lifetime of routers and nodes in tests (renewed every third).
pub const REGISTRY_TTL_MS: &str = "900";
/// How often routers pull the nodes' health in tests.
pub const HEALTH_PULL_MS: &str = "200";

/// The router binary, built beside the server binary by `cargo test --workspace`.
pub fn router_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_corecast-server")).with_file_name("corecast-router");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p corecast-router` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// How a router is started besides its id and Redis URLs: where its link
/// listener binds (127.0.0.1 unless set) and extra `CORECAST_ROUTER_*`
/// settings.
#[derive(Debug, Clone, Default)]
pub struct RouterOpts {
    pub link_ip: Option<IpAddr>,
    pub env: Vec<(String, OsString)>,
}

impl RouterOpts {
    /// Adds the setting `name` = `value`.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> RouterOpts {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// A running router, killed when dropped.
pub struct RouterProc {
    pub child: Child,
    pub id: String,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub link: SocketAddr,
    /// What [`RouterProc::restart`] starts it with again.
    command: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    _data: DataDir,
}

impl RouterProc {
    /// Starts router `id` on fresh ports, with routes in `redis_url` and
    /// messages in the Redis store at `store_url`.
    pub fn start(id: &str, redis_url: &str, store_url: &str) -> RouterProc {
        RouterProc::start_with(id, redis_url, store_url, &RouterOpts::default())
    }

    /// As [`RouterProc::start`], with extra `CORECAST_ROUTER_*` settings.
    pub fn start_with_env(id: &str, redis_url: &str, store_url: &str, env: &[(&str, &Path)]) -> RouterProc {
        let opts = env.iter().fold(RouterOpts::default(), |opts, (name, value)| opts.env(name, *value));
        RouterProc::start_with(id, redis_url, store_url, &opts)
    }

    /// As [`RouterProc::start`], started as `opts` says.
    pub fn start_with(id: &str, redis_url: &str, store_url: &str, opts: &RouterOpts) -> RouterProc {
        const ATTEMPTS: usize = 3;
        let link_ip = opts.link_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for attempt in 1..=ATTEMPTS {
            let data = DataDir::new();
            let ports = free_ports(3);
            let at = |port: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], port)) };
            let (http, admin, link) = (at(ports[0]), at(ports[1]), SocketAddr::new(link_ip, ports[2]));
            let mut command: Vec<OsString> = ["--router-id", id, "--redis", redis_url, "--store", "redis"]
                .into_iter()
                .chain(["--registry-ttl-ms", REGISTRY_TTL_MS, "--health-pull-ms", HEALTH_PULL_MS])
                .map(OsString::from)
                .collect();
            for (flag, addr) in [("--link-listen", link), ("--http-listen", http), ("--admin-listen", admin)] {
                command.extend([flag.into(), addr.to_string().into()]);
            }
            command.extend(["--data-dir".into(), data.0.clone().into()]);
            let mut env: Vec<(OsString, OsString)> = vec![
                ("CORECAST_ROUTER_STORE_REDIS_URL".into(), store_url.into()),
                ("CORECAST_ROUTER_ADMIN_KEY".into(), ADMIN_KEY.into()),
                ("RUST_LOG".into(), "warn".into()),
            ];
            env.extend(opts.env.iter().map(|(name, value)| (name.into(), value.clone())));
            let (child, log) = RouterProc::spawn(&command, &env);
            let mut router = RouterProc { child, id: id.into(), http, admin, link, command, env, _data: data };
            let Err(status) = router.wait_started() else { return router };
            if !log.port_was_taken() || attempt == ATTEMPTS {
                panic!("router {id} exited at start ({status}); its log is above");
            }
            let _ = writeln!(std::io::stderr(), "a port was taken before router {id} bound it: starting again");
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(command: &[OsString], env: &[(OsString, OsString)]) -> (Child, StderrWatch) {
        let mut child = Command::new(router_binary())
            .args(command)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start corecast-router");
        let log = StderrWatch::new(&mut child);
        (child, log)
    }

    /// Kills the router (SIGKILL) and starts it again as before: the same
    /// id, ports, settings and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.child = RouterProc::spawn(&self.command, &self.env).0;
        if let Err(status) = self.wait_started() {
            panic!("router {} exited at restart ({status}); its log is above", self.id);
        }
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) }, 0, "SIGSTOP router {}", self.id);
    }

    /// SIGCONT after [`RouterProc::pause`].
    pub fn resume(&self) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) }, 0, "SIGCONT router {}", self.id);
    }

    /// Waits until the router answers `/health`; its exit status if it
    /// exits first.
    fn wait_started(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        while self.health().is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            assert!(Instant::now() < deadline, "router {}: timed out waiting until it answers /health", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn health(&self) -> Option<Value> {
        let mut resp = ureq::get(&format!("http://{}/health", self.http)).call().ok()?;
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
    }

    /// Polls `check` until it holds (a broken cluster fails the test here
    /// after [`WAIT`], it does not hang it).
    pub fn wait_until(&self, check: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !check(self) {
            assert!(Instant::now() < deadline, "router {}: timed out waiting until {what}", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dispatch(&self) -> Value {
        let mut resp = ureq::get(&format!("http://{}/v1/dispatch", self.http)).call().expect("dispatch");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Node ids dispatch returns, best first.
    pub fn dispatch_order(&self) -> Vec<String> {
        self.dispatch()["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap().to_string()).collect()
    }

    pub fn admin_get(&self, path: &str) -> Value {
        let mut resp = ureq::get(&format!("http://{}{}", self.admin, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .call()
            .expect("router admin GET");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn admin_post(&self, path: &str, body: &[u8]) -> Value {
        let mut resp = ureq::post(&format!("http://{}{}", self.admin, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .send(body)
            .expect("router admin POST");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn admin_post_json(&self, path: &str, body: &str) -> Value {
        let mut resp = ureq::post(&format!("http://{}{}", self.admin, path))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("router admin POST");
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn metric_sum(&self, name: &str) -> f64 {
        let mut resp = ureq::get(&format!("http://{}/metrics", self.admin)).call().unwrap();
        super::sum_metric(&resp.body_mut().read_to_string().unwrap(), name)
    }

    /// SIGKILL: no goodbye to Redis or the nodes.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster node: a server process and its id in the cluster.
pub struct Node {
    pub server: Server,
    pub id: String,
}

impl Node {
    /// Starts a node named `name` in the cluster at `redis_url`.
    pub fn start(name: &str, redis_url: &str, extra: &[&str]) -> Node {
        Node::named(Server::start(&Node::args(name, redis_url, extra)))
    }

    /// As [`Node::start`], with every listener on `host`.
    pub fn start_on(host: &Host, name: &str, redis_url: &str, extra: &[&str]) -> Node {
        Node::named(Server::start_on(host, &Node::args(name, redis_url, extra)))
    }

    /// As [`Node::start`], with the control plane on HTTPS only (see
    /// [`Server::start_with_control_tls`]).
    pub fn start_with_control_tls(name: &str, redis_url: &str, extra: &[&str]) -> Node {
        Node::named(Server::start_with_control_tls(&Node::args(name, redis_url, extra)))
    }

    fn args<'a>(name: &'a str, redis_url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--node-id", name, "--redis", redis_url, "--registry-ttl-ms", REGISTRY_TTL_MS];
        args.extend_from_slice(extra);
        args
    }

    fn named(server: Server) -> Node {
        let id = server.health()["node"].as_str().expect("node id in /health").to_string();
        Node { server, id }
    }
}

/// Redis for routes, Redis for messages, routers and nodes (dropped in
/// that reverse order: nodes first, Redis last).
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub routers: Vec<RouterProc>,
    pub routes_redis: RedisServer,
    pub store_redis: RedisServer,
}

impl Cluster {
    /// Starts `routers` routers (r1, r2, ...) and nodes named `nodes`, each
    /// node with its own extra flags, and waits until every node is linked
    /// to every router and every router serves.
    pub fn start(routers: usize, nodes: &[(&str, &[&str])]) -> Cluster {
        Cluster::start_with(routers, nodes, &RouterOpts::default())
    }

    /// As [`Cluster::start`], every router started as `opts` says.
    pub fn start_with(routers: usize, nodes: &[(&str, &[&str])], opts: &RouterOpts) -> Cluster {
        let routes_redis = RedisServer::start();
        let store_redis = RedisServer::start_persistent();
        let routers: Vec<RouterProc> = (1..=routers)
            .map(|i| RouterProc::start_with(&format!("r{i}"), &routes_redis.url(), &store_redis.url(), opts))
            .collect();
        let nodes: Vec<Node> =
            nodes.iter().map(|(name, extra)| Node::start(name, &routes_redis.url(), extra)).collect();
        let cluster = Cluster { nodes, routers, routes_redis, store_redis };
        cluster.wait_linked();
        cluster
    }

    /// Waits until every live router has every node linked and has taken
    /// its share of the conversations (see [`wait_linked`]).
    pub fn wait_linked(&self) {
        wait_linked(&self.routers, &self.nodes);
    }

    /// The first router that answers.
    pub fn router(&self) -> &RouterProc {
        self.routers.iter().find(|r| r.health().is_some()).expect("a live router")
    }
}

/// Waits until every live router of `routers` has every node of `nodes`
/// linked and has taken its share of the conversations (epoch > 0 in the
/// registry view), and every node is linked to every live router.
pub fn wait_linked(routers: &[RouterProc], nodes: &[Node]) {
    let expected_nodes = nodes.len() as u64;
    let expected_routers = routers.iter().filter(|r| r.health().is_some()).count() as f64;
    for router in routers {
        if router.health().is_none() {
            continue;
        }
        router.wait_until(|r| r.health().is_some_and(|h| h["linked_nodes"] == expected_nodes), "all nodes linked");
        router.wait_until(|r| r.metric_sum("corecast_router_routers") == expected_routers, "all routers seen");
    }
    for node in nodes {
        let deadline = Instant::now() + WAIT;
        while node.server.metric_sum("corecast_uplink_routers") != expected_routers {
            assert!(Instant::now() < deadline, "node {} did not link to every router", node.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Panics, naming what to install, unless `redis-server` can run here:
/// for tests that must fail rather than skip without it.
pub fn require_redis_server() {
    corecast_testkit::redis_server::require();
}

/// Polls `check` for up to [`WAIT`]; panics with `what` if it never holds.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
