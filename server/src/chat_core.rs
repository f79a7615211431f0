//! The single node's chat core: the in-process router core with the
//! embedded store, on a current-thread tokio runtime of its own (the
//! `corecast-chat` thread), fed the shards' chat requests. Keeping it off the control
//! plane's thread means a burst of SENDs never delays health checks,
//! metrics scrapes or the admin API, and the reverse. Store calls never run
//! on either runtime's threads: the embedded store writes on its writer
//! thread and reads on a blocking pool.

use std::sync::Arc;

use anyhow::Context;
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrameBytes};
use corecast_router::{ConnSink, CoreConfig, RouterCore};
use corecast_storage::embedded::EmbeddedStore;

use crate::allocator::{release_free_pages, QuietAfterBurst};
use crate::config::Config;
use crate::shard::{CoreCommand, Mesh};

/// How often the core looks whether a burst of requests is over, to give
/// the burst's freed memory back.
const QUIET_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// Name of the single node in its own route table.
const LOCAL_NODE: &str = "local";

/// The core's way back to the shards: their inboxes.
struct MeshSink(Mesh);

impl ConnSink for MeshSink {
    fn to_node(&self, _node: &str, frame: InternalFrameBytes) {
        // The single-node core sends only connection frames.
        self.0.deliver(&frame, |_| 0);
    }
}

/// The running chat core of a single node.
pub struct ChatCore {
    core: Arc<RouterCore>,
    /// Hands the shards' inbox to the core's thread.
    serve: Option<std::sync::mpsc::SyncSender<flume::Receiver<CoreCommand>>>,
    /// Tells the core's thread to stop.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChatCore {
    /// Opens the embedded store in the data directory and starts the router
    /// core on its own runtime.
    pub fn start(config: &Config, mesh: &Mesh) -> anyhow::Result<ChatCore> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        let store = EmbeddedStore::open(&config.data_dir, config.durability)
            .with_context(|| format!("opening the message store in {}", config.data_dir.display()))?;
        tracing::info!(dir = %config.data_dir.display(), durability = ?config.durability, "message store open");
        let core_config = CoreConfig {
            small_group_limit: config.small_group_limit,
            store_timeout: std::time::Duration::from_millis(config.store_timeout_ms as u64),
            ..CoreConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the chat core's runtime")?;
        let routes = Arc::new(corecast_router::presence::InMemoryRouteTable::default());
        let sink = Arc::new(MeshSink(mesh.clone()));
        let core = runtime
            .block_on(RouterCore::start(Arc::new(store), routes, sink, core_config, "single-node"))
            .context("starting the router core")?;
        let (serve, inbox) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let for_thread = core.clone();
        let thread = std::thread::Builder::new()
            .name("corecast-chat".into())
            .spawn(move || {
                if let Ok(inbox) = inbox.recv() {
                    runtime.block_on(async {
                        tokio::select! {
                            () = run_core(for_thread, inbox) => {}
                            _ = stopped => {}
                        }
                    });
                }
            })
            .context("starting the chat core's thread")?;
        Ok(ChatCore { core, serve: Some(serve), stop: Some(stop), thread: Some(thread) })
    }

    /// The router core, for the admin API.
    pub fn core(&self) -> Arc<RouterCore> {
        self.core.clone()
    }

    /// Answers the shards' chat requests from `inbox` until every sender
    /// is gone.
    pub fn serve(&mut self, inbox: flume::Receiver<CoreCommand>) {
        if let Some(serve) = self.serve.take() {
            let _ = serve.send(inbox);
        }
    }
}

impl Drop for ChatCore {
    /// Stops the core's thread (requests still in flight are dropped, as
    /// their connections are gone) and waits for it.
    fn drop(&mut self) {
        self.serve = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the chat core's thread panicked");
            }
        }
    }
}

/// Feeds the router core. Presence changes are applied in arrival order;
/// every other request runs as its own task so a slow store call does not
/// hold up the rest.
async fn run_core(core: Arc<RouterCore>, inbox: flume::Receiver<CoreCommand>) {
    let mut quiet = QuietAfterBurst::default();
    let mut busy = false;
    let mut period = tokio::time::interval(QUIET_PERIOD);
    loop {
        let command = tokio::select! {
            command = inbox.recv_async() => match command {
                Ok(command) => command,
                Err(_) => return,
            },
            _ = period.tick() => {
                if quiet.period(std::mem::take(&mut busy)) {
                    release_free_pages();
                }
                continue;
            }
        };
        busy = true;
        let frame = match command {
            CoreCommand::Request(frame) => frame,
            // A single node has no other nodes to tell about its rooms.
            CoreCommand::Publish(_) | CoreCommand::ToOwner(_) => continue,
            CoreCommand::RoomInterest { ack, .. } => {
                if let Some(ack) = ack {
                    ack.send();
                }
                continue;
            }
        };
        let presence = matches!(frame.archived(), ArchivedInternalFrame::Chat(ArchivedChatRequest::Presence { .. }));
        if presence {
            core.handle(LOCAL_NODE, &frame).await;
        } else {
            let core = core.clone();
            tokio::spawn(async move { core.handle(LOCAL_NODE, &frame).await });
        }
    }
}
