//! The control plane: one thread running a small tokio runtime that serves
//! `GET /health`, `GET /metrics` (Prometheus) and the admin API, runs the
//! router core on the chat requests the shards send it, and turns
//! SIGTERM/SIGINT into a graceful shutdown of every shard. It reaches the
//! shards only through their inboxes.

mod admin;
mod chat_admin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrameBytes};
use corecast_router::RouterCore;

use crate::auth::TokenVerifier;
use crate::shard::{Mesh, ShardCommand};

/// What the control plane's handlers share.
#[derive(Clone)]
pub struct ControlState {
    /// Every shard's inbox.
    pub mesh: Mesh,
    /// Renders the metrics registry.
    pub prometheus: PrometheusHandle,
    /// The admin API key.
    pub admin_key: Arc<str>,
    /// The router core (persistent chat, presence, groups).
    pub core: Arc<RouterCore>,
    /// The token verifier, for revocations.
    pub verifier: Arc<TokenVerifier>,
}

/// A running control plane.
pub struct ControlPlane {
    thread: JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ControlPlane {
    /// Binds `addr` and starts serving on a new thread, on `runtime`, with
    /// the router core taking requests from `core_inbox`. Signals received
    /// there shut the shards down.
    pub fn start(
        runtime: tokio::runtime::Runtime,
        addr: SocketAddr,
        state: ControlState,
        core_inbox: flume::Receiver<InternalFrameBytes>,
    ) -> anyhow::Result<ControlPlane> {
        let std_listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding the control plane on {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new().name("corecast-control".into()).spawn(move || {
            runtime.spawn(run_core(state.core.clone(), core_inbox));
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
    let mesh = state.mesh.clone();
    tokio::spawn(shutdown_on_signal(mesh));
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(admin::routes(state.clone()))
        .merge(chat_admin::routes(state.clone()))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await?;
    Ok(())
}

/// Feeds the router core. Presence changes are applied in arrival order;
/// every other request runs as its own task so a slow store call does not
/// hold up the rest.
async fn run_core(core: Arc<RouterCore>, inbox: flume::Receiver<InternalFrameBytes>) {
    while let Ok(frame) = inbox.recv_async().await {
        let presence = matches!(
            frame.archived(),
            ArchivedInternalFrame::Chat(ArchivedChatRequest::Online { .. } | ArchivedChatRequest::Offline { .. })
        );
        if presence {
            core.handle(&frame).await;
        } else {
            let core = core.clone();
            tokio::spawn(async move { core.handle(&frame).await });
        }
    }
}

/// Waits for SIGTERM or SIGINT and tells every shard to shut down.
async fn shutdown_on_signal(mesh: Mesh) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("could not install signal handlers; SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received: shutting down"),
    }
    for (_, sender) in mesh.all() {
        let _ = sender.send_async(ShardCommand::Shutdown).await;
    }
}

async fn health(State(state): State<ControlState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "shards": state.mesh.len() }))
}

async fn metrics(State(state): State<ControlState>) -> String {
    state.prometheus.render()
}
