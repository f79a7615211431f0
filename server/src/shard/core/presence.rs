//! Presence changes batched per round of events: every AUTH and every
//! close of an authenticated connection becomes one entry, and the round's
//! entries go to the router core as one request (one wake of its thread,
//! not one per connection). A batch leaves before any of the round's
//! replies is written and before any chat request of the round, so the
//! core knows a connection before the client can act on its AUTH_OK.

use corecast_proto::internal::{ChatRequest, InternalFrame, InternalFrameBytes, PresenceChange};

use super::ShardCore;
use crate::shard::inbox::CoreCommand;

/// The presence changes of the current round.
#[derive(Default)]
pub struct PresenceBatch {
    changes: Vec<PresenceChange>,
}

impl PresenceBatch {
    /// A connection authenticated.
    pub fn online(&mut self, conn_id: u64, user: &str, device: &str) {
        self.changes.push(PresenceChange { conn_id, user: user.into(), device: device.into(), online: true });
    }

    /// An authenticated connection closed.
    pub fn offline(&mut self, conn_id: u64, user: &str) {
        self.changes.push(PresenceChange { conn_id, user: user.into(), device: String::new(), online: false });
    }
}

impl ShardCore {
    /// Sends the round's presence changes. When the router core's inbox is
    /// full they stay for the next round: presence is late, never lost.
    pub(super) fn flush_presence(&mut self) {
        if self.presence.changes.is_empty() {
            return;
        }
        let request =
            InternalFrame::Chat(ChatRequest::Presence { changes: std::mem::take(&mut self.presence.changes) });
        let frame = InternalFrameBytes::encode(&request);
        if self.links.core.try_send(CoreCommand::Request(frame)).is_err() {
            self.metrics.drops_core_inbox_full.increment(1);
            if let InternalFrame::Chat(ChatRequest::Presence { changes }) = request {
                self.presence.changes = changes;
            }
        }
    }
}
