//! Room streams: what a room's owner keeps for rooms whose name matches a
//! `[[rooms]]` rule: a bounded history with stream positions, who is in the
//! room, and the answers built from them.
//!
//! One owner orders a room's messages: on a single node the shard the room
//! hashes to, in a cluster the router chosen by rendezvous hashing (as for
//! conversations). Both run the same [`StreamOwner`], a plain state machine
//! (no I/O, no clock of its own) that turns the internal frames sent to an
//! owner into the frames it sends on: positioned room pushes for every
//! member, answers for one connection, and presence events.

mod history;
mod options;
mod owner;
mod presence;

pub use history::{CatchUp, RoomHistories};
pub use options::{RoomOptions, RoomPolicy, RoomRule, RoomRuleError};
pub use owner::{OwnerOutput, StreamOwner};
pub use presence::{PresencePage, RoomPresence};
