//! What the node says about itself to health pulls and dispatch: its id in
//! the cluster, its connection ceiling and weight, and whether it is
//! draining.

use std::sync::atomic::{AtomicBool, Ordering};

/// The node's self-description, shared by the control plane and the uplink.
#[derive(Debug)]
pub struct NodeStatus {
    /// Node id (in a cluster, with its per-start suffix).
    pub id: String,
    /// Most client connections the node accepts.
    pub ceiling: u64,
    /// Relative share of new clients dispatch sends here.
    pub weight: u32,
    draining: AtomicBool,
}

impl NodeStatus {
    /// A node that is not draining.
    pub fn new(id: String, ceiling: u64, weight: u32) -> NodeStatus {
        NodeStatus { id, ceiling, weight, draining: AtomicBool::new(false) }
    }

    /// Marks the node draining: health reports it and the uplink removes it
    /// from the registry, so dispatch stops sending clients here.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
