//! [`EmbeddedStore`]: the [`MessageStore`] on local disk.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use flume::Sender;

use super::config::Durability;
use super::reads;
use super::tables::{Tables, View};
use super::writer::{self, Command, Reply};
use crate::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage, UserConversation};

/// The embedded, on-disk message store (the single-node default).
///
/// Writes go through one writer thread that group-commits them (see
/// [`Durability`]); reads run at a snapshot on a blocking thread pool, so
/// neither ever blocks an async runtime's thread. The futures need no
/// particular async runtime. One directory can be open in one store at a
/// time (the engine locks it). Dropping the store, or [`close`](Self::close),
/// syncs everything to disk and stops the writer thread.
pub struct EmbeddedStore {
    tables: Arc<Tables>,
    commands: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    durability: Durability,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("durability", &self.durability).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store under `dir` (created if absent) and starts its
    /// writer thread.
    pub fn open(dir: &Path, durability: Durability) -> Result<EmbeddedStore, StoreError> {
        let tables = Arc::new(Tables::open(dir)?);
        let (commands, handle) = writer::spawn(Arc::clone(&tables), durability)?;
        Ok(EmbeddedStore { tables, commands, writer: Mutex::new(Some(handle)), durability })
    }

    /// The durability mode the store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Finishes the writes already queued, fsyncs, and stops the writer
    /// thread. Blocks the calling thread until then (at most one group
    /// commit and one fsync). Writes after a close fail with
    /// [`StoreError::Unavailable`]; reads keep working until the store is
    /// dropped. Closing twice is harmless.
    pub fn close(&self) -> Result<(), StoreError> {
        let Some(handle) = corecast_proto::sync::lock(&self.writer).take() else {
            return Ok(());
        };
        let (reply, done) = flume::bounded(1);
        let result = match self.commands.send(Command::Close { reply }) {
            Ok(()) => done.recv().unwrap_or_else(|_| Err(writer_gone())),
            Err(_) => Err(writer_gone()),
        };
        if handle.join().is_err() {
            return Err(StoreError::Internal("the store writer thread panicked".into()));
        }
        result
    }

    /// Runs a read at a fresh snapshot on the blocking pool (the `blocking`
    /// crate's: runtime-agnostic, threads started on demand).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&View<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let tables = Arc::clone(&self.tables);
        blocking::unblock(move || read(&tables.view())).await
    }

    /// Sends a command to the writer and waits for its answer.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = flume::bounded(1);
        self.commands.send_async(make(reply)).await.map_err(|_| writer_gone())?;
        answer.recv_async().await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the embedded store is closed".into())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the embedded store");
        }
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    async fn next_epoch(&self, _owner: &str) -> Result<u64, StoreError> {
        self.call(|reply| Command::NextEpoch { reply }).await
    }

    async fn append(&self, message: &StoredMessage, fanout: &Fanout) -> Result<AppendOutcome, StoreError> {
        let (message, fanout) = (message.clone(), fanout.clone());
        self.call(|reply| Command::Append { message, fanout, reply }).await
    }

    async fn fence(&self, conv: &str, below: u64) -> Result<(), StoreError> {
        let conv = conv.to_owned();
        self.call(|reply| Command::Fence { conv, below, reply }).await
    }

    async fn read_timeline(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let conv = conv.to_owned();
        self.read(move |view| reads::timeline(view, &conv, after_seq, limit)).await
    }

    async fn read_inbox(
        &self,
        user: &str,
        conv: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.read(move |view| reads::inbox(view, &user, &conv, after_seq, limit)).await
    }

    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        let conv = conv.to_owned();
        self.read(move |view| reads::last_seq(view, &conv)).await
    }

    async fn user_conversations(&self, user: &str) -> Result<Vec<UserConversation>, StoreError> {
        let user = user.to_owned();
        self.read(move |view| reads::user_conversations(view, &user)).await
    }

    async fn set_cursor(&self, user: &str, device: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        let (user, device, conv) = (user.to_owned(), device.to_owned(), conv.to_owned());
        self.call(|reply| Command::SetCursor { user, device, conv, seq, reply }).await
    }

    async fn cursors(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let (user, device) = (user.to_owned(), device.to_owned());
        self.read(move |view| reads::cursors(view, &user, &device)).await
    }

    async fn create_group(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        let (group, members) = (group.to_owned(), members.to_vec());
        self.call(|reply| Command::CreateGroup { group, members, large_above, reply }).await
    }

    async fn add_members(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        let (group, members) = (group.to_owned(), members.to_vec());
        self.call(|reply| Command::AddMembers { group, members, large_above, reply }).await
    }

    async fn remove_members(&self, group: &str, members: &[String]) -> Result<(), StoreError> {
        let (group, members) = (group.to_owned(), members.to_vec());
        self.call(|reply| Command::RemoveMembers { group, members, reply }).await
    }

    async fn group(&self, group: &str) -> Result<Option<GroupInfo>, StoreError> {
        let group = group.to_owned();
        self.read(move |view| reads::group(view, &group)).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.read(reads::list_groups).await
    }

    async fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.read(move |view| reads::user_groups(view, &user)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> StoredMessage {
        StoredMessage {
            conv: "d:a:b".into(),
            seq,
            sender: "a".into(),
            client_msg_id: seq,
            ts_ms: 1,
            kind: 2,
            payload: vec![1, 2, 3],
        }
    }

    #[tokio::test]
    async fn a_directory_is_open_in_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = EmbeddedStore::open(dir.path(), Durability::Strict).unwrap();
        let second = EmbeddedStore::open(dir.path(), Durability::Strict);
        assert!(matches!(second, Err(StoreError::Unavailable(_))), "{second:?}");
        drop(first);
        EmbeddedStore::open(dir.path(), Durability::Strict).expect("reopen once the first is dropped");
    }

    #[tokio::test]
    async fn writes_after_close_are_unavailable_and_reads_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Durability::Batched { interval_ms: 1000 }).unwrap();
        let fanout = Fanout::Timeline { members: vec!["a".into()] };
        store.append(&message(1), &fanout).await.unwrap();
        store.close().unwrap();
        store.close().expect("closing twice is harmless");
        let late = store.append(&message(2), &fanout).await;
        assert!(matches!(late, Err(StoreError::Unavailable(_))), "{late:?}");
        assert!(matches!(store.next_epoch("x").await, Err(StoreError::Unavailable(_))));
        assert_eq!(store.read_timeline("d:a:b", 0, 10).await.unwrap(), [message(1)]);
    }

    #[tokio::test]
    async fn commands_queued_together_see_each_others_writes() {
        // The five commands are queued back to back, so they usually share
        // one group commit: each must see the writes staged before it.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Durability::Strict).unwrap();
        let fanout = Fanout::Timeline { members: vec![] };
        let (first, second) = (message(1), StoredMessage { seq: 2, ..message(1) });
        let (x, y, z) = (["x".to_owned()], ["y".to_owned()], ["z".to_owned()]);
        let (first_outcome, second_outcome, created, created_again, added) = tokio::join!(
            store.append(&first, &fanout),
            store.append(&second, &fanout),
            store.create_group("g", &x, 10),
            store.create_group("g", &y, 10),
            store.add_members("g", &z, 10),
        );
        assert_eq!(first_outcome.unwrap(), AppendOutcome::Stored);
        assert_eq!(second_outcome.unwrap(), AppendOutcome::Duplicate(message(1)));
        created.unwrap();
        assert!(matches!(created_again, Err(StoreError::AlreadyExists(_))));
        added.unwrap();
        let group = store.group("g").await.unwrap().unwrap();
        assert_eq!(group.members, ["x", "z"]);
        assert_eq!(store.read_timeline("d:a:b", 0, 10).await.unwrap(), [message(1)]);
    }
}
