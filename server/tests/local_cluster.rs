//! `scripts/local-cluster.sh`, run as a user would: it starts Redis, two
//! routers and three nodes from `examples/local-cluster/`, prints the
//! dispatch URL and a token that work (dispatch lists the three nodes, the
//! token authenticates on the first), and Ctrl-C stops every process it
//! started.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cluster::{require_redis_server, router_binary};
use common::{free_port, Client, WAIT};

/// The script may build nothing, wait for three registrations and for
/// the routers to serve (two renewals): well within this.
const READY: Duration = Duration::from_secs(60);

/// The value printed after `label` on a line of `lines`.
fn printed<'a>(lines: &'a [String], label: &str) -> &'a str {
    let line = lines.iter().find_map(|line| line.trim_start().strip_prefix(label));
    line.and_then(|rest| rest.split_whitespace().next()).unwrap_or_else(|| panic!("no `{label}` line in {lines:#?}"))
}

fn get_json(url: &str) -> serde_json::Value {
    let mut resp = ureq::get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn the_local_cluster_starts_dispatches_three_nodes_and_stops_on_ctrl_c() {
    require_redis_server();
    let bin_dir = router_binary().parent().unwrap().to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-cluster.sh");
    let base = free_port().to_string();
    let mut child = Command::new("bash")
        .arg(&script)
        .args(["--bin-dir", bin_dir.to_str().unwrap(), "--base-port", &base])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start scripts/local-cluster.sh");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("local-cluster| {line}");
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + READY;
    while !lines.iter().any(|line: &String| line.starts_with("Ctrl-C stops everything")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the local cluster was not ready within {READY:?}; it printed {lines:#?}"),
        }
    }

    let answer = get_json(printed(&lines, "dispatch:"));
    let nodes = answer["nodes"].as_array().expect("dispatch nodes");
    let mut names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap().rsplit_once('-').unwrap().0).collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-3"], "{answer}");
    assert_eq!(answer["stale"], false, "{answer}");
    let first = nodes[0]["addr"].as_str().unwrap().parse().expect("a node address");
    let ok = Client::connect(first).auth(printed(&lines, "dev token:"));
    assert_eq!(ok.user, "dev");
    assert!(printed(&lines, "admin key:").len() >= 16, "the admin key is printed");

    let pids: Vec<i32> =
        lines.iter().filter_map(|line| line.strip_prefix("started ")?.split_once(" pid ")?.1.parse().ok()).collect();
    assert_eq!(pids.len(), 6, "redis, two routers and three nodes started: {lines:#?}");
    // Ctrl-C.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the script did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the script exited with {status} after Ctrl-C");
    for pid in pids {
        // The script waited for its children: none is left, not even a zombie.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "process {pid} of the local cluster is still there");
    }
}
