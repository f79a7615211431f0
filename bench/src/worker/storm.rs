//! The recovery storm as one worker plays it. At the instant the parent
//! named, every member that is set up drops its connection at once and is
//! queued to reconnect; the worker then connects them again as fast as its
//! connect concurrency allows, and each rejoins its room with `since` = the
//! last stream position it saw (kept in its [`Cursor`](crate::stream::Cursor)).
//!
//! Per member this keeps where its rejoin is, to time it: drop to JOINED,
//! and drop to caught up. A member has caught up when its JOINED said
//! `recovered = 1` and it then received a message published after that
//! JOINED arrived (stamp time against the same monotonic clock): with
//! positions checked contiguous, it holds every message it missed, and it
//! is back on live messages. A member not recovered never catches up.

use std::collections::VecDeque;

/// Where one member is in the storm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Not dropped (a publisher, a member not set up, or before the storm).
    #[default]
    Untouched,
    /// Dropped; reconnecting until its JOINED arrives.
    Rejoining,
    /// JOINED (recovered) arrived at this instant; waiting for a message published after it.
    Rejoined(u64),
    /// JOINED said `recovered = 0`: the messages it missed are gone.
    Unrecovered,
    /// Holds everything it missed.
    CaughtUp,
}

/// What a message did to a member's catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Nothing to note.
    Live,
    /// Received between the reconnect and its JOINED: replayed history.
    Replayed,
    /// The member caught up with this message, this long after the drop (ns).
    CaughtUp(u64),
}

/// The storm of one worker.
#[derive(Debug)]
pub struct Storm {
    at_ns: u64,
    started: bool,
    /// By local connection index; sized when the storm starts.
    phases: Vec<Phase>,
    reconnect: VecDeque<usize>,
}

impl Storm {
    /// A storm due at `at_ns` (monotonic).
    pub fn new(at_ns: u64) -> Storm {
        Storm { at_ns, started: false, phases: Vec::new(), reconnect: VecDeque::new() }
    }

    /// When the members drop, if they have not yet.
    pub fn pending_at(&self) -> Option<u64> {
        (!self.started).then_some(self.at_ns)
    }

    /// Drops `members` (local indices of members that are set up, whose
    /// sockets the caller closes) and queues them to reconnect; `conns` is
    /// the worker's connection count.
    pub fn start(&mut self, members: impl IntoIterator<Item = usize>, conns: usize) {
        self.started = true;
        self.phases = vec![Phase::Untouched; conns];
        for idx in members {
            self.phases[idx] = Phase::Rejoining;
            self.reconnect.push_back(idx);
        }
    }

    /// Members dropped.
    pub fn dropped(&self) -> usize {
        self.phases.iter().filter(|p| **p != Phase::Untouched).count()
    }

    /// The next member to reconnect.
    pub fn next_reconnect(&mut self) -> Option<usize> {
        self.reconnect.pop_front()
    }

    /// Whether members wait to be reconnected.
    pub fn has_queued(&self) -> bool {
        !self.reconnect.is_empty()
    }

    /// Whether connection `idx` was dropped by the storm: its connection
    /// now is a reconnect, not a first connection.
    pub fn took_part(&self, idx: usize) -> bool {
        self.phases.get(idx).is_some_and(|p| *p != Phase::Untouched)
    }

    /// Member `idx`'s rejoin was answered JOINED at `now`; returns the time
    /// since the drop (ns), or `None` if it was not rejoining.
    pub fn rejoined(&mut self, idx: usize, now: u64, recovered: bool) -> Option<u64> {
        let phase = self.phases.get_mut(idx).filter(|p| **p == Phase::Rejoining)?;
        *phase = if recovered { Phase::Rejoined(now) } else { Phase::Unrecovered };
        Some(now.saturating_sub(self.at_ns))
    }

    /// Member `idx` received, at `now`, a message its publisher stamped at `sent_ns`.
    pub fn arrival(&mut self, idx: usize, sent_ns: u64, now: u64) -> Arrival {
        let Some(phase) = self.phases.get_mut(idx) else { return Arrival::Live };
        match *phase {
            Phase::Rejoining => Arrival::Replayed,
            Phase::Rejoined(joined_ns) if sent_ns >= joined_ns => {
                *phase = Phase::CaughtUp;
                Arrival::CaughtUp(now.saturating_sub(self.at_ns))
            }
            _ => Arrival::Live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_rejoins_then_catches_up_on_a_message_published_after_its_joined() {
        let mut storm = Storm::new(1_000);
        assert_eq!(storm.pending_at(), Some(1_000));
        storm.start([1, 3], 4);
        assert_eq!(storm.pending_at(), None);
        assert_eq!(storm.dropped(), 2);
        assert_eq!((storm.next_reconnect(), storm.next_reconnect(), storm.next_reconnect()), (Some(1), Some(3), None));
        assert!(!storm.has_queued());
        assert!(storm.took_part(1) && !storm.took_part(0) && !storm.took_part(9));

        assert_eq!(storm.arrival(1, 900, 1_100), Arrival::Replayed);
        assert_eq!(storm.rejoined(1, 1_500, true), Some(500));
        assert_eq!(storm.rejoined(1, 1_600, true), None, "one JOINED per rejoin");
        assert_eq!(storm.arrival(1, 1_400, 1_550), Arrival::Live, "published before the JOINED arrived");
        assert_eq!(storm.arrival(1, 1_500, 1_700), Arrival::CaughtUp(700));
        assert_eq!(storm.arrival(1, 1_800, 1_900), Arrival::Live);
        assert_eq!(storm.arrival(0, 1_800, 1_900), Arrival::Live, "the publisher is untouched");

        assert_eq!(storm.rejoined(3, 2_000, false), Some(1_000));
        assert_eq!(storm.arrival(3, 2_500, 2_600), Arrival::Live, "a member not recovered never catches up");
    }
}
