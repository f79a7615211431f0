//! The node's public HTTP listener (`web_listen`), served on the control
//! plane's runtime: the live-room demo page and the JavaScript client
//! ([`demo`]), and the HTTP fallback for networks that block WebSocket
//! ([`fallback`]: Server-Sent Events down, POST up). On a TLS node it
//! speaks HTTPS ([`https`]) with the clients' certificate.

mod demo;
mod fallback;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::https::TlsListener;

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
    /// TLS on a TLS node: HTTPS for this listener, and the gateway's TLS
    /// to the node's own client listener.
    pub tls: Option<WebTls>,
    /// The HS256 secret, when demo tokens may be minted.
    pub demo_secret: Option<Arc<str>>,
    /// How often the gateway pings its upstream connections.
    pub heartbeat_ms: u32,
    /// Live fallback sessions.
    pub sessions: fallback::Sessions,
}

/// The public listener's TLS, and the gateway's.
#[derive(Clone)]
pub struct WebTls {
    /// Serves HTTPS with the node's certificate.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Connects to the node's own client listener.
    pub connector: tokio_rustls::TlsConnector,
}

impl WebTls {
    /// Both sides from the node's certificate store.
    pub fn new(certs: &Arc<crate::tls::CertStore>) -> anyhow::Result<WebTls> {
        Ok(WebTls {
            acceptor: tokio_rustls::TlsAcceptor::from(certs.server_config()?),
            connector: tokio_rustls::TlsConnector::from(certs.own_client_config()?),
        })
    }
}

/// The public routes.
pub fn routes(state: WebState) -> Router {
    Router::new()
        .route("/demo", get(demo::page))
        .route("/favicon.ico", get(demo::icon))
        .route("/corecast.js", get(demo::client_module))
        .route("/demo/config", get(demo::config))
        .route("/demo/token", post(demo::token))
        .route("/v1/sse", get(fallback::events))
        .route("/v1/send", post(fallback::send))
        .with_state(state)
}

/// Serves the public routes on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, state: WebState) {
    let served = match &state.tls {
        None => axum::serve(listener, routes(state)).await,
        Some(tls) => match TlsListener::new(listener, tls.acceptor.clone(), "public HTTP listener") {
            Ok(listener) => axum::serve(listener, routes(state)).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!("public HTTP listener stopped: {e}");
    }
}
