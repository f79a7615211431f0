//! A router's bounded LRU cache of routes: user → online connections (an
//! empty list caches "offline"). Hits and misses are exported as
//! `corecast_route_cache_hits_total` / `corecast_route_cache_misses_total`.

use std::num::NonZeroUsize;

use lru::LruCache;

use corecast_cluster::registry::Route;

/// user → routes, least recently used out first.
pub struct RouteCache {
    entries: LruCache<String, Vec<Route>>,
}

impl RouteCache {
    /// A cache of at most `capacity` users (at least one).
    pub fn new(capacity: usize) -> RouteCache {
        RouteCache { entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)) }
    }

    /// The cached routes of `user`, counting a hit or a miss.
    pub fn get(&mut self, user: &str) -> Option<Vec<Route>> {
        let found = self.entries.get(user).cloned();
        match found {
            Some(_) => metrics::counter!("corecast_route_cache_hits_total").increment(1),
            None => metrics::counter!("corecast_route_cache_misses_total").increment(1),
        }
        found
    }

    /// Caches the routes of `user`.
    pub fn put(&mut self, user: String, routes: Vec<Route>) {
        self.entries.put(user, routes);
    }

    /// Forgets `user`.
    pub fn invalidate(&mut self, user: &str) {
        self.entries.pop(user);
    }

    /// Forgets everyone.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Users cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(conn_id: u64) -> Route {
        Route { node: "n".into(), conn_id, device: String::new() }
    }

    #[test]
    fn bounded_least_recently_used_out_and_invalidation() {
        let mut cache = RouteCache::new(2);
        cache.put("a".into(), vec![route(1)]);
        cache.put("b".into(), Vec::new());
        assert_eq!(cache.get("a"), Some(vec![route(1)]));
        // b is now the least recently used: c pushes it out.
        cache.put("c".into(), vec![route(3)]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), None);
        cache.invalidate("a");
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("c"), Some(vec![route(3)]));
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn offline_is_cached_as_an_empty_list() {
        let mut cache = RouteCache::new(4);
        cache.put("gone".into(), Vec::new());
        assert_eq!(cache.get("gone"), Some(Vec::new()));
    }
}
