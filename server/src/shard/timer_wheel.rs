//! One timing wheel per shard for connection deadlines (authentication and
//! idle), instead of a timer object per connection.
//!
//! The wheel is lazy: activity on a connection only updates a tick number in
//! the connection's record, never the wheel. When a slot comes due, each
//! entry's connection is asked for its real deadline; entries not yet due are
//! moved to the slot of that deadline. A connection therefore costs one
//! 12-byte entry, and a busy connection is looked at about once per idle
//! timeout. Written by hand because the wheel crates on crates.io keep a
//! handle per timer and re-insert on every reset, which is the cost this
//! design avoids.

/// A connection slot key with the connection id it was armed for, so an
/// entry that outlives its connection (and a reused slot) is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerEntry {
    /// Slab key of the connection.
    pub key: u32,
    /// Id of the connection when armed.
    pub conn_id: u64,
}

/// What the owner says about an entry whose slot came due.
pub enum Due {
    /// The connection is gone, or this entry was superseded by an earlier
    /// deadline armed later; forget the entry.
    Gone,
    /// The deadline has passed; the owner has acted; forget the entry.
    Fired,
    /// The connection's real deadline is this later tick.
    Later(u64),
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

    /// Processes every tick up to and including `now_tick`, asking
    /// `check(entry, armed_due, tick)` about each entry whose slot comes up.
    pub fn advance(&mut self, now_tick: u64, mut check: impl FnMut(TimerEntry, u64, u64) -> Due) {
        while self.next_tick <= now_tick {
            let tick = self.next_tick;
            let index = (tick % self.slots.len() as u64) as usize;
            let entries = std::mem::take(&mut self.slots[index]);
            self.next_tick += 1;
            for &(entry, due) in &entries {
                if let Due::Later(later) = check(entry, due, tick) {
                    self.insert(entry, later);
                }
            }
            // Keep the slot's allocation for the next lap.
            let mut entries = entries;
            entries.clear();
            if self.slots[index].is_empty() {
                self.slots[index] = entries;
            }
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
        TimerEntry { key, conn_id: key as u64 }
    }

    #[test]
    fn entry_fires_at_its_deadline_not_before() {
        let mut wheel = TimerWheel::new(8);
        wheel.insert(entry(1), 5);
        let mut fired = Vec::new();
        for now in 0..=10 {
            wheel.advance(now, |e, _, tick| {
                if tick >= 5 {
                    fired.push((e.key, tick));
                    Due::Fired
                } else {
                    Due::Later(5)
                }
            });
        }
        assert_eq!(fired, vec![(1, 5)]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn deadline_beyond_one_lap_is_rechecked_and_fires_late_enough() {
        let mut wheel = TimerWheel::new(4);
        wheel.insert(entry(1), 11);
        let mut fired_at = None;
        let mut checks = 0;
        wheel.advance(20, |_, due, tick| {
            assert_eq!(due, 11);
            checks += 1;
            if tick >= 11 {
                fired_at = Some(tick);
                Due::Fired
            } else {
                Due::Later(11)
            }
        });
        assert_eq!(fired_at, Some(11));
        assert!(checks >= 2);
    }

    #[test]
    fn activity_postpones_and_gone_entries_are_dropped() {
        let mut wheel = TimerWheel::new(16);
        wheel.insert(entry(1), 3);
        wheel.insert(entry(2), 3);
        // Connection 1 was active and now expires at 9; connection 2 left.
        wheel.advance(3, |e, _, _| if e.key == 1 { Due::Later(9) } else { Due::Gone });
        assert_eq!(wheel.len(), 1);
        let mut fired = Vec::new();
        wheel.advance(9, |e, _, tick| {
            fired.push((e.key, tick));
            Due::Fired
        });
        assert_eq!(fired, vec![(1, 9)]);
    }
}
