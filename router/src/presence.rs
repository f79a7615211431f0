//! Presence on a single node: which connections (and devices) each user has
//! online, kept in memory. In a cluster the same questions are answered by
//! the Redis route table; this table is what the single node uses.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use corecast_cluster::registry::Route;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::routes::RouteTable;

/// One online connection, compactly: its node and device are indexes into
/// the table's interned names. A single node holds one of these per
/// connection, so its size is part of what a connection costs.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Online {
    conn_id: u64,
    node: u32,
    device: u32,
}

/// user → online connections, on one node.
#[derive(Default)]
pub struct Presence {
    by_user: FxHashMap<Box<str>, SmallVec<[Online; 1]>>,
    /// Node and device names, interned (a handful of distinct values).
    names: Vec<Arc<str>>,
    name_ids: FxHashMap<Arc<str>, u32>,
}

impl Presence {
    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let shared: Arc<str> = name.into();
        let id = self.names.len() as u32;
        self.names.push(shared.clone());
        self.name_ids.insert(shared, id);
        id
    }

    /// Records a connection coming online.
    pub fn online(&mut self, user: &str, route: Route) {
        let online =
            Online { conn_id: route.conn_id, node: self.name_id(&route.node), device: self.name_id(&route.device) };
        match self.by_user.get_mut(user) {
            Some(conns) => {
                if !conns.iter().any(|c| c.conn_id == online.conn_id && c.node == online.node) {
                    conns.push(online);
                }
            }
            None => {
                self.by_user.insert(user.into(), SmallVec::from_elem(online, 1));
            }
        }
    }

    /// Records a connection going offline.
    pub fn offline(&mut self, user: &str, node: &str, conn_id: u64) {
        let Some(&node) = self.name_ids.get(node) else { return };
        if let Some(conns) = self.by_user.get_mut(user) {
            conns.retain(|c| !(c.conn_id == conn_id && c.node == node));
            if conns.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// The user's online connections.
    pub fn conns(&self, user: &str) -> Vec<Route> {
        let Some(conns) = self.by_user.get(user) else { return Vec::new() };
        conns
            .iter()
            .map(|c| Route {
                node: self.names[c.node as usize].to_string(),
                conn_id: c.conn_id,
                device: self.names[c.device as usize].to_string(),
            })
            .collect()
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
        users.iter().flat_map(|u| presence.conns(u)).collect()
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
