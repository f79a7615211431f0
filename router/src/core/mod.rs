//! The router core: owns conversations (assigns their seqs), stores messages,
//! answers SYNC, ACK and UNREAD, keeps presence, manages groups, and fans
//! stored messages out to every online device of every member.
//!
//! It is independent of the server's shards: requests arrive as
//! [`ChatRequest`](corecast_proto::internal::ChatRequest) internal frames,
//! answers leave through a [`ConnSink`] as connection frames addressed to
//! connection ids. Each stored message's PUSH is encoded once and the same
//! frame goes to every node that has a recipient.
//!
//! A conversation's messages become visible in seq order ([`release`]):
//! SENT, live PUSH, SYNC and UNREAD show a seq only once every lower seq
//! this core assigned is stored or known to have failed. In a cluster a
//! router fences a conversation below its epoch before it first reads or
//! writes it, so appends of an earlier owner still in flight can never land
//! under what readers were shown.

mod groups;
mod reads;
mod release;
mod requests;
mod send;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use corecast_cluster::ownership::Ownership;
use corecast_proto::ErrorCode;
use corecast_storage::{MessageStore, StoreError};
use rustc_hash::FxHashMap;

use crate::routes::{ConnSink, RouteTable};
use crate::sequencer::{Sequencer, COUNTER_BITS};

use groups::GroupView;
pub use reads::SyncAnswer;
use release::Releases;
pub use send::Origin;

/// Settings of the router core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Groups up to this many members fan out on write into each member's
    /// inbox; larger ones, and groups that once were larger, are stored
    /// once and read from the timeline.
    pub small_group_limit: usize,
    /// A store call slower than this fails with `unavailable`.
    pub store_timeout: Duration,
    /// Most messages one SYNC returns.
    pub max_sync_batch: u16,
    /// Longest user or group id.
    pub max_id_len: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            small_group_limit: 200,
            store_timeout: Duration::from_secs(5),
            max_sync_batch: 200,
            max_id_len: 128,
        }
    }
}

/// Why a chat request failed; maps to a wire error code.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The user may not do this (not a member, not a participant).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The group or conversation does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (bad kind, empty id, id too long).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Storage is unavailable or too slow; nothing was half-stored, and a
    /// resend with the same client message id is safe.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ChatError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::Invalid(_) => ErrorCode::LimitExceeded,
            ChatError::Unavailable(_) => ErrorCode::Unavailable,
            ChatError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ChatError::Unavailable(m),
            StoreError::NotFound(m) => ChatError::NotFound(m),
            StoreError::AlreadyExists(m) => ChatError::Invalid(format!("already exists: {m}")),
            StoreError::Fenced(m) => ChatError::Unavailable(format!("{m}; resend to the conversation's owner")),
            StoreError::Internal(m) => ChatError::Internal(m),
        }
    }
}

/// What SENT reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendReceipt {
    /// Conversation id.
    pub conv: String,
    /// The message's seq.
    pub seq: u64,
    /// Server timestamp.
    pub ts_ms: u64,
}

struct State {
    sequencer: Sequencer,
    ownership: Ownership,
    groups: FxHashMap<String, GroupView>,
    /// Bumped by every group change: a member list read from the store
    /// before a change must not be cached after it.
    groups_generation: u64,
}

/// The router core of one owner (a single node, or one router).
pub struct RouterCore {
    store: Arc<dyn MessageStore>,
    routes: Arc<dyn RouteTable>,
    sink: Arc<dyn ConnSink>,
    config: CoreConfig,
    /// Whether conversations are fenced below each new epoch before use: a
    /// router in a cluster, where another owner may have appends in flight.
    /// A single node is the only writer of its store.
    fences: bool,
    /// Lock order: `state` before `releases`, never the other way.
    state: Mutex<State>,
    releases: Mutex<Releases>,
}

impl RouterCore {
    /// Takes a fresh epoch from the store and starts owning every
    /// conversation (a single node).
    pub async fn start(
        store: Arc<dyn MessageStore>,
        routes: Arc<dyn RouteTable>,
        sink: Arc<dyn ConnSink>,
        config: CoreConfig,
        owner: &str,
    ) -> Result<Arc<RouterCore>, StoreError> {
        let epoch = store.next_epoch(owner).await?;
        tracing::info!(owner, epoch, "router core owns conversations");
        Ok(RouterCore::new(store, routes, sink, config, epoch, Ownership::All, false))
    }

    /// A core that assigns seqs in `epoch` for the conversations `ownership`
    /// gives it (a router in a cluster, which takes its epochs from Redis).
    pub fn with_epoch(
        store: Arc<dyn MessageStore>,
        routes: Arc<dyn RouteTable>,
        sink: Arc<dyn ConnSink>,
        config: CoreConfig,
        epoch: u64,
        ownership: Ownership,
    ) -> Arc<RouterCore> {
        RouterCore::new(store, routes, sink, config, epoch, ownership, true)
    }

    fn new(
        store: Arc<dyn MessageStore>,
        routes: Arc<dyn RouteTable>,
        sink: Arc<dyn ConnSink>,
        config: CoreConfig,
        epoch: u64,
        ownership: Ownership,
        fences: bool,
    ) -> Arc<RouterCore> {
        let state =
            State { sequencer: Sequencer::new(epoch), ownership, groups: FxHashMap::default(), groups_generation: 0 };
        let releases = Mutex::new(Releases::default());
        Arc::new(RouterCore { store, routes, sink, config, fences, state: Mutex::new(state), releases })
    }

    /// Starts a new epoch with a new view of what this core owns. Called
    /// whenever the set of routers changes, so a conversation that moves
    /// here continues above every seq its previous owner handed out.
    pub fn renew(&self, epoch: u64, ownership: Ownership) {
        let mut state = self.state();
        tracing::info!(epoch, ?ownership, "router core takes a new epoch");
        state.sequencer = Sequencer::new(epoch);
        state.ownership = ownership;
    }

    /// The epoch seqs are assigned in now.
    pub fn epoch(&self) -> u64 {
        self.state().sequencer.epoch()
    }

    /// Drops the cached member list of `group` (another router changed
    /// it), or of every group for `"*"`.
    pub fn forget_group(&self, group: &str) {
        let mut state = self.state();
        state.groups_generation += 1;
        if group == "*" {
            state.groups.clear();
        } else {
            state.groups.remove(group);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep going.
        corecast_proto::sync::lock(&self.state)
    }

    fn releases(&self) -> MutexGuard<'_, Releases> {
        corecast_proto::sync::lock(&self.releases)
    }

    /// Refuses a conversation another router owns (the node's view of the
    /// routers is behind; a retry reaches the owner).
    fn require_owner(&self, conv_id: &str) -> Result<(), ChatError> {
        if self.state().ownership.owns(conv_id) {
            return Ok(());
        }
        metrics::counter!("corecast_chat_not_owner_total").increment(1);
        Err(ChatError::Unavailable(format!("{conv_id} is owned by another router; retry")))
    }

    /// Fences `conv_id` below this epoch once per epoch (cluster routers)
    /// and returns the epoch it is safe to assign and read in.
    async fn ensure_fenced(&self, conv_id: &str) -> Result<u64, ChatError> {
        let epoch = self.state().sequencer.epoch();
        if !self.fences {
            return Ok(epoch);
        }
        let cell = self.releases().fence_cell(conv_id, epoch);
        cell.get_or_try_init(|| self.store_call(self.store.fence(conv_id, epoch << COUNTER_BITS))).await?;
        Ok(epoch)
    }

    /// Runs a store call under the configured timeout.
    async fn store_call<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, ChatError> {
        match tokio::time::timeout(self.config.store_timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ChatError::Unavailable("storage did not answer in time".into())),
        }
    }

    fn check_id(&self, what: &str, id: &str) -> Result<(), ChatError> {
        if id.is_empty() || id.len() > self.config.max_id_len {
            return Err(ChatError::Invalid(format!("{what} must be 1..={} bytes", self.config.max_id_len)));
        }
        Ok(())
    }
}
