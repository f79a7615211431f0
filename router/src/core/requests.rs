//! Answering chat requests that arrive from shards as internal frames: each
//! request's reply (SENT, the PUSH frames of a SYNC and its SYNC_END,
//! UNREAD_LIST, OK, or ERROR with the request's rid) goes back to the
//! requesting connection as one `ConnFrames` frame.

use std::sync::Arc;

use corecast_cluster::conversation::KIND_GROUP;
use corecast_cluster::registry::Route;
use corecast_proto::internal::{ArchivedChatRequest, ArchivedInternalFrame, InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, PushKind, ServerMessage, UnreadEntry};

use super::{ChatError, Origin, RouterCore, SyncAnswer};

/// Most entries one UNREAD_LIST carries.
const MAX_UNREAD_ENTRIES: usize = 1000;
/// Most entry bytes one UNREAD_LIST carries, so the frame stays under the
/// default maximum frame length of 64 KiB.
const MAX_UNREAD_BYTES: usize = 60_000;

impl RouterCore {
    /// Handles one request from a connection on server node `origin` and
    /// sends its reply there. Frames other than chat requests are ignored.
    pub async fn handle(self: &Arc<Self>, origin: &str, frame: &InternalFrameBytes) {
        let ArchivedInternalFrame::Chat(request) = frame.archived() else { return };
        let replies = Replies { core: self, node: origin };
        match request {
            ArchivedChatRequest::Presence { changes } => {
                for change in changes.iter() {
                    let conn_id = change.conn_id.to_native();
                    if change.online {
                        let route = Route { node: origin.to_string(), conn_id, device: change.device.to_string() };
                        self.routes.online(change.user.as_str(), route)
                    } else {
                        self.routes.offline(change.user.as_str(), origin, conn_id)
                    }
                }
            }
            ArchivedChatRequest::Send { conn_id, rid, user, kind, to, client_msg_id, payload, .. } => {
                let (conn_id, rid) = (conn_id.to_native(), rid.to_native());
                let from = Origin { node: origin.to_string(), conn_id, rid };
                let (user, to, client_msg_id) = (user.as_str(), to.as_str(), client_msg_id.to_native());
                // On success the core has sent the SENT, in seq order.
                if let Err(e) = self.send(user, *kind, to, client_msg_id, payload.as_slice(), Some(from)).await {
                    replies.error(conn_id, rid, &e);
                }
            }
            ArchivedChatRequest::Sync { conn_id, rid, user, conv, after_seq, limit } => {
                let (conn_id, rid, after_seq) = (conn_id.to_native(), rid.to_native(), after_seq.to_native());
                match self.sync(user.as_str(), conv.as_str(), after_seq, limit.to_native()).await {
                    Ok(answer) => replies.sync(conn_id, rid, conv.as_str(), after_seq, &answer),
                    Err(e) => replies.error(conn_id, rid, &e),
                }
            }
            ArchivedChatRequest::Ack { conn_id, rid, user, device, conv, seq } => {
                let (conn_id, rid) = (conn_id.to_native(), rid.to_native());
                match self.ack(user.as_str(), device.as_str(), conv.as_str(), seq.to_native()).await {
                    Ok(()) => replies.message(conn_id, rid, &ServerMessage::Ok),
                    Err(e) => replies.error(conn_id, rid, &e),
                }
            }
            ArchivedChatRequest::Unread { conn_id, rid, user, device } => {
                let (conn_id, rid) = (conn_id.to_native(), rid.to_native());
                match self.unread(user.as_str(), device.as_str()).await {
                    Ok(unread) => replies.unread(conn_id, rid, &unread),
                    Err(e) => replies.error(conn_id, rid, &e),
                }
            }
        }
    }
}

/// Replies to connections of the node a request came from.
struct Replies<'a> {
    core: &'a RouterCore,
    node: &'a str,
}

impl Replies<'_> {
    /// The stored messages as PUSH frames carrying the SYNC's rid, then
    /// SYNC_END, in one buffer.
    fn sync(&self, conn_id: u64, rid: u32, conv: &str, after_seq: u64, answer: &SyncAnswer) {
        let mut frames = Vec::new();
        for m in &answer.messages {
            let kind = if m.kind == KIND_GROUP { PushKind::Group } else { PushKind::Direct };
            let push = ServerMessage::Push {
                kind,
                conv: &m.conv,
                from: &m.sender,
                seq: m.seq,
                ts_ms: m.ts_ms,
                payload: &m.payload,
            };
            if let Err(e) = encode_server(rid, 0, &push, &mut frames) {
                tracing::error!(conv, seq = m.seq, "stored message does not fit a PUSH: {e}");
            }
        }
        let last_seq = answer.messages.last().map_or(after_seq, |m| m.seq);
        let end = ServerMessage::SyncEnd { conv, last_seq, more: answer.more, visible_seq: answer.visible_seq };
        if encode_server(rid, 0, &end, &mut frames).is_ok() {
            self.send(conn_id, frames);
        }
    }

    fn unread(&self, conn_id: u64, rid: u32, unread: &[(String, u64, u64)]) {
        // At most MAX_UNREAD_ENTRIES, and no more than fit in a frame of the
        // default maximum size (each entry: 2 + conv + 16 bytes).
        let mut bytes = 0;
        let fitting = unread
            .iter()
            .take(MAX_UNREAD_ENTRIES)
            .take_while(|(conv, _, _)| {
                bytes += 18 + conv.len();
                bytes <= MAX_UNREAD_BYTES
            })
            .count();
        let shown = &unread[..fitting];
        let entries = shown
            .iter()
            .map(|(conv, last_seq, read_seq)| UnreadEntry { conv, last_seq: *last_seq, read_seq: *read_seq })
            .collect();
        let more = shown.len() < unread.len();
        self.message(conn_id, rid, &ServerMessage::UnreadList { entries, more });
    }

    fn send(&self, conn_id: u64, frames: Vec<u8>) {
        let frame =
            InternalFrameBytes::encode(&InternalFrame::ConnFrames { conn_ids: vec![conn_id], frames, reply: true });
        self.core.sink.to_node(self.node, frame);
    }

    fn message(&self, conn_id: u64, rid: u32, message: &ServerMessage<'_>) {
        let mut frames = Vec::new();
        match encode_server(rid, 0, message, &mut frames) {
            Ok(()) => self.send(conn_id, frames),
            Err(e) => tracing::error!("could not encode a chat reply: {e}"),
        }
    }

    fn error(&self, conn_id: u64, rid: u32, error: &ChatError) {
        let message = error.to_string();
        self.message(conn_id, rid, &ServerMessage::Error { code: error.code().as_u16(), message: &message });
    }
}
