//! Who is in each room with presence, as the room's owner hears it: every
//! join and leave of a member connection, tagged with where it came from
//! (a node in a cluster), so when a source goes away its members leave at
//! once. Totals are kept as counts, so counting a room of 100,000 needs no
//! list; a page of users is read in id order from where the last one ended.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// One user in one room: connections per source.
struct Member<S> {
    by_source: SmallVec<[(S, u32); 1]>,
}

impl<S> Member<S> {
    fn connections(&self) -> u32 {
        self.by_source.iter().map(|(_, n)| n).sum()
    }
}

struct Room<S> {
    users: BTreeMap<Arc<str>, Member<S>>,
    conns: u32,
}

/// A page of a room's presence.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PresencePage {
    /// Distinct users in the room.
    pub users: u32,
    /// Member connections in the room.
    pub conns: u32,
    /// (user, connections), in id order.
    pub entries: Vec<(Arc<str>, u32)>,
    /// The last user of the page when more follow, else empty.
    pub next: String,
}

/// Presence of every room an owner holds, by source `S`.
pub struct RoomPresence<S> {
    rooms: FxHashMap<Arc<str>, Room<S>>,
}

impl<S> Default for RoomPresence<S> {
    fn default() -> Self {
        RoomPresence { rooms: FxHashMap::default() }
    }
}

impl<S: Clone + Eq + Hash> RoomPresence<S> {
    /// A connection of `user` from `source` joined `room`. True when it is
    /// the user's first (a join event).
    pub fn join(&mut self, room: &str, user: &str, source: &S) -> bool {
        let entry = match self.rooms.get_mut(room) {
            Some(entry) => entry,
            None => self.rooms.entry(Arc::from(room)).or_insert(Room { users: BTreeMap::new(), conns: 0 }),
        };
        entry.conns += 1;
        let member = match entry.users.get_mut(user) {
            Some(member) => member,
            None => entry.users.entry(Arc::from(user)).or_insert(Member { by_source: SmallVec::new() }),
        };
        let first = member.by_source.is_empty();
        match member.by_source.iter_mut().find(|(s, _)| s == source) {
            Some((_, n)) => *n += 1,
            None => member.by_source.push((source.clone(), 1)),
        }
        first
    }

    /// A connection of `user` from `source` left `room`. True when it was
    /// the user's last (a leave event). A leave never matched by a join
    /// changes nothing.
    pub fn leave(&mut self, room: &str, user: &str, source: &S) -> bool {
        let Some(entry) = self.rooms.get_mut(room) else { return false };
        let Some(member) = entry.users.get_mut(user) else { return false };
        let Some(i) = member.by_source.iter().position(|(s, _)| s == source) else { return false };
        member.by_source[i].1 -= 1;
        if member.by_source[i].1 == 0 {
            member.by_source.swap_remove(i);
        }
        entry.conns -= 1;
        let last = member.by_source.is_empty();
        if last {
            entry.users.remove(user);
        }
        if entry.users.is_empty() {
            self.rooms.remove(room);
        }
        last
    }

    /// Replaces what `source` reported for `room` with one connection per
    /// entry of `users`. Returns the users that joined and those that left
    /// the room as a result.
    pub fn replace<'u>(
        &mut self,
        room: &str,
        source: &S,
        users: impl IntoIterator<Item = &'u str>,
    ) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        let mut left: Vec<Arc<str>> = Vec::new();
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.users.retain(|user, member| {
                if let Some(i) = member.by_source.iter().position(|(s, _)| s == source) {
                    entry.conns -= member.by_source[i].1;
                    member.by_source.swap_remove(i);
                }
                let stays = !member.by_source.is_empty();
                if !stays {
                    left.push(user.clone());
                }
                stays
            });
        }
        let mut joined = Vec::new();
        for user in users {
            if self.join(room, user, source) {
                match left.iter().position(|l| &**l == user) {
                    Some(i) => {
                        left.swap_remove(i);
                    }
                    None => joined.push(Arc::from(user)),
                }
            }
        }
        if self.rooms.get(room).is_some_and(|entry| entry.users.is_empty()) {
            self.rooms.remove(room);
        }
        (joined, left)
    }

    /// Everything the sources matching `gone` reported is gone (a node's
    /// link went away). Returns the (room, user) pairs that left with them.
    pub fn forget_sources(&mut self, gone: impl Fn(&S) -> bool) -> Vec<(Arc<str>, Arc<str>)> {
        let mut left = Vec::new();
        self.rooms.retain(|room, entry| {
            entry.users.retain(|user, member| {
                member.by_source.retain(|(s, n)| {
                    let keep = !gone(s);
                    if !keep {
                        entry.conns -= *n;
                    }
                    keep
                });
                let stays = !member.by_source.is_empty();
                if !stays {
                    left.push((room.clone(), user.clone()));
                }
                stays
            });
            !entry.users.is_empty()
        });
        left
    }

    /// Forgets the rooms `keep` refuses (their owner is now elsewhere).
    pub fn retain_rooms(&mut self, keep: impl Fn(&str) -> bool) {
        self.rooms.retain(|room, _| keep(room));
    }

    /// Up to `limit` users after `after` (in id order) and the totals.
    pub fn page(&self, room: &str, after: &str, limit: usize) -> PresencePage {
        let Some(entry) = self.rooms.get(room) else { return PresencePage::default() };
        let range = entry.users.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
        let mut entries: Vec<(Arc<str>, u32)> =
            range.take(limit + 1).map(|(user, member)| (user.clone(), member.connections())).collect();
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|(user, _)| user.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        PresencePage { users: entry.users.len() as u32, conns: entry.conns, entries, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_join_and_last_leave_are_events_and_totals_follow() {
        let mut p = RoomPresence::<u8>::default();
        assert!(p.join("r", "alice", &1));
        assert!(!p.join("r", "alice", &2), "second device");
        assert!(p.join("r", "bob", &1));
        let page = p.page("r", "", 10);
        assert_eq!((page.users, page.conns), (2, 3));
        assert_eq!(page.entries, vec![(Arc::from("alice"), 2), (Arc::from("bob"), 1)]);
        assert!(!p.leave("r", "alice", &1));
        assert!(p.leave("r", "alice", &2));
        assert!(!p.leave("r", "alice", &2), "an unmatched leave changes nothing");
        assert_eq!(p.page("r", "", 10).conns, 1);
    }

    #[test]
    fn pages_continue_after_the_last_user() {
        let mut p = RoomPresence::<()>::default();
        for user in ["d", "a", "c", "b", "e"] {
            p.join("r", user, &());
        }
        let first = p.page("r", "", 2);
        assert_eq!(first.entries.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(first.next, "b");
        let second = p.page("r", &first.next, 2);
        assert_eq!(second.entries.iter().map(|(u, _)| &**u).collect::<Vec<_>>(), vec!["c", "d"]);
        let last = p.page("r", &second.next, 2);
        assert_eq!(last.entries.len(), 1);
        assert_eq!(last.next, "");
        assert_eq!(p.page("r", "", 0).users, 5, "totals without a list");
    }

    #[test]
    fn a_snapshot_replaces_one_source_and_reports_only_real_changes() {
        let mut p = RoomPresence::<u8>::default();
        p.join("r", "alice", &1);
        p.join("r", "bob", &1);
        p.join("r", "bob", &2);
        let (joined, left) = p.replace("r", &1, ["alice", "carol", "carol"]);
        assert_eq!(joined, vec![Arc::from("carol")]);
        assert!(left.is_empty(), "bob is still there from source 2");
        let page = p.page("r", "", 10);
        assert_eq!((page.users, page.conns), (3, 4));
        let (joined, left) = p.replace("r", &2, []);
        assert!(joined.is_empty());
        assert_eq!(left, vec![Arc::from("bob")]);
    }

    #[test]
    fn rooms_owned_elsewhere_are_forgotten() {
        let mut p = RoomPresence::<u8>::default();
        p.join("r", "alice", &1);
        p.join("s", "bob", &1);
        p.retain_rooms(|room| room == "s");
        assert_eq!(p.page("r", "", 10), PresencePage::default());
        assert_eq!(p.page("s", "", 10).users, 1);
    }

    #[test]
    fn a_lost_source_takes_its_members_with_it() {
        let mut p = RoomPresence::<&str>::default();
        p.join("r", "alice", &"node-1");
        p.join("r", "alice", &"node-2");
        p.join("r", "bob", &"node-1");
        p.join("s", "carol", &"node-1");
        let mut left = p.forget_sources(|s| *s == "node-1");
        left.sort();
        assert_eq!(left, vec![(Arc::from("r"), Arc::from("bob")), (Arc::from("s"), Arc::from("carol"))]);
        let page = p.page("r", "", 10);
        assert_eq!((page.users, page.conns), (1, 1));
        assert_eq!(p.page("s", "", 10), PresencePage::default());
    }
}
