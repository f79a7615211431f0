//! What a dispatch request is answered with: the nodes a client should
//! connect to, best first, and how it should back off when reconnecting.
//! Routers rank the cluster's nodes into a [`DispatchAnswer`]; a single node
//! answers with itself and the same [`ReconnectHints`].

use serde::{Deserialize, Serialize};

/// Reconnect backoff a client should follow after losing its connection:
/// attempt `n` (from 0) waits `min(max_ms, base_ms * factor^n)`, spread by
/// ± `jitter` of itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectHints {
    /// Wait before the first reconnect attempt, in milliseconds.
    pub base_ms: u64,
    /// Growth of the wait after each failed attempt.
    pub factor: f64,
    /// Fraction of the wait to randomise (0.5 = ± 50 %).
    pub jitter: f64,
    /// Longest wait between attempts, in milliseconds.
    pub max_ms: u64,
}

impl Default for ReconnectHints {
    /// 500 ms, doubling, ± 50 %, at most 30 s.
    fn default() -> ReconnectHints {
        ReconnectHints { base_ms: 500, factor: 2.0, jitter: 0.5, max_ms: 30_000 }
    }
}

/// One node a client may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchEntry {
    /// Node id.
    pub node: String,
    /// Where the client connects (`host:port`).
    pub addr: String,
    /// Where a WebSocket client connects (`ws://…` or `wss://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// The node's registered weight.
    pub weight: u32,
    /// Client connections the node held at its last pull.
    pub connections: u64,
    /// The ceiling in force: the lower of the registered one and the one
    /// the node reported.
    pub ceiling: u64,
}

/// The answer to a dispatch request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchAnswer {
    /// Nodes to try, best first; empty when no node can take a client.
    pub nodes: Vec<DispatchEntry>,
    /// How to back off between reconnect attempts.
    pub reconnect: ReconnectHints,
    /// True when the router could not read the registered nodes from Redis
    /// at its last try: the nodes are the last ones it read, those of them
    /// its health pulls still find healthy. Always false on a single node.
    #[serde(default)]
    pub stale: bool,
}
