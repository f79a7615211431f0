//! The writer thread: every write of the embedded store goes through it, so
//! checks and writes never race, and it group-commits them.
//!
//! The thread blocks for one command, then takes every command that queued
//! up meanwhile (those that arrived while the previous batch was being
//! written and fsynced), applies them in arrival order to one [`GroupTxn`],
//! commits that as one atomic batch, fsyncs once if the durability mode asks
//! for it, and only then answers every command of the group. Callers wait on
//! a one-shot flume channel, which any async runtime (or none) can poll.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flume::{Receiver, RecvTimeoutError, Sender};

use super::apply;
use super::config::Durability;
use super::tables::Tables;
use super::txn::GroupTxn;
use crate::{AppendOutcome, Fanout, StoreError, StoredMessage};

/// Most commands applied in one group commit.
const MAX_GROUP: usize = 1024;
/// Most commands waiting for the writer. A caller beyond that waits (its
/// future stays pending) until the writer catches up: backpressure instead
/// of an unbounded queue.
const QUEUE_CAPACITY: usize = 16 * MAX_GROUP;

/// Where a command's result goes.
pub(crate) type Reply<T> = Sender<Result<T, StoreError>>;

/// A write for the writer thread.
pub(crate) enum Command {
    Append {
        message: StoredMessage,
        fanout: Fanout,
        reply: Reply<AppendOutcome>,
    },
    SetCursor {
        user: String,
        device: String,
        conv: String,
        seq: u64,
        reply: Reply<()>,
    },
    Fence {
        conv: String,
        below: u64,
        reply: Reply<()>,
    },
    CreateGroup {
        group: String,
        members: Vec<String>,
        large_above: usize,
        reply: Reply<()>,
    },
    AddMembers {
        group: String,
        members: Vec<String>,
        large_above: usize,
        reply: Reply<()>,
    },
    RemoveMembers {
        group: String,
        members: Vec<String>,
        reply: Reply<()>,
    },
    NextEpoch {
        reply: Reply<u64>,
    },
    /// fsync everything, answer, and stop.
    Close {
        reply: Reply<()>,
    },
}

/// Answers a command once its group's commit (and fsync) is known.
type Completion = Box<dyn FnOnce(&Result<(), StoreError>) + Send>;

/// Starts the writer thread.
pub(crate) fn spawn(
    tables: Arc<Tables>,
    durability: Durability,
) -> Result<(Sender<Command>, JoinHandle<()>), StoreError> {
    let (tx, rx) = flume::bounded(QUEUE_CAPACITY);
    let handle = std::thread::Builder::new()
        .name("corecast-store-writer".into())
        .spawn(move || Writer { tables, durability, rx }.run())
        .map_err(|e| StoreError::Unavailable(format!("starting the store writer thread: {e}")))?;
    Ok((tx, handle))
}

/// What one group commit did.
struct GroupDone {
    /// A close was in it: the thread stops.
    closing: bool,
    /// It committed writes.
    wrote: bool,
    /// It fsynced (everything committed so far is durable).
    synced: bool,
}

struct Writer {
    tables: Arc<Tables>,
    durability: Durability,
    rx: Receiver<Command>,
}

impl Writer {
    fn run(self) {
        // In batched mode: when the oldest committed-but-unsynced write must be synced.
        let mut sync_due: Option<Instant> = None;
        loop {
            let first = match sync_due {
                Some(due) => match self.rx.recv_deadline(due) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        self.background_sync();
                        sync_due = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            let mut group = Vec::with_capacity(16);
            group.push(first);
            group.extend(self.rx.try_iter().take(MAX_GROUP - 1));

            let done = self.run_group(group);
            if done.closing {
                return;
            }
            if done.synced {
                sync_due = None;
            } else if done.wrote {
                if let Durability::Batched { interval_ms } = self.durability {
                    sync_due.get_or_insert_with(|| Instant::now() + Duration::from_millis(interval_ms));
                }
            }
            // A writer kept busy past the deadline syncs between groups.
            if sync_due.is_some_and(|due| due <= Instant::now()) {
                self.background_sync();
                sync_due = None;
            }
        }
        // Every store handle is gone without a close: still leave nothing unsynced.
        self.background_sync();
    }

    /// Applies, commits and answers one group.
    fn run_group(&self, group: Vec<Command>) -> GroupDone {
        let mut txn = GroupTxn::new(&self.tables);
        let mut completions: Vec<Completion> = Vec::with_capacity(group.len());
        let mut close: Option<Reply<()>> = None;
        for command in group {
            match command {
                Command::Append { message, fanout, reply } => {
                    let result = apply::append(&mut txn, &message, &fanout);
                    completions.push(deferred(reply, result));
                }
                Command::SetCursor { user, device, conv, seq, reply } => {
                    let result = apply::set_cursor(&mut txn, &user, &device, &conv, seq);
                    completions.push(deferred(reply, result));
                }
                Command::Fence { conv, below, reply } => {
                    let result = apply::fence(&mut txn, &conv, below);
                    completions.push(deferred(reply, result));
                }
                Command::CreateGroup { group, members, large_above, reply } => {
                    let result = apply::create_group(&mut txn, &group, &members, large_above);
                    completions.push(deferred(reply, result));
                }
                Command::AddMembers { group, members, large_above, reply } => {
                    let result = apply::add_members(&mut txn, &group, &members, large_above);
                    completions.push(deferred(reply, result));
                }
                Command::RemoveMembers { group, members, reply } => {
                    let result = apply::remove_members(&mut txn, &group, &members);
                    completions.push(deferred(reply, result));
                }
                Command::NextEpoch { reply } => {
                    let result = apply::next_epoch(&mut txn);
                    completions.push(deferred(reply, result));
                }
                Command::Close { reply } => close = Some(reply),
            }
        }

        let wrote = !txn.is_empty();
        let must_sync = close.is_some() || txn.needs_sync() || (wrote && self.durability == Durability::Strict);
        let mut outcome = txn.commit();
        if outcome.is_ok() && must_sync {
            outcome = self.tables.sync();
        }
        if let Err(e) = &outcome {
            tracing::error!(error = %e, commands = completions.len(), "store group commit failed");
        }
        for complete in completions {
            complete(&outcome);
        }
        if let Some(reply) = &close {
            let _ = reply.send(copy_error(&outcome));
        }
        GroupDone { closing: close.is_some(), wrote: wrote && outcome.is_ok(), synced: must_sync && outcome.is_ok() }
    }

    /// The periodic fsync of batched mode. Nobody waits on it: a failure
    /// poisons the engine, and the next write reports the error.
    fn background_sync(&self) {
        if let Err(e) = self.tables.sync() {
            tracing::error!(error = %e, "store background fsync failed");
        }
    }
}

/// Holds a command's result until its group's commit is known: a result
/// whose writes did not reach the disk becomes the commit's error.
fn deferred<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Completion {
    Box::new(move |commit: &Result<(), StoreError>| {
        let result = match (result, commit) {
            (Ok(_), Err(e)) => Err(copy(e)),
            (result, _) => result,
        };
        // The caller may have stopped waiting (a dropped future); the write stands.
        let _ = reply.send(result);
    })
}

fn copy_error(outcome: &Result<(), StoreError>) -> Result<(), StoreError> {
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => Err(copy(e)),
    }
}

/// A copy of an error for each waiter of a failed group.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::AlreadyExists(m) => StoreError::AlreadyExists(m.clone()),
        StoreError::Fenced(m) => StoreError::Fenced(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}
