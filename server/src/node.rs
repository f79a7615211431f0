//! Starting and stopping a server node: the dev-mode secret, the metrics
//! recorder, one SO_REUSEPORT listener per shard, the shard threads and the
//! control plane, and the order in which they stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use socket2::{Domain, Socket, Type};

use corecast_cluster::registry::NodeInfo;

use crate::advertised::{reachable, Advertised};
use crate::auth::{mint_token, TokenVerifier};
use crate::chat_core::ChatCore;
use crate::cluster::ClusterSettings;
use crate::config::Config;
use crate::control::{ChatBackend, ControlPlane, ControlState};
use crate::revocations::Revocations;
use crate::shard::{frame_mesh, Mesh, ShardContext, ShardThreads};
use crate::stall::{log_stall, Pulse, Watchdog};
use crate::status::NodeStatus;
use crate::tls::CertStore;
use crate::web::{WebState, WebTls};

/// Frames one shard can have waiting for another before sends to it are
/// dropped (counted).
const FRAME_RING_CAPACITY: usize = 8192;

/// The node as it registers in the cluster: its name with a random suffix
/// (so routes of an earlier run are never taken for this run's), addresses,
/// weight and ceiling.
fn cluster_settings(
    config: &Config,
    redis_url: &str,
    advertised: &Advertised,
    admin_key: &str,
) -> anyhow::Result<ClusterSettings> {
    let suffix: u32 = rand::random();
    let link_tls = config.link_tls_ca_file.as_deref().map(corecast_cluster::link::tls::connector).transpose()?;
    Ok(ClusterSettings {
        node: NodeInfo {
            id: format!("{}-{suffix:08x}", config.node_name()),
            client_addr: advertised.client.clone(),
            ws_url: Some(advertised.ws_url.clone()),
            control_addr: config.advertise_control_addr.clone().unwrap_or_else(|| config.control_listen.to_string()),
            control_tls: config.control_tls_cert_file.is_some(),
            weight: config.weight,
            ceiling: config.connection_ceiling(),
        },
        redis_url: redis_url.to_string(),
        registry_ttl: Duration::from_millis(config.registry_ttl_ms as u64),
        route_ttl: Duration::from_millis(config.route_ttl_ms as u64),
        cluster_key: admin_key.to_string(),
        link_tls,
    })
}

/// `addr`, with an unspecified IP (0.0.0.0, ::) replaced by loopback, for
/// connecting to our own listener.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Secrets in force, and whether they were generated for this run.
struct Secrets {
    jwt: String,
    admin_key: String,
    jwt_generated: bool,
    admin_generated: bool,
}

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secrets(config: &Config) -> Secrets {
    Secrets {
        jwt: config.jwt_secret.clone().unwrap_or_else(random_secret),
        admin_key: config.admin_key.clone().unwrap_or_else(random_secret),
        jwt_generated: config.jwt_secret.is_none(),
        admin_generated: config.admin_key.is_none(),
    }
}

/// Prints what a newcomer needs to try a default start, once the node
/// serves. URLs name an address a client can reach, never a wildcard.
fn print_banner(config: &Config, secrets: &Secrets, listen: SocketAddr) -> anyhow::Result<()> {
    println!(
        "corecast listening for clients on {listen}, control plane on http://{}",
        reachable(config.control_listen)
    );
    if secrets.jwt_generated {
        let token = mint_token(secrets.jwt.as_bytes(), "demo", 24 * 3600, None)?;
        println!(
            "no JWT secret configured (CORECAST_JWT_SECRET): generated one for this run; clients on loopback only"
        );
        println!("token for user \"demo\", valid 24 h: {token}");
    }
    if secrets.admin_generated {
        println!("no admin key configured (CORECAST_ADMIN_KEY): generated for this run: {}", secrets.admin_key);
    }
    Ok(())
}

/// The HS256 secret plus any configured RS256/ES256 public keys, checking
/// the revocations kept in the data directory.
fn token_verifier(config: &Config, secrets: &Secrets) -> anyhow::Result<TokenVerifier> {
    let revocations = Revocations::open(&config.data_dir)?;
    let mut verifier = TokenVerifier::new(secrets.jwt.as_bytes()).with_revocations(Arc::new(revocations));
    if let Some(path) = &config.jwt_rsa_public_key_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        verifier = verifier.with_rsa_public_key(&pem)?;
    }
    if let Some(path) = &config.jwt_ec_public_key_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        verifier = verifier.with_ec_public_key(&pem)?;
    }
    Ok(verifier)
}

/// Binds one listener per shard on the same address with SO_REUSEPORT, so
/// the kernel spreads new connections over the shards. With port 0 the
/// first listener picks the port and the others share it.
fn bind_listeners(addr: SocketAddr, count: usize, backlog: i32) -> anyhow::Result<Vec<std::net::TcpListener>> {
    refuse_if_listened_on(addr)?;
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into()).with_context(|| format!("binding the client listener on {addr}"))?;
        socket.listen(backlog)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Fails with "address in use" when another socket listens on `addr`.
/// SO_REUSEPORT, which the shards' listeners need, would otherwise let a
/// second server (of the same user) bind the same port without a word and
/// take half of the new connections. A probe bound without SO_REUSEPORT
/// (but with SO_REUSEADDR, so connections of an earlier run in TIME_WAIT do
/// not count) conflicts with a listening socket only.
fn refuse_if_listened_on(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe
        .bind(&addr.into())
        .with_context(|| format!("binding the client listener on {addr}: another process listens there"))
}

/// Runs a server node until it is shut down.
pub fn run(config: Config) -> anyhow::Result<()> {
    let secrets = secrets(&config);
    let mut config = config;
    if secrets.jwt_generated && config.listen.is_none() {
        config.listen = Some(config.listen_addr());
    }
    let config = Arc::new(config);
    let prometheus = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    corecast_settings::build_info::record_metric();

    let shard_count = config.shard_count();
    let listeners = bind_listeners(config.listen_addr(), shard_count, config.listen_backlog)?;
    let listen = listeners[0].local_addr()?;
    let ws_listeners = bind_listeners(config.ws_listen_addr(), shard_count, config.listen_backlog)?;
    let ws_listen = ws_listeners[0].local_addr()?;
    let verifier = Arc::new(token_verifier(&config, &secrets)?);
    let (mesh, inboxes) = Mesh::new(shard_count, config.shard_inbox_capacity);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let advertised = Advertised::new(&config, listen, ws_listen);
    let (core_tx, core_rx) = flume::bounded(config.core_inbox_capacity);
    let (status, backend, chat_core) = match &config.redis_url {
        Some(redis_url) => {
            if secrets.admin_generated {
                tracing::warn!("no admin key configured: the routers will refuse this node's links");
            }
            let settings = cluster_settings(&config, redis_url, &advertised, &secrets.admin_key)?;
            tracing::info!(node = %settings.node.id, redis = %redis_url, "joining the cluster");
            let registry = runtime.block_on(crate::cluster::connect(&settings))?;
            let status = NodeStatus::new(settings.node.id.clone(), settings.node.ceiling, settings.node.weight);
            (status, ChatBackend::Cluster(Box::new(settings), registry, core_rx), None)
        }
        None => {
            let mut chat_core = ChatCore::start(&config, &mesh)?;
            chat_core.serve(core_rx);
            let status = NodeStatus::new(config.node_name(), config.connection_ceiling(), config.weight);
            (status, ChatBackend::Single(chat_core.core()), Some(chat_core))
        }
    };
    let core = match &backend {
        ChatBackend::Single(core) => Some(core.clone()),
        ChatBackend::Cluster(..) => None,
    };
    let certs = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(CertStore::open(cert, key)?),
        _ => None,
    };
    let control_certs = match (&config.control_tls_cert_file, &config.control_tls_key_file) {
        (Some(cert), Some(key)) => Some(CertStore::open(cert, key).context("the control plane's certificate")?),
        _ => None,
    };
    let tls = certs.as_ref().map(|certs| certs.server_config()).transpose()?;
    let web_addr = config.web_listen_addr();
    let web_listener = std::net::TcpListener::bind(web_addr)
        .with_context(|| format!("binding the public HTTP listener on {web_addr}"))?;
    let web = WebState {
        client_addr: loopback_if_unspecified(listen),
        ws_port: ws_listen.port(),
        ws_path: config.ws_path.clone(),
        tls: certs.as_ref().map(WebTls::new).transpose()?,
        demo_secret: (config.demo_tokens || secrets.jwt_generated).then(|| secrets.jwt.clone().into()),
        heartbeat_ms: config.heartbeat_ms,
        sessions: Default::default(),
    };
    let web_listen = web_listener.local_addr()?;

    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if tls.is_some() {
        tracing::info!("clients must speak TLS");
    }
    let pulses: Vec<Arc<Pulse>> = (0..shard_count).map(|_| Arc::new(Pulse::new())).collect();
    if config.stall_threshold_ms > 0 {
        // Shards beat once per timer tick: a threshold under a few ticks
        // would report healthy shards.
        let threshold = Duration::from_millis(config.stall_threshold_ms.max(3 * config.timer_tick_ms) as u64);
        Watchdog::new(pulses.clone(), threshold).spawn(threshold / 4, log_stall)?;
    }
    tracing::info!(%listen, shards = shard_count, "starting shards");
    let node_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shards = ShardThreads::start(mesh.clone(), |events| {
        let frames = frame_mesh(shard_count, FRAME_RING_CAPACITY);
        let per_shard = listeners.into_iter().zip(ws_listeners).zip(inboxes).zip(frames).enumerate();
        per_shard
            .map(|(id, (((listener, ws_listener), inbox), frames))| ShardContext {
                id: id as u16,
                cpu: config.pin_threads.then_some((config.first_cpu + id) % cpus),
                listener,
                ws_listener,
                inbox,
                mesh: mesh.clone(),
                frames,
                config: config.clone(),
                verifier: verifier.clone(),
                core: core_tx.clone(),
                pulse: pulses[id].clone(),
                tls: tls.clone(),
                node_connections: node_connections.clone(),
                events: events.clone(),
            })
            .collect()
    })?;

    // The control plane answers only once the shards accept connections:
    // a node that says it is healthy can serve.
    let state = ControlState {
        mesh: mesh.clone(),
        prometheus,
        admin_key: secrets.admin_key.clone().into(),
        core,
        verifier: verifier.clone(),
        status: Arc::new(status),
        advertised,
        certs,
        control_certs,
        rooms: config.room_policy(),
    };
    let control = match ControlPlane::start(runtime, config.control_listen, state, backend, (web_listener, web)) {
        Ok(control) => control,
        Err(e) => return Err(shards.abort(e)),
    };
    print_banner(&config, &secrets, listen)?;
    let (ws, http) = if tls.is_some() { ("wss", "https") } else { ("ws", "http") };
    let (ws_listen, web_listen) = (reachable(ws_listen), reachable(web_listen));
    println!("WebSocket clients on {ws}://{ws_listen}{}, demo page at {http}://{web_listen}/demo", config.ws_path);

    let failure = shards.wait();
    control.stop()?;
    drop(chat_core);
    tracing::info!("server stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
