//! Drives every scenario of the real `corecast-bench` binary at small scale
//! against a real `corecast-server` on free loopback ports, and checks the
//! JSON figures are present and sane. No timing thresholds: a slow machine
//! passes, a wrong figure does not.
//!
//! The server binary is taken from next to the bench binary
//! (`target/<profile>/corecast-server`, built by any workspace build or
//! test run); when it is not there (e.g. `cargo test -p corecast-bench` on
//! a clean clone), the test builds it with `cargo build -p corecast-server`
//! into its own target directory, so it never waits on the lock of the
//! build that is running it.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corecast_testkit::ports;
use serde_json::Value;

const JWT_SECRET: &str = "bench-scenarios-test-secret-0123456789";
const ADMIN_KEY: &str = "bench-scenarios-admin-key-0123456789";
const BENCH: &str = env!("CARGO_BIN_EXE_corecast-bench");
/// The server's stderr, in its directory; printed when a test fails.
const SERVER_LOG: &str = "server.log";

fn server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        corecast_testkit::server_binary::corecast_server(BENCH, env!("CARGO_MANIFEST_DIR"), "bench-test-server")
    })
}

/// A running server, killed when dropped, with its own working directory
/// (servers that keep a message store put it there, relative to it).
struct Server {
    child: Child,
    addr: SocketAddr,
    control: SocketAddr,
    ws: SocketAddr,
    dir: PathBuf,
}

impl Server {
    /// Starts a server on fresh ports; again on fresh ports when one was
    /// taken before the server could bind it.
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra command-line arguments.
    fn start_with(extra: &[&str]) -> Server {
        Server::start_configured(extra, None)
    }

    /// Starts a server with extra command-line arguments and, if given, a
    /// TOML configuration file with this text (written in its directory).
    fn start_configured(extra: &[&str], config: Option<&str>) -> Server {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut server = Server::spawn(extra, config);
            let Err(status) = server.wait_listening() else { return server };
            let log = std::fs::read_to_string(server.dir.join(SERVER_LOG)).unwrap_or_default();
            if !ports::port_was_taken(&log) || attempt == ATTEMPTS {
                panic!("server exited at start: {status}");
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(extra: &[&str], config: Option<&str>) -> Server {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "corecast-bench-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let log = std::fs::File::create(dir.join(SERVER_LOG)).expect("create the server's log");
        let config_args = match config {
            Some(text) => {
                std::fs::write(dir.join("server.toml"), text).expect("write the server's config");
                vec!["--config", "server.toml"]
            }
            None => Vec::new(),
        };
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let [addr, control, ws, web] = [(); 4].map(|()| at(ports::free_port()));
        let child = Command::new(server_binary())
            .current_dir(&dir)
            .args(["--listen", &addr.to_string(), "--control-listen", &control.to_string(), "--shards", "2"])
            .args(["--ws-listen", &ws.to_string(), "--web-listen", &web.to_string()])
            .args(extra)
            .args(config_args)
            .env("CORECAST_JWT_SECRET", JWT_SECRET)
            .env("CORECAST_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start corecast-server");
        Server { child, addr, control, ws, dir }
    }

    /// Waits until the server listens; its exit status if it exits first.
    fn wait_listening(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() || TcpStream::connect(self.control).is_err() {
            assert!(Instant::now() < deadline, "server did not start listening");
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs a bench scenario against this server with `--json` (over
    /// WebSocket when `args` say `--transport ws`).
    fn bench(&self, scenario: &str, args: &[&str], secret: &str) -> Output {
        let addr = if args.contains(&"ws") { self.ws } else { self.addr };
        Command::new(BENCH)
            .arg(scenario)
            .args(["--addr", &addr.to_string(), "--control", &self.control.to_string()])
            .args(["--server-pid", &self.child.id().to_string(), "--json", "--max-run-s", "120"])
            .args(args)
            .env("CORECAST_JWT_SECRET", secret)
            .env("CORECAST_ADMIN_KEY", ADMIN_KEY)
            .stdin(Stdio::null())
            .output()
            .expect("run corecast-bench")
    }

    fn bench_json(&self, scenario: &str, args: &[&str]) -> Value {
        let out = self.bench(scenario, args, JWT_SECRET);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{scenario} failed: {stderr}");
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        assert_eq!(stdout.lines().count(), 1, "exactly one JSON line on stdout, got {stdout:?}");
        let json: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
        assert!(stderr.contains("connections"), "the table goes to stderr with --json");
        json
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Shown with the failed test's output.
            let log = std::fs::read_to_string(self.dir.join(SERVER_LOG)).unwrap_or_default();
            eprintln!("--- the server's log ---\n{log}--- end of the server's log ---");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn number(json: &Value, key: &str) -> f64 {
    json[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

fn assert_common(json: &Value, scenario: &str, connections: u64) {
    for key in [
        "scenario",
        "target",
        "connections",
        "duration_s",
        "connect_rate_per_s",
        "deliveries_per_s",
        "deliveries_per_server_cpu_s",
        "latency_us",
        "lost",
        "server_rss_bytes_per_conn",
        "kernel_bytes_per_conn",
    ] {
        assert!(json.get(key).is_some(), "key {key} missing in {json}");
    }
    assert_eq!(json["scenario"], scenario);
    assert!(json["target"].as_str().is_some_and(|t| t.starts_with("corecast")), "{json}");
    assert_eq!(json["connections"].as_u64(), Some(connections), "{json}");
    assert_eq!(json["failed"], serde_json::json!({}), "{json}");
    assert!(number(json, "duration_s") > 0.0);
    assert!(number(json, "connect_rate_per_s") > 0.0);
    assert!(number(json, "server_rss_bytes_per_conn").is_finite());
    assert!(number(json, "kernel_bytes_per_conn").is_finite());
    assert_monotonic(&json["connect_latency_us"]);
    assert_monotonic(&json["latency_us"]);
}

fn assert_monotonic(p: &Value) {
    let get = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("latency {k} missing in {p}"));
    let values = [get("p50"), get("p90"), get("p99"), get("p999"), get("max")];
    assert!(values[0] > 0.0, "{p}");
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "percentiles not monotonic: {p}");
}

#[test]
fn connect_holds_every_connection_and_measures_the_server() {
    let server = Server::start();
    let json = server.bench_json("connect", &["-n", "300", "--hold-s", "1"]);
    assert_common(&json, "connect", 300);
    assert!(json["deliveries_per_s"].is_null());
    assert_eq!(json["disconnected"], serde_json::json!({}));
    assert!(number(&json, "server_rss_bytes") > 0.0);
}

#[test]
fn fanout_delivers_every_message_with_latency() {
    let server = Server::start();
    let args = ["--rooms", "3", "--members", "100", "--publishers", "3", "--rate", "20"];
    let json = server
        .bench_json("fanout", &[&args[..], &["--warmup-s", "0.5", "--duration-s", "2", "--drain-s", "1"]].concat());
    assert_common(&json, "fanout", 303);
    let expected = json["expected"].as_u64().unwrap();
    assert!(expected > 0, "{json}");
    assert_eq!(json["received"].as_u64(), Some(expected), "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_eq!(json["seq_gaps"].as_u64(), Some(0), "{json}");
    assert_eq!(json["duplicates"].as_u64(), Some(0), "{json}");
    assert!(number(&json, "deliveries_per_s") > 0.0);
    // Every message reaches the 100 members of its room.
    assert_eq!(expected, json["published"].as_u64().unwrap() * 100, "{json}");
    assert!(number(&json, "server_cpu_s") >= 0.0);
    if number(&json, "server_cpu_s") > 0.0 {
        assert!(number(&json, "deliveries_per_server_cpu_s") > 0.0);
    }
    assert_eq!(json["server_drops"].as_f64(), Some(0.0), "{json}");
}

#[test]
fn fanout_over_websocket_delivers_every_message() {
    let server = Server::start();
    let args = ["--transport", "ws", "--rooms", "2", "--members", "50", "--publishers", "2", "--rate", "20"];
    let json = server
        .bench_json("fanout", &[&args[..], &["--warmup-s", "0.5", "--duration-s", "2", "--drain-s", "1"]].concat());
    assert_common(&json, "fanout", 102);
    assert_eq!(json["target"], "corecast-ws");
    let expected = json["expected"].as_u64().unwrap();
    assert!(expected > 0, "{json}");
    assert_eq!(json["received"].as_u64(), Some(expected), "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_eq!(expected, json["published"].as_u64().unwrap() * 50, "{json}");
}

/// A server whose `live-*` rooms keep a history of 1,000 messages, with
/// admission limits off so a recovery storm is not refused.
fn stream_server() -> Server {
    let config = "connect_rate_per_source = 0\nconnect_rate_total = 0\nauth_rate_per_sec = 0\n\n\
                  [[rooms]]\npattern = \"live-*\"\nhistory_size = 1000\n";
    Server::start_configured(&[], Some(config))
}

fn assert_positions_in_line(json: &Value) {
    for key in ["position_gaps", "position_duplicates", "epoch_changes", "unpositioned", "seq_gaps", "duplicates"] {
        assert_eq!(json[key].as_u64(), Some(0), "{key} in {json}");
    }
    assert_eq!(json["problems"], serde_json::json!([]), "{json}");
}

#[test]
fn fanout_with_history_checks_every_position() {
    let server = stream_server();
    let args = ["--history", "--rooms", "3", "--members", "100", "--publishers", "3", "--rate", "20"];
    let json = server
        .bench_json("fanout", &[&args[..], &["--warmup-s", "0.5", "--duration-s", "2", "--drain-s", "1"]].concat());
    assert_common(&json, "fanout", 303);
    let expected = json["expected"].as_u64().unwrap();
    assert!(expected > 0, "{json}");
    assert_eq!(expected, json["published"].as_u64().unwrap() * 100, "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_positions_in_line(&json);
}

#[test]
fn fanout_with_history_fails_when_no_rule_gives_its_rooms_a_stream() {
    // The default rules give history to demo-* only: live-bench-room-N are plain rooms.
    let server = Server::start();
    let args = ["--history", "--rooms", "1", "--members", "20", "--rate", "20", "--duration-s", "1"];
    let out = server.bench("fanout", &args, JWT_SECRET);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a plain room must fail a --history run: {stderr}");
    assert!(stderr.contains("JOIN answered OK, not JOINED"), "{stderr}");
}

#[test]
fn a_recovery_storm_brings_every_member_back_with_nothing_lost() {
    let server = stream_server();
    let args = ["--members", "200", "--rate", "50", "--before-s", "1", "--after-s", "3", "--drain-s", "2"];
    let json = server.bench_json("recovery-storm", &args);
    assert_common(&json, "recovery-storm", 201);
    for key in ["storm_members", "rejoined", "recovered", "caught_up"] {
        assert_eq!(json[key].as_u64(), Some(200), "{key} in {json}");
    }
    let expected = json["expected"].as_u64().unwrap();
    assert_eq!(expected, json["published"].as_u64().unwrap() * 200, "{json}");
    assert_eq!(json["received"].as_u64(), Some(expected), "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_positions_in_line(&json);
    assert_monotonic(&json["rejoin_latency_us"]);
    assert_monotonic(&json["catch_up_latency_us"]);
    assert!(number(&json, "time_to_all_caught_up_ms") > 0.0, "{json}");
    assert_eq!(json["server_drops"].as_f64(), Some(0.0), "{json}");
}

#[test]
fn broadcast_reaches_every_connection() {
    let server = Server::start();
    let json = server.bench_json("broadcast", &["-n", "300"]);
    assert_common(&json, "broadcast", 300);
    assert_eq!(json["received"].as_u64(), Some(300), "{json}");
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert!(number(&json, "time_to_last_ms") > 0.0);
    assert!(number(&json, "deliveries_per_s") > 0.0);
}

#[test]
fn a_wrong_secret_fails_the_run_with_failed_connections() {
    let server = Server::start();
    let out = server.bench("connect", &["-n", "20", "--hold-s", "0"], "not-the-server-secret-0123456789");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused connections must fail the run: {stderr}");
    assert!(stderr.contains("FAILED: 20 connections failed or refused"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object, even when the run fails");
    assert_eq!(json["connections"].as_u64(), Some(0));
    let failed: u64 = json["failed"].as_object().unwrap().values().filter_map(Value::as_u64).sum();
    assert_eq!(failed, 20, "{json}");
    assert!(json["latency_us"].is_null());
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(1), "{json}");
}

#[test]
fn connections_closed_for_idleness_fail_the_run_by_reason() {
    // The harness sends no heartbeat; the server closes idle connections
    // after 600 ms, during the hold.
    let server = Server::start_with(&["--heartbeat-ms", "200", "--idle-timeout-ms", "600"]);
    let out = server.bench("connect", &["-n", "50", "--hold-s", "2", "--no-heartbeat"], JWT_SECRET);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dropped connections must fail the run: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let dropped = json["disconnected"].as_object().expect("drops by reason");
    let total: u64 = dropped.values().filter_map(Value::as_u64).sum();
    assert_eq!(total, 50, "{json}");
    assert!(dropped.keys().all(|reason| reason.contains("4002")), "the server's close code is the reason: {dropped:?}");
    assert!(stderr.contains("FAILED: 50 connections dropped"), "{stderr}");
}

#[test]
fn heartbeats_follow_the_interval_the_server_names() {
    // The harness's own default interval (15 s) is far above the server's
    // idle timeout; it must ping at the 200 ms the server names in AUTH_OK.
    let server = Server::start_with(&["--heartbeat-ms", "200", "--idle-timeout-ms", "600"]);
    let json = server.bench_json("connect", &["-n", "50", "--hold-s", "2"]);
    assert_eq!(json["disconnected"], serde_json::json!({}), "{json}");
    assert_eq!(json["problems"], serde_json::json!([]), "{json}");
}

#[test]
fn c1m_runs_every_step_on_one_set_of_connections_and_its_report_renders() {
    let server = Server::start();
    let out_dir = server.dir.join("results");
    let args = ["-n", "400", "--room-size", "100", "--rate", "5", "--hold-s", "1", "--warmup-s", "0.5"];
    let out = server.bench(
        "c1m",
        &[&args[..], &["--duration-s", "1", "--drain-s", "5", "--out", out_dir.to_str().unwrap()]].concat(),
        JWT_SECRET,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "c1m failed: {stderr}");
    let steps: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["scenario"].as_str()).collect();
    assert_eq!(names, ["connect", "hold", "broadcast", "fanout"]);
    assert_eq!(steps[1]["held"].as_u64(), Some(400), "{}", steps[1]);
    assert!(number(&steps[1], "server_rss_total_bytes_per_conn") > 0.0);
    let (pss, rss) =
        (number(&steps[1], "server_pss_total_bytes_per_conn"), number(&steps[1], "server_rss_total_bytes_per_conn"));
    assert!(pss > 0.0 && pss <= rss, "shared pages counted once can only be less: PSS {pss}, RSS {rss}");
    assert_eq!((steps[2]["received"].as_u64(), steps[2]["lost"].as_u64()), (Some(400), Some(0)), "{}", steps[2]);
    let expected = steps[3]["expected"].as_u64().unwrap();
    assert!(expected > 0);
    assert_eq!(steps[3]["lost"].as_u64(), Some(0), "{}", steps[3]);
    assert!(steps[0]["series"].as_array().is_some_and(|s| !s.is_empty()), "the time series is kept");
    let saved: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(out_dir.join("c1m.json")).unwrap()).unwrap();
    assert_eq!(saved.len(), 4);

    // The page, as headless Chromium renders it: every chart is an SVG with its lines.
    let report = out_dir.join("report.html");
    let dom = chromium_dom(&report);
    for id in ["ramp", "memory", "cpu", "rates", "broadcast", "fanout"] {
        let at = dom.find(&format!("<figure id=\"{id}\"><svg")).unwrap_or_else(|| panic!("chart {id} missing"));
        let figure = &dom[at..at + dom[at..].find("</figure>").expect("figure closes")];
        assert!(figure.contains("<polyline"), "chart {id} has no line");
    }
    assert!(dom.contains("corecast: harness ready") && dom.contains("nothing failed or dropped"));
}

/// The DOM of `page` after headless Chromium loaded it (Debian's
/// `chromium`; a missing browser fails the test, naming it).
fn chromium_dom(page: &Path) -> String {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|b| Path::new(b).exists());
    let browser = browser.expect("Chromium is missing (apt-get install -y chromium): the report is checked in it");
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chat_stores_and_delivers_every_message() {
    let server = Server::start();
    let args = ["--pairs", "4", "--groups", "2", "--group-size", "4", "--duration-s", "1.5", "--drain-s", "1"];
    let json = server.bench_json("chat", &args);
    // 4 pairs (8 connections) and 2 groups of 4.
    assert_eq!((json["scenario"].as_str(), json["connections"].as_u64()), (Some("chat"), Some(16)), "{json}");
    assert_eq!(json["server_errors"], serde_json::json!({}), "{json}");
    assert_monotonic(&json["latency_us"]);
    let stored = json["published"].as_u64().unwrap();
    assert!(number(&json, "stored_per_s") > 0.0, "{json}");
    assert!(stored > 0);
    assert!(json["expected"].as_u64().unwrap() > 0);
    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_eq!(json["received"], json["expected"], "{json}");
    assert_monotonic(&json["sent_latency_us"]);
}
