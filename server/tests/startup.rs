//! What an operator sees of a start: `--version` with the build's commit,
//! log lines without colour codes when stderr is no terminal and as JSON
//! with `log_format = "json"`, the build in `/health` and in the
//! `corecast_build_info` metric, for both binaries; a banner whose URLs a
//! client can open; and a cluster node that cannot reach Redis exits
//! non-zero without having said it listens.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use common::cluster::{require_redis_server, router_binary};
use common::{free_port, free_ports, DataDir, ADMIN_KEY, JWT_SECRET, WAIT};
use corecast_testkit::redis_server::RedisServer;

const SERVER: &str = env!("CARGO_BIN_EXE_corecast-server");

/// A binary started with its stdout and stderr written to files, killed
/// when dropped.
struct Logged {
    child: Child,
    dir: DataDir,
}

impl Logged {
    fn start(binary: &Path, args: &[String], env: &[(&str, &str)]) -> Logged {
        let dir = DataDir::new();
        let file = |name: &str| std::fs::File::create(dir.0.join(name)).unwrap();
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Logged { child, dir }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(name)).unwrap()
    }

    /// Waits until `url` answers 200 and returns the body as JSON.
    fn json_at(&mut self, url: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut resp) = ureq::get(url).call() {
                return serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited ({status}) before {url} answered; stderr:\n{}", self.read("stderr"));
            }
            assert!(Instant::now() < deadline, "{url} did not answer; stderr:\n{}", self.read("stderr"));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn text_at(url: &str) -> String {
        ureq::get(url).call().expect(url).body_mut().read_to_string().unwrap()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit; stderr:\n{}", self.read("stderr"));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The commit the binaries must report: the one set at build time, else
/// this checkout's HEAD, else `unknown` (no git here).
fn expected_commit() -> String {
    if let Ok(commit) = std::env::var("CORECAST_GIT_COMMIT") {
        return commit;
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(|| "unknown".to_string(), |out| String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// Flags for a one-shard server with its store in `data` and its listeners
/// on `ip`, and its control port.
fn server_args(data: &Path, ip: &str) -> (Vec<String>, u16) {
    let ports = free_ports(4);
    let at = |i: usize| format!("{ip}:{}", ports[i]);
    let args = ["--listen", &at(0), "--ws-listen", &at(1), "--web-listen", &at(2), "--control-listen", &at(3)]
        .into_iter()
        .map(String::from)
        .chain(["--shards".into(), "1".into(), "--data-dir".into(), data.display().to_string()])
        .collect();
    (args, ports[3])
}

fn assert_build_reported(health: &serde_json::Value, metrics: &str, who: &str) {
    let commit = expected_commit();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{who} /health: {health}");
    assert_eq!(health["commit"], commit.as_str(), "{who} /health: {health}");
    let series = format!("corecast_build_info{{version=\"{}\",commit=\"{commit}\"}} 1", env!("CARGO_PKG_VERSION"));
    let series_swapped =
        format!("corecast_build_info{{commit=\"{commit}\",version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(
        metrics.lines().any(|line| line == series || line == series_swapped),
        "{who} /metrics has no {series}:\n{metrics}"
    );
}

/// Every line of `log` is a JSON object with a level and a message.
fn assert_json_lines(log: &str, who: &str) {
    assert!(!log.trim().is_empty(), "{who} logged nothing");
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{who} log line is not JSON ({e}): {line}"));
        assert!(event["level"].is_string(), "{who} log line without a level: {line}");
        assert!(event["fields"]["message"].is_string(), "{who} log line without a message: {line}");
    }
}

#[test]
fn version_names_the_version_and_the_commit() {
    let commit = expected_commit();
    for (binary, name) in [(PathBuf::from(SERVER), "corecast-server"), (router_binary(), "corecast-router")] {
        let out = Command::new(&binary).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version failed");
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.trim(), format!("{name} {} (commit {commit})", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn server_logs_plain_text_to_a_pipe_and_reports_its_build() {
    let data = DataDir::new();
    let (args, control) = server_args(&data.0, "127.0.0.1");
    let mut server = Logged::start(Path::new(SERVER), &args, &[("CORECAST_JWT_SECRET", JWT_SECRET)]);
    let health = server.json_at(&format!("http://127.0.0.1:{control}/health"));
    let metrics = Logged::text_at(&format!("http://127.0.0.1:{control}/metrics"));
    assert_build_reported(&health, &metrics, "server");
    let log = server.read("stderr");
    assert!(log.contains("starting shards"), "the server's log:\n{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log}");
}

#[test]
fn server_logs_json_lines_with_log_format_json() {
    let data = DataDir::new();
    let (args, control) = server_args(&data.0, "127.0.0.1");
    let env = [("CORECAST_JWT_SECRET", JWT_SECRET), ("CORECAST_LOG_FORMAT", "json")];
    let mut server = Logged::start(Path::new(SERVER), &args, &env);
    server.json_at(&format!("http://127.0.0.1:{control}/health"));
    let log = server.read("stderr");
    assert!(log.contains("starting shards"), "the server's log:\n{log}");
    assert_json_lines(&log, "server");
}

#[test]
fn router_logs_json_lines_and_reports_its_build() {
    require_redis_server();
    let redis = RedisServer::start();
    let data = DataDir::new();
    let ports = free_ports(3);
    let at = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let args: Vec<String> = ["--router-id", "r1", "--redis", &redis.url(), "--link-listen", &at(0)]
        .into_iter()
        .chain(["--http-listen", &at(1), "--admin-listen", &at(2), "--data-dir", data.0.to_str().unwrap()])
        .chain(["--log-format", "json"])
        .map(String::from)
        .collect();
    let mut router = Logged::start(&router_binary(), &args, &[("CORECAST_ROUTER_ADMIN_KEY", ADMIN_KEY)]);
    let health = router.json_at(&format!("http://{}/health", at(1)));
    let metrics = Logged::text_at(&format!("http://{}/metrics", at(2)));
    assert_build_reported(&health, &metrics, "router");
    let log = router.read("stderr");
    assert!(log.contains("router starting"), "the router's log:\n{log}");
    assert_json_lines(&log, "router");
}

#[test]
fn a_node_that_cannot_reach_redis_exits_non_zero_before_saying_it_listens() {
    let data = DataDir::new();
    let (mut args, _control) = server_args(&data.0, "127.0.0.1");
    // Nothing listens on a port free_port hands out.
    args.extend(["--redis".into(), format!("redis://127.0.0.1:{}/", free_port())]);
    let env = [("CORECAST_JWT_SECRET", JWT_SECRET), ("CORECAST_ADMIN_KEY", ADMIN_KEY)];
    let mut node = Logged::start(Path::new(SERVER), &args, &env);
    let status = node.wait_exit();
    let (stdout, stderr) = (node.read("stdout"), node.read("stderr"));
    assert_eq!(status.code(), Some(1), "exit status {status}; stderr:\n{stderr}");
    assert!(!stdout.contains("listening"), "said it listens though it never served:\n{stdout}");
    assert!(stderr.contains("connecting to Redis"), "no word of Redis on stderr:\n{stderr}");
}

#[test]
fn the_banner_of_a_node_on_wildcards_names_addresses_clients_can_open() {
    let data = DataDir::new();
    let (args, control) = server_args(&data.0, "0.0.0.0");
    let mut server = Logged::start(Path::new(SERVER), &args, &[("CORECAST_JWT_SECRET", JWT_SECRET)]);
    server.json_at(&format!("http://127.0.0.1:{control}/health"));
    let deadline = Instant::now() + WAIT;
    while !server.read("stdout").contains("demo page at") {
        assert!(Instant::now() < deadline, "no demo page URL printed:\n{}", server.read("stdout"));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stdout = server.read("stdout");
    let demo = stdout.split("demo page at ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    let ws = stdout.split("WebSocket clients on ").nth(1).and_then(|rest| rest.split(',').next()).unwrap();
    for url in [demo, ws] {
        assert!(!url.contains("0.0.0.0"), "the banner names the wildcard: {url}");
    }
    let mut page = ureq::get(demo).call().unwrap_or_else(|e| panic!("the banner's demo URL {demo} does not open: {e}"));
    assert!(page.body_mut().read_to_string().unwrap().contains("corecast"), "{demo} is not the demo page");
}
