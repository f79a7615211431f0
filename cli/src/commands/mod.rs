//! The subcommands that talk to a node, one file per group: rooms
//! (`sub`, `pub`), persistent chat (`send`, `sync`, `unread`) and
//! `bench-ping`.

pub mod chat;
pub mod ping;
pub mod rooms;
