//! Presence on a single node: which connections (and devices) each user has
//! online. In a cluster the same questions are answered by the Redis route
//! table; this in-memory table is what the single node uses.

use rustc_hash::FxHashMap;

/// One online connection of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineConn {
    /// Connection id (the shard is in its top 16 bits).
    pub conn_id: u64,
    /// Device id the connection authenticated with.
    pub device: String,
}

/// user → online connections.
#[derive(Default)]
pub struct Presence {
    by_user: FxHashMap<String, Vec<OnlineConn>>,
}

impl Presence {
    /// Records a connection coming online.
    pub fn online(&mut self, user: &str, conn_id: u64, device: &str) {
        let conns = self.by_user.entry(user.to_string()).or_default();
        if !conns.iter().any(|c| c.conn_id == conn_id) {
            conns.push(OnlineConn { conn_id, device: device.to_string() });
        }
    }

    /// Records a connection going offline.
    pub fn offline(&mut self, user: &str, conn_id: u64) {
        if let Some(conns) = self.by_user.get_mut(user) {
            conns.retain(|c| c.conn_id != conn_id);
            if conns.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// The user's online connections.
    pub fn conns(&self, user: &str) -> &[OnlineConn] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_come_and_go() {
        let mut p = Presence::default();
        p.online("alice", 1, "phone");
        p.online("alice", 2, "laptop");
        p.online("alice", 2, "laptop");
        assert_eq!(p.conns("alice").len(), 2);
        p.offline("alice", 1);
        assert_eq!(p.conns("alice")[0].device, "laptop");
        p.offline("alice", 2);
        assert!(p.conns("alice").is_empty());
    }
}
