//! Message storage for corecast's persistent conversations.
//!
//! This crate owns the [`MessageStore`] trait — everything the router core
//! needs to make chat durable: conversation timelines, per-user inboxes for
//! write fan-out, per-device read cursors, group membership, idempotency by
//! (sender, client message id), the highest sequence of a conversation, and
//! sequence epochs — and its backends: [`embedded`] (on disk under the data
//! directory, the default), [`scylla`] (ScyllaDB, for clusters) and
//! [`redis`] (a persistent Redis shared by the routers of a small cluster).
//! One conformance suite (`tests/conformance.rs`) runs against every backend.
//! Each backend is a cargo feature of the same name: `embedded` is on by
//! default, `redis` and `scylla` are enabled by whoever runs them (the
//! router binary; a single node needs neither).
#![warn(missing_docs)]

#[cfg(feature = "embedded")]
pub mod embedded;
mod error;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "scylla")]
pub mod scylla;
mod types;

pub use error::StoreError;
pub use types::{AppendOutcome, Fanout, GroupInfo, StoredMessage, UserConversation};

use async_trait::async_trait;

/// Durable storage for persistent messages.
///
/// Every method is async and runtime-agnostic at this boundary: the
/// embedded backend completes its futures from its own writer thread; the
/// ScyllaDB backend needs to be polled inside a tokio runtime (the router
/// core runs on one).
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Takes a fresh sequence epoch for `owner`: strictly greater than every
    /// epoch handed out before by this store, to anyone, also across
    /// restarts. A conversation owner builds `seq = epoch << 40 | counter`.
    async fn next_epoch(&self, owner: &str) -> Result<u64, StoreError>;

    /// Stores `message` atomically with its idempotency record
    /// (`message.sender`, `message.client_msg_id`) and fan-out entries, and
    /// makes it durable per the backend's durability mode before returning.
    /// If that idempotency record already exists nothing new is stored and
    /// the original message is returned as [`AppendOutcome::Duplicate`].
    /// Either everything is stored or nothing is.
    async fn append(&self, message: &StoredMessage, fanout: &Fanout) -> Result<AppendOutcome, StoreError>;

    /// Fences `conv`: from now on an append of a message of `conv` with a
    /// seq below `below` fails with [`StoreError::Fenced`] and stores
    /// nothing. A fence never moves down. A new owner fences a
    /// conversation below its epoch before it reads or writes it, so that
    /// appends a previous owner still has in flight cannot land under what
    /// readers have already been shown; an owner that cannot tell whether
    /// an append landed fences above it and reads it back.
    async fn fence(&self, conv: &str, below: u64) -> Result<(), StoreError>;

    /// Messages of `conv`'s shared timeline with `seq > after_seq`, in
    /// increasing seq order, at most `limit`.
    async fn read_timeline(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;

    /// Messages of `conv` copied into `user`'s inbox (write fan-out) with
    /// `seq > after_seq`, in increasing seq order, at most `limit`.
    async fn read_inbox(
        &self,
        user: &str,
        conv: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// The highest seq stored in `conv` (0 if none).
    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError>;

    /// Conversations `user` takes part in through direct messages or
    /// write-fan-out groups, with each one's highest seq. (Members of
    /// read-fan-out groups find those through [`MessageStore::user_groups`].)
    async fn user_conversations(&self, user: &str) -> Result<Vec<UserConversation>, StoreError>;

    /// Records that `device` of `user` has read `conv` up to `seq`. A cursor
    /// never moves backwards: a lower seq than stored is ignored.
    async fn set_cursor(&self, user: &str, device: &str, conv: &str, seq: u64) -> Result<(), StoreError>;

    /// Every cursor of `device` of `user`, as (conv, seq).
    async fn cursors(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Creates a group with its first members. Fails with
    /// [`StoreError::AlreadyExists`] if it exists. A group created with
    /// more than `large_above` members is read-fan-out from the start
    /// ([`GroupInfo::read_fanout`]).
    async fn create_group(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError>;

    /// Adds members to an existing group ([`StoreError::NotFound`] if
    /// none). If the group then has more than `large_above` members it
    /// becomes read-fan-out for good, in the same atomic write.
    async fn add_members(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError>;

    /// Removes members from an existing group.
    async fn remove_members(&self, group: &str, members: &[String]) -> Result<(), StoreError>;

    /// The group and its members, sorted, or `None`.
    async fn group(&self, group: &str) -> Result<Option<GroupInfo>, StoreError>;

    /// Every group id, sorted.
    async fn list_groups(&self) -> Result<Vec<String>, StoreError>;

    /// Groups `user` is a member of, sorted.
    async fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError>;
}
