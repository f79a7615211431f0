//! Keeps the node's token revocations in step with the cluster's list in
//! Redis, where the routers record every revocation made through their
//! admin API. A node that starts (or was down) learns every revocation it
//! missed at its first poll; after that each poll reads only recent ones.
//!
//! Each poll also counts the list in Redis (after pruning it by this
//! node's clock). When the count differs from the node's, the node reads
//! the whole list: it takes what it lacks (written back by another node,
//! say, older than the recent window) and writes back what Redis lacks —
//! Redis may run without persistence and lose the list, and a revocation
//! may have been made on one node's own admin API. Redis keeps the later
//! second of each user, so nodes cannot undo each other.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corecast_cluster::registry::redis::{Registry, RegistryError};
use rustc_hash::FxHashMap;

use crate::revocations::Revocations;

/// Recent revocations are read again this far back: routers' clocks differ
/// and a revocation may be recorded with a second older than one already
/// seen.
const CLOCK_SLACK_SECS: u64 = 300;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Polls Redis every `period` until the runtime stops.
pub async fn follow(registry: Registry, revocations: Arc<Revocations>, period: Duration) {
    // The latest second read so far; none yet means read everything.
    let mut latest: Option<u64> = None;
    loop {
        match poll(&registry, &revocations, latest).await {
            Ok(read_up_to) => latest = read_up_to.max(latest).or(Some(0)),
            Err(e) => tracing::warn!("could not read the revocations in Redis: {e}"),
        }
        tokio::time::sleep(period).await;
    }
}

/// Takes what Redis has since `latest` (all when none), writes back what
/// Redis lacks. Returns the latest second read.
async fn poll(
    registry: &Registry,
    revocations: &Arc<Revocations>,
    latest: Option<u64>,
) -> Result<Option<u64>, RegistryError> {
    let since = latest.map_or(0, |latest| latest.saturating_sub(CLOCK_SLACK_SECS));
    let recent = registry.revocations_since(since).await?;
    let read_up_to = recent.iter().map(|(_, before)| *before).max();
    take(revocations, recent).await;
    if registry.prune_and_count_revocations(now_secs()).await? != revocations.len() as u64 {
        let all = registry.revocations_since(0).await?;
        write_back_missing(registry, revocations, &all).await?;
        take(revocations, all).await;
    }
    Ok(read_up_to)
}

/// Applies the cluster's entries; the save's fsync runs on a blocking
/// thread, not the control plane's.
async fn take(revocations: &Arc<Revocations>, entries: Vec<(String, u64)>) {
    let revocations = revocations.clone();
    let applied = tokio::task::spawn_blocking(move || revocations.apply(entries, now_secs()))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the revocation task failed: {e}")));
    match applied {
        Ok(0) => {}
        Ok(changed) => tracing::info!(changed, "revocations taken from the cluster"),
        Err(e) => tracing::error!("{e:#}"),
    }
}

/// Writes to Redis the revocations this node has that `in_redis` lacks
/// (or has with an older second).
async fn write_back_missing(
    registry: &Registry,
    revocations: &Revocations,
    in_redis: &[(String, u64)],
) -> Result<(), RegistryError> {
    let recorded: FxHashMap<&str, u64> = in_redis.iter().map(|(user, at)| (user.as_str(), *at)).collect();
    let missing: Vec<(String, u64)> = revocations
        .snapshot()
        .into_iter()
        .filter(|(user, before)| recorded.get(user.as_str()).is_none_or(|at| at < before))
        .collect();
    if !missing.is_empty() {
        registry.record_revocations(&missing, now_secs()).await?;
        tracing::info!(count = missing.len(), "revocations Redis lacked written back");
    }
    Ok(())
}
