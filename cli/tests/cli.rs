//! Runs the real `corecast` binary against a real `corecast-server` on free
//! loopback ports: what `pub` sends reaches a `sub`, `send` then `sync`
//! returns the stored message with its seq, `token` mints what the server
//! accepts, `bench-ping` prints its figures, `--dispatch` finds the node,
//! and a refused token fails the command with the server's error.
//!
//! The server binary is taken from next to the `corecast` binary (any
//! workspace build puts it there); when it is not there, the test builds it
//! with `cargo build -p corecast-server` into its own target directory, so
//! it never waits on the lock of the build that is running it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corecast_testkit::ports::{free_ports, StderrWatch};
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_corecast");
const JWT_SECRET: &str = "cli-test-secret-0123456789";
const ADMIN_KEY: &str = "cli-test-admin-key-0123456789";
/// Bound on any wait, so a broken server fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(20);

fn server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        corecast_testkit::server_binary::corecast_server(CLI, env!("CARGO_MANIFEST_DIR"), "cli-test-server")
    })
}

/// A running server with its own store directory, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    control: SocketAddr,
    dir: PathBuf,
}

impl Server {
    /// Starts a node and waits until it answers; again on fresh ports when
    /// one was taken before the server bound it.
    fn start(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("corecast-cli-test-{}-{name}", std::process::id()));
        for attempt in 1..=3 {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let ports = free_ports(4);
            let at = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
            let mut child = Command::new(server_binary())
                .args(["--listen", &at(0).to_string(), "--control-listen", &at(1).to_string()])
                .args(["--ws-listen", &at(2).to_string(), "--web-listen", &at(3).to_string(), "--shards", "2"])
                .arg("--data-dir")
                .arg(&dir)
                .env("CORECAST_JWT_SECRET", JWT_SECRET)
                .env("CORECAST_ADMIN_KEY", ADMIN_KEY)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start corecast-server");
            let log = StderrWatch::new(&mut child);
            let mut server = Server { child, addr: at(0), control: at(1), dir: dir.clone() };
            let Err(status) = server.wait_healthy() else { return server };
            if !log.port_was_taken() || attempt == 3 {
                panic!("server exited at start ({status}); its log is above");
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Polls `/health` until it answers 200; the exit status if the server
    /// exits first.
    fn wait_healthy(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        let url = format!("http://{}/health", self.control);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if ureq::get(&url).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become healthy within {WAIT:?}");
    }

    /// The `corecast` command aimed at this server, with the test secret.
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CLI);
        cmd.args(["--addr", &self.addr.to_string()]).args(args).env("CORECAST_JWT_SECRET", JWT_SECRET);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `corecast` to the end.
    fn run(&self, args: &[&str]) -> Output {
        let mut child = self.cli(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start corecast");
        wait_bounded(&mut child);
        child.wait_with_output().unwrap()
    }

    /// Runs `corecast`, asserts it succeeded and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "corecast {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for `child` to exit, killing it and failing after [`WAIT`].
fn wait_bounded(child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("corecast did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `sub` process, started and waited for until it says it is listening.
struct Subscriber {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(server: &Server, args: &[&str]) -> Subscriber {
        let mut child = server.cli(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start sub");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = stderr.recv_timeout(WAIT).expect("sub says it is listening");
        assert!(line.starts_with("listening on"), "sub: {line}");
        Subscriber { child, stderr }
    }

    /// Its stdout once it has exited, successfully.
    fn finish(mut self) -> String {
        wait_bounded(&mut self.child);
        let output = self.child.wait_with_output().unwrap();
        let errors: Vec<String> = self.stderr.try_iter().collect();
        assert!(output.status.success(), "sub failed: {errors:?}");
        String::from_utf8(output.stdout).unwrap()
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

#[test]
fn sub_with_count_one_prints_what_pub_sends_as_text_and_json() {
    let server = Server::start("pubsub");
    let text = Subscriber::start(&server, &["--user", "bob", "sub", "lobby", "--count", "1"]);
    let json = Subscriber::start(&server, &["--user", "carol", "--json", "sub", "lobby", "other", "--count", "1"]);

    let published = server.ok(&["--user", "alice", "pub", "lobby", "hello there"]);
    assert_eq!(published, "published 11 bytes to lobby\n");

    assert_eq!(text.finish(), "[lobby] alice: hello there\n");
    let pushes = json_lines(&json.finish());
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let push = &pushes[0];
    assert_eq!((&push["type"], &push["kind"], &push["conv"]), (&"push".into(), &"room".into(), &"lobby".into()));
    assert_eq!((&push["from"], &push["payload"]), (&"alice".into(), &"hello there".into()));
}

#[test]
fn history_and_presence_of_a_demo_room_show_what_was_published_and_who_listens() {
    let server = Server::start("streams");
    // Dora listens until the second message, so she is in the room when
    // presence is asked.
    let listener = Subscriber::start(&server, &["--user", "dora", "sub", "demo-cli", "--count", "2"]);
    server.ok(&["--user", "alice", "pub", "demo-cli", "first"]);
    let members = json_lines(&server.ok(&["--user", "ops", "--json", "presence", "demo-cli"]));
    let total = members.last().expect("the totals line");
    assert_eq!((&total["type"], &total["users"]), (&"presence".into(), &1.into()), "{members:?}");
    assert_eq!(members[0]["user"], "dora");
    server.ok(&["--user", "alice", "pub", "demo-cli", "second"]);
    // Alice joins and leaves around each message: events, not counted.
    let printed = listener.finish();
    let messages: Vec<&str> = printed.lines().filter(|line| line.contains(": ")).collect();
    assert_eq!(messages, vec!["[demo-cli] alice: first", "[demo-cli] alice: second"]);
    assert!(printed.contains("[demo-cli] alice joined\n"), "{printed}");
    let history = json_lines(&server.ok(&["--user", "ops", "--json", "history", "demo-cli", "--limit", "10"]));
    let payloads: Vec<&Value> = history.iter().map(|push| &push["payload"]).collect();
    assert_eq!(payloads, vec!["first", "second"]);
    assert!(history[0]["seq"].as_u64().unwrap() + 1 == history[1]["seq"].as_u64().unwrap(), "positions follow");
}

#[test]
fn send_then_sync_returns_the_message_with_its_seq() {
    let server = Server::start("chat");
    let sent = json_lines(&server.ok(&["--user", "alice", "--json", "send", "--to", "bob", "hi bob"]));
    assert_eq!(sent[0]["type"], "sent");
    assert_eq!(sent[0]["conv"], "d:5:alicebob");
    let seq = sent[0]["seq"].as_u64().expect("a seq");
    assert!(seq > 0);

    let synced = json_lines(&server.ok(&["--user", "bob", "--json", "sync", "d:5:alicebob"]));
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert_eq!((&synced[0]["kind"], &synced[0]["from"]), (&"direct".into(), &"alice".into()));
    assert_eq!((synced[0]["seq"].as_u64(), &synced[0]["payload"]), (Some(seq), &"hi bob".into()));

    let text = server.ok(&["--user", "bob", "sync", "d:5:alicebob"]);
    assert_eq!(text, format!("[d:5:alicebob #{seq}] alice: hi bob\n"));
    let after = server.ok(&["--user", "bob", "sync", "d:5:alicebob", "--after", &seq.to_string()]);
    assert_eq!(after, "", "nothing after the last seq");

    let unread = json_lines(&server.ok(&["--user", "bob", "--json", "unread"]));
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!((&unread[0]["conv"], unread[0]["last_seq"].as_u64()), (&"d:5:alicebob".into(), Some(seq)));
}

#[test]
fn token_output_is_accepted_by_the_server_with_its_room_grant() {
    let server = Server::start("token");
    let token = server.ok(&["token", "dave", "--rooms", "lobby,game-*", "--ttl-secs", "60"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a compact JWT: {token}");

    server.ok(&["--token", token, "pub", "game-7", "gg"]);
    let refused = server.run(&["--token", token, "pub", "admin", "hi"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("forbidden (2003)"), "{stderr}");
}

#[test]
fn bench_ping_prints_its_figures() {
    let server = Server::start("ping");
    let text = server.ok(&["--user", "erin", "bench-ping", "--count", "5"]);
    assert!(text.starts_with("5 pings: min "), "{text}");
    for figure in [" p50 ", " p99 ", " max "] {
        assert!(text.contains(figure), "{text}");
    }

    let json = json_lines(&server.ok(&["--user", "erin", "--json", "bench-ping", "--count", "5"]));
    let figure = |name: &str| json[0][name].as_u64().unwrap_or_else(|| panic!("{name} in {json:?}"));
    assert_eq!(json[0]["count"], 5);
    assert!(figure("min_us") <= figure("p50_us") && figure("p50_us") <= figure("p99_us"), "{json:?}");
    assert!(figure("p99_us") <= figure("max_us"), "{json:?}");
}

#[test]
fn dispatch_url_leads_to_the_node() {
    let server = Server::start("dispatch");
    let url = format!("http://{}/v1/dispatch", server.control);
    let mut cmd = Command::new(CLI);
    cmd.args(["--dispatch", &url, "--user", "frank", "bench-ping", "--count", "1"])
        .env("CORECAST_JWT_SECRET", JWT_SECRET);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_bounded(&mut child);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("1 pings: "));
}

#[test]
fn a_bad_token_exits_non_zero_with_the_servers_error() {
    let server = Server::start("badtoken");
    let output = server.run(&["--token", "not-a-token", "pub", "lobby", "hi"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server ERROR auth_failed (2002)"), "{stderr}");

    let output = server.run(&["--token", "not-a-token", "--json", "bench-ping"]);
    assert_eq!(output.status.code(), Some(1));
    let error = json_lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!((&error[0]["type"], &error[0]["name"]), (&"error".into(), &"auth_failed".into()));
    assert_eq!(error[0]["code"], 2002);
}
