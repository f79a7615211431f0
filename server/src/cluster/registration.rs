//! The node's entries in Redis: its registration (renewed every third of
//! its lifetime, removed when the node drains) and the route of every
//! connection that authenticated here.
//!
//! Route changes are written in arrival order by one task, in batches, and
//! each changed user is then announced to the routers so their caches drop
//! it. Every route is rewritten every third of its lifetime while the
//! connection stays, and at once when Redis turns out to have lost the
//! node's registration (a restart without persistence).
//!
//! The node keeps its connections' routes to rewrite them: per user, each
//! connection's id and device, in about a hundred bytes per connection (the
//! node id is the same for all, so it is not stored). The control thread
//! that runs this returns its free allocator pages once the route writes of
//! a burst (a login storm, a refresh) are over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use corecast_cluster::registry::redis::Registry;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::sync::lock;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::Uplink;
use crate::allocator::{release_free_pages, QuietAfterBurst};
use crate::status::NodeStatus;

/// Most route changes written in one batch.
const BATCH: usize = 1000;

enum RouteOp {
    Online { user: Box<str>, conn_id: u64, device: Box<str> },
    Offline { user: Box<str>, conn_id: u64 },
}

/// A connection's route on this node: its id and device.
type ConnRoute = (u64, Box<str>);

/// The routes of this node's connections, by user; most users have one
/// connection here, kept inline.
type NodeRoutes = Arc<Mutex<FxHashMap<Box<str>, SmallVec<[ConnRoute; 1]>>>>;

/// Hands route changes to the writer task.
#[derive(Clone)]
pub struct RouteWriter(mpsc::UnboundedSender<RouteOp>);

impl RouteWriter {
    /// Connection `conn_id` of `user` authenticated here as `device`.
    pub fn online(&self, user: &str, conn_id: u64, device: &str) {
        let _ = self.0.send(RouteOp::Online { user: user.into(), conn_id, device: device.into() });
    }

    /// Connection `conn_id` of `user` closed.
    pub fn offline(&self, user: &str, conn_id: u64) {
        let _ = self.0.send(RouteOp::Offline { user: user.into(), conn_id });
    }
}

/// Starts the registration heartbeat, the route writer and the route
/// refresher.
pub fn start(uplink: Arc<Uplink>, registry: Registry, status: Arc<NodeStatus>) -> RouteWriter {
    let routes: NodeRoutes = Arc::default();
    let wrote = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_routes(uplink.clone(), registry.clone(), routes.clone(), wrote.clone(), rx));
    tokio::spawn(heartbeat(uplink, registry, routes, wrote, status));
    RouteWriter(tx)
}

async fn write_routes(
    uplink: Arc<Uplink>,
    registry: Registry,
    routes: NodeRoutes,
    wrote: Arc<AtomicBool>,
    mut ops: mpsc::UnboundedReceiver<RouteOp>,
) {
    let ttl = uplink.settings().route_ttl;
    let node = uplink.node_id().to_string();
    let mut batch = Vec::with_capacity(BATCH);
    while ops.recv_many(&mut batch, BATCH).await > 0 {
        wrote.store(true, Ordering::Relaxed);
        let mut added: Vec<(Box<str>, u64, Box<str>)> = Vec::new();
        let mut changed: Vec<Box<str>> = Vec::new();
        for op in batch.drain(..) {
            match op {
                RouteOp::Online { user, conn_id, device } => {
                    lock(&routes).entry(user.clone()).or_default().push((conn_id, device.clone()));
                    added.push((user.clone(), conn_id, device));
                    changed.push(user);
                }
                RouteOp::Offline { user, conn_id } => {
                    {
                        let mut local = lock(&routes);
                        if let Some(conns) = local.get_mut(&user) {
                            conns.retain(|(id, _)| *id != conn_id);
                            if conns.is_empty() {
                                local.remove(&user);
                            }
                        }
                    }
                    // A route added in this batch and already gone is not written.
                    let before = added.len();
                    added.retain(|(u, id, _)| !(u == &user && *id == conn_id));
                    if added.len() == before {
                        if let Err(e) = registry.remove_route(&user, &node, conn_id).await {
                            tracing::warn!(%user, "could not remove a route from Redis: {e}");
                            metrics::counter!("corecast_route_write_failures_total").increment(1);
                        }
                    }
                    changed.push(user);
                }
            }
        }
        if !added.is_empty() {
            let fields: Vec<(&str, u64, &str)> = added.iter().map(|(u, id, d)| (&**u, *id, &**d)).collect();
            if let Err(e) = registry.refresh_node_routes(&node, &fields, ttl).await {
                // The refresher writes them again within a third of the ttl.
                tracing::warn!(routes = added.len(), "could not write routes to Redis: {e}");
                metrics::counter!("corecast_route_write_failures_total").increment(1);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for user in changed {
            uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { user: user.into() }));
        }
    }
}

/// Writes every route of this node again, a chunk at a time; returns
/// whether all were written.
async fn refresh_all(registry: &Registry, node: &str, routes: &NodeRoutes, ttl: Duration) -> bool {
    let all: Vec<(Box<str>, u64, Box<str>)> = lock(routes)
        .iter()
        .flat_map(|(user, conns)| conns.iter().map(|(id, device)| (user.clone(), *id, device.clone())))
        .collect();
    for chunk in all.chunks(BATCH * 10) {
        let fields: Vec<(&str, u64, &str)> = chunk.iter().map(|(u, id, d)| (&**u, *id, &**d)).collect();
        if let Err(e) = registry.refresh_node_routes(node, &fields, ttl).await {
            tracing::warn!("could not refresh routes in Redis: {e}");
            metrics::counter!("corecast_route_write_failures_total").increment(1);
            return false;
        }
    }
    true
}

/// After Redis lost everything, routers may have cached these users as
/// offline: tell them to look again.
fn announce_all(uplink: &Uplink, routes: &NodeRoutes) {
    let users: Vec<String> = lock(routes).keys().map(|user| user.to_string()).collect();
    for user in users {
        uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { user }));
    }
}

/// Renews the registration and the routes until the node drains, then
/// removes the registration so dispatch stops sending clients here.
async fn heartbeat(
    uplink: Arc<Uplink>,
    registry: Registry,
    routes: NodeRoutes,
    wrote: Arc<AtomicBool>,
    status: Arc<NodeStatus>,
) {
    let settings = uplink.settings().clone();
    let node = settings.node.id.clone();
    let mut quiet = QuietAfterBurst::default();
    let period = settings.registry_ttl / 3;
    let refresh_every = (settings.route_ttl / 3).max(period);
    let mut registered_once = false;
    let mut rewrite_pending = false;
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        if status.is_draining() {
            if let Err(e) = registry.unregister_node(&settings.node.id).await {
                tracing::warn!("could not remove the node's registration: {e}");
            }
            tracing::info!("draining: node removed from the registry");
            return;
        }
        match registry.register_node(&settings.node, settings.registry_ttl).await {
            Ok(existed) => {
                if registered_once && !existed {
                    tracing::warn!("Redis had lost this node's registration: writing every route again");
                    metrics::counter!("corecast_node_reregistrations_total").increment(1);
                    rewrite_pending = true;
                    uplink.ask_presence_reports();
                }
                registered_once = true;
            }
            Err(e) => tracing::warn!("could not renew the node's registration in Redis: {e}"),
        }
        if rewrite_pending {
            if refresh_all(&registry, &node, &routes, settings.route_ttl).await {
                announce_all(&uplink, &routes);
                rewrite_pending = false;
                last_refresh = tokio::time::Instant::now();
            }
        } else if last_refresh.elapsed() >= refresh_every {
            refresh_all(&registry, &node, &routes, settings.route_ttl).await;
            wrote.store(true, Ordering::Relaxed);
            last_refresh = tokio::time::Instant::now();
        }
        if quiet.period(wrote.swap(false, Ordering::Relaxed)) {
            // This runs on the control thread, where the route writes of
            // the burst were allocated.
            release_free_pages();
        }
        tokio::time::sleep(period).await;
    }
}
