//! The control plane: one thread running a small tokio runtime that serves
//! `GET /health`, `GET /metrics` (Prometheus), `GET /v1/dispatch` and the
//! admin API (with the single node's chat admin routes), runs the uplink to
//! the routers in a cluster, turns SIGTERM/SIGINT into
//! a graceful shutdown of every shard and SIGHUP into a reload of the TLS
//! certificates. With `control_tls_cert_file` it speaks only HTTPS. It
//! reaches the shards only through their inboxes.

mod admin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use corecast_cluster::admin_api::{require_admin_key, AdminKey};
use corecast_cluster::dispatch::{DispatchAnswer, DispatchEntry, ReconnectHints};
use corecast_cluster::registry::redis::Registry;
use corecast_router::RouterCore;
use corecast_settings::build_info;

use crate::advertised::Advertised;
use crate::auth::TokenVerifier;
use crate::cluster::ClusterSettings;
use crate::https::TlsListener;
use crate::shard::{CoreCommand, Mesh, ShardCommand};
use crate::status::NodeStatus;
use crate::tls::CertStore;
use crate::web::WebState;
use corecast_cluster::room_stream::RoomPolicy;

/// What the control plane's handlers share.
#[derive(Clone)]
pub struct ControlState {
    /// Every shard's inbox.
    pub mesh: Mesh,
    /// Renders the metrics registry.
    pub prometheus: PrometheusHandle,
    /// The admin API key.
    pub admin_key: Arc<str>,
    /// The in-process router core (persistent chat, presence, groups) of a
    /// single node; `None` in a cluster, where the routers hold it.
    pub core: Option<Arc<RouterCore>>,
    /// The token verifier, for revocations.
    pub verifier: Arc<TokenVerifier>,
    /// The node's id, ceiling and drain state.
    pub status: Arc<NodeStatus>,
    /// Where clients connect (TCP and WebSocket), for the single node's
    /// dispatch answer.
    pub advertised: Advertised,
    /// The TLS certificate in force, when clients speak TLS.
    pub certs: Option<Arc<CertStore>>,
    /// The control plane's own certificate, when it speaks only HTTPS.
    pub control_certs: Option<Arc<CertStore>>,
    /// The `[[rooms]]` rules: which rooms have a stream or presence.
    pub rooms: RoomPolicy,
}

impl ControlState {
    /// Every certificate this node serves, for reloading them all.
    fn cert_stores(&self) -> Vec<Arc<CertStore>> {
        self.certs.iter().chain(&self.control_certs).cloned().collect()
    }
}

/// Who answers the shards' chat requests.
pub enum ChatBackend {
    /// The in-process router core of a single node, which runs on its own
    /// runtime ([`crate::chat_core`]); the control plane serves its admin
    /// routes.
    Single(Arc<RouterCore>),
    /// The routers of a cluster, through the uplink the control plane runs
    /// on the registry it connected to before the node started, fed the
    /// shards' commands.
    Cluster(Box<ClusterSettings>, Registry, flume::Receiver<CoreCommand>),
}

/// A running control plane.
pub struct ControlPlane {
    thread: JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ControlPlane {
    /// Binds `addr` and starts serving on a new thread, on `runtime`, with
    /// the cluster uplink if `backend` says so, and the public HTTP
    /// listener on `web`. Signals received there shut the shards down.
    pub fn start(
        runtime: tokio::runtime::Runtime,
        addr: SocketAddr,
        state: ControlState,
        backend: ChatBackend,
        web: (std::net::TcpListener, WebState),
    ) -> anyhow::Result<ControlPlane> {
        let std_listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding the control plane on {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let (web_listener, web_state) = web;
        web_listener.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new().name("corecast-control".into()).spawn(move || {
            if let ChatBackend::Cluster(settings, registry, core_inbox) = backend {
                let (mesh, status) = (state.mesh.clone(), state.status.clone());
                let revocations = state.verifier.revocations().clone();
                runtime.spawn(crate::cluster::run(*settings, registry, mesh, status, revocations, core_inbox));
            }
            match runtime.block_on(async { tokio::net::TcpListener::from_std(web_listener) }) {
                Ok(listener) => {
                    runtime.spawn(crate::web::serve(listener, web_state));
                }
                Err(e) => tracing::error!("the public HTTP listener could not start: {e}"),
            }
            runtime.block_on(serve(std_listener, state, stop_rx))
        })?;
        Ok(ControlPlane { thread, stop: stop_tx })
    }

    /// Stops serving and waits for the thread.
    pub fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.thread.join().map_err(|_| anyhow::anyhow!("control plane thread panicked"))?
    }
}

async fn serve(
    std_listener: std::net::TcpListener,
    state: ControlState,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    tokio::spawn(shutdown_on_signal(state.mesh.clone(), state.status.clone()));
    let stores = state.cert_stores();
    if !stores.is_empty() {
        tokio::spawn(reload_on_sighup(stores));
    }
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/dispatch", get(dispatch))
        .merge(admin::routes(state.clone()));
    if let Some(core) = &state.core {
        // A single node has no other routers to tell of group changes.
        let chat = corecast_router::admin_chat::routes(core.clone(), Arc::new(|_: &str| {}))
            .route_layer(axum::middleware::from_fn_with_state(AdminKey(state.admin_key.clone()), require_admin_key));
        app = app.merge(chat);
    }
    let control_certs = state.control_certs.clone();
    let app = app.with_state(state);
    let stopped = async {
        let _ = stop.await;
    };
    match control_certs {
        None => axum::serve(listener, app).with_graceful_shutdown(stopped).await?,
        Some(certs) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config()?);
            let listener = TlsListener::new(listener, acceptor, "control plane")?;
            axum::serve(listener, app).with_graceful_shutdown(stopped).await?
        }
    }
    Ok(())
}

/// Reloads the TLS certificates on every SIGHUP.
async fn reload_on_sighup(stores: Vec<Arc<CertStore>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("could not install the SIGHUP handler; reload TLS through the admin API");
        return;
    };
    while hup.recv().await.is_some() {
        for certs in &stores {
            if let Err(e) = certs.reload() {
                tracing::error!("TLS certificate reload failed, keeping the current one: {e:#}");
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT and tells every shard to shut down.
async fn shutdown_on_signal(mesh: Mesh, status: Arc<NodeStatus>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("could not install signal handlers; SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received: shutting down"),
    }
    status.start_draining();
    for (_, sender) in mesh.all() {
        let _ = sender.send_async(ShardCommand::Shutdown).await;
    }
}

/// Client connections on every shard; 0 when a shard does not answer.
async fn node_connections(state: &ControlState) -> u64 {
    admin::ask_shards(state, |reply| ShardCommand::CountConnections { reply })
        .await
        .map_or(0, |counts| counts.iter().map(|&n| n as u64).sum())
}

/// The node's health, as routers pull it: status, connections, ceiling,
/// and the build it runs.
async fn health(State(state): State<ControlState>) -> Json<serde_json::Value> {
    let connections = node_connections(&state).await;
    let status = if state.status.is_draining() { "draining" } else { "ok" };
    Json(json!({
        "status": status,
        "node": state.status.id,
        "shards": state.mesh.len(),
        "connections": connections,
        "ceiling": state.status.ceiling,
        "version": build_info::VERSION,
        "commit": build_info::COMMIT,
    }))
}

/// A single node's dispatch answer, in the routers' shape: itself with its
/// connections, ceiling and weight, unless it is draining or full. In a
/// cluster the routers answer dispatch for every node.
async fn dispatch(State(state): State<ControlState>) -> impl IntoResponse {
    let connections = node_connections(&state).await;
    let status = &state.status;
    let takes_clients = !status.is_draining() && connections < status.ceiling && status.weight > 0;
    let nodes = takes_clients
        .then(|| DispatchEntry {
            node: status.id.clone(),
            addr: state.advertised.client.clone(),
            ws_url: Some(state.advertised.ws_url.clone()),
            weight: status.weight,
            connections,
            ceiling: status.ceiling,
        })
        .into_iter()
        .collect();
    let answer = DispatchAnswer { nodes, reconnect: ReconnectHints::default(), stale: false };
    // Public and read-only: pages served from any origin may ask.
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], Json(answer))
}

async fn metrics(State(state): State<ControlState>) -> String {
    state.prometheus.render()
}
