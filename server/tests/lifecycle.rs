//! Connection lifecycle against the real server: start-up (a node answers
//! only once its shards accept connections, and refuses a client port
//! another server listens on), a consumer that never reads, and graceful
//! shutdown on SIGTERM. The idle timeout is tested on the shard core with
//! simulated time.

mod common;

use std::time::Duration;

use common::{free_ports, DataDir, Reply, Server};
use corecast_proto::{ClientRequest, ErrorCode, PUBLISH_EXCLUDE_SELF, PUBLISH_NO_REPLY};

#[test]
fn consumer_that_never_reads_is_closed_while_the_room_keeps_receiving() {
    let server = Server::start(&[
        "--outbound-queue-bytes",
        "131072",
        "--slow-consumer-grace-ms",
        "300",
        "--close-linger-ms",
        "60000",
        "--timer-tick-ms",
        "50",
        // The publisher sends 24 MB as fast as it can; that is not what is
        // tested here.
        "--publish-bytes-per-sec",
        "0",
    ]);
    let (mut publisher, _) = server.user("publisher");
    let (mut reader, _) = server.user("reader");
    let (mut stuck, _) = server.user("stuck");
    for client in [&mut publisher, &mut reader, &mut stuck] {
        client.join("firehose");
    }
    // ~24 MB: well beyond what the kernel buffers of the stuck connection
    // (a few MB each way on loopback) and its queue can hold.
    let payload = vec![7u8; 48 * 1024];
    let total: usize = 500;
    for n in 0..total {
        let mut p = payload.clone();
        p[..4].copy_from_slice(&(n as u32).to_be_bytes());
        let flags = PUBLISH_NO_REPLY | PUBLISH_EXCLUDE_SELF;
        publisher.send(flags, &ClientRequest::Publish { room: "firehose", payload: &p });
        // The reader keeps up and gets every message, in order.
        let push = reader.next_push();
        assert_eq!(u32::from_be_bytes(push.payload[..4].try_into().unwrap()) as usize, n);
        if n % 100 == 99 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The stuck client finally reads: some messages, then CLOSE(slow consumer).
    let frames = stuck.recv_until_eof();
    let received = frames.iter().filter(|f| matches!(f, Reply::Push(_))).count();
    assert!(received < total, "the stuck client cannot have had everything");
    match frames.last() {
        Some(Reply::Close { code, .. }) => assert_eq!(*code, ErrorCode::SlowConsumer.as_u16()),
        other => panic!("expected CLOSE last, got {other:?}"),
    }
    assert!(server.metric_sum("corecast_slow_consumer_closes_total") >= 1.0);
    assert!(server.metric_sum("corecast_drops_total") >= 1.0);
    // The publisher and the reader are fine.
    publisher.send(0, &ClientRequest::Ping);
    let reply = publisher.recv();
    assert!(matches!(reply, Reply::Pong { .. }), "{reply:?}");
}

#[test]
fn sigterm_closes_every_connection_with_a_reconnect_hint_and_exits() {
    let mut server = Server::start(&[]);
    let mut clients: Vec<_> = (0..6).map(|i| server.user(&format!("u{i}")).0).collect();
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    for client in clients.iter_mut() {
        let frames = client.recv_until_eof();
        match frames.as_slice() {
            [Reply::Close { code, reconnect_after_ms, .. }] => {
                assert_eq!(*code, ErrorCode::ShuttingDown.as_u16());
                assert!(*reconnect_after_ms >= 1000, "hint {reconnect_after_ms}");
            }
            other => panic!("expected CLOSE(shutting down), got {other:?}"),
        }
    }
}

#[test]
fn a_single_node_reports_its_load_and_dispatches_to_itself() {
    let server = Server::start(&["--max-connections", "1000"]);
    let (_client, _) = server.user("holder");
    let health = server.health();
    assert_eq!((health["status"].as_str(), health["connections"].as_u64()), (Some("ok"), Some(1)));
    assert_eq!(health["ceiling"], 1000);
    let dispatch: serde_json::Value = get_json(&server, "/v1/dispatch");
    assert_eq!(dispatch["nodes"][0]["addr"], server.addr.to_string());
    assert_eq!(dispatch["nodes"][0]["ws_url"], format!("ws://{}/ws", server.ws));
    let response = ureq::get(&format!("http://{}/v1/dispatch", server.control)).call().unwrap();
    let allowed = response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap());
    assert_eq!(allowed, Some("*"), "pages of any origin may ask");
    assert!(dispatch["reconnect"]["max_ms"].as_u64().unwrap() > 0);
}

fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let mut resp = ureq::get(&format!("http://{}{}", server.control, path)).call().unwrap();
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

/// A configuration file asking for an io_uring ring larger than the kernel
/// allows (32,768 entries), in its own directory.
fn oversized_ring_config() -> (DataDir, std::path::PathBuf) {
    let dir = DataDir::new();
    let path = dir.0.join("corecast.toml");
    std::fs::write(&path, "io_uring_entries = 1000000\n").unwrap();
    (dir, path)
}

#[test]
fn a_shard_that_cannot_start_stops_the_node_before_it_answers() {
    let (dir, config) = oversized_ring_config();
    let ports = free_ports(4);
    let at = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_corecast-server"))
        .arg("--config")
        .arg(&config)
        .args(["--driver", "io-uring", "--listen", &at(0), "--control-listen", &at(1)])
        .args(["--ws-listen", &at(2), "--web-listen", &at(3), "--data-dir"])
        .arg(&dir.0)
        .env("CORECAST_JWT_SECRET", common::JWT_SECRET)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run corecast-server");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "the node must not run without its shards: {stdout}");
    assert!(stderr.contains("could not start"), "the error names the shard: {stderr}");
    assert!(!stdout.contains("listening for clients"), "no banner before the shards run: {stdout}");
}

#[test]
fn a_ring_the_kernel_refuses_falls_back_to_epoll_under_the_auto_driver() {
    let (_dir, config) = oversized_ring_config();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let (mut client, ok) = server.user("on-epoll");
    assert_eq!(ok.user, "on-epoll");
    client.join("still-served");
    assert_eq!(server.health()["status"], "ok");
}

#[test]
fn a_second_server_on_a_client_port_in_use_refuses_to_start() {
    let first = Server::start(&[]);
    let dir = DataDir::new();
    let ports = free_ports(3);
    let at = |port: u16| format!("127.0.0.1:{port}");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_corecast-server"))
        .args(["--listen", &first.addr.to_string(), "--control-listen", &at(ports[0])])
        .args(["--ws-listen", &at(ports[1]), "--web-listen", &at(ports[2]), "--data-dir"])
        .arg(&dir.0)
        .env("CORECAST_JWT_SECRET", common::JWT_SECRET)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run corecast-server");
    let deadline = std::time::Instant::now() + common::WAIT;
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait for the second server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server took the client port and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr).unwrap();
    assert!(!status.success(), "a second server on the client port exited successfully: {stderr}");
    assert!(stderr.contains("Address already in use"), "the error says the address is in use: {stderr}");
    // The first server still has the port to itself.
    let (mut client, _) = first.user("alice");
    client.send(0, &ClientRequest::Ping);
    assert!(matches!(client.recv(), Reply::Pong { .. }));
}
