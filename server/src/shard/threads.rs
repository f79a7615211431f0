//! The shard threads as the node sees them: started one per core, waited on
//! until every one accepts connections (so a node whose control plane
//! answers has working shards), and stopped together when any one stops.

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{Mesh, ShardCommand, ShardContext, ShardEvent};

/// The running shard threads.
pub struct ShardThreads {
    threads: Vec<JoinHandle<()>>,
    events: mpsc::Receiver<ShardEvent>,
    mesh: Mesh,
}

impl ShardThreads {
    /// Starts one thread per context (each made with the sender it reports
    /// to) and returns once every shard has started. A shard that fails to
    /// start stops the others, and its error is returned.
    pub fn start(
        mesh: Mesh,
        contexts: impl FnOnce(&mpsc::Sender<ShardEvent>) -> Vec<ShardContext>,
    ) -> anyhow::Result<ShardThreads> {
        let (events_tx, events) = mpsc::channel();
        let contexts = contexts(&events_tx);
        let count = contexts.len();
        let mut shards = ShardThreads { threads: Vec::with_capacity(count), events, mesh };
        for ctx in contexts {
            let (id, events_tx) = (ctx.id, events_tx.clone());
            let thread = std::thread::Builder::new().name(format!("corecast-shard-{id}")).spawn(move || {
                let result = super::run(ctx);
                let _ = events_tx.send(ShardEvent::Stopped(id, result));
            });
            match thread {
                Ok(thread) => shards.threads.push(thread),
                Err(e) => return Err(shards.abort(e.into())),
            }
        }
        drop(events_tx);
        let mut started = 0;
        while started < count {
            match shards.events.recv() {
                Ok(ShardEvent::Started(_)) => started += 1,
                Ok(ShardEvent::Stopped(id, result)) => {
                    let error = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped while starting"));
                    return Err(shards.abort(error.context(format!("shard {id} could not start"))));
                }
                // Every thread has ended, a panic among them.
                Err(_) => return Err(shards.abort(anyhow::anyhow!("a shard thread panicked while starting"))),
            }
        }
        Ok(shards)
    }

    /// Asks every shard to stop and waits for the threads.
    pub fn abort(self, error: anyhow::Error) -> anyhow::Error {
        self.stop_all();
        for thread in self.threads {
            let _ = thread.join();
        }
        error
    }

    /// Waits until the shards stop (the first to stop, by shutdown or
    /// failure, stops the others) and returns the first failure.
    pub fn wait(self) -> Option<anyhow::Error> {
        let mut failure = None;
        for event in self.events.iter() {
            if let ShardEvent::Stopped(id, result) = event {
                if let Err(e) = result {
                    tracing::error!(shard = id, "shard failed: {e:#}");
                    failure.get_or_insert(e);
                }
                self.stop_all();
            }
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        failure
    }

    fn stop_all(&self) {
        for (_, sender) in self.mesh.all() {
            let _ = sender.try_send(ShardCommand::Shutdown);
        }
    }
}
