//! The real embedded store with a gate in front of chosen appends, so a
//! test can finish appends out of order or make one's outcome unknown.
//! Every other call goes straight through.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use corecast_storage::embedded::EmbeddedStore;
use corecast_storage::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage, UserConversation};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

/// What happens to a gated append once its gate opens.
pub enum Gate {
    /// It runs as usual.
    Pass,
    /// It runs, but its caller is told it failed (the reply was lost).
    LoseReply,
    /// It does not run, and its caller is told it failed.
    Refuse,
}

/// An embedded store whose appends of chosen client message ids wait for
/// their gate.
pub struct GatedStore {
    inner: Arc<EmbeddedStore>,
    gates: Mutex<FxHashMap<u64, oneshot::Receiver<Gate>>>,
}

impl GatedStore {
    pub fn new(inner: Arc<EmbeddedStore>) -> Arc<GatedStore> {
        Arc::new(GatedStore { inner, gates: Mutex::default() })
    }

    /// Holds the append of `client_msg_id` until the returned sender says
    /// what to do with it.
    pub fn gate(&self, client_msg_id: u64) -> oneshot::Sender<Gate> {
        let (open, gate) = oneshot::channel();
        self.gates.lock().unwrap().insert(client_msg_id, gate);
        open
    }

    /// Whether the append of `client_msg_id` has not reached its gate yet.
    pub fn is_gated(&self, client_msg_id: u64) -> bool {
        self.gates.lock().unwrap().contains_key(&client_msg_id)
    }
}

#[async_trait]
impl MessageStore for GatedStore {
    async fn next_epoch(&self, owner: &str) -> Result<u64, StoreError> {
        self.inner.next_epoch(owner).await
    }
    async fn append(&self, message: &StoredMessage, fanout: &Fanout) -> Result<AppendOutcome, StoreError> {
        let gate = self.gates.lock().unwrap().remove(&message.client_msg_id);
        let gate = match gate {
            Some(gate) => gate.await.unwrap_or(Gate::Pass),
            None => Gate::Pass,
        };
        match gate {
            Gate::Pass => self.inner.append(message, fanout).await,
            Gate::LoseReply => {
                self.inner.append(message, fanout).await?;
                Err(StoreError::Unavailable("the reply was lost".into()))
            }
            Gate::Refuse => Err(StoreError::Unavailable("refused before running".into())),
        }
    }
    async fn fence(&self, conv: &str, below: u64) -> Result<(), StoreError> {
        self.inner.fence(conv, below).await
    }
    async fn read_timeline(&self, conv: &str, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.read_timeline(conv, after, limit).await
    }
    async fn read_inbox(
        &self,
        user: &str,
        conv: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.read_inbox(user, conv, after, limit).await
    }
    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        self.inner.last_seq(conv).await
    }
    async fn user_conversations(&self, user: &str) -> Result<Vec<UserConversation>, StoreError> {
        self.inner.user_conversations(user).await
    }
    async fn set_cursor(&self, user: &str, device: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        self.inner.set_cursor(user, device, conv, seq).await
    }
    async fn cursors(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.cursors(user, device).await
    }
    async fn create_group(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        self.inner.create_group(group, members, large_above).await
    }
    async fn add_members(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        self.inner.add_members(group, members, large_above).await
    }
    async fn remove_members(&self, group: &str, members: &[String]) -> Result<(), StoreError> {
        self.inner.remove_members(group, members).await
    }
    async fn group(&self, group: &str) -> Result<Option<GroupInfo>, StoreError> {
        self.inner.group(group).await
    }
    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_groups().await
    }
    async fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.inner.user_groups(user).await
    }
}
