//! Room interest, the same at every level of the fan-out tree: which peers
//! (shards of a node, nodes of a router) have members of which room, and
//! the announcements of a room's first member that wait for every peer to
//! acknowledge, with a bounded wait. A shard announces to the other shards,
//! a node's uplink to the routers; a JOIN is answered once every peer has
//! acknowledged or the deadline has passed, so a stuck peer delays a first
//! JOIN by a bounded time instead of forever. Plain state: time is passed
//! in (ticks or milliseconds, whatever the owner counts in), nothing here
//! waits or locks.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Which peers have members of which room.
pub struct Interest<P> {
    rooms: FxHashMap<Box<str>, SmallVec<[P; 2]>>,
}

impl<P> Default for Interest<P> {
    fn default() -> Self {
        Interest { rooms: FxHashMap::default() }
    }
}

impl<P: PartialEq + Clone> Interest<P> {
    /// `peer` has members of `room`. True when the room had no peer before.
    pub fn join(&mut self, room: &str, peer: P) -> bool {
        match self.rooms.get_mut(room) {
            Some(peers) => {
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
                false
            }
            None => {
                self.rooms.insert(room.into(), SmallVec::from_elem(peer, 1));
                true
            }
        }
    }

    /// `peer` has no more members of `room`. True when no peer has any.
    pub fn leave(&mut self, room: &str, peer: &P) -> bool {
        let Some(peers) = self.rooms.get_mut(room) else { return false };
        peers.retain(|p| p != peer);
        let empty = peers.is_empty();
        if empty {
            self.rooms.remove(room);
        }
        empty
    }

    /// The peers with members of `room`.
    pub fn peers(&self, room: &str) -> &[P] {
        self.rooms.get(room).map_or(&[], |peers| peers.as_slice())
    }

    /// Every room some peer has members of.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|room| &**room)
    }

    /// Forgets a peer that went away, in every room.
    pub fn forget(&mut self, peer: &P) {
        self.rooms.retain(|_, peers| {
            peers.retain(|p| p != peer);
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
        let mut interest = Interest::default();
        assert!(interest.join("r", 1u16));
        assert!(!interest.join("r", 2));
        assert!(!interest.join("r", 2));
        assert_eq!(interest.peers("r"), &[1, 2]);
        assert!(!interest.leave("r", &1));
        assert!(interest.leave("r", &2));
        assert!(interest.peers("r").is_empty());
        interest.join("a", 7);
        interest.join("b", 7);
        interest.join("b", 8);
        interest.forget(&7);
        assert_eq!(interest.rooms().collect::<Vec<_>>(), vec!["b"]);
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
