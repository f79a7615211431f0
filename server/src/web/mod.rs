//! The node's public HTTP listener (`web_listen`), served on the control
//! plane's runtime: the live-room demo page and the JavaScript client
//! ([`demo`]), and the HTTP fallback for networks that block WebSocket
//! ([`fallback`]: Server-Sent Events down, POST up).

mod demo;
mod fallback;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

/// What the public HTTP handlers need.
#[derive(Clone)]
pub struct WebState {
    /// Where the node's shards accept wire-protocol clients; the fallback
    /// gateway connects there on behalf of its sessions.
    pub client_addr: SocketAddr,
    /// The WebSocket listener's port and path, for the demo's config.
    pub ws_port: u16,
    /// The WebSocket path.
    pub ws_path: String,
    /// Clients speak TLS (wss).
    pub tls: bool,
    /// The HS256 secret, when demo tokens may be minted.
    pub demo_secret: Option<Arc<str>>,
    /// How often the gateway pings its upstream connections.
    pub heartbeat_ms: u32,
    /// Live fallback sessions.
    pub sessions: fallback::Sessions,
}

/// The public routes.
pub fn routes(state: WebState) -> Router {
    Router::new()
        .route("/demo", get(demo::page))
        .route("/corecast.js", get(demo::client_module))
        .route("/demo/config", get(demo::config))
        .route("/demo/token", post(demo::token))
        .route("/v1/sse", get(fallback::events))
        .route("/v1/send", post(fallback::send))
        .with_state(state)
}

/// Serves the public routes on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, state: WebState) {
    if let Err(e) = axum::serve(listener, routes(state)).await {
        tracing::error!("public HTTP listener stopped: {e}");
    }
}
