//! The seams between the router core and the world around it: the
//! [`RouteTable`] that says where users' connections are, and the
//! [`ConnSink`] that carries frames to the server node holding them.
//!
//! On a single node both are in-process (the in-memory presence table and
//! the shard inboxes); in a cluster the route table is Redis behind an LRU
//! cache and the sink is the router's links to the server nodes.

use async_trait::async_trait;
use corecast_proto::internal::InternalFrameBytes;

use corecast_cluster::registry::Route;

/// Where users' connections are.
#[async_trait]
pub trait RouteTable: Send + Sync + 'static {
    /// Every online connection of these users.
    async fn lookup(&self, users: &[String]) -> Vec<Route>;
    /// A connection authenticated. A table that others write (Redis, by the
    /// node) only forgets what it cached about `user`.
    fn online(&self, user: &str, route: Route);
    /// A connection closed; same caveat as [`RouteTable::online`].
    fn offline(&self, user: &str, node: &str, conn_id: u64);
    /// `user`'s connections changed somewhere: forget anything cached.
    fn forget(&self, _user: &str) {}
}

/// Where the core's frames for connections go.
pub trait ConnSink: Send + Sync + 'static {
    /// Hands an internal frame (connection frames, a room push, a broadcast)
    /// to server node `node`.
    fn to_node(&self, node: &str, frame: InternalFrameBytes);
}
