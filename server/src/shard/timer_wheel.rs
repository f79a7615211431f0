//! One timing wheel per shard for connection deadlines (authentication and
//! idle), instead of a timer object per connection.
//!
//! The wheel is lazy: activity on a connection only updates a tick number in
//! the connection's record, never the wheel. When a slot comes due, its
//! entries are handed to the owner, which asks each connection for its real
//! deadline and inserts the entry again at that deadline if it is not due. A connection therefore costs one
//! 12-byte entry, and a busy connection is looked at about once per idle
//! timeout. Written by hand because the wheel crates on crates.io keep a
//! handle per timer and re-insert on every reset, which is the cost this
//! design avoids.

/// A connection slot key with the slot generation it was armed for, so an
/// entry that outlives its connection (and a reused slot) is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// Slab key of the connection.
    pub key: u32,
    /// Generation of the slot when armed.
    pub generation: u32,
}

/// A hashed wheel of `slots` ticks.
pub struct TimerWheel {
    /// Entries with the deadline they were armed for.
    slots: Vec<Vec<(TimerEntry, u64)>>,
    /// The next tick to process.
    next_tick: u64,
}

impl TimerWheel {
    /// A wheel covering `slots` ticks; deadlines further out wrap around and
    /// are re-checked each lap.
    pub fn new(slots: usize) -> TimerWheel {
        TimerWheel { slots: (0..slots.max(1)).map(|_| Vec::new()).collect(), next_tick: 0 }
    }

    /// Schedules `entry` to be looked at on `due_tick` (or the next tick to be
    /// processed, if that is already past).
    pub fn insert(&mut self, entry: TimerEntry, due_tick: u64) {
        let tick = due_tick.max(self.next_tick);
        let laps_ahead = (tick - self.next_tick) as usize;
        // A deadline beyond one lap is parked in the last slot of this lap
        // and re-checked there.
        let tick = if laps_ahead >= self.slots.len() { self.next_tick + self.slots.len() as u64 - 1 } else { tick };
        let index = (tick % self.slots.len() as u64) as usize;
        self.slots[index].push((entry, due_tick));
    }

    /// Takes every entry whose slot comes up in the ticks up to and
    /// including `now_tick`, with the deadline it was armed for.
    pub fn take_due(&mut self, now_tick: u64, due: &mut Vec<(TimerEntry, u64)>) {
        while self.next_tick <= now_tick {
            let index = (self.next_tick % self.slots.len() as u64) as usize;
            self.next_tick += 1;
            due.append(&mut self.slots[index]);
        }
    }

    /// Number of entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u32) -> TimerEntry {
        TimerEntry { key, generation: key }
    }

    /// Drives the wheel like its owner: entries not yet at their real
    /// deadline `deadline(key)` go back in.
    fn run(wheel: &mut TimerWheel, to: u64, deadline: impl Fn(u32) -> Option<u64>) -> Vec<(u32, u64)> {
        let mut fired = Vec::new();
        for now in 0..=to {
            let mut due = Vec::new();
            wheel.take_due(now, &mut due);
            for (e, _) in due {
                match deadline(e.key) {
                    Some(at) if now >= at => fired.push((e.key, now)),
                    Some(at) => wheel.insert(e, at),
                    None => {}
                }
            }
        }
        fired
    }

    #[test]
    fn entry_fires_at_its_deadline_not_before() {
        let mut wheel = TimerWheel::new(8);
        wheel.insert(entry(1), 5);
        assert_eq!(run(&mut wheel, 10, |_| Some(5)), vec![(1, 5)]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn deadline_beyond_one_lap_is_rechecked_and_fires_late_enough() {
        let mut wheel = TimerWheel::new(4);
        wheel.insert(entry(1), 11);
        assert_eq!(run(&mut wheel, 20, |_| Some(11)), vec![(1, 11)]);
    }

    #[test]
    fn activity_postpones_and_gone_entries_are_dropped() {
        let mut wheel = TimerWheel::new(16);
        wheel.insert(entry(1), 3);
        wheel.insert(entry(2), 3);
        // Connection 1 was active and now expires at 9; connection 2 left.
        let fired = run(&mut wheel, 12, |key| (key == 1).then_some(9));
        assert_eq!(fired, vec![(1, 9)]);
    }
}
