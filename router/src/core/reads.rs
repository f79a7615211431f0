//! Reads of chat state: SYNC (visible messages after a cursor), ACK,
//! UNREAD, admin history and presence.

use corecast_cluster::conversation::Conversation;
use corecast_cluster::registry::Route;
use corecast_storage::StoredMessage;
use rustc_hash::FxHashMap;

use super::{ChatError, RouterCore};
use crate::sequencer::COUNTER_BITS;

/// What a SYNC answers.
#[derive(Debug)]
pub struct SyncAnswer {
    /// Visible messages after the cursor, in seq order.
    pub messages: Vec<StoredMessage>,
    /// More visible messages follow the last one.
    pub more: bool,
    /// Every message at or below this seq is in `messages`, was before the
    /// cursor, or will never exist.
    pub visible_seq: u64,
}

impl RouterCore {
    /// Visible messages of `conv` after `after_seq` that `user` may read, at
    /// most `limit` (capped). Only the conversation's owner answers: it
    /// alone knows which seqs are still pending.
    pub async fn sync(&self, user: &str, conv_id: &str, after_seq: u64, limit: u16) -> Result<SyncAnswer, ChatError> {
        let conv = Conversation::parse(conv_id).map_err(|_| ChatError::NotFound(format!("conversation {conv_id}")))?;
        self.participants(&conv, user).await?;
        self.require_owner(conv_id)?;
        let epoch = self.ensure_fenced(conv_id).await?;
        let visible_seq = self.releases().visible(conv_id, epoch << COUNTER_BITS);
        // How the group is read is decided after `visible_seq`: every
        // message at or below it chose its fan-out before, and a group
        // never goes back from timeline to inboxes.
        let reads_timeline = self.participants(&conv, user).await?.reads_timeline;
        let limit = limit.clamp(1, self.config.max_sync_batch) as usize;
        let mut messages = if reads_timeline {
            self.store_call(self.store.read_timeline(conv_id, after_seq, limit + 1)).await?
        } else {
            self.store_call(self.store.read_inbox(user, conv_id, after_seq, limit + 1)).await?
        };
        messages.retain(|m| m.seq <= visible_seq);
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(SyncAnswer { messages, more, visible_seq })
    }

    /// Moves `device`'s cursor in `conv` forward to `seq`; only a
    /// participant of an existing conversation has a cursor in it.
    pub async fn ack(&self, user: &str, device: &str, conv_id: &str, seq: u64) -> Result<(), ChatError> {
        let conv = Conversation::parse(conv_id).map_err(|_| ChatError::NotFound(format!("conversation {conv_id}")))?;
        self.participants(&conv, user).await?;
        self.store_call(self.store.set_cursor(user, device, conv_id, seq)).await
    }

    /// Conversations of `user` with messages past `device`'s cursors, as
    /// (conv, last_seq, read_seq), most recent first. `last_seq` of a
    /// conversation this core owns is the latest visible one.
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
        let releases = self.releases();
        let mut unread: Vec<(String, u64, u64)> = last
            .into_iter()
            .map(|(conv, last_seq)| {
                let shown = releases.shown_last(&conv, last_seq);
                let read = cursors.get(&conv).copied().unwrap_or(0);
                (conv, shown, read)
            })
            .filter(|(_, last_seq, read)| last_seq > read)
            .collect();
        drop(releases);
        unread.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        Ok(unread)
    }

    /// Stored messages of any conversation (admin history).
    pub async fn history(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, ChatError> {
        Conversation::parse(conv).map_err(|e| ChatError::Invalid(e.to_string()))?;
        self.store_call(self.store.read_timeline(conv, after_seq, limit)).await
    }

    /// Online connections of `user`, anywhere.
    pub async fn presence(&self, user: &str) -> Vec<Route> {
        self.routes.lookup(&[user.to_string()]).await
    }
}
