//! The lock-free mesh that carries frames between shards: one bounded
//! single-producer single-consumer ring (`rtrb`) for each ordered pair of
//! shards, so a sender never takes a lock or contends with another sender.
//! A shard that sent frames in a round wakes each receiving shard once, at
//! the end of the round, and only if that shard is parked: a busy receiver
//! finds the frames on its next pass without being woken. Commands that
//! many threads send to one shard (the control plane, the router core)
//! stay on the flume inbox. glommio's `channel_mesh` is the model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use corecast_proto::internal::InternalFrameBytes;
use futures_util::task::AtomicWaker;

/// How a parked shard is woken from another thread.
#[derive(Default)]
struct Doorbell {
    waker: AtomicWaker,
    parked: AtomicBool,
}

/// One shard's ends of the mesh.
pub struct FrameLinks {
    id: u16,
    /// To each other shard (`None` at this shard's own index).
    outgoing: Vec<Option<rtrb::Producer<InternalFrameBytes>>>,
    /// From each other shard.
    incoming: Vec<rtrb::Consumer<InternalFrameBytes>>,
    doorbells: Arc<[Doorbell]>,
    /// Shards sent to since the last [`FrameLinks::ring`].
    to_ring: u128,
}

/// Builds the mesh of `shards` shards, rings of `capacity` frames each;
/// one [`FrameLinks`] per shard, in shard order.
pub fn frame_mesh(shards: usize, capacity: usize) -> Vec<FrameLinks> {
    let doorbells: Arc<[Doorbell]> = (0..shards).map(|_| Doorbell::default()).collect();
    let mut links: Vec<FrameLinks> = (0..shards)
        .map(|id| FrameLinks {
            id: id as u16,
            outgoing: (0..shards).map(|_| None).collect(),
            incoming: Vec::new(),
            doorbells: doorbells.clone(),
            to_ring: 0,
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
                links[from].outgoing[to] = Some(producer);
                links[to].incoming.push(consumer);
            }
        }
    }
    links
}

impl FrameLinks {
    /// This shard's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Queues `frame` for shard `to`. False when its ring is full (the
    /// caller counts the drop).
    pub fn send(&mut self, to: u16, frame: InternalFrameBytes) -> bool {
        let Some(Some(ring)) = self.outgoing.get_mut(to as usize) else { return false };
        if ring.push(frame).is_err() {
            return false;
        }
        self.to_ring |= 1 << (to % 128);
        true
    }

    /// Wakes, once, every parked shard sent to since the last call.
    pub fn ring(&mut self) {
        let mut mask = std::mem::take(&mut self.to_ring);
        while mask != 0 {
            let to = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(doorbell) = self.doorbells.get(to) {
                if doorbell.parked.swap(false, Ordering::AcqRel) {
                    doorbell.waker.wake();
                }
            }
        }
    }

    /// Takes every frame waiting for this shard into `out`.
    pub fn receive(&mut self, out: &mut Vec<InternalFrameBytes>) {
        for ring in &mut self.incoming {
            while let Ok(frame) = ring.pop() {
                out.push(frame);
            }
        }
    }

    /// Frames waiting for this shard: `Ready` with them, or `Pending`
    /// after arranging to be woken when one is sent.
    pub fn poll_receive(&mut self, cx: &mut Context<'_>, out: &mut Vec<InternalFrameBytes>) -> Poll<()> {
        self.receive(out);
        if !out.is_empty() {
            return Poll::Ready(());
        }
        let doorbells = self.doorbells.clone();
        let doorbell = &doorbells[self.id as usize];
        doorbell.waker.register(cx.waker());
        doorbell.parked.store(true, Ordering::Release);
        // A frame sent before `parked` was set rang no bell: look again.
        self.receive(out);
        if out.is_empty() {
            Poll::Pending
        } else {
            doorbell.parked.store(false, Ordering::Release);
            Poll::Ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_proto::internal::InternalFrame;
    use std::task::Waker;

    fn frame(n: u8) -> InternalFrameBytes {
        InternalFrameBytes::encode(&InternalFrame::Broadcast { push: vec![n] })
    }

    #[test]
    fn frames_arrive_in_order_per_sender_and_a_full_ring_refuses() {
        let mut mesh = frame_mesh(3, 2);
        let mut to_two = mesh.remove(0);
        let mut one = mesh.remove(0);
        let mut two = mesh.remove(0);
        assert!(to_two.send(2, frame(1)) && to_two.send(2, frame(2)));
        assert!(!to_two.send(2, frame(3)), "a ring holds its capacity");
        assert!(one.send(2, frame(9)));
        let mut got = Vec::new();
        two.receive(&mut got);
        let pushes: Vec<Vec<u8>> = got.iter().map(|f| f.wire_push().to_vec()).collect();
        assert_eq!(pushes, vec![vec![1], vec![2], vec![9]]);
        assert_eq!(to_two.id(), 0);
        assert!(!to_two.send(0, frame(0)), "no ring to itself");
    }

    #[test]
    fn a_parked_receiver_is_woken_once_per_round_and_a_busy_one_not_at_all() {
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut mesh = frame_mesh(2, 64);
        let mut receiver = mesh.pop().unwrap();
        let mut sender = mesh.pop().unwrap();
        let mut out = Vec::new();
        assert!(receiver.poll_receive(&mut Context::from_waker(&waker), &mut out).is_pending());
        for n in 0..10 {
            sender.send(1, frame(n));
        }
        sender.ring();
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "ten frames, one wake");
        assert!(receiver.poll_receive(&mut Context::from_waker(&waker), &mut out).is_ready());
        assert_eq!(out.len(), 10);
        sender.send(1, frame(0));
        sender.ring();
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "a receiver that is not parked is not woken");
    }
}
