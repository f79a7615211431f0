//! Router settings: every setting, its default and the checks they must
//! pass, loaded by `corecast-settings` from defaults, a TOML file,
//! `CORECAST_ROUTER_*` environment variables and command-line flags, later
//! ones winning.

use std::net::SocketAddr;
use std::path::PathBuf;

use corecast_settings::logs::LogFormat;
use corecast_settings::{Settings, SettingsError};
use corecast_storage::embedded::Durability;
use serde::{Deserialize, Serialize};

use corecast_cluster::dispatch::ReconnectHints;
use corecast_cluster::room_stream::{RoomPolicy, RoomRule};

/// Which message store the router writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StoreChoice {
    /// The embedded store in `data_dir`: for a single router, and tests.
    Embedded,
    /// ScyllaDB at `scylla_nodes`: shared by every router (production).
    Scylla,
    /// A persistent Redis at `store_redis_url` (AOF, fsync always): shared
    /// by the routers of a small cluster, and by the multi-router tests.
    Redis,
}

/// The whole router configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// This router's id; `None` = `<hostname>-<link port>`.
    pub router_id: Option<String>,
    /// Where server nodes open their links.
    pub link_listen: SocketAddr,
    /// Link address published in Redis; `None` = `link_listen`. With link
    /// TLS its host must be named in the link certificate.
    pub advertise_link_addr: Option<String>,
    /// PEM certificate chain for the link listener: with it (and the key)
    /// nodes must link over TLS.
    pub link_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `link_tls_cert_file`.
    pub link_tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) the nodes' control-plane certificates chain
    /// to: needed to pull health from and send admin calls to nodes with
    /// `control_tls_cert_file`, whose certificates must name the host of
    /// their registered control address.
    pub control_tls_ca_file: Option<PathBuf>,
    /// Public HTTP: `GET /v1/dispatch` and `GET /health`.
    pub http_listen: SocketAddr,
    /// HTTP address published in Redis; `None` = `http_listen`.
    pub advertise_http_addr: Option<String>,
    /// Admin HTTP: the cluster's admin API and `/metrics`. Loopback by
    /// default; the admin API also needs the admin key.
    pub admin_listen: SocketAddr,
    /// Key guarding the admin API, also presented to the nodes' admin API.
    /// Must be the nodes' admin key. `None` generates one and prints it.
    pub admin_key: Option<String>,
    /// Redis URL (route table, registry, epochs): `redis://host:port/`, or
    /// `redis+sentinel://host1:26379,host2:26379,host3:26379/service` for a
    /// Sentinel-managed primary, followed across failovers.
    pub redis_url: String,
    /// Message store.
    pub store: StoreChoice,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Durability of the embedded store.
    pub durability: Durability,
    /// ScyllaDB contact points (`host:port`).
    pub scylla_nodes: Vec<String>,
    /// ScyllaDB keyspace.
    pub scylla_keyspace: String,
    /// Replication factor used when the keyspace is created.
    pub scylla_replication_factor: u32,
    /// Redis URL of the message store when `store = "redis"`. Not the route
    /// table's Redis unless that one persists every write. Either URL form
    /// of `redis_url`.
    pub store_redis_url: Option<String>,
    /// Replicas of the store's Redis that must have each store write before
    /// it counts (`WAIT` after every write; 0 = none). With Sentinel, 1
    /// keeps an acknowledged message through a failover, at the price of a
    /// replica round trip per write and no writes while no replica is up.
    pub store_redis_min_replicas: u32,
    /// Longest wait for those replicas; then the write fails as
    /// unavailable. Must be below `store_timeout_ms` and the 2,000 ms
    /// timeout of one Redis call.
    pub store_redis_replica_timeout_ms: u32,
    /// Lifetime of the router's registration in Redis; renewed every third.
    pub registry_ttl_ms: u32,
    /// How often each server node's health is pulled.
    pub health_pull_ms: u32,
    /// How long one health pull may take.
    pub health_timeout_ms: u32,
    /// Routes cached per router (LRU).
    pub route_cache_capacity: usize,
    /// Groups up to this size fan out on write.
    pub small_group_limit: usize,
    /// A storage call slower than this fails with `unavailable`.
    pub store_timeout_ms: u32,
    /// Reconnect backoff hints given with every dispatch answer.
    pub reconnect: ReconnectHints,
    /// Log lines as readable text or as JSON objects (for log shippers).
    pub log_format: LogFormat,
    /// Room options by name pattern (`[[rooms]]`), as on the nodes: the
    /// router owning a room keeps its history and presence. Nodes and
    /// routers of a cluster must have the same rules.
    pub rooms: Vec<RoomRule>,
    /// Bytes of room history this router holds for the rooms it owns. Over
    /// it the least recently used room loses its whole history and its
    /// epoch moves on.
    pub room_history_budget_bytes: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            router_id: None,
            link_listen: SocketAddr::from(([0, 0, 0, 0], 7200)),
            advertise_link_addr: None,
            link_tls_cert_file: None,
            link_tls_key_file: None,
            control_tls_ca_file: None,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 7280)),
            advertise_http_addr: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 7281)),
            admin_key: None,
            redis_url: "redis://127.0.0.1:6379/".into(),
            store: StoreChoice::Embedded,
            data_dir: PathBuf::from("router-data"),
            durability: Durability::Strict,
            scylla_nodes: vec!["127.0.0.1:9042".into()],
            scylla_keyspace: "corecast".into(),
            scylla_replication_factor: 3,
            store_redis_url: None,
            store_redis_min_replicas: 0,
            store_redis_replica_timeout_ms: 1_000,
            registry_ttl_ms: 3_000,
            health_pull_ms: 1_000,
            health_timeout_ms: 500,
            route_cache_capacity: 100_000,
            small_group_limit: 200,
            store_timeout_ms: 5_000,
            reconnect: ReconnectHints::default(),
            log_format: LogFormat::Text,
            rooms: Vec::new(),
            room_history_budget_bytes: 256 << 20,
        }
    }
}

impl Settings for RouterConfig {
    const ENV_PREFIX: &'static str = "CORECAST_ROUTER_";
    /// Every `CORECAST_ROUTER_*` variable is the router's: an unknown one
    /// is refused.
    const ENV_PREFIX_OWNED: bool = true;

    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |msg: &str| Err(SettingsError::Invalid(msg.to_string()));
        if self.registry_ttl_ms < 300 || self.health_pull_ms == 0 || self.health_timeout_ms == 0 {
            return bad("registry_ttl_ms must be >= 300, health_pull_ms and health_timeout_ms positive");
        }
        if self.admin_key.as_deref().is_some_and(|k| k.len() < 16) {
            return bad("admin_key must be at least 16 bytes");
        }
        if self.router_id.as_deref().is_some_and(|id| id.is_empty() || id.len() > 64) {
            return bad("router_id must be 1..=64 bytes");
        }
        if self.store == StoreChoice::Scylla && !cfg!(feature = "scylla") {
            return bad("store = \"scylla\" needs a corecast-router built with the `scylla` feature");
        }
        if self.store == StoreChoice::Scylla && self.scylla_nodes.is_empty() {
            return bad("store = \"scylla\" needs scylla_nodes");
        }
        if self.store == StoreChoice::Redis && self.store_redis_url.is_none() {
            return bad("store = \"redis\" needs store_redis_url");
        }
        if self.store_redis_min_replicas > 0 && self.store != StoreChoice::Redis {
            return bad("store_redis_min_replicas is for store = \"redis\"");
        }
        // WAIT holds its answer up to this long; the Redis call timeout must not fire first.
        let call_ms = corecast_storage::redis::connect::CALL_TIMEOUT.as_millis() as u32;
        let wait_ms = self.store_redis_replica_timeout_ms;
        if wait_ms == 0 || wait_ms >= self.store_timeout_ms || wait_ms >= call_ms {
            return bad(&format!(
                "store_redis_replica_timeout_ms must be positive and below store_timeout_ms and {call_ms} ms \
                 (the Redis call timeout)"
            ));
        }
        if self.link_tls_cert_file.is_some() != self.link_tls_key_file.is_some() {
            return bad("link_tls_cert_file and link_tls_key_file go together");
        }
        if self.route_cache_capacity == 0 {
            return bad("route_cache_capacity must be positive");
        }
        RoomPolicy::new(&self.rooms).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        Ok(())
    }
}

impl RouterConfig {
    /// The `[[rooms]]` rules, compiled (checked by `validate`).
    pub fn room_policy(&self) -> RoomPolicy {
        RoomPolicy::new(&self.rooms).unwrap_or_default()
    }

    /// The router id in force.
    pub fn id(&self) -> String {
        self.router_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            let host = if host.is_empty() { "router" } else { host };
            format!("{host}-{}", self.link_listen.port())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        health_pull_ms: u32,
    }

    #[test]
    fn file_then_flags_override_defaults_and_bad_values_are_refused() {
        RouterConfig::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.toml");
        std::fs::write(&path, "registry_ttl_ms = 5000\nhealth_pull_ms = 700\n[reconnect]\nbase_ms = 250\n").unwrap();
        let config =
            corecast_settings::load::<RouterConfig>(Some(path.as_path()), &Flags { health_pull_ms: 900 }).unwrap();
        assert_eq!(config.registry_ttl_ms, 5000);
        assert_eq!(config.health_pull_ms, 900);
        assert_eq!(config.reconnect.base_ms, 250);
        std::fs::write(&path, "registry_ttl_ms = 10\n").unwrap();
        assert!(corecast_settings::load::<RouterConfig>(Some(path.as_path()), &Flags { health_pull_ms: 900 }).is_err());
    }

    #[test]
    fn replica_acks_need_the_redis_store_and_a_wait_below_the_store_timeout() {
        let sentinel = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/corecast-store";
        let redis = RouterConfig {
            store: StoreChoice::Redis,
            store_redis_url: Some(sentinel.into()),
            store_redis_min_replicas: 1,
            ..RouterConfig::default()
        };
        redis.validate().unwrap();
        let embedded = RouterConfig { store: StoreChoice::Embedded, ..redis.clone() };
        assert!(embedded.validate().unwrap_err().to_string().contains("store_redis_min_replicas"));
        let too_long = RouterConfig { store_redis_replica_timeout_ms: redis.store_timeout_ms, ..redis.clone() };
        assert!(too_long.validate().unwrap_err().to_string().contains("below store_timeout_ms"));
        let past_the_call = RouterConfig { store_redis_replica_timeout_ms: 2_000, ..redis };
        assert!(past_the_call.validate().unwrap_err().to_string().contains("Redis call timeout"));
    }
}
