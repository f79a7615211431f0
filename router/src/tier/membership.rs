//! The router's view of the cluster, kept current from Redis: its own
//! registration (renewed every third of its lifetime, carrying its epoch),
//! the set of live routers that decides which conversations it owns (and
//! which rooms' presence its admin API answers for), and
//! the server nodes with their pulled health for dispatch.
//!
//! Ownership and epochs: the router serves nothing until it has been
//! registered for two polls, so every node and router has seen it before it
//! takes a conversation over. Each time its set of routers changes it takes
//! a fresh epoch from Redis, above every epoch it and the registered routers
//! used, before it assigns another seq; a conversation that moves here thus
//! continues above every seq its previous owner handed out. A router leaves
//! the set only after it was missing from two polls in a row, so a Redis
//! restart (every router re-registers within one heartbeat) moves nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corecast_cluster::ownership::Ownership;
use corecast_cluster::registry::RouterInfo;
use rustc_hash::{FxHashMap, FxHashSet};

use super::Tier;

/// Polls a router may be missing from before it leaves the set.
const MISSING_POLLS_TO_LEAVE: u32 = 2;

/// The live routers as this router sees them.
struct RouterSet {
    me: String,
    members: BTreeSet<String>,
    missing: FxHashMap<String, u32>,
}

impl RouterSet {
    fn new(me: &str) -> RouterSet {
        RouterSet { me: me.to_string(), members: BTreeSet::from([me.to_string()]), missing: FxHashMap::default() }
    }

    /// Applies one poll of the registry; returns whether the set changed.
    fn update(&mut self, registered: &[RouterInfo]) -> bool {
        let seen: FxHashSet<&str> = registered.iter().map(|r| r.id.as_str()).collect();
        let mut changed = false;
        for id in &seen {
            self.missing.remove(*id);
            changed |= self.members.insert(id.to_string());
        }
        let absent: Vec<String> =
            self.members.iter().filter(|id| **id != self.me && !seen.contains(id.as_str())).cloned().collect();
        for id in absent {
            let polls = self.missing.entry(id.clone()).or_insert(0);
            *polls += 1;
            if *polls >= MISSING_POLLS_TO_LEAVE {
                self.missing.remove(&id);
                self.members.remove(&id);
                changed = true;
            }
        }
        changed
    }

    fn ownership(&self) -> Ownership {
        Ownership::Share { me: self.me.clone(), routers: self.members.iter().cloned().collect() }
    }
}

/// Registers this router every third of the registration lifetime, watches
/// the set of routers, and renews the epoch when it changes.
pub async fn keep_registered(tier: Arc<Tier>, mut info: RouterInfo) {
    let period = Duration::from_millis(tier.config.registry_ttl_ms as u64) / 3;
    let ttl = Duration::from_millis(tier.config.registry_ttl_ms as u64);
    let mut set = RouterSet::new(&tier.id);
    let mut serving = false;
    let started = Instant::now();
    loop {
        info.epoch = tier.core.epoch();
        if let Err(e) = tier.registry.register_router(&info, ttl).await {
            tracing::warn!("could not renew the router's registration in Redis: {e}");
        }
        match tier.registry.routers().await {
            Ok(registered) => {
                let changed = set.update(&registered);
                if changed {
                    tier.set_routers(set.members.iter().cloned().collect());
                }
                // Two polls after start every node and router has seen us.
                let ready = started.elapsed() >= 2 * period;
                if ready && (changed || !serving) {
                    let highest = registered.iter().map(|r| r.epoch).max().unwrap_or(0);
                    let at_least = highest.max(tier.core.epoch()) + 1;
                    match tier.registry.next_epoch(at_least).await {
                        Ok(epoch) => {
                            tracing::info!(routers = ?set.members, epoch, "router set in force");
                            tier.core.renew(epoch, set.ownership());
                            metrics::gauge!("corecast_router_routers").set(set.members.len() as f64);
                            serving = true;
                        }
                        Err(e) => tracing::warn!("could not take a new epoch from Redis: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("could not list the routers in Redis: {e}"),
        }
        tokio::time::sleep(period).await;
    }
}

/// Lists the registered server nodes and pulls each one's health, every
/// `health_pull_ms`; dispatch answers from the latest snapshot. A linked
/// node missing from the listing for a registration lifetime has its
/// members taken out of the rooms' presence (its host may be gone without
/// closing its link). While Redis
/// does not answer, the last nodes listed stay and their health is still
/// pulled, so dispatch keeps sending clients to those that are healthy; the
/// answer says `stale` and `corecast_dispatch_stale` is 1.
pub async fn watch_nodes(tier: Arc<Tier>) {
    let period = Duration::from_millis(tier.config.health_pull_ms as u64);
    let mut board = tier.health_board();
    let mut known = Vec::new();
    let mut stale = false;
    loop {
        match tier.registry.nodes().await {
            Ok(nodes) => {
                if stale {
                    tracing::info!("server nodes listed from Redis again: dispatch is current");
                }
                tier.routes.saw_nodes(nodes.iter().map(|n| n.id.clone()));
                let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
                tier.hub.forget_unregistered(&ids, Duration::from_millis(tier.config.registry_ttl_ms as u64));
                known = nodes;
                stale = false;
            }
            Err(e) => {
                if !stale {
                    tracing::warn!(
                        "could not list the server nodes in Redis ({e}): dispatching the {} last known, \
                         by their health",
                        known.len()
                    );
                }
                stale = true;
            }
        }
        board.pull_all(&known).await;
        metrics::gauge!("corecast_dispatch_stale").set(if stale { 1.0 } else { 0.0 });
        tier.set_nodes(known.clone(), board.clone(), stale);
        tokio::time::sleep(period).await;
    }
}

/// Drops cached group member lists that another router changed.
pub async fn follow_invalidations(tier: Arc<Tier>) {
    let mut changes = match corecast_cluster::registry::redis::subscribe_invalidations(
        &tier.config.redis_url,
        corecast_cluster::registry::KEY_PREFIX,
    )
    .await
    {
        Ok(changes) => changes,
        Err(e) => {
            tracing::error!("could not subscribe to group changes in Redis: {e}");
            return;
        }
    };
    while let Some(message) = changes.recv().await {
        // "*" follows a lost subscription: whatever changed meanwhile is unknown.
        let group = if message == "*" { Some("*") } else { message.strip_prefix("group:") };
        if let Some(group) = group {
            tier.core.forget_group(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> RouterInfo {
        RouterInfo { id: id.into(), link_addr: String::new(), http_addr: String::new(), epoch: 0 }
    }

    #[test]
    fn a_router_leaves_only_after_two_missing_polls() {
        let mut set = RouterSet::new("a");
        assert!(set.update(&[info("a"), info("b")]));
        assert!(!set.update(&[info("a"), info("b")]));
        // One poll without b (say Redis restarted): b stays.
        assert!(!set.update(&[info("a")]));
        assert!(!set.update(&[info("a"), info("b")]));
        // Gone twice in a row: b leaves.
        assert!(!set.update(&[]));
        assert!(set.update(&[]));
        assert_eq!(set.members.iter().collect::<Vec<_>>(), vec!["a"]);
    }
}
