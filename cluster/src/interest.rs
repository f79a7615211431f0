//! Room interest, the same at every level of the fan-out tree: which peers
//! have members of which room (a shard keeps one table for the other
//! shards, a node's uplink one for its shards, a router one for its nodes),
//! and the announcements of a room's first member that wait for every peer
//! to acknowledge, with a bounded wait. A shard announces to the other
//! shards, a node's uplink to the routers; a JOIN is answered once every peer has
//! acknowledged or the deadline has passed, so a stuck peer delays a first
//! JOIN by a bounded time instead of forever. Plain state: time is passed
//! in (ticks or milliseconds, whatever the owner counts in), nothing here
//! waits or locks.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// The peers with members of one room. Two kinds: shard ids as bits
/// ([`ShardSet`], for the shards of a node, seen from a shard or from the
/// node's uplink) and a short list ([`PeerList`], for the nodes of a
/// router).
pub trait PeerSet: Default {
    /// What names a peer.
    type Peer;
    /// Adds `peer` (nothing when it is in already).
    fn insert(&mut self, peer: Self::Peer);
    /// Removes `peer`.
    fn remove(&mut self, peer: &Self::Peer);
    /// Whether no peer is in.
    fn is_empty(&self) -> bool;
}

/// Peers named by value, most rooms having one or two.
pub type PeerList<P> = SmallVec<[P; 2]>;

impl<P: PartialEq> PeerSet for PeerList<P> {
    type Peer = P;

    fn insert(&mut self, peer: P) {
        if !self.contains(&peer) {
            self.push(peer);
        }
    }

    fn remove(&mut self, peer: &P) {
        self.retain(|p| p != peer);
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// A set of shard ids, one bit each (shard ids are below 128).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardSet(u128);

impl ShardSet {
    /// The shard ids in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        (0..u128::BITS as u16).filter(move |s| self.0 & (1 << s) != 0)
    }

    /// The set as a bit mask.
    pub fn bits(self) -> u128 {
        self.0
    }
}

impl PeerSet for ShardSet {
    type Peer = u16;

    fn insert(&mut self, shard: u16) {
        self.0 |= 1 << (shard % 128);
    }

    fn remove(&mut self, shard: &u16) {
        self.0 &= !(1 << (shard % 128));
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// Which peers have members of which room.
pub struct Interest<S> {
    rooms: FxHashMap<Box<str>, S>,
    none: S,
}

impl<S: Default> Default for Interest<S> {
    fn default() -> Self {
        Interest { rooms: FxHashMap::default(), none: S::default() }
    }
}

impl<S: PeerSet> Interest<S> {
    /// `peer` has members of `room`. True when the room had no peer before.
    pub fn join(&mut self, room: &str, peer: S::Peer) -> bool {
        match self.rooms.get_mut(room) {
            Some(peers) => {
                peers.insert(peer);
                false
            }
            None => {
                let mut peers = S::default();
                peers.insert(peer);
                self.rooms.insert(room.into(), peers);
                true
            }
        }
    }

    /// `peer` has no more members of `room`. True when no peer has any.
    pub fn leave(&mut self, room: &str, peer: &S::Peer) -> bool {
        let Some(peers) = self.rooms.get_mut(room) else { return false };
        peers.remove(peer);
        let empty = peers.is_empty();
        if empty {
            self.rooms.remove(room);
        }
        empty
    }

    /// The peers with members of `room` (empty when none).
    pub fn peers(&self, room: &str) -> &S {
        self.rooms.get(room).unwrap_or(&self.none)
    }

    /// Every room some peer has members of.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|room| &**room)
    }

    /// Forgets a peer that went away, in every room.
    pub fn forget(&mut self, peer: &S::Peer) {
        self.rooms.retain(|_, peers| {
            peers.remove(peer);
            !peers.is_empty()
        });
    }
}

/// A completed announcement: the JOINs to answer.
pub struct Done<W> {
    /// The room announced.
    pub room: Box<str>,
    /// Whoever waited for it.
    pub waiters: Vec<W>,
    /// Acknowledgements that never came (0 unless it expired).
    pub missing: usize,
}

struct Pending<W> {
    room: Box<str>,
    remaining: usize,
    waiters: Vec<W>,
    deadline: u64,
}

/// Announcements in flight, each waiting for its acknowledgements.
pub struct Announcements<W> {
    next_id: u64,
    pending: FxHashMap<u64, Pending<W>>,
    by_room: FxHashMap<Box<str>, u64>,
}

impl<W> Default for Announcements<W> {
    fn default() -> Self {
        Announcements { next_id: 1, pending: FxHashMap::default(), by_room: FxHashMap::default() }
    }
}

impl<W> Announcements<W> {
    /// The announcement in flight for `room`, if any: a later joiner waits
    /// for that one.
    pub fn in_flight(&self, room: &str) -> Option<u64> {
        self.by_room.get(room).copied()
    }

    /// Starts an announcement of `room` that `expected` peers must
    /// acknowledge before `deadline`. Returns its id.
    pub fn start(&mut self, room: &str, expected: usize, deadline: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, Pending { room: room.into(), remaining: expected, waiters: Vec::new(), deadline });
        self.by_room.insert(room.into(), id);
        id
    }

    /// Adds a waiter to announcement `id`; gives it back when that
    /// announcement is not in flight (it completed: answer at once).
    pub fn wait(&mut self, id: u64, waiter: W) -> Result<(), W> {
        match self.pending.get_mut(&id) {
            Some(pending) => {
                pending.waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// One acknowledgement of `id` came; the announcement when it was the
    /// last one expected.
    pub fn ack(&mut self, id: u64) -> Option<Done<W>> {
        let pending = self.pending.get_mut(&id)?;
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return None;
        }
        self.finish(id)
    }

    /// Completes `id` now, whatever is still missing.
    pub fn finish(&mut self, id: u64) -> Option<Done<W>> {
        let pending = self.pending.remove(&id)?;
        if self.by_room.get(&pending.room) == Some(&id) {
            self.by_room.remove(&pending.room);
        }
        Some(Done { room: pending.room, waiters: pending.waiters, missing: pending.remaining })
    }

    /// Completes every announcement whose deadline is at or before `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Done<W>> {
        let overdue: Vec<u64> = self.pending.iter().filter(|(_, p)| now >= p.deadline).map(|(&id, _)| id).collect();
        overdue.into_iter().filter_map(|id| self.finish(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_join_and_last_leave_are_reported_once() {
        let mut interest: Interest<PeerList<&str>> = Interest::default();
        assert!(interest.join("r", "n1"));
        assert!(!interest.join("r", "n2"));
        assert!(!interest.join("r", "n2"));
        assert_eq!(interest.peers("r").as_slice(), &["n1", "n2"]);
        assert!(!interest.leave("r", &"n1"));
        assert!(interest.leave("r", &"n2"));
        assert!(interest.peers("r").is_empty());
        interest.join("a", "n7");
        interest.join("b", "n7");
        interest.join("b", "n8");
        interest.forget(&"n7");
        assert_eq!(interest.rooms().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn shard_sets_behave_as_peer_lists() {
        let mut interest: Interest<ShardSet> = Interest::default();
        assert!(interest.join("r", 3));
        assert!(!interest.join("r", 5));
        assert!(!interest.join("r", 5));
        assert_eq!(interest.peers("r").iter().collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(interest.peers("r").bits(), (1 << 3) | (1 << 5));
        assert!(!interest.leave("r", &3));
        assert!(interest.leave("r", &5));
        assert!(interest.peers("r").is_empty());
        interest.join("a", 127);
        interest.join("b", 127);
        interest.join("b", 0);
        interest.forget(&127);
        assert_eq!(interest.rooms().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(interest.peers("b").iter().collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn an_announcement_completes_on_its_last_ack_or_at_its_deadline() {
        let mut announcements = Announcements::default();
        let id = announcements.start("r", 2, 100);
        assert_eq!(announcements.in_flight("r"), Some(id));
        assert!(announcements.wait(id, "join-1").is_ok());
        assert!(announcements.ack(id).is_none());
        let done = announcements.ack(id).expect("the second ack completes it");
        assert_eq!((done.waiters, done.missing), (vec!["join-1"], 0));
        assert_eq!(announcements.in_flight("r"), None);
        assert_eq!(announcements.wait(id, "late"), Err("late"), "a completed one answers at once");

        let stuck = announcements.start("s", 3, 100);
        announcements.wait(stuck, "join-2").unwrap();
        announcements.ack(stuck);
        assert!(announcements.expire(99).is_empty());
        let expired = announcements.expire(100);
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].waiters.clone(), expired[0].missing), (vec!["join-2"], 2));
    }
}
