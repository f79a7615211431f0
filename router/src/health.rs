//! The health of the server nodes, as this router sees it. The router pulls
//! it: every node answers `GET /health` on its control plane with a small
//! JSON report (status, connections, ceiling), and the [`HealthBoard`] keeps
//! the outcome of the latest pull of each registered node. Nodes never push
//! their health; a node that stops answering is simply seen as failed at the
//! next pull. The board does no scheduling: its owner calls
//! [`HealthBoard::pull_all`] once per pull interval and hands the board to
//! [`dispatch::rank`](crate::dispatch::rank).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use corecast_cluster::registry::NodeInfo;

/// Longest health answer read from a node; a longer one is a failed pull.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// A node's answer to `GET /health`, as parsed. Missing fields take their
/// defaults and unknown fields are ignored, so nodes and routers of nearby
/// versions understand each other; a field of the wrong type makes the
/// whole answer unparsable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthReport {
    /// `"ok"`, or `"draining"` while the node shuts down. Any other value
    /// (or none) counts as not draining.
    pub status: String,
    /// The node's id; empty when the node did not say.
    pub node: String,
    /// How many shards the node runs.
    pub shards: u64,
    /// Client connections the node holds now; 0 when not reported.
    pub connections: u64,
    /// Most client connections the node accepts; `None` when not reported.
    pub ceiling: Option<u64>,
}

impl HealthReport {
    /// Whether the node said it is shutting down.
    pub fn is_draining(&self) -> bool {
        self.status == "draining"
    }
}

/// What the board knows of one node from its pulls so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// When a pull of this node last succeeded; `None` if none ever did.
    pub last_ok: Option<Instant>,
    /// Failed pulls since the last successful one (0 after a success).
    pub consecutive_failures: u32,
    /// Client connections at the last successful pull.
    pub connections: u64,
    /// The ceiling the node reported at the last successful pull, or
    /// `u64::MAX` when it reported none (the registered ceiling then applies
    /// alone).
    pub ceiling: u64,
    /// Whether the node said at the last successful pull that it is draining.
    pub draining: bool,
}

impl NodeHealth {
    /// Whether the latest pull of this node succeeded. A node that stops
    /// answering therefore drops out after a single failed pull, that is
    /// within one pull interval (plus the pull timeout) of going silent; it
    /// comes back at its next successful pull.
    pub fn is_healthy(&self) -> bool {
        self.consecutive_failures == 0 && self.last_ok.is_some()
    }
}

/// The latest health of every registered server node, with the HTTP client
/// that pulls it. Cloning is cheap enough to hand a snapshot to readers (the
/// client is shared, the map is copied).
#[derive(Debug, Clone)]
pub struct HealthBoard {
    client: reqwest::Client,
    nodes: HashMap<String, NodeHealth>,
}

impl HealthBoard {
    /// An empty board pulling with `client` (see [`crate::node_http`]),
    /// whose timeout bounds each pull.
    pub fn new(client: reqwest::Client) -> HealthBoard {
        HealthBoard { client, nodes: HashMap::new() }
    }

    /// Pulls the health of every node in `nodes` at once, records each
    /// outcome, and forgets nodes that are no longer listed. Returns when
    /// every pull has succeeded or failed, so at most about one timeout later.
    /// Counts each pull in `corecast_health_pulls_total{result}` and sets
    /// `corecast_nodes_healthy`.
    pub async fn pull_all(&mut self, nodes: &[NodeInfo]) {
        let mut pulls = JoinSet::new();
        let mut listed = HashSet::with_capacity(nodes.len());
        for node in nodes {
            if !listed.insert(node.id.as_str()) {
                continue; // listed twice: one pull is enough
            }
            let client = self.client.clone();
            let node = node.clone();
            pulls.spawn(async move {
                let result = pull_one(&client, &node).await;
                (node.id, result)
            });
        }

        let mut reported = HashSet::with_capacity(listed.len());
        while let Some(joined) = pulls.join_next().await {
            let (id, result) = match joined {
                Ok(outcome) => outcome,
                // A pull task that panicked is found below, by its missing report.
                Err(e) => {
                    tracing::error!("a health pull task failed: {e}");
                    continue;
                }
            };
            self.record_pull(&id, result, Instant::now());
            reported.insert(id);
        }
        for id in &listed {
            if !reported.contains(*id) {
                self.record_pull(id, Err("the pull task failed".to_string()), Instant::now());
            }
        }

        self.nodes.retain(|id, _| listed.contains(id.as_str()));
        let healthy = self.nodes.values().filter(|health| health.is_healthy()).count();
        metrics::gauge!("corecast_nodes_healthy").set(healthy as f64);
    }

    /// Records and counts the outcome of one real pull.
    fn record_pull(&mut self, id: &str, result: Result<HealthReport, String>, at: Instant) {
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => {
                tracing::debug!(node = id, "health pull failed: {e}");
                "failed"
            }
        };
        metrics::counter!("corecast_health_pulls_total", "result" => label).increment(1);
        self.record(id, result, at);
    }

    /// Records the outcome of one pull of node `id` made at `at`:
    /// [`pull_all`](Self::pull_all) calls it for every pull, and tests call it
    /// to fill a board without HTTP. A success replaces what was known of the
    /// node; a failure only counts one more consecutive failure and keeps
    /// the last figures (the node is unhealthy until its next success).
    pub fn record(&mut self, id: &str, result: Result<HealthReport, String>, at: Instant) {
        match result {
            Ok(report) => {
                let health = NodeHealth {
                    last_ok: Some(at),
                    consecutive_failures: 0,
                    connections: report.connections,
                    ceiling: report.ceiling.unwrap_or(u64::MAX),
                    draining: report.is_draining(),
                };
                self.nodes.insert(id.to_string(), health);
            }
            Err(_) => {
                let health = self.nodes.entry(id.to_string()).or_insert(NodeHealth {
                    last_ok: None,
                    consecutive_failures: 0,
                    connections: 0,
                    ceiling: u64::MAX,
                    draining: false,
                });
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// What the board knows of node `id`, if it was pulled since it was
    /// last listed.
    pub fn get(&self, id: &str) -> Option<&NodeHealth> {
        self.nodes.get(id)
    }

    /// Whether node `id` answered its latest pull (see [`NodeHealth::is_healthy`]).
    pub fn is_healthy(&self, id: &str) -> bool {
        self.get(id).is_some_and(NodeHealth::is_healthy)
    }

    /// How many nodes the board tracks.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the board tracks no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// Pulls the health of one node: `GET /health` on its control plane. Fails
/// (with a message saying why) on a connection error or timeout, an answer
/// other than 200, a body over [`MAX_REPORT_BYTES`], JSON that does not parse
/// as a [`HealthReport`], or a report naming another node than `node.id`
/// (the address now belongs to someone else). The client's timeout bounds
/// the whole pull.
pub async fn pull_one(client: &reqwest::Client, node: &NodeInfo) -> Result<HealthReport, String> {
    let url = node.control_url("/health");
    let mut response = client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: answered {status}"));
    }
    if response.content_length().is_some_and(|length| length > MAX_REPORT_BYTES as u64) {
        return Err(format!("GET {url}: answer longer than {MAX_REPORT_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: reading the answer: {e}"))? {
        if body.len() + chunk.len() > MAX_REPORT_BYTES {
            return Err(format!("GET {url}: answer longer than {MAX_REPORT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let report: HealthReport =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a health report: {e}"))?;
    if !report.node.is_empty() && report.node != node.id {
        return Err(format!("GET {url}: answered as node {:?}, expected {:?}", report.node, node.id));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    /// Serves `app` on a fresh loopback port until the test's runtime ends.
    async fn serve(app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    /// Serves a fixed `/health` answer.
    async fn serve_health(status: StatusCode, body: &'static str) -> SocketAddr {
        serve(Router::new().route("/health", get(move || async move { (status, body) }))).await
    }

    /// A loopback address nothing listens on (bound, then released).
    async fn closed_addr() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// A board whose client reaches plain-HTTP nodes only.
    fn plain_board(timeout: Duration) -> HealthBoard {
        HealthBoard::new(crate::node_http::client(timeout, None).unwrap())
    }

    fn node(id: &str, control_addr: SocketAddr) -> NodeInfo {
        NodeInfo {
            id: id.to_string(),
            client_addr: "127.0.0.1:1".to_string(),
            ws_url: None,
            control_addr: control_addr.to_string(),
            control_tls: false,
            weight: 1,
            ceiling: 1_000,
        }
    }

    #[tokio::test]
    async fn pull_all_marks_only_answering_nodes_healthy() {
        let good =
            serve_health(StatusCode::OK, r#"{"status":"ok","node":"good","shards":4,"connections":17,"ceiling":500}"#)
                .await;
        let broken = serve_health(StatusCode::INTERNAL_SERVER_ERROR, r#"{"status":"ok"}"#).await;
        let nodes = [node("good", good), node("broken", broken), node("gone", closed_addr().await)];

        let mut board = plain_board(Duration::from_secs(5));
        board.pull_all(&nodes).await;

        assert_eq!(board.len(), 3);
        let health = board.get("good").unwrap();
        assert!(health.is_healthy());
        assert_eq!((health.connections, health.ceiling, health.draining), (17, 500, false));
        for id in ["broken", "gone"] {
            let health = board.get(id).unwrap();
            assert!(!health.is_healthy(), "{id} should be unhealthy");
            assert_eq!(health.consecutive_failures, 1);
            assert_eq!(health.last_ok, None);
        }

        // Failures accumulate; a node no longer listed is forgotten.
        board.pull_all(&nodes[..2]).await;
        assert!(board.is_healthy("good"));
        assert_eq!(board.get("broken").unwrap().consecutive_failures, 2);
        assert_eq!(board.get("gone"), None);
        assert_eq!(board.len(), 2);
    }

    #[tokio::test]
    async fn pull_all_drops_a_node_that_stops_answering() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/health", get(|| async { r#"{"status":"ok","connections":3}"# }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let nodes = [node("n1", addr)];
        let mut board = plain_board(Duration::from_secs(5));

        board.pull_all(&nodes).await;
        let first = board.get("n1").unwrap().clone();
        assert!(first.is_healthy());
        assert_eq!(first.ceiling, u64::MAX, "no ceiling reported");

        // Graceful shutdown also closes the pooled keep-alive connection.
        let _ = stop.send(());
        server.await.unwrap();
        board.pull_all(&nodes).await;
        let after = board.get("n1").unwrap();
        assert!(!after.is_healthy());
        assert_eq!(after.consecutive_failures, 1);
        assert_eq!(after.last_ok, first.last_ok, "the last success is kept");
    }

    #[tokio::test]
    async fn pull_one_reads_leniently_but_rejects_bad_answers() {
        let client = plain_board(Duration::from_secs(5)).client;

        let draining = serve_health(StatusCode::OK, r#"{"status":"draining","node":"n1","extra":[1,2]}"#).await;
        let report = pull_one(&client, &node("n1", draining)).await.unwrap();
        assert!(report.is_draining());
        assert_eq!((report.connections, report.ceiling), (0, None));

        let empty = serve_health(StatusCode::OK, "{}").await;
        let report = pull_one(&client, &node("n1", empty)).await.unwrap();
        assert!(!report.is_draining());

        let garbage = serve_health(StatusCode::OK, "<html>ok</html>").await;
        assert!(pull_one(&client, &node("n1", garbage)).await.is_err());

        let wrong_type = serve_health(StatusCode::OK, r#"{"status":"ok","connections":"many"}"#).await;
        assert!(pull_one(&client, &node("n1", wrong_type)).await.is_err());

        let other_node = serve_health(StatusCode::OK, r#"{"status":"ok","node":"n2"}"#).await;
        let error = pull_one(&client, &node("n1", other_node)).await.unwrap_err();
        assert!(error.contains("n2"), "{error}");

        let huge = serve(Router::new().route("/health", get(|| async { " ".repeat(MAX_REPORT_BYTES + 1) }))).await;
        assert!(pull_one(&client, &node("n1", huge)).await.is_err());

        let missing = serve(Router::new()).await;
        assert!(pull_one(&client, &node("n1", missing)).await.is_err());
    }

    #[tokio::test]
    async fn a_node_that_never_answers_fails_at_the_timeout() {
        // Accepts connections (the kernel does) but never reads or answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nodes = [node("silent", silent.local_addr().unwrap())];
        let mut board = plain_board(Duration::from_millis(200));
        board.pull_all(&nodes).await;
        assert!(!board.is_healthy("silent"));
        assert_eq!(board.get("silent").unwrap().consecutive_failures, 1);
        drop(silent);
    }

    #[test]
    fn a_success_after_failures_makes_the_node_healthy_again() {
        let mut board = plain_board(Duration::from_millis(500));
        let now = Instant::now();
        board.record("n1", Err("refused".to_string()), now);
        board.record("n1", Err("refused".to_string()), now);
        assert_eq!(board.get("n1").unwrap().consecutive_failures, 2);
        assert!(!board.is_healthy("n1"));
        let report = HealthReport { status: "ok".to_string(), connections: 9, ceiling: Some(10), ..Default::default() };
        board.record("n1", Ok(report), now);
        assert!(board.is_healthy("n1"));
        assert_eq!(board.get("n1").unwrap().connections, 9);
        assert!(!board.is_healthy("unknown"));
    }
}
