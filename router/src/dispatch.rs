//! Dispatch ranking: which server nodes a client should connect to, best
//! first. This module only ranks: it takes the registered nodes and a
//! [`HealthBoard`] snapshot and returns a [`DispatchAnswer`] (its types live
//! in `corecast-cluster`, which single nodes answer with too), with no I/O
//! and the clock passed in, so the HTTP endpoint that serves it stays
//! trivial and the ranking is tested directly.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use corecast_cluster::dispatch::{DispatchAnswer, DispatchEntry, ReconnectHints};
use corecast_cluster::registry::NodeInfo;

use crate::health::HealthBoard;

/// Ranks `nodes` for a new client, best first.
///
/// A node is returned only if its latest health pull succeeded, that
/// success is no older than `max_staleness` at `now`, it is not draining,
/// its weight is positive, and it holds fewer connections than its ceiling
/// (the lower of the registered and the reported one); a node at or above
/// its ceiling is never returned. Nodes are ordered by connections per unit
/// of weight, then by the fraction of the ceiling in use, then by id; a node
/// listed twice is returned once.
pub fn rank(
    nodes: &[NodeInfo],
    health: &HealthBoard,
    max_staleness: Duration,
    now: Instant,
    hints: &ReconnectHints,
) -> DispatchAnswer {
    let mut seen = HashSet::with_capacity(nodes.len());
    let mut ranked: Vec<(f64, f64, DispatchEntry)> = Vec::with_capacity(nodes.len());
    for node in nodes {
        if !seen.insert(node.id.as_str()) {
            continue;
        }
        let Some(state) = health.get(&node.id) else { continue };
        let Some(last_ok) = state.last_ok else { continue };
        let fresh = now.saturating_duration_since(last_ok) <= max_staleness;
        if !state.is_healthy() || !fresh || state.draining || node.weight == 0 {
            continue;
        }
        let ceiling = state.ceiling.min(node.ceiling);
        if state.connections >= ceiling {
            continue;
        }
        // `ceiling > connections >= 0`, so both divisors are positive.
        let per_weight = state.connections as f64 / node.weight as f64;
        let fill = state.connections as f64 / ceiling as f64;
        let entry = DispatchEntry {
            node: node.id.clone(),
            addr: node.client_addr.clone(),
            ws_url: node.ws_url.clone(),
            weight: node.weight,
            connections: state.connections,
            ceiling,
        };
        ranked.push((per_weight, fill, entry));
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then_with(|| a.2.node.cmp(&b.2.node)));
    let nodes = ranked.into_iter().map(|(_, _, entry)| entry).collect();
    DispatchAnswer { nodes, reconnect: *hints, stale: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthReport;

    const STALENESS: Duration = Duration::from_secs(3);

    fn node(id: &str, weight: u32, ceiling: u64) -> NodeInfo {
        NodeInfo {
            id: id.to_string(),
            client_addr: format!("{id}.example:7000"),
            ws_url: Some(format!("ws://{id}.example:7001/ws")),
            control_addr: format!("{id}.example:7001"),
            control_tls: false,
            weight,
            ceiling,
        }
    }

    fn report(connections: u64, ceiling: Option<u64>) -> HealthReport {
        HealthReport { status: "ok".to_string(), connections, ceiling, ..Default::default() }
    }

    fn ids(answer: &DispatchAnswer) -> Vec<&str> {
        answer.nodes.iter().map(|entry| entry.node.as_str()).collect()
    }

    fn rank_now(nodes: &[NodeInfo], board: &HealthBoard, now: Instant) -> DispatchAnswer {
        rank(nodes, board, STALENESS, now, &ReconnectHints::default())
    }

    fn board() -> HealthBoard {
        HealthBoard::new(crate::node_http::client(Duration::from_millis(500), None).unwrap())
    }

    #[test]
    fn less_loaded_node_first() {
        let now = Instant::now();
        let mut board = board();
        board.record("a", Ok(report(300, None)), now);
        board.record("b", Ok(report(100, None)), now);
        board.record("c", Ok(report(200, None)), now);
        let nodes = [node("a", 1, 1_000), node("b", 1, 1_000), node("c", 1, 1_000)];
        let answer = rank_now(&nodes, &board, now);
        assert_eq!(ids(&answer), ["b", "c", "a"]);
        assert_eq!(answer.nodes[0].addr, "b.example:7000");
        assert_eq!(answer.nodes[0].ws_url.as_deref(), Some("ws://b.example:7001/ws"));
        assert_eq!(answer.nodes[0].connections, 100);
    }

    #[test]
    fn weight_matters() {
        let now = Instant::now();
        let mut board = board();
        board.record("light", Ok(report(60, None)), now);
        board.record("heavy", Ok(report(100, None)), now);
        let nodes = [node("light", 1, 1_000), node("heavy", 2, 1_000)];
        // 100 / 2 = 50 per unit of weight, against 60 / 1.
        assert_eq!(ids(&rank_now(&nodes, &board, now)), ["heavy", "light"]);
    }

    #[test]
    fn ties_go_to_the_emptier_ceiling_then_the_lower_id() {
        let now = Instant::now();
        let mut board = board();
        for id in ["b", "a", "big"] {
            board.record(id, Ok(report(50, None)), now);
        }
        let nodes = [node("b", 1, 100), node("a", 1, 100), node("big", 1, 1_000)];
        assert_eq!(ids(&rank_now(&nodes, &board, now)), ["big", "a", "b"]);
    }

    #[test]
    fn failed_stale_draining_full_and_weightless_nodes_are_excluded() {
        let earlier = Instant::now();
        let now = earlier + Duration::from_secs(10);
        let mut board = board();
        board.record("ok", Ok(report(900, None)), now);
        board.record("failed", Ok(report(1, None)), now);
        board.record("failed", Err("timed out".to_string()), now);
        board.record("never", Err("refused".to_string()), now);
        board.record("stale", Ok(report(1, None)), earlier);
        let draining = HealthReport { status: "draining".to_string(), ..report(1, None) };
        board.record("draining", Ok(draining), now);
        board.record("full", Ok(report(1_000, None)), now);
        board.record("over", Ok(report(1_500, None)), now);
        board.record("reported_full", Ok(report(10, Some(10))), now);
        board.record("weightless", Ok(report(1, None)), now);
        let nodes = [
            node("ok", 1, 1_000),
            node("failed", 1, 1_000),
            node("never", 1, 1_000),
            node("unpulled", 1, 1_000),
            node("stale", 1, 1_000),
            node("draining", 1, 1_000),
            node("full", 1, 1_000),
            node("over", 1, 1_000),
            node("reported_full", 1, 1_000),
            node("weightless", 0, 1_000),
        ];
        let answer = rank_now(&nodes, &board, now);
        assert_eq!(ids(&answer), ["ok"]);
        assert_eq!(answer.nodes[0].ceiling, 1_000);
    }

    #[test]
    fn the_lower_ceiling_applies() {
        let now = Instant::now();
        let mut board = board();
        board.record("a", Ok(report(50, Some(60))), now);
        board.record("b", Ok(report(50, Some(10_000))), now);
        let nodes = [node("a", 1, 1_000), node("b", 1, 50)];
        let answer = rank_now(&nodes, &board, now);
        assert_eq!(ids(&answer), ["a"]);
        assert_eq!(answer.nodes[0].ceiling, 60);
    }

    #[test]
    fn empty_answer_when_nothing_is_healthy() {
        let now = Instant::now();
        let mut board = board();
        board.record("a", Err("refused".to_string()), now);
        let nodes = [node("a", 1, 1_000), node("b", 1, 1_000)];
        let hints = ReconnectHints { base_ms: 250, ..ReconnectHints::default() };
        let answer = rank(&nodes, &board, STALENESS, now, &hints);
        assert!(answer.nodes.is_empty());
        assert_eq!(answer.reconnect, hints);
        assert!(rank_now(&[], &board, now).nodes.is_empty());
    }

    #[test]
    fn a_node_listed_twice_is_returned_once() {
        let now = Instant::now();
        let mut board = board();
        board.record("a", Ok(report(1, None)), now);
        let nodes = [node("a", 1, 1_000), node("a", 1, 1_000)];
        assert_eq!(ids(&rank_now(&nodes, &board, now)), ["a"]);
    }

    #[test]
    fn the_answer_serializes_as_documented() {
        let now = Instant::now();
        let mut board = board();
        board.record("a", Ok(report(7, None)), now);
        let answer = rank_now(&[node("a", 3, 100)], &board, now);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "nodes": [{
                    "node": "a", "addr": "a.example:7000", "ws_url": "ws://a.example:7001/ws",
                    "weight": 3, "connections": 7, "ceiling": 100,
                }],
                "reconnect": { "base_ms": 500, "factor": 2.0, "jitter": 0.5, "max_ms": 30000 },
                "stale": false,
            })
        );
    }
}
