//! The router's route table: Redis (written by the server nodes) behind a
//! bounded LRU cache. A route to a node that has not been registered for a
//! whole registration lifetime is dropped from answers and pruned from
//! Redis (the grace covers a Redis restart, after which nodes register
//! again within one renewal); the cache forgets a user when a node reports
//! the user's connections changed, and everything when a node leaves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rustc_hash::{FxHashMap, FxHashSet};

use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::Route;
use corecast_proto::sync::lock;

use crate::route_cache::RouteCache;
use crate::routes::RouteTable;

/// Redis routes with a local cache.
pub struct RedisRoutes {
    registry: Registry,
    cache: Mutex<RouteCache>,
    /// When each node was last seen registered.
    last_seen: Mutex<FxHashMap<String, Instant>>,
    /// How long a node may be missing from the registry and still count.
    grace: Duration,
    /// Bumped by every invalidation: a lookup that raced one does not cache
    /// what it read.
    invalidations: AtomicU64,
}

impl RedisRoutes {
    /// A route table reading `registry`, caching up to `capacity` users;
    /// a node missing from the registry for `grace` has left.
    pub fn new(registry: Registry, capacity: usize, grace: Duration) -> RedisRoutes {
        RedisRoutes {
            registry,
            cache: Mutex::new(RouteCache::new(capacity)),
            last_seen: Mutex::new(FxHashMap::default()),
            grace,
            invalidations: AtomicU64::new(0),
        }
    }

    /// Records the nodes registered now. When one has been missing for
    /// longer than the grace, it left: cached routes to it are wrong and the
    /// cache starts over.
    pub fn saw_nodes(&self, nodes: impl IntoIterator<Item = String>) {
        let now = Instant::now();
        let mut seen = lock(&self.last_seen);
        for node in nodes {
            seen.insert(node, now);
        }
        let before = seen.len();
        seen.retain(|_, at| now.duration_since(*at) <= self.grace);
        if seen.len() < before {
            self.invalidations.fetch_add(1, Ordering::SeqCst);
            lock(&self.cache).clear();
        }
    }
}

#[async_trait]
impl RouteTable for RedisRoutes {
    async fn lookup(&self, users: &[String]) -> Vec<Route> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        {
            let mut cache = lock(&self.cache);
            for user in users {
                match cache.get(user) {
                    Some(routes) => found.extend(routes),
                    None => missing.push(user.clone()),
                }
            }
        }
        if missing.is_empty() {
            return found;
        }
        let before = self.invalidations.load(Ordering::SeqCst);
        let fetched = match self.registry.routes(&missing).await {
            Ok(fetched) => fetched,
            Err(e) => {
                // Treated as offline for this delivery (not cached): the
                // devices catch up with SYNC.
                tracing::warn!(users = missing.len(), "route lookup in Redis failed: {e}");
                metrics::counter!("corecast_route_lookup_failures_total").increment(1);
                return found;
            }
        };
        let live: FxHashSet<String> = lock(&self.last_seen).keys().cloned().collect();
        for (user, routes) in fetched {
            let (alive, dead): (Vec<Route>, Vec<Route>) = routes.into_iter().partition(|r| live.contains(&r.node));
            if !dead.is_empty() {
                let registry = self.registry.clone();
                let user = user.clone();
                tokio::spawn(async move {
                    if let Err(e) = registry.prune_routes(&user, &dead).await {
                        tracing::debug!(%user, "could not prune dead routes: {e}");
                    }
                });
            }
            if self.invalidations.load(Ordering::SeqCst) == before {
                lock(&self.cache).put(user, alive.clone());
            }
            found.extend(alive);
        }
        found
    }

    fn online(&self, user: &str, _route: Route) {
        self.forget(user);
    }

    fn offline(&self, user: &str, _node: &str, _conn_id: u64) {
        self.forget(user);
    }

    fn forget(&self, user: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        lock(&self.cache).invalidate(user);
    }
}
