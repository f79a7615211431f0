//! The values the store keeps and returns.

use serde::{Deserialize, Serialize};

/// One stored message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Conversation id (`d:alice:bob` for direct, `g:GROUP` for groups).
    pub conv: String,
    /// Sequence number in the conversation.
    pub seq: u64,
    /// Sender's user id.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_msg_id: u64,
    /// Server timestamp, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Conversation kind as in PUSH (2 direct, 3 group).
    pub kind: u8,
    /// Opaque application payload.
    pub payload: Vec<u8>,
}

/// Where a message is written besides its idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// Stored once in the conversation's timeline (direct messages, large
    /// groups read by each member from its cursor). `members` get the
    /// conversation in [`user_conversations`](crate::MessageStore::user_conversations)
    /// (empty for read-fan-out groups).
    Timeline {
        /// Users whose conversation index is updated.
        members: Vec<String>,
    },
    /// Copied into each member's inbox (small groups, write fan-out) and
    /// also kept in the timeline for history.
    Inboxes {
        /// Users who get a copy.
        members: Vec<String>,
    },
}

/// What [`append`](crate::MessageStore::append) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The message was stored.
    Stored,
    /// The (sender, client_msg_id) pair was already stored; this is the
    /// original message, and nothing new was written.
    Duplicate(StoredMessage),
}

/// A conversation in a user's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConversation {
    /// Conversation id.
    pub conv: String,
    /// Highest seq stored in it.
    pub last_seq: u64,
}

/// A group and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group id.
    pub group: String,
    /// Member user ids, sorted.
    pub members: Vec<String>,
    /// Whether the group has ever had more members than the limit of
    /// write fan-out: its messages are then read from the timeline for
    /// good, whatever its size now. Set with the membership change that
    /// crossed the limit, in the same atomic write.
    pub read_fanout: bool,
}
