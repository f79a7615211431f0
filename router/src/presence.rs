//! Presence on a single node: which connections (and devices) each user has
//! online, kept in memory. In a cluster the same questions are answered by
//! the Redis route table; this table is what the single node uses.

use std::sync::Mutex;

use async_trait::async_trait;
use corecast_cluster::registry::Route;
use rustc_hash::FxHashMap;

use crate::routes::RouteTable;

/// user → online connections, on one node.
#[derive(Default)]
pub struct Presence {
    by_user: FxHashMap<String, Vec<Route>>,
}

impl Presence {
    /// Records a connection coming online.
    pub fn online(&mut self, user: &str, route: Route) {
        let conns = self.by_user.entry(user.to_string()).or_default();
        if !conns.iter().any(|c| c.conn_id == route.conn_id && c.node == route.node) {
            conns.push(route);
        }
    }

    /// Records a connection going offline.
    pub fn offline(&mut self, user: &str, node: &str, conn_id: u64) {
        if let Some(conns) = self.by_user.get_mut(user) {
            conns.retain(|c| !(c.conn_id == conn_id && c.node == node));
            if conns.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// The user's online connections.
    pub fn conns(&self, user: &str) -> &[Route] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }
}

/// The in-memory route table of a single node.
#[derive(Default)]
pub struct InMemoryRouteTable(Mutex<Presence>);

impl InMemoryRouteTable {
    fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        // A panic while holding the lock leaves a plain map behind.
        corecast_proto::sync::lock(&self.0)
    }
}

#[async_trait]
impl RouteTable for InMemoryRouteTable {
    async fn lookup(&self, users: &[String]) -> Vec<Route> {
        let presence = self.presence();
        users.iter().flat_map(|u| presence.conns(u).iter().cloned()).collect()
    }

    fn online(&self, user: &str, route: Route) {
        self.presence().online(user, route);
    }

    fn offline(&self, user: &str, node: &str, conn_id: u64) {
        self.presence().offline(user, node, conn_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(conn_id: u64, device: &str) -> Route {
        Route { node: "n".into(), conn_id, device: device.into() }
    }

    #[test]
    fn devices_come_and_go() {
        let mut p = Presence::default();
        p.online("alice", route(1, "phone"));
        p.online("alice", route(2, "laptop"));
        p.online("alice", route(2, "laptop"));
        assert_eq!(p.conns("alice").len(), 2);
        p.offline("alice", "n", 1);
        assert_eq!(p.conns("alice")[0].device, "laptop");
        p.offline("alice", "other-node", 2);
        assert_eq!(p.conns("alice").len(), 1);
        p.offline("alice", "n", 2);
        assert!(p.conns("alice").is_empty());
    }
}
