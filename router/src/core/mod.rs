//! The router core: owns conversations (assigns their seqs), stores messages,
//! answers SYNC, ACK and UNREAD, keeps presence, manages groups, and fans
//! stored messages out to every online device of every member.
//!
//! It is independent of the server's shards: requests arrive as
//! [`ChatRequest`] internal frames, answers leave through a [`ConnSink`] as
//! [`InternalFrame::ConnFrames`] addressed to connection ids. Each stored
//! message's PUSH is encoded once and the same frame goes to every shard that
//! has a recipient.

mod requests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, ErrorCode, PushKind, ServerMessage};
use corecast_storage::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage};
use rustc_hash::FxHashMap;

use crate::conversation::{Conversation, KIND_DIRECT, KIND_GROUP};
use crate::ownership::Ownership;
use crate::registry::Route;
use crate::routes::{ConnSink, RouteTable};
use crate::sequencer::Sequencer;

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
    groups: FxHashMap<String, Arc<[String]>>,
}

/// The router core of one owner (a single node, or one router).
pub struct RouterCore {
    store: Arc<dyn MessageStore>,
    routes: Arc<dyn RouteTable>,
    sink: Arc<dyn ConnSink>,
    config: CoreConfig,
    state: Mutex<State>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
        Ok(RouterCore::with_epoch(store, routes, sink, config, epoch, Ownership::All))
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
        let state = State { sequencer: Sequencer::new(epoch), ownership, groups: FxHashMap::default() };
        Arc::new(RouterCore { store, routes, sink, config, state: Mutex::new(state) })
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
        if group == "*" {
            state.groups.clear();
        } else {
            state.groups.remove(group);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Members of `group`, from the cache or the store.
    async fn members(&self, group: &str) -> Result<Arc<[String]>, ChatError> {
        if let Some(members) = self.state().groups.get(group) {
            return Ok(members.clone());
        }
        let info = self.store_call(self.store.group(group)).await?;
        let info = info.ok_or_else(|| ChatError::NotFound(format!("group {group}")))?;
        let members: Arc<[String]> = info.members.into();
        self.state().groups.insert(group.to_string(), members.clone());
        Ok(members)
    }

    /// Who takes part in `conv`, checking that `user` does.
    async fn participants(&self, conv: &Conversation, user: &str) -> Result<Arc<[String]>, ChatError> {
        let members: Arc<[String]> = match conv {
            // A note to self has one participant, not the same one twice.
            Conversation::Direct { low, high } if low == high => Arc::from(vec![low.clone()]),
            Conversation::Direct { low, high } => Arc::from(vec![low.clone(), high.clone()]),
            Conversation::Group { group } => self.members(group).await?,
        };
        if !members.iter().any(|m| m == user) {
            return Err(ChatError::Forbidden("not a member of this conversation".into()));
        }
        Ok(members)
    }

    /// Stores a message from `sender` and delivers it to every online device
    /// of every participant except `origin` (node, connection). A resend of
    /// the same (sender, client_msg_id) returns the original receipt and
    /// stores nothing. A conversation another router owns is refused with
    /// `unavailable` (the node's view of the routers is behind; a retry
    /// reaches the owner).
    pub async fn send(
        &self,
        sender: &str,
        kind: u8,
        to: &str,
        client_msg_id: u64,
        payload: &[u8],
        origin: Option<(&str, u64)>,
    ) -> Result<SendReceipt, ChatError> {
        self.check_id("recipient", to)?;
        let conv = match kind {
            KIND_DIRECT => Conversation::direct(sender, to),
            KIND_GROUP => Conversation::group(to),
            other => return Err(ChatError::Invalid(format!("SEND kind must be 2 or 3, not {other}"))),
        };
        let members = self.participants(&conv, sender).await?;
        if let Some(original) = self.store_call(self.store.find_by_client_id(sender, client_msg_id)).await? {
            return Ok(SendReceipt { conv: original.conv, seq: original.seq, ts_ms: original.ts_ms });
        }
        let conv_id = conv.id();
        if !self.state().ownership.owns(&conv_id) {
            metrics::counter!("corecast_chat_not_owner_total").increment(1);
            return Err(ChatError::Unavailable(format!("{conv_id} is owned by another router; retry")));
        }
        let fanout = match &conv {
            Conversation::Group { .. } if !self.reads_timeline(&conv, &conv_id, &members).await? => {
                Fanout::Inboxes { members: members.to_vec() }
            }
            Conversation::Group { .. } => Fanout::Timeline { members: Vec::new() },
            Conversation::Direct { .. } => Fanout::Timeline { members: members.to_vec() },
        };
        let seq = self
            .state()
            .sequencer
            .next(&conv_id)
            .ok_or_else(|| ChatError::Unavailable("sequence space of this epoch is spent".into()))?;
        let message = StoredMessage {
            conv: conv_id,
            seq,
            sender: sender.to_string(),
            client_msg_id,
            ts_ms: now_ms(),
            kind,
            payload: payload.to_vec(),
        };
        match self.store_call(self.store.append(&message, &fanout)).await? {
            AppendOutcome::Duplicate(original) => {
                Ok(SendReceipt { conv: original.conv, seq: original.seq, ts_ms: original.ts_ms })
            }
            AppendOutcome::Stored => {
                self.deliver(&message, &members, origin).await;
                Ok(SendReceipt { conv: message.conv, seq: message.seq, ts_ms: message.ts_ms })
            }
        }
    }

    /// Encodes the PUSH once and hands one frame to each server node with a
    /// recipient connection (a node passes it on to its shards).
    async fn deliver(&self, message: &StoredMessage, members: &[String], origin: Option<(&str, u64)>) {
        let routes = self.routes.lookup(members).await;
        let mut by_node: FxHashMap<String, Vec<u64>> = FxHashMap::default();
        for route in routes {
            if Some((route.node.as_str(), route.conn_id)) != origin {
                by_node.entry(route.node).or_default().push(route.conn_id);
            }
        }
        if by_node.is_empty() {
            return;
        }
        let kind = if message.kind == KIND_GROUP { PushKind::Group } else { PushKind::Direct };
        let push = ServerMessage::Push {
            kind,
            conv: &message.conv,
            from: &message.sender,
            seq: message.seq,
            ts_ms: message.ts_ms,
            payload: &message.payload,
        };
        let mut frames = Vec::new();
        if let Err(e) = encode_server(0, 0, &push, &mut frames) {
            tracing::error!(conv = %message.conv, "stored message does not fit a PUSH: {e}");
            return;
        }
        // One frame per node; a node hands the same frame to each shard.
        for (node, conn_ids) in by_node {
            let frame = InternalFrameBytes::encode(&InternalFrame::ConnFrames {
                conn_ids,
                frames: frames.clone(),
                reply: false,
            });
            self.sink.to_node(&node, frame);
        }
    }

    /// Messages of `conv` after `after_seq` that `user` may read, at most
    /// `limit` (capped), and whether more follow.
    pub async fn sync(
        &self,
        user: &str,
        conv_id: &str,
        after_seq: u64,
        limit: u16,
    ) -> Result<(Vec<StoredMessage>, bool), ChatError> {
        let conv =
            Conversation::parse(conv_id).ok_or_else(|| ChatError::NotFound(format!("conversation {conv_id}")))?;
        let members = self.participants(&conv, user).await?;
        let limit = limit.clamp(1, self.config.max_sync_batch) as usize;
        let mut messages = if self.reads_timeline(&conv, conv_id, &members).await? {
            self.store_call(self.store.read_timeline(conv_id, after_seq, limit + 1)).await?
        } else {
            self.store_call(self.store.read_inbox(user, conv_id, after_seq, limit + 1)).await?
        };
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok((messages, more))
    }

    /// Whether `conv` is read from its shared timeline rather than from each
    /// member's inbox: direct conversations and large groups are, and so is
    /// a group that has been large, however small it is now. The messages
    /// it stored while large are in no inbox, so reading inboxes again
    /// would miss them. "Has been large" shows in its latest message: one
    /// fanned out on write is also in its sender's inbox, one stored while
    /// large is not (and every later one is stored the same way). A SEND
    /// racing the membership change that takes the group past the limit
    /// may still store a write-fanned-out message after a read-fanned-out
    /// one; the next SEND while the group is large sets it right.
    async fn reads_timeline(&self, conv: &Conversation, conv_id: &str, members: &[String]) -> Result<bool, ChatError> {
        if !matches!(conv, Conversation::Group { .. }) || members.len() > self.config.small_group_limit {
            return Ok(true);
        }
        let last_seq = self.store_call(self.store.last_seq(conv_id)).await?;
        if last_seq == 0 {
            return Ok(false);
        }
        let latest = self.store_call(self.store.read_timeline(conv_id, last_seq - 1, 1)).await?;
        let Some(latest) = latest.first() else { return Ok(false) };
        let copy = self.store_call(self.store.read_inbox(&latest.sender, conv_id, latest.seq - 1, 1)).await?;
        Ok(copy.first().map(|message| message.seq) != Some(latest.seq))
    }

    /// Moves `device`'s cursor in `conv` forward to `seq`; only a
    /// participant of an existing conversation has a cursor in it.
    pub async fn ack(&self, user: &str, device: &str, conv_id: &str, seq: u64) -> Result<(), ChatError> {
        let conv =
            Conversation::parse(conv_id).ok_or_else(|| ChatError::NotFound(format!("conversation {conv_id}")))?;
        self.participants(&conv, user).await?;
        self.store_call(self.store.set_cursor(user, device, conv_id, seq)).await
    }

    /// Conversations of `user` with messages past `device`'s cursors, as
    /// (conv, last_seq, read_seq), most recent first.
    pub async fn unread(&self, user: &str, device: &str) -> Result<Vec<(String, u64, u64)>, ChatError> {
        let mut last: FxHashMap<String, u64> = self
            .store_call(self.store.user_conversations(user))
            .await?
            .into_iter()
            .map(|c| (c.conv, c.last_seq))
            .collect();
        // Large groups fan out on read: their members are not in the index,
        // and a group that grew past the limit has a stale entry there.
        for group in self.store_call(self.store.user_groups(user)).await? {
            let conv = Conversation::group(&group).id();
            let seq = self.store_call(self.store.last_seq(&conv)).await?;
            if seq > 0 {
                let entry = last.entry(conv).or_insert(0);
                *entry = (*entry).max(seq);
            }
        }
        let cursors: FxHashMap<String, u64> =
            self.store_call(self.store.cursors(user, device)).await?.into_iter().collect();
        let mut unread: Vec<(String, u64, u64)> = last
            .into_iter()
            .map(|(conv, last_seq)| {
                let read = cursors.get(&conv).copied().unwrap_or(0);
                (conv, last_seq, read)
            })
            .filter(|(_, last_seq, read)| last_seq > read)
            .collect();
        unread.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        Ok(unread)
    }

    /// Stored messages of any conversation (admin history).
    pub async fn history(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, ChatError> {
        self.store_call(self.store.read_timeline(conv, after_seq, limit)).await
    }

    /// Online connections of `user`, anywhere.
    pub async fn presence(&self, user: &str) -> Vec<Route> {
        self.routes.lookup(&[user.to_string()]).await
    }

    /// Creates a group.
    pub async fn create_group(&self, group: &str, members: &[String]) -> Result<(), ChatError> {
        self.check_id("group", group)?;
        for member in members {
            self.check_id("member", member)?;
        }
        self.store_call(self.store.create_group(group, members)).await?;
        self.state().groups.remove(group);
        Ok(())
    }

    /// Adds and removes members of a group.
    pub async fn change_members(&self, group: &str, add: &[String], remove: &[String]) -> Result<(), ChatError> {
        for member in add {
            self.check_id("member", member)?;
        }
        let result = async {
            if !add.is_empty() {
                self.store_call(self.store.add_members(group, add)).await?;
            }
            if !remove.is_empty() {
                self.store_call(self.store.remove_members(group, remove)).await?;
            }
            Ok(())
        }
        .await;
        self.state().groups.remove(group);
        result
    }

    /// A group and its members.
    pub async fn group(&self, group: &str) -> Result<Option<GroupInfo>, ChatError> {
        self.store_call(self.store.group(group)).await
    }

    /// Every group id.
    pub async fn list_groups(&self) -> Result<Vec<String>, ChatError> {
        self.store_call(self.store.list_groups()).await
    }
}
