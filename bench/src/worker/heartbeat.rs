//! When each connection's heartbeat is due, by the clock and not by how
//! often the event loop gets to run.
//!
//! The sweep walks over the connection indices at `len / interval`
//! connections per nanosecond, wrapping around, so every connection is
//! passed once per interval. A loop that ran late (a starved core during a
//! million-connection ramp) catches up on its next turn: the indices it
//! missed are all due then, at most one full lap. Tying heartbeats to a
//! count of loop turns instead let connections go unpinged for several
//! intervals when turns came slowly, and the server closed them for
//! idleness.

/// The heartbeat sweep over `len` connections.
#[derive(Debug, Clone)]
pub struct Sweep {
    interval_ns: u64,
    /// Clock and laps done when the current interval took effect.
    since_ns: u64,
    base: u128,
    /// Indices handed out so far (unwrapped).
    done: u128,
}

impl Sweep {
    /// A sweep passing every connection once per `interval_ms`, from `now_ns`.
    pub fn new(interval_ms: u64, now_ns: u64) -> Sweep {
        Sweep { interval_ns: interval_ms.max(1) * 1_000_000, since_ns: now_ns, base: 0, done: 0 }
    }

    /// The interval in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ns / 1_000_000
    }

    /// Changes the interval from `now_ns` on (e.g. to what the server asked for).
    pub fn set_interval(&mut self, interval_ms: u64, now_ns: u64) {
        self.base = self.done;
        self.since_ns = now_ns;
        self.interval_ns = interval_ms.max(1) * 1_000_000;
    }

    /// The indices (below `len`) due at `now_ns` since the last call, each at most once.
    pub fn due(&mut self, now_ns: u64, len: usize) -> impl Iterator<Item = usize> {
        let len = len as u128;
        let elapsed = now_ns.saturating_sub(self.since_ns) as u128;
        let target = self.base + elapsed * len / self.interval_ns as u128;
        let from = self.done;
        let to = target.min(from + len);
        self.done = target.max(from);
        (from..to).map(move |i| (i % len) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Runs the sweep with the given gaps between loop turns and returns,
    /// per connection, the longest time between two of its heartbeats.
    fn longest_gaps(len: usize, interval_ms: u64, turns: &[u64]) -> Vec<u64> {
        let mut sweep = Sweep::new(interval_ms, 0);
        let mut last = vec![0u64; len];
        let mut longest = vec![0u64; len];
        let mut now = 0;
        for gap in turns {
            now += gap;
            for idx in sweep.due(now, len) {
                longest[idx] = longest[idx].max(now - last[idx]);
                last[idx] = now;
            }
        }
        for idx in 0..len {
            longest[idx] = longest[idx].max(now - last[idx]);
        }
        longest
    }

    #[test]
    fn every_connection_once_per_interval_with_regular_turns() {
        let turns = vec![100 * MS; 300];
        let gaps = longest_gaps(1000, 1000, &turns);
        assert!(gaps.iter().all(|&g| g <= 1000 * MS + 100 * MS), "{:?}", gaps.iter().max());
    }

    #[test]
    fn slow_and_irregular_turns_still_reach_everyone_in_time() {
        // Turns 30 ms to 2.9 s apart: a tick-counting schedule would stretch
        // each connection's gap to many intervals; the sweep keeps it at one
        // interval plus the slowest turn.
        let turns: Vec<u64> = (0..400).map(|i| (30 + (i * 7919) % 2900) * MS).collect();
        let slowest = *turns.iter().max().unwrap();
        let gaps = longest_gaps(5000, 3000, &turns);
        let worst = *gaps.iter().max().unwrap();
        assert!(worst <= 3000 * MS + slowest, "worst gap {} ms", worst / MS);
    }

    #[test]
    fn a_late_turn_sends_at_most_one_lap() {
        let mut sweep = Sweep::new(1000, 0);
        assert_eq!(sweep.due(10_000 * MS, 50).count(), 50);
        assert_eq!(sweep.due(10_010 * MS, 50).count(), 0, "the catch-up does not repeat");
        assert_eq!(sweep.due(10_030 * MS, 50).count(), 1);
    }

    #[test]
    fn a_new_interval_takes_effect_from_now() {
        let mut sweep = Sweep::new(1000, 0);
        assert_eq!(sweep.due(500 * MS, 100).count(), 50);
        sweep.set_interval(100, 500 * MS);
        assert_eq!(sweep.interval_ms(), 100);
        assert_eq!(sweep.due(550 * MS, 100).count(), 50);
    }
}
