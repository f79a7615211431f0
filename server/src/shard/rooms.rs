//! This shard's view of rooms: its own members of each room, which other
//! shards also have members (so a publish sends one frame to each of those
//! shards and none to the rest), and each room's recent message rate (so hot
//! rooms are flushed on a tick).
//!
//! A room's first local member is announced to every other shard (see
//! `core::interest`); which other shards have members is kept in the
//! cluster crate's `Interest`, the table the node's uplink and the routers
//! keep too.

use std::rc::Rc;

use corecast_cluster::interest::{Interest, ShardSet};
use corecast_cluster::room_stream::{RoomOptions, RoomPolicy};
use indexmap::IndexSet;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// One room with members on this shard.
#[derive(Default)]
pub struct Room {
    /// Slab keys of this shard's member connections.
    pub members: IndexSet<u32, FxBuildHasher>,
    /// The options of the `[[rooms]]` rule the name matches; `None` for a
    /// plain room.
    pub options: Option<RoomOptions>,
    rate_window_tick: u64,
    rate_window_count: u32,
}

impl Room {
    /// Counts one published message and says whether the room is hot: more
    /// than `hot_per_window` messages in the current window of ticks.
    pub fn note_publish(&mut self, now_tick: u64, window_ticks: u64, hot_per_window: u32) -> bool {
        if hot_per_window == 0 {
            return false;
        }
        if now_tick >= self.rate_window_tick + window_ticks.max(1) {
            self.rate_window_tick = now_tick;
            self.rate_window_count = 0;
        }
        self.rate_window_count = self.rate_window_count.saturating_add(1);
        self.rate_window_count > hot_per_window
    }
}

/// What [`Rooms::join`] did.
pub enum JoinOutcome {
    /// The connection was already a member.
    AlreadyMember,
    /// Joined; other shards know (or are being told) this shard has
    /// members.
    Joined,
    /// Joined as the first local member: announce to the other shards.
    FirstLocalMember,
}

/// Every room this shard has members of, and which other shards have
/// members of which room.
#[derive(Default)]
pub struct Rooms {
    map: FxHashMap<Rc<str>, Room>,
    remote: Interest<ShardSet>,
    policy: RoomPolicy,
}

impl Rooms {
    /// No rooms yet; rooms get their options from `policy`.
    pub fn new(policy: RoomPolicy) -> Rooms {
        Rooms { policy, ..Rooms::default() }
    }

    /// The options of a room by name (from the room when known, else from
    /// the rules).
    pub fn options_of(&self, name: &str) -> Option<RoomOptions> {
        match self.map.get(name) {
            Some(room) => room.options,
            None => self.policy.options_for(name),
        }
    }

    /// Every room with local members, with its options and member keys.
    pub fn with_members(&self) -> impl Iterator<Item = (&Rc<str>, &Room)> {
        self.map.iter()
    }

    /// The other shards with members of `name`.
    pub fn remote_shards(&self, name: &str) -> ShardSet {
        *self.remote.peers(name)
    }

    /// The room, if it has members on this shard.
    pub fn get(&self, name: &str) -> Option<&Room> {
        self.map.get(name)
    }

    /// The room, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.map.get_mut(name)
    }

    /// The shared name of a room, creating the room if needed.
    fn entry(&mut self, name: &str) -> (Rc<str>, &mut Room) {
        let shared = match self.map.get_key_value(name) {
            Some((shared, _)) => shared.clone(),
            None => {
                let shared: Rc<str> = Rc::from(name);
                let options = self.policy.options_for(name);
                self.map.insert(shared.clone(), Room { options, ..Room::default() });
                shared
            }
        };
        let room = self.map.entry(shared.clone()).or_default();
        (shared, room)
    }

    /// Adds a member. The returned name is shared with the map key, for the
    /// connection's own list of rooms.
    pub fn join(&mut self, name: &str, key: u32) -> (Rc<str>, JoinOutcome) {
        let (shared, room) = self.entry(name);
        let was_empty = room.members.is_empty();
        if !room.members.insert(key) {
            return (shared, JoinOutcome::AlreadyMember);
        }
        if !was_empty {
            return (shared, JoinOutcome::Joined);
        }
        (shared, JoinOutcome::FirstLocalMember)
    }

    /// Removes a member. Returns true when it was the last local member, so
    /// the other shards must be told.
    pub fn leave(&mut self, name: &str, key: u32) -> bool {
        let Some(room) = self.map.get_mut(name) else { return false };
        if !room.members.swap_remove(&key) {
            return false;
        }
        let last = room.members.is_empty();
        if last {
            self.map.remove(name);
        }
        last
    }

    /// Records that `shard` gained its first or lost its last member of
    /// `name`.
    pub fn set_remote(&mut self, name: &str, shard: u16, has_members: bool) {
        if has_members {
            self.remote.join(name, shard);
        } else {
            self.remote.leave(name, &shard);
        }
    }

    /// Number of rooms with at least one member on this shard.
    pub fn local_room_count(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use corecast_cluster::interest::PeerSet;

    use super::*;

    #[test]
    fn first_join_announces_and_last_leave_reports() {
        let mut rooms = Rooms::default();
        let (_, outcome) = rooms.join("r", 1);
        assert!(matches!(outcome, JoinOutcome::FirstLocalMember));
        let (_, outcome) = rooms.join("r", 2);
        assert!(matches!(outcome, JoinOutcome::Joined));
        let (_, outcome) = rooms.join("r", 3);
        assert!(matches!(outcome, JoinOutcome::Joined));
        assert!(matches!(rooms.join("r", 3).1, JoinOutcome::AlreadyMember));
        assert!(!rooms.leave("r", 1));
        assert!(!rooms.leave("r", 2));
        assert!(rooms.leave("r", 3));
        assert!(rooms.get("r").is_none());
        assert_eq!(rooms.local_room_count(), 0);
    }

    #[test]
    fn remote_interest_is_kept_apart_from_local_members() {
        let mut rooms = Rooms::default();
        rooms.set_remote("r", 3, true);
        rooms.set_remote("r", 5, true);
        assert_eq!(rooms.remote_shards("r").iter().collect::<Vec<_>>(), vec![3, 5]);
        assert!(rooms.get("r").is_none(), "no local member");
        rooms.join("r", 1);
        rooms.set_remote("r", 3, false);
        rooms.set_remote("r", 5, false);
        assert!(rooms.remote_shards("r").is_empty());
        assert_eq!(rooms.get("r").map(|room| room.members.len()), Some(1));
        assert!(rooms.leave("r", 1));
        assert_eq!(rooms.local_room_count(), 0);
    }

    #[test]
    fn room_turns_hot_above_rate() {
        let mut room = Room::default();
        let hot: Vec<bool> = (0..4).map(|_| room.note_publish(0, 10, 2)).collect();
        assert_eq!(hot, vec![false, false, true, true]);
        assert!(!room.note_publish(10, 10, 2));
    }
}
