//! The node's entries in Redis: its registration (renewed every third of
//! its lifetime, removed when the node drains) and the route of every
//! connection that authenticated here.
//!
//! Route changes are written in arrival order by one task, in batches, and
//! the users of a batch are then announced to the routers in one frame so
//! their caches drop them. Every route is rewritten every third of its lifetime while the
//! connection stays, and at once when Redis turns out to have lost the
//! node's registration (a restart without persistence).
//!
//! The node keeps no copy of its routes: to rewrite them it reads them from
//! the shards a page at a time (`ShardCommand::ListRoutes`), whose
//! connection records already hold each user and device. The control
//! thread that runs this returns its free allocator pages once the route
//! writes of a burst (a login storm, a refresh) are over.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use corecast_cluster::registry::redis::Registry;
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use tokio::sync::mpsc;

use super::Uplink;
use crate::allocator::{release_free_pages, QuietAfterBurst};
use crate::shard::{Mesh, ShardCommand};
use crate::status::NodeStatus;

/// Most route changes written in one batch, and most routes in one page
/// read from a shard.
const BATCH: usize = 1000;
/// How long a shard may take to answer for a page of its routes.
const PAGE_WAIT: Duration = Duration::from_secs(5);

enum RouteOp {
    Online { user: Box<str>, conn_id: u64, device: Box<str> },
    Offline { user: Box<str>, conn_id: u64 },
}

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
pub fn start(uplink: Arc<Uplink>, registry: Registry, shards: Mesh, status: Arc<NodeStatus>) -> RouteWriter {
    let wrote = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_routes(uplink.clone(), registry.clone(), wrote.clone(), rx));
    tokio::spawn(heartbeat(uplink, registry, shards, wrote, status));
    RouteWriter(tx)
}

async fn write_routes(
    uplink: Arc<Uplink>,
    registry: Registry,
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
                    added.push((user.clone(), conn_id, device));
                    changed.push(user);
                }
                RouteOp::Offline { user, conn_id } => {
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
        let users = changed.into_iter().map(String::from).collect();
        uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { users }));
    }
}

/// Writes every route of this node again, a page of one shard at a time;
/// returns whether all were written. With `announce`, each user written is
/// announced to the routers too: after Redis lost everything, routers may
/// have cached them as offline.
async fn refresh_all(uplink: &Uplink, registry: &Registry, shards: &Mesh, ttl: Duration, announce: bool) -> bool {
    let node = uplink.node_id();
    for (shard, inbox) in shards.all() {
        let mut from = Some(0);
        while let Some(start) = from {
            let (reply, answer) = flume::bounded(1);
            if inbox.send_async(ShardCommand::ListRoutes { from: start, limit: BATCH, reply }).await.is_err() {
                return false;
            }
            let page = match tokio::time::timeout(PAGE_WAIT, answer.recv_async()).await {
                Ok(Ok(page)) => page,
                _ => {
                    tracing::warn!(shard, "a shard did not list its routes in time; the refresh is retried");
                    return false;
                }
            };
            let fields: Vec<(&str, u64, &str)> = page.routes.iter().map(|(u, id, d)| (&**u, *id, &**d)).collect();
            if let Err(e) = registry.refresh_node_routes(node, &fields, ttl).await {
                tracing::warn!("could not refresh routes in Redis: {e}");
                metrics::counter!("corecast_route_write_failures_total").increment(1);
                return false;
            }
            if announce && !page.routes.is_empty() {
                let users = page.routes.iter().map(|(user, _, _)| user.to_string()).collect();
                uplink.to_routers(&InternalFrameBytes::encode(&InternalFrame::RouteChanged { users }));
            }
            from = page.next;
        }
    }
    true
}

/// Renews the registration and the routes until the node drains, then
/// removes the registration so dispatch stops sending clients here.
async fn heartbeat(
    uplink: Arc<Uplink>,
    registry: Registry,
    shards: Mesh,
    wrote: Arc<AtomicBool>,
    status: Arc<NodeStatus>,
) {
    let settings = uplink.settings().clone();
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
            if refresh_all(&uplink, &registry, &shards, settings.route_ttl, true).await {
                rewrite_pending = false;
                last_refresh = tokio::time::Instant::now();
            }
        } else if last_refresh.elapsed() >= refresh_every {
            if refresh_all(&uplink, &registry, &shards, settings.route_ttl, false).await {
                metrics::counter!("corecast_route_refreshes_total").increment(1);
            }
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
