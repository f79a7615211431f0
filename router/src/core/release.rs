//! Ordered release of each conversation's messages: a seq becomes visible
//! only once every lower seq this core assigned is settled.
//!
//! Seqs are assigned in order, but their appends finish in any order (each
//! request runs as its own task, and a store may run two appends in either
//! order). A message is released — its SENT and live PUSH frames leave,
//! SYNC and UNREAD may show it — only when every lower seq of its
//! conversation is stored or known to have failed. Releases happen under
//! the caller's lock and hand their frames out in seq order, so a
//! conversation's PUSH frames, and one connection's SENT frames, reach each
//! node in seq order.

use std::collections::VecDeque;
use std::sync::Arc;

use corecast_proto::internal::InternalFrameBytes;
use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, OnceCell};

/// A frame for a server node: (node, frame).
pub(crate) type NodeFrame = (String, InternalFrameBytes);

/// How an assigned seq ended.
pub(crate) enum Settled {
    /// Stored. On release `sent` goes to the sender's connection (unless
    /// the SEND stopped waiting) and `pushes` to every other online device.
    Stored {
        /// The SENT reply, when a connection asked.
        sent: Option<NodeFrame>,
        /// One PUSH frame per node with recipients.
        pushes: Vec<NodeFrame>,
    },
    /// Not stored, and never will be (a duplicate, a fenced append, or an
    /// append that was read back and not found): its seq is a gap.
    Failed,
}

/// One assigned seq that is not released yet.
struct Slot {
    seq: u64,
    settled: Option<Settled>,
    /// The SEND is still waiting: its SENT goes out on release.
    awaited: bool,
    /// Wakes the SEND on release.
    waiter: Option<oneshot::Sender<()>>,
}

/// The release state of one conversation in this core.
#[derive(Default)]
struct ConversationLine {
    /// Assigned seqs not yet released, in increasing order.
    pending: VecDeque<Slot>,
    /// The highest seq released (stored or failed).
    released: u64,
    /// The highest stored seq released.
    last_stored: u64,
    /// Reads waiting until everything up to a seq is released.
    watchers: Vec<(u64, oneshot::Sender<()>)>,
    /// The fence below an epoch, taken once per epoch before anything of
    /// the conversation is read or written (cluster routers only).
    fence: Option<(u64, Arc<OnceCell<()>>)>,
}

impl ConversationLine {
    /// Whether every seq up to `seq` this core assigned is released.
    fn released_through(&self, seq: u64) -> bool {
        self.pending.front().is_none_or(|first| first.seq > seq)
    }
}

/// What [`Releases::abandon`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// The seq was still pending: its SENT will not be sent.
    Withdrawn,
    /// The seq was released meanwhile: its SENT is on its way.
    AlreadyReleased,
}

/// Release state of every conversation this core has touched.
#[derive(Default)]
pub(crate) struct Releases {
    lines: FxHashMap<String, ConversationLine>,
}

impl Releases {
    /// Records `seq` as assigned in `conv` (called in increasing seq order
    /// per conversation) and returns what resolves when it is released.
    pub(crate) fn assign(&mut self, conv: &str, seq: u64) -> oneshot::Receiver<()> {
        let (waiter, released) = oneshot::channel();
        let line = self.line(conv);
        debug_assert!(line.pending.back().is_none_or(|last| last.seq < seq), "seqs are assigned in order");
        line.pending.push_back(Slot { seq, settled: None, awaited: true, waiter: Some(waiter) });
        released
    }

    /// Records how `seq` ended and releases every settled seq of `conv`
    /// with nothing unsettled below it, in order, handing each frame to
    /// `send` before this returns.
    pub(crate) fn settle(
        &mut self,
        conv: &str,
        seq: u64,
        settled: Settled,
        mut send: impl FnMut(String, InternalFrameBytes),
    ) {
        let line = self.line(conv);
        if let Some(slot) = line.pending.iter_mut().find(|slot| slot.seq == seq) {
            slot.settled = Some(settled);
        }
        while line.pending.front().is_some_and(|slot| slot.settled.is_some()) {
            let Some(slot) = line.pending.pop_front() else { break };
            line.released = line.released.max(slot.seq);
            if let Some(Settled::Stored { sent, pushes }) = slot.settled {
                line.last_stored = line.last_stored.max(slot.seq);
                if let Some((node, frame)) = sent.filter(|_| slot.awaited) {
                    send(node, frame);
                }
                for (node, frame) in pushes {
                    send(node, frame);
                }
            }
            if let Some(waiter) = slot.waiter {
                let _ = waiter.send(());
            }
        }
        let mut i = 0;
        while i < line.watchers.len() {
            if line.released_through(line.watchers[i].0) {
                let (_, watcher) = line.watchers.swap_remove(i);
                let _ = watcher.send(());
            } else {
                i += 1;
            }
        }
    }

    /// A SEND stops waiting for `seq`: its SENT is withdrawn if the seq is
    /// still pending. What the sender is told depends on which it was.
    pub(crate) fn abandon(&mut self, conv: &str, seq: u64) -> Abandoned {
        let line = self.line(conv);
        match line.pending.iter_mut().find(|slot| slot.seq == seq) {
            Some(slot) => {
                slot.awaited = false;
                slot.waiter = None;
                Abandoned::Withdrawn
            }
            None => Abandoned::AlreadyReleased,
        }
    }

    /// Resolves once every seq of `conv` up to `seq` that this core
    /// assigned is released (at once if it already is).
    pub(crate) fn watch(&mut self, conv: &str, seq: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let line = self.line(conv);
        if line.released_through(seq) {
            let _ = tx.send(());
        } else {
            line.watchers.push((seq, tx));
        }
        rx
    }

    /// The seq `conv` is visible up to: every seq at or below it that this
    /// core assigned is released. With nothing pending that is at least
    /// `epoch_base` (`epoch << 40`), below which everything is final once
    /// the conversation is fenced in this epoch (or on a single node,
    /// where no other owner exists).
    pub(crate) fn visible(&self, conv: &str, epoch_base: u64) -> u64 {
        match self.lines.get(conv) {
            Some(line) => match line.pending.front() {
                Some(first) => first.seq - 1,
                None => line.released.max(epoch_base),
            },
            None => epoch_base,
        }
    }

    /// The highest seq of `conv` a reader may be shown as its latest, given
    /// the store's `stored_last`: while a lower seq is pending, the latest
    /// stored seq released.
    pub(crate) fn shown_last(&self, conv: &str, stored_last: u64) -> u64 {
        match self.lines.get(conv).and_then(|line| line.pending.front()) {
            Some(first) if stored_last >= first.seq => self.lines[conv].last_stored,
            _ => stored_last,
        }
    }

    /// The once-per-epoch fence cell of `conv` for `epoch`.
    pub(crate) fn fence_cell(&mut self, conv: &str, epoch: u64) -> Arc<OnceCell<()>> {
        let line = self.line(conv);
        match &line.fence {
            Some((fenced_epoch, cell)) if *fenced_epoch == epoch => cell.clone(),
            _ => {
                let cell = Arc::new(OnceCell::new());
                line.fence = Some((epoch, cell.clone()));
                cell
            }
        }
    }

    fn line(&mut self, conv: &str) -> &mut ConversationLine {
        if !self.lines.contains_key(conv) {
            self.lines.insert(conv.to_string(), ConversationLine::default());
        }
        self.lines.get_mut(conv).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_proto::internal::InternalFrame;

    fn frame(tag: u64) -> InternalFrameBytes {
        InternalFrameBytes::encode(&InternalFrame::ConnFrames { conn_ids: vec![tag], frames: vec![], reply: false })
    }

    fn stored(tag: u64) -> Settled {
        Settled::Stored { sent: Some(("n".into(), frame(tag + 1000))), pushes: vec![("n".into(), frame(tag))] }
    }

    fn tags(out: &[(String, InternalFrameBytes)]) -> Vec<u64> {
        use corecast_proto::internal::ArchivedInternalFrame;
        out.iter()
            .map(|(_, f)| match f.archived() {
                ArchivedInternalFrame::ConnFrames { conn_ids, .. } => conn_ids[0].to_native(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn seqs_settled_out_of_order_are_released_in_order() {
        let mut releases = Releases::default();
        let mut out = Vec::new();
        let mut waits: Vec<_> = (1..=3).map(|seq| releases.assign("c", seq)).collect();
        releases.settle("c", 3, stored(3), |n, f| out.push((n, f)));
        releases.settle("c", 2, Settled::Failed, |n, f| out.push((n, f)));
        assert!(out.is_empty(), "nothing leaves while seq 1 is pending");
        assert_eq!(releases.visible("c", 0), 0);
        assert_eq!(releases.shown_last("c", 3), 0);
        assert!(waits[2].try_recv().is_err());
        releases.settle("c", 1, stored(1), |n, f| out.push((n, f)));
        assert_eq!(tags(&out), [1001, 1, 1003, 3], "SENT then PUSH, seq by seq");
        assert_eq!(releases.visible("c", 0), 3);
        assert_eq!(releases.shown_last("c", 3), 3);
        assert!(waits.iter_mut().all(|w| w.try_recv().is_ok()));
    }

    #[test]
    fn an_abandoned_send_gets_no_sent_but_its_push_still_leaves() {
        let mut releases = Releases::default();
        let mut out = Vec::new();
        let _first = releases.assign("c", 1);
        let _second = releases.assign("c", 2);
        releases.settle("c", 2, stored(2), |n, f| out.push((n, f)));
        assert_eq!(releases.abandon("c", 2), Abandoned::Withdrawn);
        releases.settle("c", 1, stored(1), |n, f| out.push((n, f)));
        assert_eq!(tags(&out), [1001, 1, 2]);
        assert_eq!(releases.abandon("c", 1), Abandoned::AlreadyReleased);
    }

    #[test]
    fn watchers_wake_once_everything_below_is_released() {
        let mut releases = Releases::default();
        let _one = releases.assign("c", 1);
        let _two = releases.assign("c", 2);
        let mut after_one = releases.watch("c", 1);
        let mut after_two = releases.watch("c", 2);
        assert!(releases.watch("c", 0).try_recv().is_ok(), "nothing pending at or below 0");
        releases.settle("c", 1, Settled::Failed, |_, _| {});
        assert!(after_one.try_recv().is_ok());
        assert!(after_two.try_recv().is_err());
        releases.settle("c", 2, Settled::Failed, |_, _| {});
        assert!(after_two.try_recv().is_ok());
    }

    #[test]
    fn visible_is_the_epoch_base_when_nothing_is_pending() {
        let mut releases = Releases::default();
        assert_eq!(releases.visible("c", 7 << 40), 7 << 40);
        let _old = releases.assign("c", (6 << 40) | 5);
        assert_eq!(releases.visible("c", 7 << 40), (6 << 40) | 4, "a pending seq of an older epoch holds it");
    }
}
