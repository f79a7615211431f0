//! Room histories: the last messages of each room with a stream, each
//! under its position, within one byte budget for all rooms of an owner.
//!
//! A room's stream has an epoch (24 random bits, never 0) and offsets that
//! grow by one per message from 1. The epoch changes only when the history
//! is lost: the owner restarted, or the budget evicted the room's whole
//! history (the room used least recently goes first), so a client holding
//! an old position learns that it missed messages instead of getting a
//! silent gap. Evictions are counted. Entries older than the room's TTL or
//! beyond its size are dropped from the front; that does not change the
//! epoch, since offsets stay valid.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::{position, position_epoch, position_offset};
use lru::LruCache;

use super::options::RoomOptions;

/// What a stored message costs beyond its bytes (entry, deque slot).
const ENTRY_OVERHEAD: usize = 32;
/// What a stream costs beyond its entries (name, map slot, header).
const STREAM_OVERHEAD: usize = 128;

struct Entry {
    offset: u64,
    ts_ms: u64,
    /// The PUSH as every member got it (rid 0).
    push: Bytes,
}

struct Stream {
    epoch: u32,
    /// Offset of the newest message; 0 before the first.
    top: u64,
    size: u32,
    ttl_ms: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Stream {
    fn position(&self) -> u64 {
        position(self.epoch, self.top)
    }

    /// Offset of the oldest message still held, or `top + 1` when none.
    fn first_offset(&self) -> u64 {
        self.entries.front().map_or(self.top + 1, |e| e.offset)
    }

    /// Drops entries past the TTL; returns the bytes freed.
    fn expire(&mut self, now_ms: u64) -> usize {
        let mut freed = 0;
        while self.ttl_ms > 0 && self.entries.front().is_some_and(|e| e.ts_ms + self.ttl_ms <= now_ms) {
            if let Some(entry) = self.entries.pop_front() {
                freed += entry.push.len() + ENTRY_OVERHEAD;
            }
        }
        self.bytes -= freed;
        freed
    }
}

/// What a recovery or a HISTORY request gets: messages in order, the
/// room's position, and whether nothing between the asked start and the
/// first message returned was lost.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// PUSH frames (rid 0), oldest first.
    pub pushes: Vec<Bytes>,
    /// The room's position: the newest message's.
    pub position: u64,
    /// No gap between the asked position and `pushes`.
    pub complete: bool,
}

/// Every room history an owner holds.
pub struct RoomHistories {
    streams: LruCache<Arc<str>, Stream>,
    budget_bytes: usize,
    used_bytes: usize,
    evictions: u64,
}

impl RoomHistories {
    /// Histories within `budget_bytes` in total.
    pub fn new(budget_bytes: usize) -> RoomHistories {
        RoomHistories { streams: LruCache::unbounded(), budget_bytes, used_bytes: 0, evictions: 0 }
    }

    /// The room's stream, started with a fresh epoch when it has none.
    fn stream(&mut self, room: &str, options: &RoomOptions) -> &mut Stream {
        if !self.streams.contains(room) {
            let stream = Stream {
                epoch: rand::random_range(1..1u32 << 24),
                top: 0,
                size: options.history_size,
                ttl_ms: options.history_ttl_ms,
                entries: VecDeque::new(),
                bytes: 0,
            };
            self.used_bytes += STREAM_OVERHEAD + room.len();
            self.streams.put(Arc::from(room), stream);
        }
        self.streams.get_mut(room).expect("inserted above")
    }

    /// The room's current position (starting its stream if needed).
    pub fn position(&mut self, room: &str, options: &RoomOptions) -> u64 {
        self.stream(room, options).position()
    }

    /// Gives the next message of `room` its position, stores the PUSH
    /// `encode` makes for that position, and returns the PUSH. Evicts the
    /// least recently used rooms' histories while over the budget.
    pub fn append(
        &mut self,
        room: &str,
        options: &RoomOptions,
        ts_ms: u64,
        encode: impl FnOnce(u64) -> Bytes,
    ) -> Bytes {
        let stream = self.stream(room, options);
        stream.top += 1;
        let push = encode(stream.position());
        let cost = push.len() + ENTRY_OVERHEAD;
        stream.entries.push_back(Entry { offset: stream.top, ts_ms, push: push.clone() });
        stream.bytes += cost;
        let mut freed = stream.expire(ts_ms);
        while stream.entries.len() > stream.size as usize {
            if let Some(entry) = stream.entries.pop_front() {
                let entry_cost = entry.push.len() + ENTRY_OVERHEAD;
                stream.bytes -= entry_cost;
                freed += entry_cost;
            }
        }
        self.used_bytes = self.used_bytes + cost - freed;
        self.evict_over_budget(room);
        push
    }

    /// Drops whole histories, least recently appended first, until within
    /// the budget; never the room just appended to.
    fn evict_over_budget(&mut self, keep: &str) {
        while self.used_bytes > self.budget_bytes {
            let Some((name, _)) = self.streams.peek_lru() else { return };
            if &**name == keep {
                // Only the newest room is left: trim it from the front.
                let Some(stream) = self.streams.get_mut(keep) else { return };
                let Some(entry) = stream.entries.pop_front() else { return };
                let cost = entry.push.len() + ENTRY_OVERHEAD;
                stream.bytes -= cost;
                self.used_bytes -= cost;
                continue;
            }
            if let Some((name, stream)) = self.streams.pop_lru() {
                self.used_bytes -= stream.bytes + STREAM_OVERHEAD + name.len();
                self.evictions += 1;
            }
        }
    }

    /// The messages after `since` for a recovering member: all of them when
    /// `since` is in the current epoch and still covered by the history,
    /// otherwise none and `complete = false`.
    pub fn recover(&mut self, room: &str, options: &RoomOptions, since: u64, now_ms: u64) -> CatchUp {
        let stream = self.stream(room, options);
        let freed = stream.expire(now_ms);
        let (epoch, offset) = (position_epoch(since), position_offset(since));
        let covered = epoch == stream.epoch && offset + 1 >= stream.first_offset() && offset <= stream.top;
        let catch_up = if covered {
            let pushes = stream.entries.iter().filter(|e| e.offset > offset).map(|e| e.push.clone()).collect();
            CatchUp { pushes, position: stream.position(), complete: true }
        } else {
            CatchUp { pushes: Vec::new(), position: stream.position(), complete: false }
        };
        self.used_bytes -= freed;
        catch_up
    }

    /// Up to `limit` messages: the first after `since`, or with `since` 0
    /// (or a position the history no longer covers) the newest. `complete`
    /// says no message between the start asked for (the epoch's first
    /// message when `since` is 0) and the first one returned was lost.
    pub fn history(&mut self, room: &str, options: &RoomOptions, since: u64, limit: u16, now_ms: u64) -> CatchUp {
        let stream = self.stream(room, options);
        let freed = stream.expire(now_ms);
        let limit = limit as usize;
        let (epoch, offset) = (position_epoch(since), position_offset(since));
        let covered =
            since != 0 && epoch == stream.epoch && offset + 1 >= stream.first_offset() && offset <= stream.top;
        let pushes: Vec<Bytes> = if covered {
            stream.entries.iter().filter(|e| e.offset > offset).take(limit).map(|e| e.push.clone()).collect()
        } else {
            let skip = stream.entries.len().saturating_sub(limit);
            stream.entries.iter().skip(skip).map(|e| e.push.clone()).collect()
        };
        let complete = covered || (since == 0 && stream.first_offset() == 1);
        let position = stream.position();
        self.used_bytes -= freed;
        CatchUp { pushes, position, complete }
    }

    /// Drops messages past their room's TTL. The room keeps its epoch and
    /// position (a client that saw everything still recovers); only the
    /// budget drops a room's stream.
    pub fn expire(&mut self, now_ms: u64) {
        let freed: usize = self.streams.iter_mut().map(|(_, stream)| stream.expire(now_ms)).sum();
        self.used_bytes -= freed;
    }

    /// Drops the streams of the rooms `keep` refuses (their owner is now
    /// elsewhere): a stream started here again for one gets a new epoch,
    /// so a position from the old one is never taken for a complete one.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<Arc<str>> =
            self.streams.iter().filter(|(room, _)| !keep(room)).map(|(room, _)| room.clone()).collect();
        for room in gone {
            if let Some(stream) = self.streams.pop(&room) {
                self.used_bytes -= stream.bytes + STREAM_OVERHEAD + room.len();
            }
        }
    }

    /// Rooms whose whole history the budget evicted, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Bytes held, as counted against the budget.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(size: u32, ttl_ms: u64) -> RoomOptions {
        RoomOptions { history_size: size, history_ttl_ms: ttl_ms, presence: false, join_leave_events: false }
    }

    /// Appends a message whose bytes are its position.
    fn add(h: &mut RoomHistories, room: &str, o: &RoomOptions, ts: u64) -> u64 {
        let push = h.append(room, o, ts, |pos| Bytes::copy_from_slice(&pos.to_be_bytes()));
        u64::from_be_bytes(push[..8].try_into().unwrap())
    }

    fn positions(c: &CatchUp) -> Vec<u64> {
        c.pushes.iter().map(|p| u64::from_be_bytes(p[..8].try_into().unwrap())).collect()
    }

    #[test]
    fn a_stream_dropped_and_started_again_has_a_new_epoch() {
        let (mut h, o) = (RoomHistories::new(1 << 20), options(10, 0));
        let empty = h.used_bytes();
        let old = add(&mut h, "r", &o, 1);
        add(&mut h, "s", &o, 1);
        let with_s = {
            let mut only_s = RoomHistories::new(1 << 20);
            add(&mut only_s, "s", &o, 1);
            only_s.used_bytes()
        };
        h.retain(|room| room == "s");
        assert_eq!(h.used_bytes(), with_s, "r's bytes are returned");
        let catch_up = h.recover("r", &o, old, 2);
        assert!(!catch_up.complete && catch_up.pushes.is_empty());
        assert_ne!(position_epoch(catch_up.position), position_epoch(old));
        h.retain(|_| false);
        assert_eq!(h.used_bytes(), empty);
    }

    #[test]
    fn offsets_grow_by_one_in_one_epoch() {
        let (mut h, o) = (RoomHistories::new(1 << 20), options(10, 0));
        let start = h.position("r", &o);
        assert_eq!(position_offset(start), 0);
        let got: Vec<u64> = (0..3).map(|_| add(&mut h, "r", &o, 1)).collect();
        assert_eq!(got.iter().map(|&p| position_offset(p)).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(got.iter().all(|&p| position_epoch(p) == position_epoch(start) && position_epoch(p) != 0));
    }

    #[test]
    fn recovery_returns_exactly_what_followed_or_says_it_cannot() {
        let (mut h, o) = (RoomHistories::new(1 << 20), options(3, 0));
        let p: Vec<u64> = (0..5).map(|_| add(&mut h, "r", &o, 1)).collect();
        let c = h.recover("r", &o, p[2], 1);
        assert!(c.complete);
        assert_eq!(positions(&c), vec![p[3], p[4]]);
        assert_eq!(c.position, p[4]);
        // Offset 1 fell out of a history of 3: recovering after it is not possible.
        let c = h.recover("r", &o, p[0], 1);
        assert!(!c.complete && c.pushes.is_empty());
        // The oldest held is offset 3: after offset 2 is still complete.
        assert!(h.recover("r", &o, p[1], 1).complete);
        // Another epoch.
        let other_epoch = if position_epoch(p[0]) == 1 { 2 } else { 1 };
        assert!(!h.recover("r", &o, position(other_epoch, 4), 1).complete);
        // Up to date: nothing to send, complete.
        let c = h.recover("r", &o, p[4], 1);
        assert!(c.complete && c.pushes.is_empty());
    }

    #[test]
    fn ttl_drops_old_messages_without_changing_the_epoch() {
        let (mut h, o) = (RoomHistories::new(1 << 20), options(10, 100));
        let a = add(&mut h, "r", &o, 1_000);
        let b = add(&mut h, "r", &o, 1_050);
        let c = h.recover("r", &o, a, 1_120);
        assert!(c.complete);
        assert_eq!(positions(&c), vec![b]);
        assert!(!h.recover("r", &o, a - 1, 1_120).complete);
        h.expire(1_200);
        assert!(h.recover("r", &o, b, 1_200).complete, "up to date: nothing missed, though nothing is held");
        let d = add(&mut h, "r", &o, 1_200);
        assert_eq!(position_epoch(d), position_epoch(a));
    }

    #[test]
    fn budget_evicts_the_least_recent_room_and_its_epoch_moves_on() {
        // Room for about three messages of 100 bytes and two streams.
        let budget = 2 * (STREAM_OVERHEAD + 1) + 3 * (100 + ENTRY_OVERHEAD);
        let (mut h, o) = (RoomHistories::new(budget), options(100, 0));
        let big = |pos: u64| {
            let mut v = pos.to_be_bytes().to_vec();
            v.resize(100, 0);
            Bytes::from(v)
        };
        let old = h.append("a", &o, 1, big);
        h.append("b", &o, 1, big);
        h.append("b", &o, 1, big);
        assert_eq!(h.evictions(), 0);
        h.append("b", &o, 1, big);
        assert_eq!(h.evictions(), 1, "room a's history went");
        assert!(h.used_bytes() <= budget);
        let old = u64::from_be_bytes(old[..8].try_into().unwrap());
        let c = h.recover("a", &o, old, 1);
        assert!(!c.complete);
        assert_ne!(position_epoch(c.position), 0);
        assert_eq!(position_offset(c.position), 0, "a new stream");
    }

    #[test]
    fn history_pages_forward_and_gives_the_newest_without_a_position() {
        let (mut h, o) = (RoomHistories::new(1 << 20), options(100, 0));
        let p: Vec<u64> = (0..10).map(|_| add(&mut h, "r", &o, 1)).collect();
        let c = h.history("r", &o, 0, 3, 1);
        assert_eq!(positions(&c), p[7..].to_vec());
        assert!(c.complete, "the history still holds offset 1");
        let c = h.history("r", &o, p[2], 4, 1);
        assert_eq!(positions(&c), p[3..7].to_vec());
        assert!(c.complete);
        assert_eq!(c.position, p[9]);
    }
}
