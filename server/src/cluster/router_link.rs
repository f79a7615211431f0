//! The node's links to the routers: every router registered in Redis gets
//! one long-lived TCP link (TLS when `link_tls_ca_file` is set), reconnected with exponential backoff and jitter
//! while the router stays registered. A link starts with the node's hello
//! (its rooms), then carries requests and room pushes one way and replies,
//! deliveries and acknowledgements the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corecast_cluster::link::codec::{read_frame, write_frames, LinkError};
use corecast_cluster::link::tls::{self, LinkReader, LinkWriter};
use corecast_cluster::registry::redis::Registry;
use corecast_cluster::registry::RouterInfo;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::Uplink;

/// Frames queued to one router before new ones are refused.
const ROUTER_QUEUE_FRAMES: usize = 64 * 1024;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Looks for routers in Redis every third of the registration lifetime and
/// keeps one link task per router.
pub async fn discover(uplink: Arc<Uplink>, registry: Registry) {
    let period = uplink.settings().registry_ttl / 3;
    let mut links: FxHashMap<String, JoinHandle<()>> = FxHashMap::default();
    loop {
        match registry.routers().await {
            Ok(routers) => {
                links.retain(|_, task| !task.is_finished());
                for router in routers {
                    if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(router.id.clone()) {
                        slot.insert(tokio::spawn(keep_linked(uplink.clone(), registry.clone(), router)));
                    }
                }
            }
            Err(e) => tracing::warn!("could not list the routers in Redis: {e}"),
        }
        tokio::time::sleep(period).await;
    }
}

/// The router's current registration, `Ok(None)` once it is gone.
async fn current(registry: &Registry, id: &str) -> Result<Option<RouterInfo>, String> {
    match registry.routers().await {
        Ok(routers) => Ok(routers.into_iter().find(|r| r.id == id)),
        Err(e) => Err(e.to_string()),
    }
}

/// Links to one router until it leaves the registry.
async fn keep_linked(uplink: Arc<Uplink>, registry: Registry, mut router: RouterInfo) {
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let mut backoff = BACKOFF_BASE;
    loop {
        match open(&uplink, &router.link_addr).await {
            Ok(halves) => {
                backoff = BACKOFF_BASE;
                let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
                tracing::info!(router = %router.id, addr = %router.link_addr, "router link up");
                let result = run_link(&uplink, &router.id, halves, generation).await;
                uplink.link_down(&router.id, generation);
                match result {
                    Ok(()) => tracing::warn!(router = %router.id, "router closed the link"),
                    Err(e) => tracing::warn!(router = %router.id, "router link lost: {e}"),
                }
                metrics::counter!("corecast_uplink_link_losses_total").increment(1);
            }
            Err(e) => tracing::debug!(router = %router.id, "could not reach the router: {e}"),
        }
        match current(&registry, &router.id).await {
            Ok(Some(latest)) => router = latest,
            Ok(None) => {
                tracing::info!(router = %router.id, "router left the registry; no more link attempts");
                return;
            }
            // Redis itself is away: keep trying the address we know.
            Err(_) => {}
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects to a router's link address, over TLS when configured.
async fn open(uplink: &Uplink, link_addr: &str) -> std::io::Result<(LinkReader, LinkWriter)> {
    let stream = TcpStream::connect(link_addr).await?;
    stream.set_nodelay(true)?;
    match &uplink.settings().link_tls {
        None => Ok(tls::plain(stream)),
        Some(connector) => tls::connect(connector, link_addr, stream).await,
    }
}

async fn run_link(
    uplink: &Arc<Uplink>,
    router: &str,
    (mut reader, mut writer): (LinkReader, LinkWriter),
    generation: u64,
) -> Result<(), LinkError> {
    let (frames_tx, frames_rx) = flume::bounded(ROUTER_QUEUE_FRAMES);
    uplink.link_up(router, frames_tx, generation);
    let mut writer_task = tokio::spawn(async move { write_frames(&mut writer, &frames_rx).await });
    let result = loop {
        tokio::select! {
            frame = read_frame(&mut reader) => match frame {
                Ok(Some(frame)) => uplink.from_router(frame),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            written = &mut writer_task => break match written {
                Ok(result) => result,
                Err(e) => Err(LinkError::Io(std::io::Error::other(e))),
            },
        }
    };
    writer_task.abort();
    result
}
