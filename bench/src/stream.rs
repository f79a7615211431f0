//! Room streams as the harness checks them. In a room with history every
//! PUSH carries the message's stream position (`epoch << 40 | offset`,
//! PROTOCOL.md), so a member must see the offsets grow by exactly one
//! within one epoch, from the position its JOINED named on, across any
//! reconnect. [`Cursor`] follows one member's position and classifies each
//! PUSH and JOINED as a [`Step`]; [`StreamCounts`] is what a worker counts
//! over its members (and, in a recovery storm, how their rejoins went),
//! summed over workers by the parent.

use corecast_proto::{position_epoch, position_offset};
use serde::{Deserialize, Serialize};

/// What one position says about the member's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The position expected: nothing missed, nothing twice.
    Next,
    /// This many offsets were skipped.
    Gap(u64),
    /// At or below a position already seen (the cursor stays).
    Duplicate,
    /// Another epoch: the room's history was lost on the server.
    NewEpoch,
    /// No position (seq 0) where the room should have given one.
    Unpositioned,
}

/// One member's place in its room's stream: the last message's position,
/// or the JOINED's before the first message; 0 before any JOINED.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor(u64);

impl Cursor {
    /// The position to rejoin from (JOIN `since`); 0 before any JOINED.
    pub fn position(self) -> u64 {
        self.0
    }

    /// A PUSH at `position`: the next offset is expected.
    pub fn push(&mut self, position: u64) -> Step {
        self.advance(position, position_offset(self.0) + 1)
    }

    /// The JOIN's answer: live messages follow `position`. After a
    /// recovered rejoin every message up to it was replayed first, so the
    /// cursor must be there already; otherwise the cursor starts there (a
    /// first JOIN, or a rejoin the server could not recover, which the
    /// caller counts).
    pub fn joined(&mut self, position: u64, recovered: bool) -> Step {
        if !recovered || self.0 == 0 {
            self.0 = position;
            return if position == 0 { Step::Unpositioned } else { Step::Next };
        }
        self.advance(position, position_offset(self.0))
    }

    fn advance(&mut self, position: u64, expected_offset: u64) -> Step {
        let offset = position_offset(position);
        let step = if position == 0 {
            return Step::Unpositioned;
        } else if self.0 == 0 {
            Step::Next
        } else if position_epoch(position) != position_epoch(self.0) {
            Step::NewEpoch
        } else if offset == expected_offset {
            Step::Next
        } else if offset > expected_offset {
            Step::Gap(offset - expected_offset)
        } else {
            return Step::Duplicate;
        };
        self.0 = position;
        step
    }
}

/// A worker's stream figures, summed over its members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamCounts {
    /// Offsets skipped between consecutive positions a member saw.
    pub position_gaps: u64,
    /// Positions at or below one the member had seen already.
    pub position_duplicates: u64,
    /// Times a member saw the room's epoch change (its history was lost).
    pub epoch_changes: u64,
    /// PUSH frames or JOINED replies without a position in a stream room.
    pub unpositioned: u64,
    /// Recovery storm: members that dropped their connection to rejoin.
    pub dropped: u64,
    /// Of those, the ones whose rejoin was answered JOINED.
    pub rejoined: u64,
    /// Of those, the ones the server said it recovered (`recovered = 1`).
    pub recovered: u64,
    /// Messages rejoining members received before their JOINED (the replay).
    pub replayed: u64,
    /// Recovered members that then received a message published after
    /// their JOINED arrived: they hold everything they missed.
    pub caught_up: u64,
    /// When the last rejoin was answered (monotonic ns), 0 if none.
    pub last_rejoined_ns: u64,
    /// When the last member caught up (monotonic ns), 0 if none.
    pub last_caught_up_ns: u64,
}

impl StreamCounts {
    /// Counts what a position said.
    pub fn count(&mut self, step: Step) {
        match step {
            Step::Next => {}
            Step::Gap(n) => self.position_gaps += n,
            Step::Duplicate => self.position_duplicates += 1,
            Step::NewEpoch => self.epoch_changes += 1,
            Step::Unpositioned => self.unpositioned += 1,
        }
    }

    /// Adds another worker's counts (latest instants win).
    pub fn add(&mut self, other: &StreamCounts) {
        self.position_gaps += other.position_gaps;
        self.position_duplicates += other.position_duplicates;
        self.epoch_changes += other.epoch_changes;
        self.unpositioned += other.unpositioned;
        self.dropped += other.dropped;
        self.rejoined += other.rejoined;
        self.recovered += other.recovered;
        self.replayed += other.replayed;
        self.caught_up += other.caught_up;
        self.last_rejoined_ns = self.last_rejoined_ns.max(other.last_rejoined_ns);
        self.last_caught_up_ns = self.last_caught_up_ns.max(other.last_caught_up_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast_proto::position;

    #[test]
    fn offsets_must_grow_by_one_from_the_joined_position() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.joined(position(7, 10), false), Step::Next, "a first JOIN starts the cursor");
        assert_eq!(cursor.push(position(7, 11)), Step::Next);
        assert_eq!(cursor.push(position(7, 14)), Step::Gap(2));
        assert_eq!(cursor.push(position(7, 14)), Step::Duplicate);
        assert_eq!(cursor.push(position(7, 12)), Step::Duplicate);
        assert_eq!(cursor.position(), position(7, 14), "a duplicate does not move the cursor back");
        assert_eq!(cursor.push(position(9, 1)), Step::NewEpoch);
        assert_eq!(cursor.push(position(9, 2)), Step::Next);
        assert_eq!(cursor.push(0), Step::Unpositioned);
        assert_eq!(cursor.position(), position(9, 2));
    }

    #[test]
    fn a_recovered_rejoin_must_have_replayed_up_to_its_position() {
        let mut cursor = Cursor::default();
        cursor.joined(position(3, 0), false);
        cursor.push(position(3, 1));
        // Dropped at offset 1; the replay brings 2 and 3, then JOINED at 3.
        assert_eq!(cursor.push(position(3, 2)), Step::Next);
        assert_eq!(cursor.push(position(3, 3)), Step::Next);
        assert_eq!(cursor.joined(position(3, 3), true), Step::Next);
        assert_eq!(cursor.push(position(3, 4)), Step::Next);
        // A JOINED claiming recovery past what was replayed is a gap.
        assert_eq!(cursor.joined(position(3, 6), true), Step::Gap(2));
        assert_eq!(cursor.joined(position(3, 5), true), Step::Duplicate);
        // Not recovered: the cursor starts again at the room's position.
        assert_eq!(cursor.joined(position(4, 20), false), Step::Next);
        assert_eq!(cursor.push(position(4, 21)), Step::Next);
    }

    #[test]
    fn counts_add_up_over_workers() {
        let mut a = StreamCounts::default();
        for step in [Step::Next, Step::Gap(3), Step::Duplicate, Step::NewEpoch, Step::Unpositioned] {
            a.count(step);
        }
        let b = StreamCounts { dropped: 2, rejoined: 2, recovered: 1, last_caught_up_ns: 9, ..Default::default() };
        a.add(&b);
        assert_eq!((a.position_gaps, a.position_duplicates, a.epoch_changes, a.unpositioned), (3, 1, 1, 1));
        assert_eq!((a.dropped, a.rejoined, a.recovered, a.last_caught_up_ns), (2, 2, 1, 9));
    }
}
