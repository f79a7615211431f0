//! Message storage for corecast's persistent conversations.
//!
//! This crate will own the `MessageStore` trait (append to a conversation
//! timeline, read after a sequence number, per-user inboxes for write
//! fan-out, per-device read cursors, group membership, idempotency by sender
//! and client message id, the highest sequence of a conversation) and its two
//! backends: an embedded on-disk engine, the default, and ScyllaDB for
//! clusters. The live-room path of the server core does not store anything,
//! so this crate is empty until persistent messaging lands.
#![warn(missing_docs)]
