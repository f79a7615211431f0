//! The router tier: what the `corecast-router` binary runs. A router owns
//! its share of the conversations (assigning seqs, persisting, fanning
//! out), accepts a link from every server node, reads routes from Redis,
//! pulls the nodes' health for dispatch, and serves the cluster's HTTP API:
//! `GET /v1/dispatch` and `/health` publicly, the admin API and `/metrics`
//! on the admin listener behind the admin key.
//!
//! A router keeps nothing it cannot rebuild: routes and registrations live
//! in Redis, messages in the store, rooms come from the nodes' hellos.

pub mod config;
mod http;
mod membership;
mod routes;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use corecast_storage::embedded::EmbeddedStore;
use corecast_storage::redis::{RedisStore, ReplicaAcks};
use corecast_storage::MessageStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::dispatch::rank;
use crate::health::HealthBoard;
use crate::link_hub::LinkHub;
use crate::room_streams::RoomStreams;
use crate::{node_http, CoreConfig, RouterCore};
use config::{RouterConfig, StoreChoice};
use corecast_cluster::dispatch::DispatchAnswer;
use corecast_cluster::ownership::Ownership;
use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::{NodeInfo, RouterInfo, KEY_PREFIX};
pub use routes::RedisRoutes;

/// Everything the router's tasks and HTTP handlers share.
pub struct Tier {
    /// This router's id.
    pub id: String,
    /// Settings in force.
    pub config: RouterConfig,
    /// The router core.
    pub core: Arc<RouterCore>,
    /// The links to server nodes.
    pub hub: Arc<LinkHub>,
    /// The route table.
    pub routes: Arc<RedisRoutes>,
    /// Redis.
    pub registry: Registry,
    /// The admin key.
    pub admin_key: Arc<str>,
    /// Renders the metrics registry.
    pub prometheus: PrometheusHandle,
    /// HTTP client for the nodes' admin API.
    pub http: reqwest::Client,
    nodes: Mutex<NodeView>,
}

/// The server nodes as last read from Redis, their latest health pulls,
/// and whether that read is out of date because Redis did not answer.
struct NodeView {
    nodes: Vec<NodeInfo>,
    health: HealthBoard,
    stale: bool,
}

impl Tier {
    fn nodes_lock(&self) -> MutexGuard<'_, NodeView> {
        // A panic while holding the lock leaves plain data behind.
        corecast_proto::sync::lock(&self.nodes)
    }

    /// The latest health board (its client pulls with the health timeout).
    fn health_board(&self) -> HealthBoard {
        self.nodes_lock().health.clone()
    }

    /// Replaces the nodes and their health with a newer pull; `stale` when
    /// the nodes are the last known ones because Redis did not answer.
    fn set_nodes(&self, nodes: Vec<NodeInfo>, health: HealthBoard, stale: bool) {
        *self.nodes_lock() = NodeView { nodes, health, stale };
    }

    /// Replaces the live routers with a newer view of the registry, and
    /// forgets the rooms another router owns in it. The nodes move a room
    /// when their links change, which can lag this view by a discovery
    /// poll: a stream started here meanwhile for a room owned elsewhere is
    /// dropped once more a registration lifetime later.
    fn set_routers(&self, routers: Vec<String>) {
        self.hub.streams().set_routers(routers);
        let hub = self.hub.clone();
        let later = Duration::from_millis(self.config.registry_ttl_ms as u64);
        tokio::spawn(async move {
            tokio::time::sleep(later).await;
            hub.streams().forget_histories_owned_elsewhere();
        });
    }

    /// The router that owns `room` among the live routers as the registry
    /// shows them: the one the nodes pick while their links to all of them
    /// are up.
    pub fn room_owner(&self, room: &str) -> String {
        self.hub.streams().owner_of(room)
    }

    /// The registered server nodes.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes_lock().nodes.clone()
    }

    /// The nodes a client should connect to, best first, marked stale
    /// while the registry cannot be read.
    pub fn dispatch(&self) -> DispatchAnswer {
        let view = self.nodes_lock();
        // A node not pulled successfully within three pulls is out.
        let staleness =
            Duration::from_millis(3 * self.config.health_pull_ms as u64 + self.config.health_timeout_ms as u64);
        let answer = rank(&view.nodes, &view.health, staleness, Instant::now(), &self.config.reconnect);
        DispatchAnswer { stale: view.stale, ..answer }
    }
}

#[cfg(feature = "scylla")]
async fn open_scylla(config: &RouterConfig) -> anyhow::Result<Arc<dyn MessageStore>> {
    let store = corecast_storage::scylla::ScyllaStore::connect(
        &config.scylla_nodes,
        &config.scylla_keyspace,
        config.scylla_replication_factor,
    )
    .await
    .with_context(|| format!("connecting to ScyllaDB at {:?}", config.scylla_nodes))?;
    tracing::info!(nodes = ?config.scylla_nodes, "ScyllaDB message store connected");
    Ok(Arc::new(store))
}

/// Unreachable past [`RouterConfig::validate`], which refuses `store =
/// "scylla"` in a build without the `scylla` feature.
#[cfg(not(feature = "scylla"))]
async fn open_scylla(_config: &RouterConfig) -> anyhow::Result<Arc<dyn MessageStore>> {
    anyhow::bail!("this corecast-router was built without the `scylla` feature")
}

async fn open_store(config: &RouterConfig) -> anyhow::Result<Arc<dyn MessageStore>> {
    Ok(match config.store {
        StoreChoice::Embedded => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
            let store = EmbeddedStore::open(&config.data_dir, config.durability)
                .with_context(|| format!("opening the message store in {}", config.data_dir.display()))?;
            tracing::info!(dir = %config.data_dir.display(), "embedded message store open");
            Arc::new(store)
        }
        StoreChoice::Scylla => open_scylla(config).await?,
        StoreChoice::Redis => {
            let url = config.store_redis_url.as_deref().unwrap_or_default();
            let acks = ReplicaAcks {
                replicas: config.store_redis_min_replicas,
                timeout: Duration::from_millis(config.store_redis_replica_timeout_ms as u64),
            };
            let store = RedisStore::connect(url, "ccs:")
                .await
                .with_context(|| format!("connecting to the Redis message store at {url}"))?
                .with_replica_acks(acks);
            tracing::info!(%url, min_replicas = acks.replicas, "Redis message store connected");
            Arc::new(store)
        }
    })
}

/// Runs a router until SIGTERM or SIGINT.
pub async fn run(config: RouterConfig, admin_key: String, prometheus: PrometheusHandle) -> anyhow::Result<()> {
    let id = config.id();
    let registry = Registry::connect(&config.redis_url, KEY_PREFIX)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Redis at {}: {e}", config.redis_url))?;
    let store = open_store(&config).await?;
    let first_epoch = store.next_epoch(&id).await.context("reading the store's epoch")?;
    let grace = Duration::from_millis(config.registry_ttl_ms as u64);
    let routes = Arc::new(RedisRoutes::new(registry.clone(), config.route_cache_capacity, grace));
    let admin_key: Arc<str> = admin_key.into();
    let link_tls = match (&config.link_tls_cert_file, &config.link_tls_key_file) {
        (Some(cert), Some(key)) => Some(corecast_cluster::link::tls::acceptor(cert, key)?),
        _ => None,
    };
    let budget = usize::try_from(config.room_history_budget_bytes).unwrap_or(usize::MAX);
    let streams = RoomStreams::new(config.room_policy(), budget, &id);
    let hub = Arc::new(LinkHub::new(admin_key.clone(), link_tls, streams));
    let core_config = CoreConfig {
        small_group_limit: config.small_group_limit,
        store_timeout: Duration::from_millis(config.store_timeout_ms as u64),
        ..CoreConfig::default()
    };
    // Owns nothing until the rest of the cluster has seen it (membership).
    let core = RouterCore::with_epoch(store, routes.clone(), hub.clone(), core_config, first_epoch, Ownership::Nothing);

    let link_listener = tokio::net::TcpListener::bind(config.link_listen)
        .await
        .with_context(|| format!("binding the link listener on {}", config.link_listen))?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http_listen))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
    let info = RouterInfo {
        id: id.clone(),
        link_addr: config.advertise_link_addr.clone().unwrap_or(link_listener.local_addr()?.to_string()),
        http_addr: config.advertise_http_addr.clone().unwrap_or(http_listener.local_addr()?.to_string()),
        epoch: first_epoch,
    };
    let control_ca = config.control_tls_ca_file.as_deref();
    let health_http = node_http::client(Duration::from_millis(config.health_timeout_ms as u64), control_ca)?;
    let admin_http = node_http::client(Duration::from_secs(2), control_ca)?;
    let tier = Arc::new(Tier {
        id: id.clone(),
        config,
        core: core.clone(),
        hub: hub.clone(),
        routes: routes.clone(),
        registry: registry.clone(),
        admin_key,
        prometheus,
        http: admin_http,
        nodes: Mutex::new(NodeView { nodes: Vec::new(), health: HealthBoard::new(health_http), stale: false }),
    });
    let link_tls = tier.config.link_tls_cert_file.is_some();
    tracing::info!(router = %id, link = %info.link_addr, link_tls, http = %info.http_addr, "router starting");
    tokio::spawn(hub.clone().expire_room_histories());
    tokio::spawn(hub.serve(link_listener, core, routes));
    tokio::spawn(membership::keep_registered(tier.clone(), info));
    tokio::spawn(membership::watch_nodes(tier.clone()));
    tokio::spawn(membership::follow_invalidations(tier.clone()));
    let public = tokio::spawn(http::serve_public(http_listener, tier.clone()));
    let admin = tokio::spawn(http::serve_admin(admin_listener, tier.clone()));

    wait_for_signal().await;
    tracing::info!("router stopping: leaving the registry");
    if let Err(e) = registry.unregister_router(&id).await {
        tracing::warn!("could not remove the router's registration: {e}");
    }
    public.abort();
    admin.abort();
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("could not install signal handlers; stop the router with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
