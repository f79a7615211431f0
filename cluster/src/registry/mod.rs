//! The cluster's shared registry in Redis: which routers and server nodes
//! are alive (each with a heartbeat that expires), the global epoch counter,
//! the route table (user → connections → server node) and the token
//! revocations: the records both nodes and routers read and write, and the
//! [`redis`] handle on them.

use serde::{Deserialize, Serialize};

/// Prefix of every key corecast keeps in Redis.
pub const KEY_PREFIX: &str = "cc:";

/// How long a token revocation is kept (30 days), in Redis and on the
/// nodes: tokens must not be issued for longer than this.
pub const REVOCATION_RETENTION_SECS: u64 = 30 * 24 * 3600;

/// A live router as registered in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInfo {
    /// Router id, unique in the cluster.
    pub id: String,
    /// Where server nodes open their link to this router (`host:port`).
    pub link_addr: String,
    /// Where this router serves HTTP (dispatch, admin API).
    pub http_addr: String,
    /// The epoch this router's sequence numbers currently use, so a router
    /// taking a new epoch after Redis lost its counter can still go past it.
    #[serde(default)]
    pub epoch: u64,
}

/// A live server node as registered in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id, unique in the cluster.
    pub id: String,
    /// Where clients connect (`host:port`).
    pub client_addr: String,
    /// Where WebSocket clients connect (`ws://host:port/path` or `wss://…`);
    /// absent from nodes registered by an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// The node's control plane (`host:port`): `/health`, `/metrics`, node admin API.
    pub control_addr: String,
    /// Whether the control plane speaks HTTPS (the node has
    /// `control_tls_cert_file`); false for nodes of an older version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control_tls: bool,
    /// Relative share of new clients this node should get.
    pub weight: u32,
    /// Most client connections this node accepts.
    pub ceiling: u64,
}

impl NodeInfo {
    /// The URL of `path` (starting with `/`) on the node's control plane.
    pub fn control_url(&self, path: &str) -> String {
        let scheme = if self.control_tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.control_addr)
    }
}

/// One online connection of a user, somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The server node holding the connection.
    pub node: String,
    /// The connection id on that node (its shard in the top 16 bits).
    pub conn_id: u64,
    /// The device the connection authenticated as.
    pub device: String,
}

pub mod redis;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_urls_follow_the_registered_scheme_and_old_registrations_are_plain() {
        let old = r#"{"id":"n1","client_addr":"10.0.0.1:7100","control_addr":"10.0.0.1:7180","weight":1,"ceiling":9}"#;
        let mut node: NodeInfo = serde_json::from_str(old).unwrap();
        assert!(!node.control_tls);
        assert_eq!(node.control_url("/health"), "http://10.0.0.1:7180/health");
        assert!(!serde_json::to_string(&node).unwrap().contains("control_tls"), "plain nodes register as before");

        node.control_tls = true;
        let again: NodeInfo = serde_json::from_str(&serde_json::to_string(&node).unwrap()).unwrap();
        assert_eq!(again.control_url("/v1/admin/online"), "https://10.0.0.1:7180/v1/admin/online");
    }
}
