//! Configuration of the embedded store: when an acknowledged write is durable.

use serde::{Deserialize, Serialize};

/// When [`append`](crate::MessageStore::append) and the other writes of the
/// embedded store resolve, relative to the fsync that makes them survive a
/// power loss.
///
/// Whatever the mode, every write reaches the operating system (the engine's
/// journal file) before its future resolves, so a crash of the *process*
/// alone (SIGKILL, panic, OOM kill) loses nothing that was acknowledged. The
/// modes differ only on a crash of the *machine* (power loss, kernel panic).
/// [`next_epoch`](crate::MessageStore::next_epoch) and
/// [`EmbeddedStore::close`](super::EmbeddedStore::close) always fsync before
/// they return, in both modes.
///
/// In a config file: `durability = { mode = "strict" }` or
/// `durability = { mode = "batched", interval_ms = 10 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Durability {
    /// A write resolves only after it is fsynced. Writes are group-committed:
    /// the writer thread takes every write that arrived while the previous
    /// fsync ran, applies them as one atomic batch and fsyncs once, so the
    /// cost of an fsync is shared by every concurrent writer. A machine crash
    /// loses nothing that was acknowledged. The default.
    #[default]
    Strict,
    /// A write resolves once the engine has it (in the OS page cache); the
    /// journal is fsynced at most `interval_ms` after the first unsynced
    /// write. A machine crash can lose the writes acknowledged in the last
    /// `interval_ms` (plus the fsync's own duration); their senders were told
    /// SENT, so this mode trades that guarantee for latency. Sequence epochs
    /// are never lost (they are always fsynced), so seqs are still never
    /// reused.
    Batched {
        /// Longest time an acknowledged write stays unsynced, in milliseconds.
        interval_ms: u64,
    },
}
