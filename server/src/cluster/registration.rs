//! The node's entries in Redis: its registration (renewed every third of
//! its lifetime, removed when the node drains) and the route of every
//! connection that authenticated here.
//!
//! Route changes are written in arrival order by one task, in batches, and
//! each changed user is then announced to the routers so their caches drop
//! it. Every route is rewritten every third of its lifetime while the
//! connection stays, and at once when Redis turns out to have lost the
//! node's registration (a restart without persistence).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::Route;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::sync::lock;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::Uplink;
use crate::status::NodeStatus;

/// Most route changes written in one batch.
const BATCH: usize = 1000;

enum RouteOp {
    Online(String, Route),
    Offline(String, u64),
}

/// The routes of this node's connections, by user.
type NodeRoutes = Arc<Mutex<FxHashMap<String, Vec<Route>>>>;

/// Hands route changes to the writer task.
#[derive(Clone)]
pub struct RouteWriter(mpsc::UnboundedSender<RouteOp>);

impl RouteWriter {
    /// A connection of `user` authenticated here.
    pub fn online(&self, user: String, route: Route) {
        let _ = self.0.send(RouteOp::Online(user, route));
    }

    /// Connection `conn_id` of `user` closed.
    pub fn offline(&self, user: String, conn_id: u64) {
        let _ = self.0.send(RouteOp::Offline(user, conn_id));
    }
}

/// Starts the registration heartbeat, the route writer and the route
/// refresher.
pub fn start(uplink: Arc<Uplink>, registry: Registry, status: Arc<NodeStatus>) -> RouteWriter {
    let routes: NodeRoutes = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_routes(uplink.clone(), registry.clone(), routes.clone(), rx));
    tokio::spawn(heartbeat(uplink, registry, routes, status));
    RouteWriter(tx)
}

async fn write_routes(
    uplink: Arc<Uplink>,
    registry: Registry,
    routes: NodeRoutes,
    mut ops: mpsc::UnboundedReceiver<RouteOp>,
) {
    let ttl = uplink.settings().route_ttl;
    let node = uplink.node_id().to_string();
    let mut batch = Vec::with_capacity(BATCH);
    while ops.recv_many(&mut batch, BATCH).await > 0 {
        let mut added: Vec<(String, Route)> = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        for op in batch.drain(..) {
            match op {
                RouteOp::Online(user, route) => {
                    lock(&routes).entry(user.clone()).or_default().push(route.clone());
                    added.push((user.clone(), route));
                    changed.push(user);
                }
                RouteOp::Offline(user, conn_id) => {
                    {
                        let mut local = lock(&routes);
                        if let Some(conns) = local.get_mut(&user) {
                            conns.retain(|r| r.conn_id != conn_id);
                            if conns.is_empty() {
                                local.remove(&user);
                            }
                        }
                    }
                    // A route added in this batch and already gone is not written.
                    let before = added.len();
                    added.retain(|(u, r)| !(u == &user && r.conn_id == conn_id));
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
            if let Err(e) = registry.refresh_routes(&added, ttl).await {
                // The refresher writes them again within a third of the ttl.
                tracing::warn!(routes = added.len(), "could not write routes to Redis: {e}");
                metrics::counter!("corecast_route_write_failures_total").increment(1);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        for user in changed {
            uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { user }));
        }
    }
}

/// Writes every route of this node again; returns whether all were written.
async fn refresh_all(registry: &Registry, routes: &NodeRoutes, ttl: Duration) -> bool {
    let all: Vec<(String, Route)> =
        lock(routes).iter().flat_map(|(user, conns)| conns.iter().map(|r| (user.clone(), r.clone()))).collect();
    for chunk in all.chunks(BATCH * 10) {
        if let Err(e) = registry.refresh_routes(chunk, ttl).await {
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
    let users: Vec<String> = lock(routes).keys().cloned().collect();
    for user in users {
        uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { user }));
    }
}

/// Renews the registration and the routes until the node drains, then
/// removes the registration so dispatch stops sending clients here.
async fn heartbeat(uplink: Arc<Uplink>, registry: Registry, routes: NodeRoutes, status: Arc<NodeStatus>) {
    let settings = uplink.settings().clone();
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
                }
                registered_once = true;
            }
            Err(e) => tracing::warn!("could not renew the node's registration in Redis: {e}"),
        }
        if rewrite_pending {
            if refresh_all(&registry, &routes, settings.route_ttl).await {
                announce_all(&uplink, &routes);
                rewrite_pending = false;
                last_refresh = tokio::time::Instant::now();
            }
        } else if last_refresh.elapsed() >= refresh_every {
            refresh_all(&registry, &routes, settings.route_ttl).await;
            last_refresh = tokio::time::Instant::now();
        }
        tokio::time::sleep(period).await;
    }
}
