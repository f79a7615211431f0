//! SEND: assign the next seq, store the message, and release it in seq
//! order — SENT to the sender's connection and one PUSH frame per node to
//! every other online device of every participant.
//!
//! The append runs in a task of its own that always settles its seq, even
//! when the SEND stops waiting, so a seq is never left pending because a
//! client went away. An append whose outcome is unknown (an error or a
//! time-out: the store may still have run it) is settled by fencing the
//! conversation above the seq and reading it back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corecast_cluster::conversation::{Conversation, KIND_DIRECT, KIND_GROUP};
use corecast_proto::internal::{InternalFrame, InternalFrameBytes};
use corecast_proto::{encode_server, PushKind, ServerMessage};
use corecast_storage::{AppendOutcome, Fanout, StoreError, StoredMessage};
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::release::{Abandoned, NodeFrame, Settled};
use super::{ChatError, RouterCore, SendReceipt};

/// Longest pause between two attempts to settle an append in doubt.
const MAX_SETTLE_BACKOFF: Duration = Duration::from_secs(2);

/// The connection a SEND came from: it gets the SENT (with the request's
/// rid) and no PUSH of its own message.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Server node of the connection.
    pub node: String,
    /// The connection.
    pub conn_id: u64,
    /// The SEND's request id.
    pub rid: u32,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl RouterCore {
    /// Stores a message from `sender` and delivers it to every online device
    /// of every participant except the `origin` connection, which is sent
    /// the SENT by the core itself (in seq order with its other SENTs).
    /// Returns once the message is visible. A resend of the same (sender,
    /// client_msg_id) returns the original receipt and stores nothing. A
    /// conversation another router owns is refused with `unavailable`, and
    /// so is a message the store has not confirmed within `store_timeout`
    /// (its resend is safe).
    pub async fn send(
        self: &Arc<Self>,
        sender: &str,
        kind: u8,
        to: &str,
        client_msg_id: u64,
        payload: &[u8],
        origin: Option<Origin>,
    ) -> Result<SendReceipt, ChatError> {
        let deadline = Instant::now() + self.config.store_timeout;
        self.check_id("recipient", to)?;
        let conv = match kind {
            KIND_DIRECT => Conversation::direct(sender, to),
            KIND_GROUP => Conversation::group(to),
            other => return Err(ChatError::Invalid(format!("SEND kind must be 2 or 3, not {other}"))),
        };
        let conv_id = conv.id();
        let participants = self.participants(&conv, sender).await?;
        self.require_owner(&conv_id)?;
        let fenced_epoch = self.ensure_fenced(&conv_id).await?;
        // A resend is recognised by the append itself (`Duplicate`), which
        // answers with the original; the seq taken for it becomes a gap.
        // That spares every SEND a store read for the rare resend.
        let fanout = match conv {
            Conversation::Group { .. } if participants.reads_timeline => Fanout::Timeline { members: Vec::new() },
            Conversation::Group { .. } => Fanout::Inboxes { members: participants.members.to_vec() },
            Conversation::Direct { .. } => Fanout::Timeline { members: participants.members.to_vec() },
        };
        let (seq, mut released) = {
            let mut state = self.state();
            if !state.ownership.owns(&conv_id) || state.sequencer.epoch() != fenced_epoch {
                return Err(ChatError::Unavailable(format!("the owner of {conv_id} changed; retry")));
            }
            let seq = state
                .sequencer
                .next(&conv_id)
                .ok_or_else(|| ChatError::Unavailable("sequence space of this epoch is spent".into()))?;
            (seq, self.releases().assign(&conv_id, seq))
        };
        let message = StoredMessage {
            conv: conv_id,
            seq,
            sender: sender.to_string(),
            client_msg_id,
            ts_ms: now_ms(),
            kind,
            payload: payload.to_vec(),
        };
        let receipt = SendReceipt { conv: message.conv.clone(), seq, ts_ms: message.ts_ms };
        let core = Arc::clone(self);
        let origin_for_task = origin.clone();
        let mut stored =
            tokio::spawn(
                async move { core.store_and_settle(message, fanout, participants.members, origin_for_task).await },
            );

        let outcome = match tokio::time::timeout_at(deadline, &mut stored).await {
            Ok(joined) => joined.map_err(|e| ChatError::Internal(format!("the append task failed: {e}")))?,
            Err(_) => return self.give_up(&receipt, stored, origin.as_ref(), deadline).await,
        };
        match outcome? {
            AppendOutcome::Stored => match tokio::time::timeout_at(deadline, &mut released).await {
                Ok(_) => Ok(receipt),
                Err(_) => self.give_up(&receipt, stored, origin.as_ref(), deadline).await,
            },
            AppendOutcome::Duplicate(original) => self.acknowledge_original(original, origin.as_ref(), deadline).await,
        }
    }

    /// The SEND stops waiting for its seq: unless the seq was released
    /// meanwhile (its SENT is then on its way), the sender is told to
    /// resend, and is not sent a SENT later.
    async fn give_up(
        &self,
        receipt: &SendReceipt,
        stored: tokio::task::JoinHandle<Result<AppendOutcome, ChatError>>,
        origin: Option<&Origin>,
        deadline: Instant,
    ) -> Result<SendReceipt, ChatError> {
        let abandoned = self.releases().abandon(&receipt.conv, receipt.seq);
        if abandoned == Abandoned::Withdrawn {
            metrics::counter!("corecast_chat_send_unconfirmed_total").increment(1);
            return Err(ChatError::Unavailable(
                "the store has not confirmed this message in time; resend it with the same client_msg_id".into(),
            ));
        }
        // Released, so its task has settled it: learn how.
        match stored.await.map_err(|e| ChatError::Internal(format!("the append task failed: {e}")))?? {
            AppendOutcome::Stored => Ok(receipt.clone()),
            AppendOutcome::Duplicate(original) => self.acknowledge_original(original, origin, deadline).await,
        }
    }

    /// A resend of a stored message: its original receipt, once the
    /// original is visible.
    async fn acknowledge_original(
        &self,
        original: StoredMessage,
        origin: Option<&Origin>,
        deadline: Instant,
    ) -> Result<SendReceipt, ChatError> {
        let visible = self.releases().watch(&original.conv, original.seq);
        if tokio::time::timeout_at(deadline, visible).await.is_err() {
            return Err(ChatError::Unavailable("the original message is not visible yet; resend later".into()));
        }
        let receipt = SendReceipt { conv: original.conv, seq: original.seq, ts_ms: original.ts_ms };
        if let Some(origin) = origin {
            if let Some((node, frame)) = sent_frame(origin, &receipt) {
                self.sink.to_node(&node, frame);
            }
        }
        Ok(receipt)
    }

    /// Appends `message`, settles its seq however the append ends, and
    /// says how it ended.
    async fn store_and_settle(
        self: Arc<Self>,
        message: StoredMessage,
        fanout: Fanout,
        members: Arc<[String]>,
        origin: Option<Origin>,
    ) -> Result<AppendOutcome, ChatError> {
        let appended = match self.store.append(&message, &fanout).await {
            Err(StoreError::Fenced(_)) => {
                Err(ChatError::Unavailable("the conversation moved to another router; resend".into()))
            }
            Err(e) => match self.settle_in_doubt(&message, e).await {
                true => Ok(AppendOutcome::Stored),
                false => Err(ChatError::Unavailable("the store did not take the message; resend".into())),
            },
            Ok(outcome) => Ok(outcome),
        };
        let settled = match &appended {
            Ok(AppendOutcome::Stored) => {
                let receipt = SendReceipt { conv: message.conv.clone(), seq: message.seq, ts_ms: message.ts_ms };
                let sent = origin.as_ref().and_then(|origin| sent_frame(origin, &receipt));
                Settled::Stored { sent, pushes: self.pushes(&message, &members, origin.as_ref()).await }
            }
            _ => Settled::Failed,
        };
        self.releases().settle(&message.conv, message.seq, settled, |node, frame| self.sink.to_node(&node, frame));
        appended
    }

    /// Whether an append that failed with `error` was stored after all. The
    /// store may have run it; fencing the conversation above its seq makes
    /// sure it cannot run later, and a read then tells. Retries until the
    /// store answers: nothing of the conversation above this seq can be
    /// released before, whatever the answer.
    async fn settle_in_doubt(&self, message: &StoredMessage, error: StoreError) -> bool {
        tracing::warn!(conv = %message.conv, seq = message.seq, "append in doubt ({error}): fencing and reading back");
        metrics::counter!("corecast_chat_appends_in_doubt_total").increment(1);
        let mut backoff = Duration::from_millis(20);
        loop {
            let fenced = self.store_call(self.store.fence(&message.conv, message.seq + 1)).await;
            if fenced.is_ok() {
                let read = self.store_call(self.store.read_timeline(&message.conv, message.seq - 1, 1)).await;
                if let Ok(found) = read {
                    return found.first().is_some_and(|stored| stored.seq == message.seq);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_SETTLE_BACKOFF);
        }
    }

    /// The PUSH of a stored message, encoded once, as one frame per server
    /// node with a recipient connection other than `origin`.
    async fn pushes(&self, message: &StoredMessage, members: &[String], origin: Option<&Origin>) -> Vec<NodeFrame> {
        let routes = self.routes.lookup(members).await;
        let mut by_node: FxHashMap<String, Vec<u64>> = FxHashMap::default();
        for route in routes {
            if origin.is_none_or(|o| (o.node.as_str(), o.conn_id) != (route.node.as_str(), route.conn_id)) {
                by_node.entry(route.node).or_default().push(route.conn_id);
            }
        }
        if by_node.is_empty() {
            return Vec::new();
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
            return Vec::new();
        }
        // One frame per node; a node hands the same frame to each shard.
        by_node
            .into_iter()
            .map(|(node, conn_ids)| {
                let frame = InternalFrame::ConnFrames { conn_ids, frames: frames.clone(), reply: false };
                (node, InternalFrameBytes::encode(&frame))
            })
            .collect()
    }
}

/// The SENT reply to `origin`'s SEND.
fn sent_frame(origin: &Origin, receipt: &SendReceipt) -> Option<NodeFrame> {
    let sent = ServerMessage::Sent { conv: &receipt.conv, seq: receipt.seq, ts_ms: receipt.ts_ms };
    let mut frames = Vec::new();
    if let Err(e) = encode_server(origin.rid, 0, &sent, &mut frames) {
        tracing::error!("could not encode a SENT: {e}");
        return None;
    }
    let frame = InternalFrame::ConnFrames { conn_ids: vec![origin.conn_id], frames, reply: true };
    Some((origin.node.clone(), InternalFrameBytes::encode(&frame)))
}
