//! The bounded outbound queue of one connection.
//!
//! It holds reference-counted frames (`Bytes`), usually slices of one shared
//! PUSH encoding, and counts their bytes against a limit. Ephemeral messages
//! beyond the limit are refused (the caller counts the drop); control frames
//! (replies, CLOSE) are always accepted so a client learns why it is cut off.
//! The writer takes frames from the front in batches and returns the unsent
//! tail of a partly written frame to the front, so a frame is never split or
//! reordered.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Frames waiting to be written to one connection.
#[derive(Default)]
pub struct OutboundQueue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The front frame is the unsent tail of a partly written frame and must
    /// be sent before anything else.
    front_partial: bool,
}

impl OutboundQueue {
    /// Queues an ephemeral frame unless that would exceed `limit` bytes.
    /// Returns whether it was queued.
    pub fn push_bounded(&mut self, frame: Bytes, limit: usize) -> bool {
        if self.bytes + frame.len() > limit {
            return false;
        }
        self.push(frame);
        true
    }

    /// Queues a frame regardless of the limit (replies, errors, CLOSE).
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Moves up to `max_frames` frames, at most about `max_bytes`, into
    /// `batch` (always at least one frame when the queue is not empty).
    pub fn take_batch(&mut self, batch: &mut Vec<Bytes>, max_frames: usize, max_bytes: usize) {
        let mut taken = 0;
        self.front_partial = false;
        while batch.len() < max_frames {
            let Some(front) = self.frames.front() else { break };
            if !batch.is_empty() && taken + front.len() > max_bytes {
                break;
            }
            taken += front.len();
            if let Some(frame) = self.frames.pop_front() {
                batch.push(frame);
            }
        }
        self.bytes -= taken;
    }

    /// After a write of `written` bytes from `batch`, puts the unwritten rest
    /// back at the front, in order. Returns the number of whole frames sent.
    pub fn return_unwritten(&mut self, batch: &mut Vec<Bytes>, written: usize) -> usize {
        let (sent, rest) = split_written(batch, written);
        self.front_partial = !rest.is_empty();
        for frame in rest.into_iter().rev() {
            self.bytes += frame.len();
            self.frames.push_front(frame);
        }
        sent
    }

    /// Drops every queued frame except the tail of a partly written one, so
    /// a connection being closed says only what it still must (the rest of
    /// that frame, then its CLOSE). Returns how many frames were dropped.
    pub fn clear_unstarted(&mut self) -> usize {
        let keep = if self.front_partial { self.frames.pop_front() } else { None };
        let dropped = self.frames.len();
        self.frames.clear();
        self.bytes = 0;
        if let Some(tail) = keep {
            self.push(tail);
        }
        dropped
    }

    /// Queued bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Splits a written batch: how many whole frames went, and the unwritten
/// rest in order (the tail of a partly written frame first).
pub fn split_written(batch: &mut Vec<Bytes>, mut written: usize) -> (usize, Vec<Bytes>) {
    let mut sent = 0;
    let mut rest = Vec::new();
    for mut frame in batch.drain(..) {
        if written >= frame.len() {
            written -= frame.len();
            sent += 1;
        } else {
            frame.advance(written);
            written = 0;
            rest.push(frame);
        }
    }
    (sent, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refuses_ephemeral_but_not_control_frames() {
        let mut q = OutboundQueue::default();
        assert!(q.push_bounded(Bytes::from_static(&[0; 60]), 100));
        assert!(!q.push_bounded(Bytes::from_static(&[0; 60]), 100));
        q.push(Bytes::from_static(&[0; 60]));
        assert_eq!(q.bytes(), 120);
    }

    #[test]
    fn partial_write_returns_the_tail_in_order() {
        let mut q = OutboundQueue::default();
        q.push(Bytes::from_static(b"aaaa"));
        q.push(Bytes::from_static(b"bbbb"));
        q.push(Bytes::from_static(b"cccc"));
        let mut batch = Vec::new();
        q.take_batch(&mut batch, 2, 1 << 20);
        assert_eq!(batch.len(), 2);
        assert_eq!(q.bytes(), 4);
        let sent = q.return_unwritten(&mut batch, 6);
        assert_eq!(sent, 1);
        assert_eq!(q.bytes(), 6);
        let mut batch = Vec::new();
        q.take_batch(&mut batch, 8, 1 << 20);
        assert_eq!(batch, vec![Bytes::from_static(b"bb"), Bytes::from_static(b"cccc")]);
    }

    #[test]
    fn clearing_keeps_a_partly_written_frame() {
        let mut q = OutboundQueue::default();
        q.push(Bytes::from_static(b"aaaa"));
        q.push(Bytes::from_static(b"bbbb"));
        let mut batch = Vec::new();
        q.take_batch(&mut batch, 1, 1 << 20);
        q.return_unwritten(&mut batch, 1);
        assert_eq!(q.clear_unstarted(), 1);
        assert_eq!(q.bytes(), 3);
        let mut q = OutboundQueue::default();
        q.push(Bytes::from_static(b"aaaa"));
        assert_eq!(q.clear_unstarted(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn batch_respects_byte_budget_but_takes_one_big_frame() {
        let mut q = OutboundQueue::default();
        q.push(Bytes::from(vec![0; 100]));
        q.push(Bytes::from(vec![0; 100]));
        let mut batch = Vec::new();
        q.take_batch(&mut batch, 8, 50);
        assert_eq!(batch.len(), 1);
    }
}
