//! A shard: one thread pinned to one core, running a monoio runtime, owning
//! its listeners, its connections, its slice of every room and its timers.
//!
//! The shard's state and logic are a sans-IO state machine, [`core`]'s
//! `ShardCore`: events in, frames queued and lists of work out, time passed
//! in. The [`driver`] around it owns the sockets, the read buffer, the
//! readiness set and the wakers. Nothing here is shared with other threads
//! except the inboxes (flume) and the metrics handles. The other submodules
//! hold one concept each: the outbound queue, rooms, the timing wheel, rate
//! limits, the WebSocket codec state, the inbox commands and the threads.

#[doc(hidden)]
pub mod bench_support;
mod core;
mod driver;
mod frame_mesh;
mod inbox;
mod limits;
mod outbound;
mod rooms;
mod threads;
mod timer_wheel;
mod ws_codec;

use std::sync::Arc;

use anyhow::Context;

pub use self::core::{owner_shard, InterestAck};
pub use frame_mesh::{frame_mesh, FrameLinks};
pub use inbox::{CoreCommand, Mesh, ShardCommand};
pub use threads::ShardThreads;

use self::core::{Framing, Links, ShardCore};
use crate::auth::TokenVerifier;
use crate::config::{Config, DriverChoice};
use crate::stall::Pulse;
use driver::{Driver, Listener};

/// Most shards one server runs (room interest is a 128-bit mask).
pub const MAX_SHARDS: usize = 128;

/// Everything a shard thread is started with.
pub struct ShardContext {
    /// Shard id, 0-based.
    pub id: u16,
    /// CPU to pin the thread to.
    pub cpu: Option<usize>,
    /// This shard's SO_REUSEPORT listener.
    pub listener: std::net::TcpListener,
    /// This shard's SO_REUSEPORT WebSocket listener.
    pub ws_listener: std::net::TcpListener,
    /// This shard's inbox.
    pub inbox: flume::Receiver<ShardCommand>,
    /// Every shard's inbox.
    pub mesh: Mesh,
    /// This shard's ends of the frame mesh.
    pub frames: FrameLinks,
    /// Server configuration.
    pub config: Arc<Config>,
    /// Token verifier shared by all shards.
    pub verifier: Arc<TokenVerifier>,
    /// The control plane's inbox: chat requests for the router core, and in
    /// a cluster room pushes and room interest for the uplink.
    pub core: flume::Sender<CoreCommand>,
    /// This shard's heartbeat for the stall watchdog.
    pub pulse: Arc<Pulse>,
    /// The TLS configuration for client connections, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections open on the whole node (every shard counts its own).
    pub node_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the shard says it has started (its runtime built, its
    /// listeners registered) and, from its thread, that it has stopped.
    pub events: std::sync::mpsc::Sender<ShardEvent>,
}

/// What a shard thread tells the node about itself.
pub enum ShardEvent {
    /// The shard is accepting connections.
    Started(u16),
    /// The shard has stopped, with its result.
    Stopped(u16, anyhow::Result<()>),
}

/// Runs a shard on the calling thread until it is shut down.
pub fn run(ctx: ShardContext) -> anyhow::Result<()> {
    if let Some(cpu) = ctx.cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(shard = ctx.id, cpu, "could not pin shard to its cpu: {e:?}");
        }
    }
    let entries = ctx.config.io_uring_entries;
    match ctx.config.driver {
        DriverChoice::Auto => {
            match monoio::RuntimeBuilder::<monoio::FusionDriver>::new().with_entries(entries).enable_timer().build() {
                Ok(mut rt) => {
                    let driver = match rt {
                        monoio::FusionRuntime::Uring(_) => "io_uring",
                        monoio::FusionRuntime::Legacy(_) => "epoll",
                    };
                    rt.block_on(shard_main(ctx, driver))
                }
                // io_uring is there but this ring could not be set up (memory,
                // a ring limit): epoll serves the same protocol, a little slower.
                Err(e) => {
                    tracing::warn!(shard = ctx.id, "io_uring runtime failed ({e}); this shard uses epoll");
                    epoll_runtime()?.block_on(shard_main(ctx, "epoll"))
                }
            }
        }
        DriverChoice::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .context("building the io_uring runtime (driver = io_uring)")?
            .block_on(shard_main(ctx, "io_uring")),
        DriverChoice::Epoll => epoll_runtime()?.block_on(shard_main(ctx, "epoll")),
    }
}

fn epoll_runtime() -> anyhow::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().context("building the epoll runtime")
}

async fn shard_main(ctx: ShardContext, driver_name: &'static str) -> anyhow::Result<()> {
    // Alive from here on: the watchdog counts from this beat, not from when
    // the node made the pulse.
    ctx.pulse.beat();
    let links = Links { mesh: ctx.mesh, frames: ctx.frames, core: ctx.core, node_connections: ctx.node_connections };
    let core = ShardCore::new(ctx.id, ctx.config, ctx.verifier, links, driver_name);
    let addr = ctx.listener.local_addr().ok();
    let listeners = vec![
        Listener { socket: ctx.listener, framing: Framing::Raw },
        Listener { socket: ctx.ws_listener, framing: Framing::WebSocket },
    ];
    let driver = Driver::new(core, listeners, ctx.tls, ctx.pulse).context("setting up the shard's readiness set")?;
    tracing::info!(shard = ctx.id, driver = driver_name, ?addr, "shard started");
    let _ = ctx.events.send(ShardEvent::Started(ctx.id));
    driver.run(ctx.inbox).await;
    tracing::info!(shard = ctx.id, "shard stopped");
    Ok(())
}
