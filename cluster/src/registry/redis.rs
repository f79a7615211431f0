//! The registry and route table in Redis.
//!
//! Keys (all under the prefix, `cc:` by default):
//! - `router:{id}` (JSON [`RouterInfo`], expiring) and the set `routers`;
//! - `node:{id}` (JSON [`NodeInfo`], expiring) and the set `nodes`;
//! - `epoch`: the cluster's epoch counter;
//! - `route:{user}`: a hash, field `{node}/{conn_id}` → device, expiring
//!   after the route lifetime unless a node renews it;
//! - the pub/sub channel `invalidate`: routers announce group changes;
//! - `revocations`: a sorted set, user scored by the second up to which
//!   their tokens are revoked; entries older than the retention are pruned.
//!
//! A registration is alive while its key exists; the sets only list who
//! registered, and readers drop (and remove) ids whose key expired.

use std::time::Duration;

use corecast_storage::redis::connect::{RedisConnection, RedisEndpoint};
use futures_util::StreamExt;
use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;

use super::{NodeInfo, Route, RouterInfo, REVOCATION_RETENTION_SECS};

/// Routes written per pipeline.
const PIPELINE_ROUTES: usize = 1000;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis is unreachable or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis holds something corecast did not write.
    #[error("corrupt registry entry: {0}")]
    Corrupt(String),
}

/// A handle on the registry (cheap to clone; reconnects by itself).
#[derive(Clone)]
pub struct Registry {
    conn: RedisConnection,
    prefix: String,
}

/// INCR the epoch, but never below `at_least`.
const NEXT_EPOCH: &str = r#"
local epoch = redis.call('INCR', KEYS[1])
local at_least = tonumber(ARGV[1])
if epoch < at_least then
  redis.call('SET', KEYS[1], at_least)
  epoch = at_least
end
return epoch
"#;

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, RegistryError> {
    serde_json::from_str(json).map_err(|e| RegistryError::Corrupt(format!("{what}: {e}")))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl Registry {
    /// Connects to Redis at `url` (`redis://…`, or `redis+sentinel://…` to
    /// follow a Sentinel-managed primary: see
    /// [`corecast_storage::redis::connect`]); fails at once if it does not
    /// answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Registry, RegistryError> {
        let conn = RedisEndpoint::parse(url)?.connect().await?;
        Ok(Registry { conn, prefix: prefix.to_string() })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    async fn register(&self, kind: &str, id: &str, json: String, ttl: Duration) -> Result<bool, RegistryError> {
        let key = self.key(&[kind, id]);
        let set = self.key(&[&format!("{kind}s")]);
        let (existed, _, _): (bool, (), ()) = redis::pipe()
            .atomic()
            .exists(&key)
            .pset_ex(&key, json, millis(ttl))
            .sadd(&set, id)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(existed)
    }

    async fn unregister(&self, kind: &str, id: &str) -> Result<(), RegistryError> {
        let key = self.key(&[kind, id]);
        let set = self.key(&[&format!("{kind}s")]);
        let _: () = redis::pipe().atomic().del(&key).srem(&set, id).query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// The live entries of `kind`, sorted by id; expired ids leave the set.
    async fn live<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, T)>, RegistryError> {
        let set = self.key(&[&format!("{kind}s")]);
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn.smembers(&set).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(&[kind, id])).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value {
                Some(json) => live.push((id.clone(), parse(kind, &json)?)),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: () = conn.srem(&set, &gone).await?;
        }
        Ok(live)
    }

    /// Registers (or renews) a router for `ttl`.
    pub async fn register_router(&self, info: &RouterInfo, ttl: Duration) -> Result<(), RegistryError> {
        let json = serde_json::to_string(info).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        self.register("router", &info.id, json, ttl).await.map(|_| ())
    }

    /// Removes a router's registration (clean shutdown).
    pub async fn unregister_router(&self, id: &str) -> Result<(), RegistryError> {
        self.unregister("router", id).await
    }

    /// The live routers, sorted by id.
    pub async fn routers(&self) -> Result<Vec<RouterInfo>, RegistryError> {
        Ok(self.live::<RouterInfo>("router").await?.into_iter().map(|(_, info)| info).collect())
    }

    /// Registers (or renews) a node for `ttl`; returns whether its
    /// registration still existed (false: new, expired, or Redis lost it).
    pub async fn register_node(&self, info: &NodeInfo, ttl: Duration) -> Result<bool, RegistryError> {
        let json = serde_json::to_string(info).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        self.register("node", &info.id, json, ttl).await
    }

    /// Removes a node's registration (drain).
    pub async fn unregister_node(&self, id: &str) -> Result<(), RegistryError> {
        self.unregister("node", id).await
    }

    /// The live nodes, sorted by id.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RegistryError> {
        Ok(self.live::<NodeInfo>("node").await?.into_iter().map(|(_, info)| info).collect())
    }

    /// A new cluster epoch: greater than every one handed out before by
    /// this Redis, and at least `at_least`.
    pub async fn next_epoch(&self, at_least: u64) -> Result<u64, RegistryError> {
        let epoch: u64 = Script::new(NEXT_EPOCH)
            .key(self.key(&["epoch"]))
            .arg(at_least)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(epoch)
    }

    fn route_field(node: &str, conn_id: u64) -> String {
        format!("{node}/{conn_id}")
    }

    /// Writes the routes `(user, conn_id, device)` of the connections on
    /// `node` and sets each user's route key to expire after `ttl`,
    /// pipelined. A node passes its connections' routes without repeating
    /// its own id in each.
    pub async fn refresh_node_routes(
        &self,
        node: &str,
        routes: &[(&str, u64, &str)],
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        for chunk in routes.chunks(PIPELINE_ROUTES) {
            let mut pipe = redis::pipe();
            for &(user, conn_id, device) in chunk {
                let key = self.key(&["route", user]);
                pipe.hset(&key, Self::route_field(node, conn_id), device)
                    .ignore()
                    .pexpire(&key, millis(ttl) as i64)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// Writes one route.
    pub async fn add_route(&self, user: &str, route: &Route, ttl: Duration) -> Result<(), RegistryError> {
        self.refresh_node_routes(&route.node, &[(user, route.conn_id, &route.device)], ttl).await
    }

    /// Removes one route.
    pub async fn remove_route(&self, user: &str, node: &str, conn_id: u64) -> Result<(), RegistryError> {
        let _: () = self.conn.clone().hdel(self.key(&["route", user]), Self::route_field(node, conn_id)).await?;
        Ok(())
    }

    /// Removes routes of `user` (to nodes that left the cluster).
    pub async fn prune_routes(&self, user: &str, dead: &[Route]) -> Result<(), RegistryError> {
        if dead.is_empty() {
            return Ok(());
        }
        let fields: Vec<String> = dead.iter().map(|r| Self::route_field(&r.node, r.conn_id)).collect();
        let _: () = self.conn.clone().hdel(self.key(&["route", user]), fields).await?;
        Ok(())
    }

    /// Every route of each of `users`, pipelined. Fields that do not parse
    /// are skipped and counted.
    pub async fn routes(&self, users: &[String]) -> Result<Vec<(String, Vec<Route>)>, RegistryError> {
        let mut result = Vec::with_capacity(users.len());
        for chunk in users.chunks(PIPELINE_ROUTES) {
            let mut pipe = redis::pipe();
            for user in chunk {
                pipe.hgetall(self.key(&["route", user]));
            }
            let maps: Vec<Vec<(String, String)>> = pipe.query_async(&mut self.conn.clone()).await?;
            for (user, fields) in chunk.iter().zip(maps) {
                let routes = fields
                    .into_iter()
                    .filter_map(|(field, device)| {
                        let parsed = field.rsplit_once('/').and_then(|(node, conn)| {
                            Some(Route { node: node.to_string(), conn_id: conn.parse().ok()?, device })
                        });
                        if parsed.is_none() {
                            metrics::counter!("corecast_route_corrupt_total").increment(1);
                        }
                        parsed
                    })
                    .collect();
                result.push((user.clone(), routes));
            }
        }
        Ok(result)
    }

    /// Records revocations (user, tokens issued up to this second); a
    /// later revocation already recorded stays. Prunes entries older than
    /// the retention before `now`.
    pub async fn record_revocations(&self, entries: &[(String, u64)], now: u64) -> Result<(), RegistryError> {
        let key = self.key(&["revocations"]);
        let mut pipe = redis::pipe();
        for chunk in entries.chunks(PIPELINE_ROUTES) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key).arg("GT");
            for (user, before) in chunk {
                zadd.arg(*before).arg(user);
            }
            pipe.add_command(zadd).ignore();
        }
        let oldest = now.saturating_sub(REVOCATION_RETENTION_SECS);
        pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(format!("({oldest}")).ignore();
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// The revocations recorded up to a second at or after `since`.
    pub async fn revocations_since(&self, since: u64) -> Result<Vec<(String, u64)>, RegistryError> {
        let key = self.key(&["revocations"]);
        let entries: Vec<(String, u64)> = self.conn.clone().zrangebyscore_withscores(&key, since, "+inf").await?;
        Ok(entries)
    }

    /// Prunes revocations older than the retention before `now` and
    /// returns how many are left.
    pub async fn prune_and_count_revocations(&self, now: u64) -> Result<u64, RegistryError> {
        let key = self.key(&["revocations"]);
        let oldest = now.saturating_sub(REVOCATION_RETENTION_SECS);
        let (count,): (u64,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .ignore()
            .zcard(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count)
    }

    /// Announces `what` (e.g. `group:{id}`) to every router.
    pub async fn publish_invalidation(&self, what: &str) -> Result<(), RegistryError> {
        let _: () = self.conn.clone().publish(self.key(&["invalidate"]), what).await?;
        Ok(())
    }
}

/// Subscribes to the invalidation channel on its own connection. The
/// returned receiver yields every announcement; the subscription reconnects
/// with backoff when Redis goes away (announcements made meanwhile are
/// missed, so the caller should treat a reconnect as "forget everything":
/// it receives `"*"` after each reconnect). With a Sentinel URL each
/// reconnect subscribes on the primary the sentinels name then.
pub async fn subscribe_invalidations(url: &str, prefix: &str) -> Result<mpsc::Receiver<String>, RegistryError> {
    let endpoint = RedisEndpoint::parse(url)?;
    let channel = format!("{prefix}invalidate");
    // Fail now if Redis is not there at all.
    let mut pubsub = endpoint.pubsub().await?;
    pubsub.subscribe(&channel).await?;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    match message.get_payload::<String>() {
                        Ok(what) => {
                            if tx.send(what).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!("unreadable invalidation: {e}"),
                    }
                }
            }
            tracing::warn!("lost the invalidation subscription; reconnecting");
            loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                let resubscribed = async {
                    let mut fresh = endpoint.pubsub().await?;
                    fresh.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(fresh)
                }
                .await;
                if let Ok(fresh) = resubscribed {
                    pubsub = fresh;
                    backoff = Duration::from_millis(100);
                    if tx.send("*".to_string()).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    });
    Ok(rx)
}
